//! The container itself, through libcontainer: the rootfs overlay, create +
//! start, and the cleanup after exit. Runs while the shim is still
//! single-threaded.

use std::os::fd::OwnedFd;
use std::path::Path;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::syscall::syscall::SyscallType;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// The overlay the agent asks for, in `bundle/rootfs.json`. Without the
/// file, `bundle/rootfs` is used as it is (a prepared bundle).
use crate::shim_contract::Overlay;

pub fn mount_rootfs(bundle: &Path) -> Result<bool, String> {
    let Some(o) = Overlay::load(bundle)? else { return Ok(false) };
    let target = bundle.join("rootfs");
    for d in [&target, &o.upper, &o.work] {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    // A mount left by a shim that died: replace it.
    let _ = umount2(&target, MntFlags::MNT_DETACH);
    if o.lower.is_empty() {
        return Err("the image has no layers".into());
    }
    // The mount options fit in a page: with full layer paths (~100 bytes
    // each) that is about 40 layers. Short links `l/<n>` next to the
    // bundle, named relative to it (as Docker's overlay2 does), make 128
    // layers take under 1 KiB.
    let dir = bundle.parent().unwrap_or(bundle);
    let links = dir.join(LINKS);
    let _ = std::fs::remove_dir_all(&links);
    std::fs::create_dir_all(&links).map_err(|e| format!("{}: {e}", links.display()))?;
    let mut lower = Vec::with_capacity(o.lower.len());
    for (i, layer) in o.lower.iter().enumerate() {
        let link = links.join(i.to_string());
        std::os::unix::fs::symlink(layer, &link).map_err(|e| format!("{}: {e}", link.display()))?;
        lower.push(format!("{LINKS}/{i}"));
    }
    let opts = format!("lowerdir={},upperdir={},workdir={}", lower.join(":"), o.upper.display(), o.work.display());
    // Relative lower paths resolve from the working directory (the shim is
    // single-threaded here; the old one is put back).
    let cwd = std::env::current_dir().map_err(|e| format!("the working directory: {e}"))?;
    std::env::set_current_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mounted = mount(Some("overlay"), &target, Some("overlay"), MsFlags::empty(), Some(opts.as_str()));
    let _ = std::env::set_current_dir(&cwd);
    mounted
        .map_err(|e| format!("mounting the overlay rootfs at {} ({} layers): {e}", target.display(), lower.len()))?;
    Ok(true)
}

/// The directory of short links to the layers, beside the bundle.
const LINKS: &str = "l";

pub fn unmount_rootfs(bundle: &Path) {
    if let Err(e) = umount2(&bundle.join("rootfs"), MntFlags::MNT_DETACH) {
        tracing::warn!(error = %e, "unmounting the rootfs");
    }
}

pub struct Stdio {
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// Removes what a dead shim left of container `id` in `root`.
pub fn remove_stale(root: &Path, id: &str) {
    let dir = root.join(id);
    if !dir.exists() {
        return;
    }
    match Container::load(dir.clone()) {
        Ok(mut c) => {
            if let Err(e) = c.delete(true) {
                tracing::warn!(error = %e, "deleting a stale container");
            }
        }
        Err(e) => tracing::warn!(error = %e, "loading a stale container"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Creates and starts the container; returns the pid of its init.
pub fn create_and_start(id: &str, root: &Path, bundle: &Path, stdio: Stdio) -> Result<i32, String> {
    remove_stale(root, id);
    let mut container = ContainerBuilder::new(id.to_string(), SyscallType::Linux)
        .with_root_path(root)
        .map_err(|e| format!("state root {}: {e}", root.display()))?
        .with_executor(super::executor::Workload::default())
        .with_stdin(stdio.stdin)
        .with_stdout(stdio.stdout)
        .with_stderr(stdio.stderr)
        .validate_id()
        .map_err(|e| format!("container id {id:?}: {e}"))?
        .as_init(bundle)
        .with_systemd(false)
        .with_detach(true)
        .build()
        .map_err(|e| format!("creating the container: {e}"))?;
    let pid = container.pid().map(|p| p.as_raw()).ok_or("the container has no init pid")?;
    if let Err(e) = container.start() {
        let _ = container.delete(true);
        return Err(format!("starting the container: {e}"));
    }
    Ok(pid)
}

/// Deletes the container (its cgroup and libcontainer state).
pub fn delete(root: &Path, id: &str) {
    match Container::load(root.join(id)) {
        Ok(mut c) => {
            if let Err(e) = c.delete(true) {
                tracing::warn!(error = %e, "deleting the container");
            }
        }
        Err(e) => tracing::warn!(error = %e, "loading the container for deletion"),
    }
}
