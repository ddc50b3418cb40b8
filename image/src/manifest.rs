//! The image manifest: one JSON file beside the artifacts naming each of them
//! with its size and SHA-256.

use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Errors reading or hashing artifacts.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// cannot read artifact {path}
    #[error("cannot read artifact {path}: {source}")]
    Read { path: String, source: std::io::Error },
    /// malformed manifest
    #[error("malformed manifest {path}: {source}")]
    Parse { path: String, source: serde_json::Error },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub version: String,
    pub git_revision: String,
    pub kernel_version: String,
    /// dm-verity root hash of `root.img`, hex.
    pub root_hash: String,
    /// The kernel command line the artifacts boot with (without per-machine keys).
    pub cmdline: String,
    pub artifacts: Vec<Artifact>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

impl Artifact {
    /// Describes the file at `path`, named by its file name.
    pub fn of_file(path: &Path) -> Result<Self, ManifestError> {
        let err = |source| ManifestError::Read { path: path.display().to_string(), source };
        let mut f = std::fs::File::open(path).map_err(err)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut size = 0u64;
        loop {
            let n = f.read(&mut buf).map_err(err)?;
            if n == 0 {
                break;
            }
            size += n as u64;
            hasher.update(&buf[..n]);
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        Ok(Artifact { name, size, sha256: hex::encode(hasher.finalize()) })
    }
}

impl Manifest {
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let text =
            std::fs::read(path).map_err(|source| ManifestError::Read { path: path.display().to_string(), source })?;
        serde_json::from_slice(&text)
            .map_err(|source| ManifestError::Parse { path: path.display().to_string(), source })
    }

    pub fn artifact(&self, name: &str) -> Option<&Artifact> {
        self.artifacts.iter().find(|a| a.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_digest_and_size() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.bin");
        std::fs::write(&p, b"abc").unwrap();
        let a = Artifact::of_file(&p).unwrap();
        assert_eq!(a.name, "a.bin");
        assert_eq!(a.size, 3);
        assert_eq!(a.sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn manifest_rejects_unknown_fields() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.json");
        std::fs::write(&p, br#"{"version":"1","bogus":1}"#).unwrap();
        let e = Manifest::load(&p).unwrap_err().to_string();
        assert!(e.contains("malformed manifest"), "{e}");
    }
}
