//! A file as a read-only block device: the root image a live boot (ISO or
//! PXE) carries inside its initramfs, named `orc.root=initrd:/root.img`.
//! dm-verity then checks it like a root on a disk.
//!
//! Two ioctls (`LOOP_CTL_GET_FREE`, `LOOP_SET_FD`); the file is opened
//! read-only, so the kernel makes the loop device read-only too.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The prefix of a root image that is a file in the initramfs.
pub const INITRD: &str = "initrd:";

const LOOP_CONTROL: &str = "/dev/loop-control";
const DEVICE_WAIT: Duration = Duration::from_secs(5);

nix::ioctl_none_bad!(loop_ctl_get_free, 0x4C82);
nix::ioctl_write_int_bad!(loop_set_fd, 0x4C00);

#[derive(Debug, thiserror::Error)]
pub enum LoopError {
    #[error("the root image {path} is not in the initramfs (a live image carries it; rebuild with cargo xtask image): {source}")]
    Image { path: String, source: std::io::Error },
    #[error("{LOOP_CONTROL}: {0} (is the loop module in the boot module list?)")]
    Control(std::io::Error),
    #[error("no free loop device: {0}")]
    NoFree(nix::Error),
    #[error("loop device {path} did not appear within 5 s")]
    Missing { path: String },
    #[error("attaching {image} to {device}: {source}")]
    Attach { image: String, device: String, source: nix::Error },
}

/// `image` attached read-only to a free loop device; the device's path.
pub fn attach(image: &Path) -> Result<PathBuf, LoopError> {
    let file = File::open(image).map_err(|source| LoopError::Image { path: image.display().to_string(), source })?;
    let control = OpenOptions::new().read(true).write(true).open(LOOP_CONTROL).map_err(LoopError::Control)?;
    // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a number.
    let n = unsafe { loop_ctl_get_free(control.as_raw_fd()) }.map_err(LoopError::NoFree)?;
    let device = PathBuf::from(format!("/dev/loop{n}"));
    let dev = crate::device::wait_for(&device.display().to_string(), DEVICE_WAIT)
        .ok_or_else(|| LoopError::Missing { path: device.display().to_string() })?;
    let attach_err =
        |source| LoopError::Attach { image: image.display().to_string(), device: dev.display().to_string(), source };
    let loop_dev = OpenOptions::new()
        .read(true)
        .open(&dev)
        .map_err(|e| attach_err(nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO))))?;
    // SAFETY: LOOP_SET_FD takes the backing file's descriptor, open for
    // the duration of the call; the kernel holds its own reference after.
    unsafe { loop_set_fd(loop_dev.as_raw_fd(), file.as_raw_fd()) }.map_err(attach_err)?;
    Ok(dev)
}
