//! Network namespaces of tasks, kept by bind mounts under the run
//! directory (as `ip netns` keeps them under /run/netns) so the container
//! runtime joins one by path and it outlives no one by accident.
//!
//! `unshare(CLONE_NEWNET)` and `setns` change only the calling thread, and
//! tokio moves tasks between threads: every namespace switch here happens
//! on a thread of its own that ends right after.

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

use super::NetError;

fn err(path: &Path, what: &str, e: impl std::fmt::Display) -> NetError {
    NetError::Namespace { path: path.to_path_buf(), what: what.to_string(), reason: e.to_string() }
}

/// Creates a new network namespace kept at `path` (made if missing). An
/// existing one there is kept (a task whose agent restarted).
pub fn create(path: &Path) -> Result<(), NetError> {
    if is_netns(path) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| err(dir, "creating the directory", e))?;
    }
    std::fs::File::create(path).map_err(|e| err(path, "creating the mount point", e))?;
    let target = path.to_path_buf();
    let made = std::thread::spawn(move || -> Result<(), NetError> {
        unshare(CloneFlags::CLONE_NEWNET).map_err(|e| err(&target, "unshare(CLONE_NEWNET)", e))?;
        let own = format!("/proc/self/task/{}/ns/net", nix::unistd::gettid());
        mount(Some(own.as_str()), &target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(|e| err(&target, "bind-mounting the namespace", e))
    })
    .join()
    .map_err(|_| err(path, "creating", "the namespace thread panicked"))?;
    if made.is_err() {
        let _ = std::fs::remove_file(path);
    }
    made
}

/// Whether `path` holds a network namespace (a bind mount of one).
pub fn is_netns(path: &Path) -> bool {
    // NSFS_MAGIC: what a namespace file's filesystem reports.
    const NSFS_MAGIC: i64 = 0x6e73_6673;
    nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type().0 == NSFS_MAGIC)
}

/// Removes the namespace kept at `path` (its interfaces go with it once no
/// process is left in it). Gone already is fine.
pub fn remove(path: &Path) -> Result<(), NetError> {
    if is_netns(path) {
        umount2(path, MntFlags::MNT_DETACH).map_err(|e| err(path, "unmounting", e))?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(err(path, "removing", e)),
    }
}

/// Runs `f` on a thread of its own inside the namespace at `path`.
pub fn inside<T: Send + 'static>(path: &Path, f: impl FnOnce() -> T + Send + 'static) -> Result<T, NetError> {
    let ns = std::fs::File::open(path).map_err(|e| err(path, "opening", e))?;
    let p: PathBuf = path.to_path_buf();
    std::thread::spawn(move || {
        setns(&ns, CloneFlags::CLONE_NEWNET).map_err(|e| err(&p, "setns", e))?;
        Ok(f())
    })
    .join()
    .map_err(|_| err(path, "entering", "the namespace thread panicked"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_is_made_entered_and_removed() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ns1");
        create(&p).unwrap();
        assert!(is_netns(&p));
        create(&p).unwrap();
        let outer = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
        let inner = inside(&p, || std::fs::read_link("/proc/thread-self/ns/net").unwrap()).unwrap();
        assert_ne!(inner, outer, "the thread ran in the new namespace");
        assert_eq!(std::fs::read_link("/proc/thread-self/ns/net").unwrap(), outer, "this thread did not move");
        remove(&p).unwrap();
        assert!(!p.exists());
        remove(&p).unwrap();
    }
}
