//! dm-verity from userspace with raw device-mapper ioctls (the kernel has no
//! `DM_INIT`, so nothing else sets the target up before the root is mounted).
//!
//! Raw ioctls instead of the `devicemapper` crate: that crate generates its
//! bindings with bindgen (libclang at build time) for the three calls below.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cmdline::Verity;
use orc_image::cmdline::VERITY_BLOCK_SIZE;

const DM_NAME_LEN: usize = 128;
const DM_UUID_LEN: usize = 129;
const DM_READONLY_FLAG: u32 = 1 << 0;

#[repr(C)]
#[derive(Clone, Copy)]
struct DmIoctl {
    version: [u32; 3],
    data_size: u32,
    data_start: u32,
    target_count: u32,
    open_count: i32,
    flags: u32,
    event_nr: u32,
    padding: u32,
    dev: u64,
    name: [u8; DM_NAME_LEN],
    uuid: [u8; DM_UUID_LEN],
    data: [u8; 7],
}

#[repr(C)]
struct DmTargetSpec {
    sector_start: u64,
    length: u64,
    status: i32,
    next: u32,
    target_type: [u8; 16],
}

const _: () = assert!(std::mem::size_of::<DmIoctl>() == 312);
const _: () = assert!(std::mem::size_of::<DmTargetSpec>() == 40);

nix::ioctl_readwrite!(dm_dev_create, 0xfd, 3, DmIoctl);
nix::ioctl_readwrite!(dm_dev_suspend, 0xfd, 6, DmIoctl);
nix::ioctl_readwrite!(dm_table_load, 0xfd, 9, DmIoctl);

#[derive(Debug, thiserror::Error)]
pub enum VerityError {
    #[error("cannot open /dev/mapper/control (is dm-mod loaded?): {0}")]
    Control(std::io::Error),
    #[error("device-mapper {op} of {name} failed: {source}")]
    Ioctl { op: &'static str, name: String, source: nix::Error },
    #[error("verity device {0} did not appear")]
    NoNode(String),
}

fn header(name: &str, flags: u32, data_size: usize) -> DmIoctl {
    let mut h = DmIoctl {
        version: [4, 0, 0],
        data_size: data_size as u32,
        data_start: std::mem::size_of::<DmIoctl>() as u32,
        target_count: 0,
        open_count: 0,
        flags,
        event_nr: 0,
        padding: 0,
        dev: 0,
        name: [0; DM_NAME_LEN],
        uuid: [0; DM_UUID_LEN],
        data: [0; 7],
    };
    let n = name.len().min(DM_NAME_LEN - 1);
    h.name[..n].copy_from_slice(&name.as_bytes()[..n]);
    h
}

/// The verity table line for a device carrying data then hash tree.
pub fn table_params(dev: &Path, v: &Verity) -> String {
    let bs = VERITY_BLOCK_SIZE;
    format!(
        "1 {d} {d} {bs} {bs} {blocks} {hash_start} sha256 {root} {salt}",
        d = dev.display(),
        blocks = v.data_blocks,
        hash_start = v.data_blocks,
        root = v.root_hash,
        salt = v.salt,
    )
}

/// Creates the read-only verity device `name` over `dev` and returns its node.
pub fn setup(name: &str, dev: &Path, v: &Verity) -> Result<PathBuf, VerityError> {
    let ctl: File =
        OpenOptions::new().read(true).write(true).open("/dev/mapper/control").map_err(VerityError::Control)?;
    let fd = ctl.as_raw_fd();
    let ioerr = |op, source| VerityError::Ioctl { op, name: name.to_string(), source };

    let mut h = header(name, DM_READONLY_FLAG, std::mem::size_of::<DmIoctl>());
    // SAFETY: `h` is a properly sized and initialised dm_ioctl; fd is the control device.
    unsafe { dm_dev_create(fd, &mut h) }.map_err(|e| ioerr("create", e))?;
    let dev_num = h.dev;

    // Table: header, one target spec, then the NUL-terminated params, 8-aligned.
    let params = table_params(dev, v);
    let spec_len = std::mem::size_of::<DmTargetSpec>();
    let body = (spec_len + params.len() + 1).next_multiple_of(8);
    let total = std::mem::size_of::<DmIoctl>() + body;
    let mut buf = vec![0u8; total];
    let mut h = header(name, DM_READONLY_FLAG, total);
    h.target_count = 1;
    let spec = DmTargetSpec {
        sector_start: 0,
        length: v.data_blocks * (VERITY_BLOCK_SIZE / 512),
        status: 0,
        next: body as u32,
        target_type: *b"verity\0\0\0\0\0\0\0\0\0\0",
    };
    // SAFETY: both structs are repr(C) plain data copied into a buffer sized for them.
    unsafe {
        std::ptr::write_unaligned(buf.as_mut_ptr() as *mut DmIoctl, h);
        std::ptr::write_unaligned(buf.as_mut_ptr().add(std::mem::size_of::<DmIoctl>()) as *mut DmTargetSpec, spec);
    }
    let p = std::mem::size_of::<DmIoctl>() + spec_len;
    buf[p..p + params.len()].copy_from_slice(params.as_bytes());
    // SAFETY: the buffer starts with a dm_ioctl whose data_size covers the whole buffer.
    unsafe { dm_table_load(fd, buf.as_mut_ptr() as *mut DmIoctl) }.map_err(|e| ioerr("table load", e))?;

    // Resume (suspend without DM_SUSPEND_FLAG) makes the table live.
    let mut h = header(name, 0, std::mem::size_of::<DmIoctl>());
    // SAFETY: as above.
    unsafe { dm_dev_suspend(fd, &mut h) }.map_err(|e| ioerr("resume", e))?;

    // The kernel encodes dev_t as huge_encode_dev: minor low 8 bits | major << 8 | minor high << 12.
    let minor = (dev_num & 0xff) | ((dev_num >> 12) & 0xfff00);
    let node = PathBuf::from(format!("/dev/dm-{minor}"));
    for _ in 0..100 {
        if node.exists() {
            return Ok(node);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(VerityError::NoNode(node.display().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_line() {
        let v = Verity { root_hash: "aa".into(), salt: "bb".into(), data_blocks: 10 };
        assert_eq!(table_params(Path::new("/dev/vda"), &v), "1 /dev/vda /dev/vda 4096 4096 10 10 sha256 aa bb");
    }
}
