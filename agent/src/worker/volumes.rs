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
}

const ANON: &str = ".anon";

pub struct TaskVolumes {
    root: PathBuf,
}

impl TaskVolumes {
    pub fn new(state_dir: &Path) -> Self {
        Self { root: state_dir.join("volumes") }
    }

    fn make(path: &Path) -> Result<(), VolumeError> {
        std::fs::create_dir_all(path).map_err(|source| VolumeError::Io { path: path.to_path_buf(), source })
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
                        if !data.exists() {
                            Self::make(&data)?;
                            // What it is, for whoever looks at STATE.
                            let _ = std::fs::write(dir.join("name"), &name);
                            tracing::info!(volume = %name, %id, task = %t.id, "volume made on this node");
                        }
                        data
                    }
                    None => {
                        let dir = self.root.join(ANON).join(&t.id).join(i.to_string());
                        Self::make(&dir)?;
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
        ServiceMount { kind, source: source.into(), target: target.into(), read_only: false }
    }

    #[test]
    fn named_anonymous_and_slot_volumes_and_their_removal() {
        let dir = tempfile::tempdir().unwrap();
        let v = TaskVolumes::new(dir.path());
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
        v.forget(&["abc".into(), "def".into(), "../x".into()], |id| id == "def");
        assert!(!dir.path().join("volumes/abc").exists(), "removed");
        assert!(dir.path().join("volumes/def").exists(), "still mounted here");
    }
}
