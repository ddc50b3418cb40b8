//! The node's image store on STATE.
//!
//! ```text
//! <state>/images/
//!   index.json               names → image records (written atomically)
//!   blobs/sha256/<hex>       manifests and configs, digest-verified
//!   layers/sha256/<hex>/     unpacked layers, named by diff id (uncompressed digest)
//!   tmp/                     downloads and unpacks in progress (emptied at start)
//!   signatures/<hex>.json    signatures loaded archives carried, per manifest digest
//! ```
//!
//! A layer is unpacked once into a temporary directory, its compressed and
//! uncompressed digests checked, and only then renamed into `layers/`: what
//! sits there is verified. Compressed layer blobs are not kept.
//!
//! - [`pull`]: from registries (oci-client), with progress.
//! - [`load`]: from OCI layouts and `docker save` archives.
//! - [`layer`]: decompress, hash and unpack one layer.
//! - [`reference`]: image names.
//! - [`signed`]: checking an image's signature against the image policy;
//!   [`signatures`]: those that came inside loaded archives.

pub mod layer;
pub mod load;
pub mod pull;
pub mod reference;
pub mod signatures;
pub mod signed;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::AgentError;
use orc_proto::container as pb;

/// One name on the node and what it points at.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ImageRecord {
    pub name: String,
    /// Config digest, `sha256:…`.
    pub id: String,
    /// Manifest digest, `sha256:…` (empty for `docker save` archives).
    pub digest: String,
    /// Diff ids, bottom layer first.
    pub layers: Vec<String>,
    pub size: u64,
    pub created: i64,
}

impl ImageRecord {
    pub fn to_proto(&self) -> pb::Image {
        pb::Image {
            name: self.name.clone(),
            id: self.id.clone(),
            digest: self.digest.clone(),
            size: self.size,
            created: self.created,
            layers: self.layers.clone(),
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Index {
    images: Vec<ImageRecord>,
}

pub struct ImageStore {
    root: PathBuf,
    /// Registries reached over plain HTTP (`host:port`), from the node's settings.
    pub insecure_registries: Vec<String>,
    /// Serialises changes to index.json and garbage collection.
    lock: tokio::sync::Mutex<()>,
    /// One implicit pull at a time ([`pull::ensure`]): twenty replicas of
    /// one image pull it once.
    pub(crate) ensuring: tokio::sync::Mutex<()>,
    /// The most bytes one image (and so one layer) may unpack to.
    pub max_image_bytes: u64,
}

/// What a pull or load keeps free on STATE beyond what it needs, so the
/// node's own state (Raft, records, logs) can still be written.
pub const SPACE_RESERVE: u64 = 256 << 20;

/// Hex part of a `sha256:<hex>` digest, checked.
pub fn digest_hex(digest: &str) -> Result<&str, AgentError> {
    match digest.strip_prefix("sha256:") {
        Some(h) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) => Ok(h),
        _ => Err(AgentError::InvalidArgument(format!("{digest:?} is not a sha256 digest"))),
    }
}

impl ImageStore {
    pub fn open(
        state_dir: &Path,
        insecure_registries: Vec<String>,
        max_image_bytes: u64,
    ) -> Result<Arc<Self>, AgentError> {
        let root = state_dir.join("images");
        for d in ["blobs/sha256", "layers/sha256", "tmp"] {
            std::fs::create_dir_all(root.join(d)).map_err(|e| AgentError::io(root.join(d), e))?;
        }
        // Leftovers of interrupted pulls: never verified, never used.
        if let Ok(entries) = std::fs::read_dir(root.join("tmp")) {
            for e in entries.flatten() {
                let _ = std::fs::remove_dir_all(e.path()).or_else(|_| std::fs::remove_file(e.path()));
            }
        }
        Ok(Arc::new(Self {
            root,
            insecure_registries,
            lock: Default::default(),
            ensuring: Default::default(),
            max_image_bytes,
        }))
    }

    /// Refuses to start bringing in `image` (at least `needed` bytes, plus
    /// [`SPACE_RESERVE`]) when STATE has less free, or when `needed` alone
    /// is over the image size limit; the error names the image, the sizes and the fix.
    pub fn check_space(&self, image: &str, needed: u64) -> Result<(), AgentError> {
        if needed > self.max_image_bytes {
            return Err(self.too_large(image, needed));
        }
        let st = nix::sys::statvfs::statvfs(&self.root).map_err(|e| AgentError::io(&self.root, e.into()))?;
        let free = st.blocks_available() as u64 * st.fragment_size() as u64;
        if free < needed.saturating_add(SPACE_RESERVE) {
            let diskless = nix::sys::statfs::statfs(&self.root)
                .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC);
            let more = if diskless {
                "give the node more memory (STATE is tmpfs, half of it: a diskless node) or a disk labelled ORC_STATE"
            } else {
                "give the node a bigger disk"
            };
            return Err(AgentError::ResourceExhausted(format!(
                "{image}: needs at least {needed} bytes and {SPACE_RESERVE} to spare, but STATE has {free} free: \
                 remove unused images and containers (`orcctl image rm`, `orcctl container rm`) or {more}"
            )));
        }
        Ok(())
    }

    /// The error for an image over the limit.
    pub fn too_large(&self, image: &str, size: u64) -> AgentError {
        AgentError::ResourceExhausted(format!(
            "{image}: {size} bytes is over this node's image size limit of {} bytes \
             (the agent's --max-image-bytes, `orc.max_image_size=` on a node)",
            self.max_image_bytes
        ))
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub fn layer_dir(&self, diff_id: &str) -> Result<PathBuf, AgentError> {
        Ok(self.root.join("layers/sha256").join(digest_hex(diff_id)?))
    }

    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, AgentError> {
        Ok(self.root.join("blobs/sha256").join(digest_hex(digest)?))
    }

    /// Stores a small blob (manifest, config) after checking its digest.
    pub fn put_blob(&self, digest: &str, data: &[u8]) -> Result<(), AgentError> {
        let actual = format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(data)));
        if actual != digest {
            return Err(AgentError::InvalidArgument(format!(
                "blob {digest} has digest {actual}: the registry or archive sent corrupt data"
            )));
        }
        crate::fsutil::write_atomic(&self.blob_path(digest)?, data)
    }

    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>, AgentError> {
        let p = self.blob_path(digest)?;
        std::fs::read(&p).map_err(|e| AgentError::io(&p, e))
    }

    fn read_index(&self) -> Result<Index, AgentError> {
        let p = self.root.join("index.json");
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| AgentError::Io(format!("{}: corrupt image index: {e}", p.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Index::default()),
            Err(e) => Err(AgentError::io(&p, e)),
        }
    }

    fn write_index(&self, index: &Index) -> Result<(), AgentError> {
        let data = serde_json::to_vec_pretty(index).map_err(|e| AgentError::Io(e.to_string()))?;
        crate::fsutil::write_atomic(&self.root.join("index.json"), &data)
    }

    pub async fn list(&self) -> Result<Vec<ImageRecord>, AgentError> {
        let _g = self.lock.lock().await;
        Ok(self.read_index()?.images)
    }

    /// The image a name (or id, or unique id prefix) refers to.
    pub async fn get(&self, name: &str) -> Result<Option<ImageRecord>, AgentError> {
        let images = self.list().await?;
        let normalized = reference::normalize(name).ok();
        let by_name = images.iter().find(|i| Some(&i.name) == normalized.as_ref() || i.name == name);
        if let Some(i) = by_name {
            return Ok(Some(i.clone()));
        }
        let id = if name.starts_with("sha256:") { name.to_string() } else { format!("sha256:{name}") };
        let matches: Vec<_> = images.iter().filter(|i| name.len() >= 12 && i.id.starts_with(&id)).collect();
        Ok(matches.first().filter(|_| matches.iter().all(|m| m.id == matches[0].id)).map(|i| (*i).clone()))
    }

    /// Adds or moves a name.
    pub async fn tag(&self, record: ImageRecord) -> Result<(), AgentError> {
        let _g = self.lock.lock().await;
        let mut index = self.read_index()?;
        index.images.retain(|i| i.name != record.name);
        index.images.push(record);
        index.images.sort_by(|a, b| a.name.cmp(&b.name));
        self.write_index(&index)
    }

    /// Removes a name (or every name of an id) and returns the names
    /// removed. `in_use` are (container, image id) pairs on the node; the
    /// last name of an image they use is refused.
    pub async fn remove(&self, name: &str, in_use: &[(String, String)]) -> Result<Vec<String>, AgentError> {
        let Some(image) = self.get(name).await? else {
            return Err(AgentError::NotFound(format!("no image {name:?} on this node (see `orcctl image ls`)")));
        };
        let users: Vec<_> = in_use.iter().filter(|(_, id)| *id == image.id).map(|(c, _)| c.as_str()).collect();
        let _g = self.lock.lock().await;
        let mut index = self.read_index()?;
        let untag: Vec<String> =
            if name == image.name || reference::normalize(name).ok().as_deref() == Some(&image.name) {
                vec![image.name.clone()]
            } else {
                index.images.iter().filter(|i| i.id == image.id).map(|i| i.name.clone()).collect()
            };
        let remaining_names = index.images.iter().filter(|i| i.id == image.id && !untag.contains(&i.name)).count();
        if remaining_names == 0 && !users.is_empty() {
            return Err(AgentError::FailedPrecondition(format!(
                "image {} is used by container(s) {}: remove them first (`orcctl container rm`)",
                image.name,
                users.join(", ")
            )));
        }
        index.images.retain(|i| !untag.contains(&i.name));
        self.write_index(&index)?;
        Ok(untag)
    }

    /// Frees layers and blobs that no image and no container refers to.
    /// `keep_layers` are the diff ids containers use. Returns bytes freed.
    pub async fn gc(&self, keep_layers: &BTreeSet<String>, keep_ids: &BTreeSet<String>) -> Result<u64, AgentError> {
        let _g = self.lock.lock().await;
        let index = self.read_index()?;
        let mut layers: BTreeSet<String> = keep_layers.clone();
        let mut blobs: BTreeSet<String> = keep_ids.clone();
        for i in &index.images {
            layers.extend(i.layers.iter().cloned());
            blobs.insert(i.id.clone());
            if !i.digest.is_empty() {
                blobs.insert(i.digest.clone());
            }
        }
        let mut freed = 0;
        for (dir, keep) in [("layers/sha256", &layers), ("blobs/sha256", &blobs)] {
            let Ok(entries) = std::fs::read_dir(self.root.join(dir)) else { continue };
            for e in entries.flatten() {
                let name = format!("sha256:{}", e.file_name().to_string_lossy());
                if keep.contains(&name) {
                    continue;
                }
                freed += crate::fsutil::du(&e.path());
                let r =
                    if e.path().is_dir() { std::fs::remove_dir_all(e.path()) } else { std::fs::remove_file(e.path()) };
                if let Err(err) = r {
                    tracing::warn!(path = %e.path().display(), error = %err, "cannot remove unused image data");
                }
            }
        }
        if freed > 0 {
            tracing::info!(freed, "image garbage collected");
        }
        Ok(freed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pulls_that_cannot_fit_are_refused_before_they_start() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path(), vec![], 1 << 20).unwrap();
        store.check_space("web:1", 1000).unwrap();
        let e = store.check_space("web:1", 2 << 20).unwrap_err().to_string();
        assert!(e.contains("web:1") && e.contains("2097152 bytes") && e.contains("--max-image-bytes"), "{e}");
        let roomy = ImageStore::open(dir.path(), vec![], u64::MAX).unwrap();
        let e = roomy.check_space("huge:1", u64::MAX / 2).unwrap_err().to_string();
        assert!(e.contains("huge:1") && e.contains("free") && e.contains("orcctl image rm"), "{e}");
        assert!(matches!(roomy.check_space("huge:1", u64::MAX / 2), Err(AgentError::ResourceExhausted(_))));
    }
}
