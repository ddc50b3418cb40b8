//! A node's volumes on STATE: a named volume's data under
//! `<state>/volumes/<id>/_data` (by id, so a volume made again under the
//! same name never finds an older one's data), made when a task first
//! mounts it and deleted when the managers say it was removed; an
//! anonymous volume under `<state>/volumes/.anon/<task>/<n>`, deleted with
//! its task's container. Tmpfs mounts are the runtime's.

use std::path::{Path, PathBuf};

use crate::cluster::objects::{MountKind, Task};
use crate::runtime::record::MountSpec;

/// Why a task's volumes could not be made.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// The managers placed the task without the volume (removed meanwhile).
    #[error("volume {0} does not exist (any more): create it, or take it out of the service")]
    Missing(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("volume {volume}: {source}")]
    Size { volume: String, source: super::volume_size::SizeError },
    #[error("volume {volume}: {source}")]
    Nfs { volume: String, source: Box<super::nfs_mount::MountError> },
}

const ANON: &str = ".anon";

#[derive(Clone)]
pub struct TaskVolumes {
    root: PathBuf,
    /// orc-init's marker while it loads the late modules (the NFS client).
    modules_pending: PathBuf,
}

impl TaskVolumes {
    pub fn new(state_dir: &Path, run_dir: &Path) -> Self {
        Self {
            root: state_dir.join("volumes"),
            modules_pending: run_dir.join(orc_image::cmdline::LATE_MODULES_PENDING),
        }
    }

    /// Waits until what `t`'s volumes need of the kernel is loaded (the
    /// NFS client, among the late modules).
    pub async fn ready_for(&self, t: &Task) {
        if !t.nfs.is_empty() {
            crate::late_modules::loaded(&self.modules_pending).await;
        }
    }

    fn make(path: &Path) -> Result<(), VolumeError> {
        std::fs::create_dir_all(path).map_err(|source| VolumeError::Io { path: path.to_path_buf(), source })
    }

    /// Makes directory `path` unless it is there, with a size limit of
    /// `size` bytes (0: none) as project `project`: made beside it and
    /// renamed when limited, so a limit that failed is tried again.
    fn make_sized(path: &Path, volume: &str, project: &str, size: u64) -> Result<bool, VolumeError> {
        if path.exists() {
            return Ok(false);
        }
        if size == 0 {
            Self::make(path)?;
            return Ok(true);
        }
        let new = path.with_extension("new");
        if new.exists() {
            std::fs::remove_dir_all(&new).map_err(|source| VolumeError::Io { path: new.clone(), source })?;
        }
        Self::make(&new)?;
        let limited = super::volume_size::limit(&new, super::volume_size::project_id(project), size)
            .map_err(|source| VolumeError::Size { volume: volume.to_string(), source });
        if let Err(e) = limited {
            let _ = std::fs::remove_dir(&new);
            return Err(e);
        }
        std::fs::rename(&new, path).map_err(|source| VolumeError::Io { path: path.to_path_buf(), source })?;
        Ok(true)
    }

    /// The mounts that give task `t` its volumes and tmpfs, its volumes
    /// made where they are not yet.
    pub fn prepare(&self, t: &Task) -> Result<Vec<MountSpec>, VolumeError> {
        let mut out = Vec::with_capacity(t.spec.mounts.len());
        for (i, m) in t.spec.mounts.iter().enumerate() {
            let source = match m.kind {
                MountKind::Tmpfs => {
                    out.push(MountSpec {
                        kind: "tmpfs".into(),
                        source: "tmpfs".into(),
                        target: m.target.clone(),
                        read_only: m.read_only,
                    });
                    continue;
                }
                MountKind::Volume => match m.volume_for(t.spec.stateful, &t.service, t.slot) {
                    Some(name) => {
                        let id = t.volumes.get(&name).filter(|id| !id.is_empty());
                        let id = id.ok_or_else(|| VolumeError::Missing(name.clone()))?;
                        let dir = self.root.join(id);
                        let data = dir.join("_data");
                        let size = t.volume_sizes.get(&name).copied().unwrap_or(0);
                        Self::make(&dir)?;
                        if let Some(nfs) = t.nfs.get(&name) {
                            out.push(MountSpec {
                                kind: "bind".into(),
                                source: self.nfs(&dir, &name, nfs)?.to_string_lossy().into_owned(),
                                target: m.target.clone(),
                                read_only: m.read_only,
                            });
                            continue;
                        }
                        if Self::make_sized(&data, &name, id, size)? {
                            // What it is, for whoever looks at STATE.
                            let _ = std::fs::write(dir.join("name"), &name);
                            tracing::info!(volume = %name, %id, size, task = %t.id, "volume made on this node");
                        }
                        data
                    }
                    None => {
                        let dir = self.root.join(ANON).join(&t.id);
                        Self::make(&dir)?;
                        let dir = dir.join(i.to_string());
                        let key = format!("{}/{i}", t.id);
                        Self::make_sized(&dir, &format!("(anonymous, at {})", m.target), &key, m.size)?;
                        dir
                    }
                },
            };
            out.push(MountSpec {
                kind: "bind".into(),
                source: source.to_string_lossy().into_owned(),
                target: m.target.clone(),
                read_only: m.read_only,
            });
        }
        Ok(out)
    }

    /// The export of NFS volume `name` mounted at `dir/_data`, and the
    /// directory in it that is the volume (made there when missing).
    fn nfs(&self, dir: &Path, name: &str, nfs: &crate::model::volume::Nfs) -> Result<PathBuf, VolumeError> {
        let data = dir.join("_data");
        if !crate::fsutil::is_mountpoint(&data) {
            Self::make(&data)?;
            // What it is, for whoever looks at STATE.
            let _ = std::fs::write(dir.join("name"), name);
        }
        super::nfs_mount::ensure(&data, nfs)
            .map_err(|e| VolumeError::Nfs { volume: name.to_string(), source: Box::new(e) })?;
        if nfs.dir.is_empty() {
            return Ok(data);
        }
        let sub = data.join(&nfs.dir);
        Self::make(&sub)?;
        Ok(sub)
    }

    /// Deletes task `task`'s anonymous volumes.
    pub fn remove_anonymous(&self, task: &str) {
        let dir = self.root.join(ANON).join(task);
        if dir.exists() {
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::warn!(task, path = %dir.display(), error = %e, "removing a task's anonymous volumes");
            }
        }
    }

    /// Deletes the anonymous volumes of every task `keep` does not name.
    pub fn sweep_anonymous(&self, keep: impl Fn(&str) -> bool) {
        let Ok(entries) = std::fs::read_dir(self.root.join(ANON)) else { return };
        for e in entries.flatten() {
            let task = e.file_name().to_string_lossy().into_owned();
            if !keep(&task) {
                self.remove_anonymous(&task);
            }
        }
    }

    /// Deletes this node's copies of the removed volumes `ids`, but none
    /// that `in_use` says a task here still mounts.
    pub fn forget(&self, ids: &[String], in_use: impl Fn(&str) -> bool) {
        for id in ids {
            // Ids are the managers' (hex): nothing else is a path here.
            if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric()) || in_use(id) {
                continue;
            }
            let dir = self.root.join(id);
            if !dir.exists() {
                continue;
            }
            let name = std::fs::read_to_string(dir.join("name")).unwrap_or_default();
            // An NFS volume's data is the server's: unmount it, delete
            // nothing in it (and nothing at all while it stays mounted).
            if !super::nfs_mount::release(&dir.join("_data")) {
                tracing::warn!(volume = %name, %id, "a removed NFS volume is still mounted here: kept");
                continue;
            }
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => tracing::info!(volume = %name, %id, "removed volume deleted from this node"),
                Err(e) => tracing::warn!(volume = %name, %id, error = %e, "deleting a removed volume"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::objects::{ServiceMount, ServiceSpec};

    fn mount(kind: MountKind, source: &str, target: &str) -> ServiceMount {
        ServiceMount { kind, source: source.into(), target: target.into(), read_only: false, size: 0 }
    }

    #[test]
    fn named_anonymous_and_slot_volumes_and_their_removal() {
        let dir = tempfile::tempdir().unwrap();
        let v = TaskVolumes::new(dir.path(), dir.path());
        let spec = ServiceSpec {
            name: "web".into(),
            mounts: vec![
                mount(MountKind::Volume, "data", "/data"),
                mount(MountKind::Volume, "", "/cache"),
                mount(MountKind::Tmpfs, "", "/tmp"),
            ],
            ..Default::default()
        };
        let mut t = Task { id: "t1".into(), service: "web".into(), slot: 1, spec, ..Default::default() };
        let e = v.prepare(&t).unwrap_err().to_string();
        assert!(e.contains("volume data does not exist"), "{e}");
        t.volumes.insert("data".into(), "abc".into());
        let m = v.prepare(&t).unwrap();
        assert_eq!(m[0].source, dir.path().join("volumes/abc/_data").display().to_string());
        assert_eq!(m[1].source, dir.path().join("volumes/.anon/t1/1").display().to_string());
        assert_eq!((m[2].kind.as_str(), m[2].target.as_str()), ("tmpfs", "/tmp"));
        std::fs::write(dir.path().join("volumes/abc/_data/kept"), "x").unwrap();
        v.prepare(&t).unwrap();
        assert!(dir.path().join("volumes/abc/_data/kept").exists(), "a volume's data outlives its tasks");

        // A stateful slot mounts its own.
        t.spec.stateful = true;
        t.volumes = [("data-web.1".to_string(), "def".to_string())].into();
        assert!(v.prepare(&t).unwrap()[0].source.ends_with("volumes/def/_data"));

        v.sweep_anonymous(|task| task == "t1");
        assert!(dir.path().join("volumes/.anon/t1").exists());
        v.sweep_anonymous(|_| false);
        assert!(!dir.path().join("volumes/.anon/t1").exists());
        // A size limit this filesystem cannot hold refuses the task, naming
        // the volume, and leaves nothing half made (orc nodes' STATE holds
        // it: the VM tests check it there).
        t.volumes = [("big".to_string(), "b1".to_string())].into();
        t.volume_sizes = [("big".to_string(), 1 << 20)].into();
        t.spec.stateful = false;
        t.spec.mounts = vec![mount(MountKind::Volume, "big", "/big")];
        if let Err(e) = v.prepare(&t) {
            let e = e.to_string();
            assert!(e.starts_with("volume big: ") && e.contains("needs project quotas"), "{e}");
            assert!(!dir.path().join("volumes/b1/_data").exists() && !dir.path().join("volumes/b1/_data.new").exists());
        }

        v.forget(&["abc".into(), "def".into(), "../x".into()], |id| id == "def");
        assert!(!dir.path().join("volumes/abc").exists(), "removed");
        assert!(dir.path().join("volumes/def").exists(), "still mounted here");
    }
}
