//! Signatures that came inside loaded archives (air-gapped nodes): kept
//! per manifest digest under `<state>/images/signatures/<hex>.json`, and
//! checked instead of the registry's when the image policy asks about a
//! loaded image ([`super::signed`]).

use serde::{Deserialize, Serialize};

use super::{digest_hex, ImageStore};
use crate::error::AgentError;

/// One cosign-style signature: its payload and the signature over it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptSignature {
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    /// Base64, as the signature annotation holds it.
    pub signature: String,
}

impl ImageStore {
    fn signatures_path(&self, digest: &str) -> Result<std::path::PathBuf, AgentError> {
        Ok(self.root.join("signatures").join(format!("{}.json", digest_hex(digest)?)))
    }

    /// The signatures kept for manifest `digest` (none: the image was pulled,
    /// or its archive carried none).
    pub fn signatures(&self, digest: &str) -> Result<Vec<KeptSignature>, AgentError> {
        let path = self.signatures_path(digest)?;
        match std::fs::read(&path) {
            Ok(data) => serde_json::from_slice(&data).map_err(|e| {
                AgentError::Internal(format!("{}: {e}: remove it and load the image again", path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(AgentError::io(&path, e)),
        }
    }

    /// Keeps `new` with those already kept for `digest` (written whole, then renamed).
    pub fn keep_signatures(&self, digest: &str, new: &[KeptSignature]) -> Result<(), AgentError> {
        let mut all = self.signatures(digest)?;
        all.extend(new.iter().filter(|s| !all.contains(s)).cloned().collect::<Vec<_>>());
        let path = self.signatures_path(digest)?;
        let dir = self.root.join("signatures");
        std::fs::create_dir_all(&dir).map_err(|e| AgentError::io(&dir, e))?;
        let tmp = self.tmp_dir().join(format!("sig-{:016x}", rand::random::<u64>()));
        let data = serde_json::to_vec(&all).map_err(|e| AgentError::Internal(e.to_string()))?;
        std::fs::write(&tmp, data).map_err(|e| AgentError::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| AgentError::io(&path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_signatures_accumulate_without_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path(), vec![], 1 << 30).unwrap();
        let d = format!("sha256:{}", "a".repeat(64));
        assert!(store.signatures(&d).unwrap().is_empty());
        let a = KeptSignature { payload: b"{}".to_vec(), signature: "c2ln".into() };
        let b = KeptSignature { payload: b"{}".to_vec(), signature: "b3RoZXI=".into() };
        store.keep_signatures(&d, std::slice::from_ref(&a)).unwrap();
        store.keep_signatures(&d, &[a.clone(), b.clone()]).unwrap();
        assert_eq!(store.signatures(&d).unwrap(), vec![a, b]);
        assert!(store.signatures("sha256:../x").is_err());
    }
}
