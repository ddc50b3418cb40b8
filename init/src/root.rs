//! The real root: wait for the root device (or attach the live image's
//! root file to a loop device), put dm-verity over it, mount the
//! erofs read-only at `/sysroot`, move the pseudo-filesystems across and
//! switch to it (move mount + chroot, as switch_root does).

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::mount::{mount, MsFlags};

use crate::cmdline::Cmdline;
use crate::loopdev::{LoopError, INITRD};
use crate::mounts::{mount_fs, MountError, MOVED};
use crate::verity::{self, VerityError};

const SYSROOT: &str = "/sysroot";
const DEVICE_WAIT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum RootError {
    #[error("no root device: add orc.root=/dev/..., orc.root=PARTLABEL=... or orc.root=initrd:/root.img to the kernel command line")]
    NoRoot,
    #[error("root device {0} did not appear within 15 s")]
    DeviceMissing(String),
    #[error("live root: {0}")]
    Loop(#[from] LoopError),
    #[error("dm-verity: {0}")]
    Verity(#[from] VerityError),
    #[error("cannot mount the root filesystem (a corrupted or tampered root image fails here): {0}")]
    Mount(#[from] MountError),
    #[error("switching to the new root: {step}: {source}")]
    Switch { step: &'static str, source: nix::Error },
}

pub fn mount_and_switch(cmd: &Cmdline) -> Result<(), RootError> {
    let spec = cmd.root.as_deref().ok_or(RootError::NoRoot)?;
    let dev: PathBuf = match spec.strip_prefix(INITRD) {
        Some(image) => crate::loopdev::attach(Path::new(image))?,
        None => crate::device::wait_for(spec, DEVICE_WAIT).ok_or_else(|| RootError::DeviceMissing(spec.to_string()))?,
    };
    let source = match &cmd.verity {
        Some(v) => {
            let node = verity::setup("orc-root", &dev, v)?;
            tracing::info!(device = %dev.display(), verity = %node.display(), root_hash = %v.root_hash, "root verified by dm-verity");
            node
        }
        None => {
            tracing::warn!(device = %dev.display(), "root is NOT verified: no orc.verity= on the command line");
            dev
        }
    };
    let sysroot = Path::new(SYSROOT);
    let _ = std::fs::create_dir_all(sysroot);
    mount_fs(&source, sysroot, "erofs", MsFlags::MS_RDONLY | MsFlags::MS_NODEV, None)?;
    // Free the initramfs's module files: everything needed is loaded.
    let _ = std::fs::remove_dir_all("/lib/modules");
    let sw = |step| move |source| RootError::Switch { step, source };
    for m in MOVED {
        let target = sysroot.join(m.trim_start_matches('/'));
        mount(Some(*m), &target, None::<&str>, MsFlags::MS_MOVE, None::<&str>).map_err(sw("move pseudo-filesystem"))?;
    }
    nix::unistd::chdir(sysroot).map_err(sw("chdir"))?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>).map_err(sw("move root"))?;
    nix::unistd::chroot(".").map_err(sw("chroot"))?;
    nix::unistd::chdir("/").map_err(sw("chdir /"))?;
    Ok(())
}
