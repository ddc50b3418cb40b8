//! The node's identity on STATE (`<state>/pki/`): cluster CA, node
//! certificate and key, node and cluster ids. Written atomically and fsynced,
//! so a crash mid-write leaves either the old identity or the new one.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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
    /// Present on managers, which sign certificates.
    pub ca_key_pem: Option<String>,
    pub node: CertKey,
}

const META: &str = "identity.json";
const CA_CERT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";
const NODE_CERT: &str = "node.crt";
const NODE_KEY: &str = "node.key";

pub fn pki_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("pki")
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io { path: path.display().to_string(), source }
}

/// Writes `data` to `path` through a temporary file, fsync and rename.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), PkiError> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp).map_err(io(&tmp))?;
    f.write_all(data).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))?;
    }
    Ok(())
}

impl Identity {
    /// The client TLS configuration this node dials other nodes with.
    pub fn client_tls(&self) -> Result<std::sync::Arc<rustls::ClientConfig>, super::tls::TlsError> {
        super::channel::client_tls(&self.ca_cert_pem, &self.node)
    }

    /// Loads the identity; `Ok(None)` when the node has none (maintenance mode).
    pub fn load(state_dir: &Path) -> Result<Option<Self>, PkiError> {
        let dir = pki_dir(state_dir);
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
        Ok(Some(Identity {
            meta,
            ca_cert_pem: read(CA_CERT)?,
            ca_key_pem,
            node: CertKey { cert_pem: read(NODE_CERT)?, key_pem: read(NODE_KEY)? },
        }))
    }

    /// Saves the identity. The metadata goes last: its presence means the rest is complete.
    pub fn save(&self, state_dir: &Path) -> Result<(), PkiError> {
        let dir = pki_dir(state_dir);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        write_atomic(&dir.join(CA_CERT), self.ca_cert_pem.as_bytes(), 0o644)?;
        match &self.ca_key_pem {
            Some(k) => write_atomic(&dir.join(CA_KEY), k.as_bytes(), 0o600)?,
            // A demoted manager keeps no CA key.
            None => match std::fs::remove_file(dir.join(CA_KEY)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&dir.join(CA_KEY))(e)),
                _ => {}
            },
        }
        write_atomic(&dir.join(NODE_CERT), self.node.cert_pem.as_bytes(), 0o644)?;
        write_atomic(&dir.join(NODE_KEY), self.node.key_pem.as_bytes(), 0o600)?;
        let meta = serde_json::to_vec_pretty(&self.meta)
            .map_err(|e| PkiError::Malformed { path: META.into(), msg: e.to_string() })?;
        write_atomic(&dir.join(META), &meta, 0o644)
    }
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
        };
        id.save(dir.path()).unwrap();
        let back = Identity::load(dir.path()).unwrap().unwrap();
        assert_eq!(back.meta, id.meta);
        assert_eq!(back.ca_cert_pem, id.ca_cert_pem);
        assert_eq!(back.node.key_pem, id.node.key_pem);
    }
}
