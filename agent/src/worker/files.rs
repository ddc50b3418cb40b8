//! The secrets and configs of a node's tasks: the versions the leader sent
//! down the session, held in memory only, and per task a small tmpfs under
//! `<run-dir>/files/<task>` holding one file per mount with its owner and
//! mode, bind-mounted read-only into the container at its target (as
//! Kubernetes mounts a secret volume). Nothing of it is written to STATE;
//! the tmpfs goes with the task's container.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use nix::mount::{MntFlags, MsFlags};

use crate::cluster::objects::{Delivered, FileKey, PayloadKind, Task};
use crate::runtime::record::MountSpec;

/// Why a task's files could not be made.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// The leader did not send it (it could not open it, or it is gone).
    #[error("{kind} {name} version {version} was not delivered to this node (see the leader's log)")]
    NotDelivered { kind: PayloadKind, name: String, version: u64 },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("mounting a tmpfs at {path}: {source}")]
    Mount { path: PathBuf, source: nix::Error },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FilesError + '_ {
    move |source| FilesError::Io { path: path.to_path_buf(), source }
}

/// Room a task's tmpfs has beyond its files (inodes, rounding).
const SLACK: usize = 64 << 10;

pub struct TaskFiles {
    root: PathBuf,
    held: Mutex<HashMap<FileKey, Arc<zeroize::Zeroizing<Vec<u8>>>>>,
}

impl TaskFiles {
    pub fn new(run_dir: &Path) -> Self {
        Self { root: run_dir.join("files"), held: Mutex::default() }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<FileKey, Arc<zeroize::Zeroizing<Vec<u8>>>>> {
        crate::sync::lock(&self.held)
    }

    /// Keeps what the leader sent.
    pub fn take(&self, files: Vec<Delivered>) {
        let mut held = self.held();
        for f in files {
            let key = f.key();
            held.insert(key, Arc::new(zeroize::Zeroizing::new(f.data)));
        }
    }

    /// Forgets what none of `tasks` mounts any longer.
    pub fn retain(&self, tasks: &[Task]) {
        let wanted: HashSet<FileKey> = tasks.iter().flat_map(|t| t.spec.file_keys()).collect();
        self.held().retain(|k, _| wanted.contains(k));
    }

    fn dir(&self, task: &str) -> PathBuf {
        self.root.join(task)
    }

    /// Task `t`'s files on a tmpfs of its own, and the mounts that put
    /// them in its container (none when it mounts nothing).
    pub fn prepare(&self, t: &Task) -> Result<Vec<MountSpec>, FilesError> {
        let mut wanted = Vec::new();
        for k in PayloadKind::ALL {
            for f in t.spec.files(k) {
                let key = (k, t.spec.scoped(&f.name), f.version);
                let data = self.held().get(&key).cloned().ok_or_else(|| FilesError::NotDelivered {
                    kind: k,
                    name: f.name.clone(),
                    version: f.version,
                })?;
                wanted.push((k.target(&f.name, &f.target), data, f.uid, f.gid, f.mode()));
            }
        }
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let dir = self.dir(&t.id);
        self.remove(&t.id);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let size = wanted.iter().map(|w| w.1.len().div_ceil(4096) * 4096).sum::<usize>() + SLACK;
        let opts = format!("size={size},mode=0700");
        nix::mount::mount(
            Some("tmpfs"),
            &dir,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(opts.as_str()),
        )
        .map_err(|source| FilesError::Mount { path: dir.clone(), source })?;
        let mut mounts = Vec::with_capacity(wanted.len());
        for (i, (target, data, uid, gid, mode)) in wanted.into_iter().enumerate() {
            let path = dir.join(i.to_string());
            let write = || -> std::io::Result<()> {
                std::fs::write(&path, data.as_slice())?;
                std::os::unix::fs::chown(&path, Some(uid), Some(gid))?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            };
            if let Err(e) = write() {
                self.remove(&t.id);
                return Err(io(&path)(e));
            }
            mounts.push(MountSpec {
                kind: "bind".into(),
                source: path.to_string_lossy().into_owned(),
                target,
                read_only: true,
            });
        }
        Ok(mounts)
    }

    /// Unmounts and removes task `task`'s files (nothing when it had none).
    pub fn remove(&self, task: &str) {
        let dir = self.dir(task);
        if !dir.exists() {
            return;
        }
        match nix::mount::umount2(&dir, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
            Err(e) => tracing::warn!(task, path = %dir.display(), error = %e, "unmounting a task's files"),
        }
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            tracing::warn!(task, path = %dir.display(), error = %e, "removing a task's files");
        }
    }

    /// Removes the files of every task `keep` does not name (those gone
    /// while the agent was down).
    pub fn sweep(&self, keep: impl Fn(&str) -> bool) {
        let Ok(entries) = std::fs::read_dir(&self.root) else { return };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !keep(&name) {
                self.remove(&name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::objects::{FileRef, ServiceSpec};

    fn task(secrets: &[(&str, u64)]) -> Task {
        let secrets = secrets.iter().map(|(n, v)| FileRef { name: n.to_string(), version: *v, ..Default::default() });
        Task {
            id: "t".into(),
            spec: ServiceSpec { secrets: secrets.collect(), ..Default::default() },
            ..Default::default()
        }
    }

    #[test]
    fn only_what_tasks_mount_is_held_and_a_missing_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let files = TaskFiles::new(dir.path());
        let d =
            |n: &str, v: u64| Delivered { kind: PayloadKind::Secret, name: n.into(), version: v, data: b"x".to_vec() };
        files.take(vec![d("db", 1), d("db", 2), d("api", 1)]);
        files.retain(&[task(&[("db", 2)])]);
        let held: Vec<FileKey> = files.held().keys().cloned().collect();
        assert_eq!(held, [(PayloadKind::Secret, "db".to_string(), 2)]);
        let e = files.prepare(&task(&[("api", 1)])).unwrap_err().to_string();
        assert_eq!(e, "secret api version 1 was not delivered to this node (see the leader's log)");
        assert!(files.prepare(&task(&[])).unwrap().is_empty(), "no files: no tmpfs");
        assert!(!dir.path().join("files").exists());
    }
}
