//! The certificate a node without identity serves: self-signed, kept on STATE
//! so its fingerprint (printed on the console) stays the same across reboots.

use std::path::Path;

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

use super::ca::CertKey;
use super::identity::{pki_dir, write_atomic};
use super::{PkiError, NODE_SERVER_NAME};

const CERT: &str = "maintenance.crt";
const KEY: &str = "maintenance.key";

/// Loads the maintenance certificate, making it on first use.
pub fn load_or_create(state_dir: &Path) -> Result<CertKey, PkiError> {
    let dir = pki_dir(state_dir);
    if let (Ok(cert_pem), Ok(key_pem)) =
        (std::fs::read_to_string(dir.join(CERT)), std::fs::read_to_string(dir.join(KEY)))
    {
        return Ok(CertKey { cert_pem, key_pem });
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
