//! The node's identity on STATE (`<state>/pki/`): cluster CA, node
//! certificate and key, node and cluster ids. Checked before it is kept and
//! written as one unit (a new generation directory, then one rename of the
//! `pki` symlink), so a crash or a full disk mid-write leaves either the
//! old identity or the new one.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::autolock::{self, UnlockKey};
use super::ca::CertKey;
use super::role::Role;
use super::PkiError;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct IdentityMeta {
    pub node_id: String,
    pub cluster_id: String,
    pub cluster_name: String,
    pub role: Role,
}

/// Everything that makes a node a member of a cluster.
#[derive(Debug, Clone)]
pub struct Identity {
    pub meta: IdentityMeta,
    pub ca_cert_pem: String,
    /// Present on managers, which sign certificates (absent on a locked
    /// one until it is unlocked).
    pub ca_key_pem: Option<String>,
    pub node: CertKey,
    /// How the CA key is kept on STATE (autolock).
    pub at_rest: CaKeyAtRest,
}

/// Autolock: how a manager's CA key is kept on STATE ([`super::autolock`]).
#[derive(Debug, Clone, Default)]
pub struct CaKeyAtRest {
    /// As read from STATE and not opened yet: the manager is locked.
    pub sealed: Option<Vec<u8>>,
    /// The CA key is saved sealed under this key (none: as plain `ca.key`).
    pub unlock_key: Option<Arc<UnlockKey>>,
}

const META: &str = "identity.json";
const CA_CERT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";
/// The CA key sealed under the operator's unlock key (autolock).
const CA_KEY_SEALED: &str = "ca.key.sealed";
const NODE_CERT: &str = "node.crt";
const NODE_KEY: &str = "node.key";
/// Generations of the identity: `<state>/pki.<random>`; `<state>/pki` is a
/// symlink to the current one.
const GENERATION_PREFIX: &str = "pki.";
/// Where an identity of the old layout (a plain `pki` directory) waits
/// while its first generation is made current.
const LEGACY: &str = "pki.legacy";

/// The current identity's directory (a symlink to its generation).
pub fn pki_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("pki")
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io { path: path.display().to_string(), source }
}

/// A new file with `data`, fsynced.
fn write_synced(path: &Path, data: &[u8], mode: u32) -> Result<(), PkiError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(path).map_err(io(path))?;
    f.write_all(data).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

impl Identity {
    /// The client TLS configuration this node dials managers with (a
    /// worker's certificate at the other end is refused).
    pub fn client_tls(&self) -> Result<std::sync::Arc<rustls::ClientConfig>, super::tls::TlsError> {
        super::channel::client_tls(&self.ca_cert_pem, &self.node, super::channel::Expect::Manager)
    }

    /// The client TLS configuration this node dials any member node with.
    pub fn client_tls_any_node(&self) -> Result<std::sync::Arc<rustls::ClientConfig>, super::tls::TlsError> {
        super::channel::client_tls(&self.ca_cert_pem, &self.node, super::channel::Expect::Node)
    }

    /// Checks that the parts belong together before they are kept: the node
    /// certificate is signed by the CA, names this node, cluster and role,
    /// and matches the node key; a CA key matches the CA certificate.
    pub fn validate(&self) -> Result<(), PkiError> {
        let bad = |what: &str, msg: String| PkiError::Malformed { path: what.to_string(), msg };
        let ca = super::tls::certs(&self.ca_cert_pem, "cluster CA").map_err(|e| bad("ca.crt", e.to_string()))?;
        let node =
            super::tls::certs(&self.node.cert_pem, "node certificate").map_err(|e| bad("node.crt", e.to_string()))?;
        let (Some(ca), Some(leaf)) = (ca.first(), node.first()) else {
            return Err(bad("identity", "a certificate is missing".into()));
        };
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.clone()).map_err(|e| bad("ca.crt", e.to_string()))?;
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), super::tls::provider())
                .build()
                .map_err(|e| bad("ca.crt", e.to_string()))?;
        // Checked as of the certificate's start: whether it is still valid
        // is for TLS to say when it is used (the clock may be off at boot),
        // whether the parts belong together is for us.
        let (_, parsed) = x509_parser::parse_x509_certificate(leaf).map_err(|e| bad("node.crt", e.to_string()))?;
        let start = u64::try_from(parsed.validity().not_before.timestamp()).unwrap_or(0) + 1;
        let at = rustls::pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(start));
        verifier
            .verify_client_cert(leaf, &[], at)
            .map_err(|e| bad("node.crt", format!("not a valid certificate of this cluster's CA: {e}")))?;
        let who = super::role::identity_of(leaf)?;
        if who.name != self.meta.node_id || who.cluster_id != self.meta.cluster_id || who.role != self.meta.role {
            return Err(bad(
                "node.crt",
                format!(
                    "issued to {} ({}) of cluster {}, not {} ({}) of {}",
                    who.name, who.role, who.cluster_id, self.meta.node_id, self.meta.role, self.meta.cluster_id
                ),
            ));
        }
        same_key(leaf, &self.node.key_pem).map_err(|m| bad("node.key", m))?;
        if let Some(k) = &self.ca_key_pem {
            same_key(ca, k).map_err(|m| bad("ca.key", m))?;
        }
        Ok(())
    }

    /// Loads the identity; `Ok(None)` when the node has none (maintenance
    /// mode). A half-written generation is never current, so what loads is
    /// a complete identity or an error saying what is wrong.
    pub fn load(state_dir: &Path) -> Result<Option<Self>, PkiError> {
        let mut dir = pki_dir(state_dir);
        if !dir.exists() {
            // A crash between moving an old-layout directory aside and
            // linking its successor.
            let legacy = state_dir.join(LEGACY);
            if !legacy.exists() {
                return Ok(None);
            }
            dir = legacy;
        }
        let meta_path = dir.join(META);
        if !meta_path.exists() {
            return Ok(None);
        }
        let read = |name: &str| {
            let p = dir.join(name);
            std::fs::read_to_string(&p).map_err(io(&p))
        };
        let meta: IdentityMeta = serde_json::from_str(&read(META)?)
            .map_err(|e| PkiError::Malformed { path: meta_path.display().to_string(), msg: e.to_string() })?;
        let ca_key_pem = if dir.join(CA_KEY).exists() { Some(read(CA_KEY)?) } else { None };
        let sealed_path = dir.join(CA_KEY_SEALED);
        let sealed = match ca_key_pem {
            None if sealed_path.exists() => Some(std::fs::read(&sealed_path).map_err(io(&sealed_path))?),
            _ => None,
        };
        Ok(Some(Identity {
            meta,
            ca_cert_pem: read(CA_CERT)?,
            ca_key_pem,
            node: CertKey { cert_pem: read(NODE_CERT)?, key_pem: read(NODE_KEY)? },
            at_rest: CaKeyAtRest { sealed, unlock_key: None },
        }))
    }

    /// Saves the identity as one unit, after [`Identity::validate`]: every
    /// file goes into a new generation directory, fsynced, and one rename
    /// of the `pki` symlink makes it current. A crash or a full disk at any
    /// point leaves the old identity or the new one, never a mix.
    pub fn save(&self, state_dir: &Path) -> Result<(), PkiError> {
        self.validate()?;
        let generation = format!("{GENERATION_PREFIX}{:016x}", rand::random::<u64>());
        let new = state_dir.join(&generation);
        let result = self.write_generation(&new).and_then(|()| make_current(state_dir, &generation));
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&new);
            return result;
        }
        // Earlier generations are garbage now.
        if let Ok(entries) = std::fs::read_dir(state_dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if (name.starts_with(GENERATION_PREFIX) && name != generation) || name == LEGACY {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        Ok(())
    }

    /// A manager whose CA key is still sealed on STATE: it serves only
    /// `health` and `cluster unlock`.
    pub fn locked(&self) -> bool {
        self.meta.role == Role::Manager && self.ca_key_pem.is_none() && self.at_rest.sealed.is_some()
    }

    /// This identity with its CA key opened by `key` (and kept sealed
    /// under it from now on).
    pub fn unlocked(&self, key: Arc<UnlockKey>) -> Result<Identity, PkiError> {
        let sealed = self.at_rest.sealed.as_deref().ok_or_else(|| PkiError::Malformed {
            path: CA_KEY_SEALED.into(),
            msg: "this node holds no sealed CA key".into(),
        })?;
        let pem = autolock::open_ca_key(&key, &self.meta.cluster_id, sealed)?;
        let id = Identity {
            ca_key_pem: Some(pem.to_string()),
            at_rest: CaKeyAtRest { sealed: None, unlock_key: Some(key) },
            ..self.clone()
        };
        id.validate()?;
        Ok(id)
    }

    fn write_generation(&self, dir: &Path) -> Result<(), PkiError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().mode(0o700).create(dir).map_err(io(dir))?;
        let meta = serde_json::to_vec_pretty(&self.meta)
            .map_err(|e| PkiError::Malformed { path: META.into(), msg: e.to_string() })?;
        let mut files = vec![
            (CA_CERT, self.ca_cert_pem.as_bytes(), 0o644),
            (NODE_CERT, self.node.cert_pem.as_bytes(), 0o644),
            (NODE_KEY, self.node.key_pem.as_bytes(), 0o600),
            (META, &meta[..], 0o644),
        ];
        let sealed = match (&self.ca_key_pem, &self.at_rest) {
            (Some(k), CaKeyAtRest { unlock_key: Some(u), .. }) => {
                Some(autolock::seal_ca_key(u, &self.meta.cluster_id, k)?)
            }
            (Some(k), _) => {
                files.push((CA_KEY, k.as_bytes(), 0o600));
                None
            }
            (None, CaKeyAtRest { sealed, .. }) => sealed.clone(),
        };
        if let Some(sealed) = &sealed {
            files.push((CA_KEY_SEALED, sealed, 0o600));
        }
        for (name, data, mode) in files {
            write_synced(&dir.join(name), data, mode)?;
        }
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
    }
}

/// Points `<state>/pki` at `generation` with one rename (an old-layout
/// `pki` directory is moved aside first; [`Identity::load`] finds it there).
fn make_current(state_dir: &Path, generation: &str) -> Result<(), PkiError> {
    let link = pki_dir(state_dir);
    if link.symlink_metadata().is_ok_and(|m| m.is_dir()) {
        let legacy = state_dir.join(LEGACY);
        std::fs::rename(&link, &legacy).map_err(io(&legacy))?;
    }
    let tmp = state_dir.join("pki.link.tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(generation, &tmp).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &link).map_err(io(&link))?;
    std::fs::File::open(state_dir).and_then(|d| d.sync_all()).map_err(io(state_dir))
}

/// Whether the private key `key_pem` is the one certified by `cert`.
fn same_key(cert: &rustls::pki_types::CertificateDer<'_>, key_pem: &str) -> Result<(), String> {
    let key = rcgen::KeyPair::from_pem(key_pem).map_err(|e| format!("not a private key: {e}"))?;
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).map_err(|e| format!("certificate: {e}"))?;
    if parsed.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Err("the key does not belong to the certificate".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::ca;

    #[test]
    fn save_then_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Identity::load(dir.path()).unwrap().is_none());
        let ca = ca::new_ca("c", "n").unwrap();
        let node = ca::issue(&ca, "c", "node1", Role::Manager, ca::NODE_TTL).unwrap();
        let id = Identity {
            meta: IdentityMeta {
                node_id: "node1".into(),
                cluster_id: "c".into(),
                cluster_name: "n".into(),
                role: Role::Manager,
            },
            ca_cert_pem: ca.cert_pem.clone(),
            ca_key_pem: Some(ca.key_pem.clone()),
            node,
            at_rest: CaKeyAtRest::default(),
        };
        id.save(dir.path()).unwrap();
        let back = Identity::load(dir.path()).unwrap().unwrap();
        assert_eq!(back.meta, id.meta);
        assert_eq!(back.ca_cert_pem, id.ca_cert_pem);
        assert_eq!(back.node.key_pem, id.node.key_pem);
    }

    fn identity(ca: &CertKey, role: Role) -> Identity {
        Identity {
            meta: IdentityMeta { node_id: "node1".into(), cluster_id: "c".into(), cluster_name: "n".into(), role },
            ca_cert_pem: ca.cert_pem.clone(),
            ca_key_pem: (role == Role::Manager).then(|| ca.key_pem.clone()),
            node: ca::issue(ca, "c", "node1", role, ca::NODE_TTL).unwrap(),
            at_rest: CaKeyAtRest::default(),
        }
    }

    #[test]
    fn a_mismatched_pair_is_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca::new_ca("c", "n").unwrap();
        let good = identity(&ca, Role::Manager);
        good.save(dir.path()).unwrap();
        let other = ca::issue(&ca, "c", "node1", Role::Manager, ca::NODE_TTL).unwrap();
        let foreign_ca = ca::new_ca("c", "n").unwrap();
        let cases: Vec<(Identity, &str)> = vec![
            // The key of another certificate.
            (Identity { node: CertKey { key_pem: other.key_pem, ..good.node.clone() }, ..good.clone() }, "node.key"),
            // A certificate from another CA.
            (Identity { ca_cert_pem: foreign_ca.cert_pem.clone(), ..good.clone() }, "node.crt"),
            // Says worker, the certificate says manager.
            (Identity { meta: IdentityMeta { role: Role::Worker, ..good.meta.clone() }, ..good.clone() }, "node.crt"),
            (Identity { ca_key_pem: Some(foreign_ca.key_pem.clone()), ..good.clone() }, "ca.key"),
            (
                Identity { node: CertKey { cert_pem: "garbage".into(), ..good.node.clone() }, ..good.clone() },
                "identity",
            ),
        ];
        for (bad, what) in cases {
            let e = bad.save(dir.path()).unwrap_err().to_string();
            assert!(e.contains(what), "{what}: {e}");
            let kept = Identity::load(dir.path()).unwrap().unwrap();
            assert_eq!(kept.node.cert_pem, good.node.cert_pem);
            assert_eq!(kept.node.key_pem, good.node.key_pem);
        }
    }

    #[test]
    fn a_crash_mid_save_leaves_the_old_identity_whole() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca::new_ca("c", "n").unwrap();
        let old = identity(&ca, Role::Manager);
        old.save(dir.path()).unwrap();
        let new = identity(&ca, Role::Worker);
        // Every file of the next generation written, then a crash before
        // the link moves: what loads is the old identity, whole.
        new.write_generation(&dir.path().join("pki.crashed")).unwrap();
        let loaded = Identity::load(dir.path()).unwrap().unwrap();
        loaded.validate().unwrap();
        assert_eq!((loaded.meta.role, loaded.node.cert_pem), (Role::Manager, old.node.cert_pem.clone()));
        // The next save is whole too, and leaves one generation.
        new.save(dir.path()).unwrap();
        let loaded = Identity::load(dir.path()).unwrap().unwrap();
        assert_eq!(loaded.meta.role, Role::Worker);
        assert!(loaded.ca_key_pem.is_none());
        let generations = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(GENERATION_PREFIX))
            .count();
        assert_eq!(generations, 1);
    }

    #[test]
    fn an_autolocked_manager_keeps_its_ca_key_sealed_and_loads_locked() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca::new_ca("c", "n").unwrap();
        let key = Arc::new(UnlockKey::generate());
        let mut id = identity(&ca, Role::Manager);
        id.at_rest.unlock_key = Some(key.clone());
        id.save(dir.path()).unwrap();
        let pki = pki_dir(dir.path());
        assert!(!pki.join(CA_KEY).exists());
        let on_disk = std::fs::read(pki.join(CA_KEY_SEALED)).unwrap();
        assert!(!String::from_utf8_lossy(&on_disk).contains("PRIVATE KEY"));
        let locked = Identity::load(dir.path()).unwrap().unwrap();
        assert!(locked.locked() && locked.ca_key_pem.is_none());
        locked.validate().unwrap();
        // Saved while locked (a renewed node certificate): still sealed, the same.
        locked.save(dir.path()).unwrap();
        assert_eq!(std::fs::read(pki_dir(dir.path()).join(CA_KEY_SEALED)).unwrap(), on_disk);
        let e = locked.unlocked(Arc::new(UnlockKey::generate())).unwrap_err().to_string();
        assert!(e.contains("does not open"), "{e}");
        let open = locked.unlocked(key).unwrap();
        assert!(!open.locked());
        assert_eq!(open.ca_key_pem.as_deref(), Some(ca.key_pem.as_str()));
        // Autolock off: plain again.
        let plain = Identity { at_rest: CaKeyAtRest::default(), ..open };
        plain.save(dir.path()).unwrap();
        let pki = pki_dir(dir.path());
        assert!(pki.join(CA_KEY).exists() && !pki.join(CA_KEY_SEALED).exists());
        assert!(!Identity::load(dir.path()).unwrap().unwrap().locked());
    }

    #[test]
    fn an_old_layout_directory_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca::new_ca("c", "n").unwrap();
        let id = identity(&ca, Role::Worker);
        // What agents before generations wrote: plain files in pki/.
        id.write_generation(&pki_dir(dir.path())).unwrap();
        assert_eq!(Identity::load(dir.path()).unwrap().unwrap().node.cert_pem, id.node.cert_pem);
        id.save(dir.path()).unwrap();
        assert!(pki_dir(dir.path()).symlink_metadata().unwrap().file_type().is_symlink());
        assert_eq!(Identity::load(dir.path()).unwrap().unwrap().node.cert_pem, id.node.cert_pem);
        assert!(!dir.path().join(LEGACY).exists());
    }
}
