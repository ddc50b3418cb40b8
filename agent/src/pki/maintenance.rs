//! The certificate a node without identity serves: self-signed, kept on STATE
//! so its fingerprint (printed on the console) stays the same across reboots.

use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

use super::ca::CertKey;
use super::identity::pki_dir;
use super::{PkiError, NODE_SERVER_NAME};

const CERT: &str = "maintenance.crt";
const KEY: &str = "maintenance.key";

/// Where the maintenance certificate lives: beside the identity, not in
/// it (the identity's directory is replaced as a whole).
fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("maintenance")
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io { path: path.display().to_string(), source }
}

/// Writes `data` to `path` through a temporary file, fsync and rename.
fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), PkiError> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp).map_err(io(&tmp))?;
    f.write_all(data).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Loads the maintenance certificate, making it on first use (or keeping
/// the one an older agent left in `pki/`).
pub fn load_or_create(state_dir: &Path) -> Result<CertKey, PkiError> {
    let dir = dir(state_dir);
    for d in [dir.clone(), pki_dir(state_dir)] {
        if let (Ok(cert_pem), Ok(key_pem)) =
            (std::fs::read_to_string(d.join(CERT)), std::fs::read_to_string(d.join(KEY)))
        {
            if d != dir {
                std::fs::create_dir_all(&dir).map_err(io(&dir))?;
                write_atomic(&dir.join(KEY), key_pem.as_bytes(), 0o600)?;
                write_atomic(&dir.join(CERT), cert_pem.as_bytes(), 0o644)?;
            }
            return Ok(CertKey { cert_pem, key_pem });
        }
    }
    std::fs::create_dir_all(&dir).map_err(|source| PkiError::Io { path: dir.display().to_string(), source })?;
    let key = KeyPair::generate()?;
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "orc node in maintenance mode");
    p.distinguished_name = dn;
    p.subject_alt_names = vec![SanType::DnsName(NODE_SERVER_NAME.try_into()?)];
    let cert = p.self_signed(&key)?;
    let ck = CertKey { cert_pem: cert.pem(), key_pem: key.serialize_pem() };
    write_atomic(&dir.join(KEY), ck.key_pem.as_bytes(), 0o600)?;
    write_atomic(&dir.join(CERT), ck.cert_pem.as_bytes(), 0o644)?;
    Ok(ck)
}
