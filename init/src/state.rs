//! The STATE filesystem at `/var/lib/orc`.
//!
//! Disk safety: a device is formatted only when it was named with `orc.state=`
//! and is blank (all zeros where filesystem signatures live). Otherwise the
//! disk labelled `ORC_STATE` is used, and tmpfs when there is none. "Format"
//! means writing the small ext4 template carried in the initramfs and growing
//! it online to the device's size; the node needs no mkfs.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

use crate::mounts::{mount_fs, MountError};
use orc_image::cmdline::STATE_LABEL;

const EXT4_MAGIC: u16 = 0xEF53;
/// ext4's `EXT4_FEATURE_RO_COMPAT_QUOTA | EXT4_FEATURE_RO_COMPAT_PROJECT`.
const RO_COMPAT_QUOTA_PROJECT: u32 = 0x0100 | 0x2000;
/// How much of the device must be zero to call it blank: partition tables,
/// filesystem superblocks and LVM/MD signatures all live in the first MiB.
const BLANK_PROBE: usize = 1 << 20;

nix::ioctl_write_ptr!(ext4_resize_fs, b'f', 16, u64);
nix::ioctl_read!(blk_getsize64, 0x12, 114, u64);

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("STATE device {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("STATE device {0} holds data that is not an orc STATE filesystem; refusing to format it (wipe it, or name another disk with orc.state=)")]
    NotBlank(String),
    #[error(transparent)]
    Mount(#[from] MountError),
    #[error("cannot grow STATE on {path} to {blocks} blocks: {source}")]
    Resize { path: String, blocks: u64, source: nix::Error },
}

/// Where STATE ended up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateKind {
    Disk { device: PathBuf, formatted: bool },
    Tmpfs,
}

/// What the first bytes of a device say it is.
#[derive(Debug, PartialEq, Eq)]
pub enum Probe {
    /// `project_quota`: it has the quota and project features, so it is
    /// mounted `prjquota` (volumes' size limits).
    Ext4 {
        label: String,
        project_quota: bool,
    },
    Blank,
    Other,
}

/// Classifies a device from its first [`BLANK_PROBE`] bytes (or fewer).
pub fn probe(head: &[u8]) -> Probe {
    if head.len() >= 1024 + 0x88 {
        let sb = &head[1024..];
        let magic = u16::from_le_bytes([sb[0x38], sb[0x39]]);
        if magic == EXT4_MAGIC {
            let label = &sb[0x78..0x88];
            let end = label.iter().position(|b| *b == 0).unwrap_or(label.len());
            let ro_compat = u32::from_le_bytes([sb[0x64], sb[0x65], sb[0x66], sb[0x67]]);
            return Probe::Ext4 {
                label: String::from_utf8_lossy(&label[..end]).into_owned(),
                project_quota: ro_compat & RO_COMPAT_QUOTA_PROJECT == RO_COMPAT_QUOTA_PROJECT,
            };
        }
    }
    if head.iter().all(|b| *b == 0) {
        Probe::Blank
    } else {
        Probe::Other
    }
}

fn read_head(dev: &Path) -> Result<Vec<u8>, StateError> {
    let io = |source| StateError::Io { path: dev.display().to_string(), source };
    let mut f = File::open(dev).map_err(io)?;
    let mut buf = vec![0u8; BLANK_PROBE];
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]).map_err(io)? {
            0 => break,
            k => n += k,
        }
    }
    buf.truncate(n);
    Ok(buf)
}

/// Block devices whose ext4 label is `ORC_STATE`, found through `sys_block`.
pub fn find_labelled(sys_block: &Path, dev: &Path) -> Option<PathBuf> {
    let mut names: Vec<String> = std::fs::read_dir(sys_block)
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("loop") && !n.starts_with("ram") && !n.starts_with("dm-"))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| dev.join(n))
        .find(|p| matches!(read_head(p).map(|h| probe(&h)), Ok(Probe::Ext4 { label, .. }) if label == STATE_LABEL))
}

/// Writes the gzip'd ext4 template to the start of `dev`.
fn write_template(dev: &Path, template_gz: &Path) -> Result<(), StateError> {
    let io_t = |source| StateError::Io { path: template_gz.display().to_string(), source };
    let io = |source| StateError::Io { path: dev.display().to_string(), source };
    let gz = File::open(template_gz).map_err(io_t)?;
    let mut img = Vec::new();
    flate2::read::GzDecoder::new(gz).read_to_end(&mut img).map_err(io_t)?;
    let mut f = std::fs::OpenOptions::new().write(true).open(dev).map_err(io)?;
    f.seek(SeekFrom::Start(0)).map_err(io)?;
    f.write_all(&img).map_err(io)?;
    f.sync_all().map_err(io)
}

/// Grows the ext4 mounted at `mnt` to fill `dev` (4 KiB blocks).
fn grow(dev: &Path, mnt: &Path) -> Result<u64, StateError> {
    let io = |source| StateError::Io { path: dev.display().to_string(), source };
    let d = File::open(dev).map_err(io)?;
    let mut size = 0u64;
    // SAFETY: BLKGETSIZE64 writes one u64 into `size`.
    unsafe { blk_getsize64(d.as_raw_fd(), &mut size) }.map_err(|e| io(std::io::Error::from_raw_os_error(e as i32)))?;
    let blocks = size / 4096;
    let m = File::open(mnt).map_err(io)?;
    // SAFETY: EXT4_IOC_RESIZE_FS reads one u64 (the new block count).
    unsafe { ext4_resize_fs(m.as_raw_fd(), &blocks) }.map_err(|source| StateError::Resize {
        path: dev.display().to_string(),
        blocks,
        source,
    })?;
    Ok(blocks)
}

/// Mounts the ext4 on `dev`, enforcing project quotas where it has them
/// (STATE made before them has none: its volumes take no size limits).
fn mount_ext4(dev: &Path, mnt: &Path) -> Result<(), StateError> {
    let project_quota = matches!(probe(&read_head(dev)?), Probe::Ext4 { project_quota: true, .. });
    mount_fs(dev, mnt, "ext4", MsFlags::MS_NOATIME, project_quota.then_some("prjquota"))?;
    tracing::info!(device = %dev.display(), project_quota, "STATE mounted");
    Ok(())
}

/// Mounts STATE at `mnt`: the named device (formatted if blank), else the
/// labelled disk, else tmpfs.
pub fn mount_state(named: Option<&Path>, template_gz: &Path, mnt: &Path) -> Result<StateKind, StateError> {
    let _ = std::fs::create_dir_all(mnt);
    let device = match named {
        Some(dev) => Some(dev.to_path_buf()),
        None => find_labelled(Path::new("/sys/class/block"), Path::new("/dev")),
    };
    let Some(dev) = device else {
        mount_fs(Path::new("tmpfs"), mnt, "tmpfs", MsFlags::MS_NOSUID, Some("mode=0700"))?;
        return Ok(StateKind::Tmpfs);
    };
    let formatted = match probe(&read_head(&dev)?) {
        Probe::Ext4 { .. } => false,
        Probe::Blank if named.is_some() => {
            tracing::info!(device = %dev.display(), "STATE device is blank, formatting it");
            write_template(&dev, template_gz)?;
            true
        }
        _ => return Err(StateError::NotBlank(dev.display().to_string())),
    };
    mount_ext4(&dev, mnt)?;
    if formatted {
        let blocks = grow(&dev, mnt)?;
        tracing::info!(device = %dev.display(), blocks, "STATE grown to fill its device");
    }
    Ok(StateKind::Disk { device: dev, formatted })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext4_head(label: &str) -> Vec<u8> {
        let mut h = vec![0u8; 4096];
        h[1024 + 0x38..1024 + 0x3a].copy_from_slice(&EXT4_MAGIC.to_le_bytes());
        h[1024 + 0x78..1024 + 0x78 + label.len()].copy_from_slice(label.as_bytes());
        h
    }

    #[test]
    fn probe_table() {
        let mut other = vec![0u8; 4096];
        other[510] = 0x55;
        other[511] = 0xaa;
        let mut quota_head = ext4_head("ORC_STATE");
        quota_head[1024 + 0x64..1024 + 0x68].copy_from_slice(&0x2100u32.to_le_bytes());
        let cases: Vec<(Vec<u8>, Probe)> = vec![
            (vec![0u8; 4096], Probe::Blank),
            (vec![], Probe::Blank),
            (other, Probe::Other),
            (ext4_head("ORC_STATE"), Probe::Ext4 { label: "ORC_STATE".into(), project_quota: false }),
            (ext4_head("data"), Probe::Ext4 { label: "data".into(), project_quota: false }),
            (quota_head.clone(), Probe::Ext4 { label: "ORC_STATE".into(), project_quota: true }),
        ];
        for (i, (head, want)) in cases.into_iter().enumerate() {
            assert_eq!(probe(&head), want, "case {i}");
        }
    }

    #[test]
    fn finds_labelled_disk_only() {
        let dir = tempfile::tempdir().unwrap();
        let (sys, dev) = (dir.path().join("sys"), dir.path().join("dev"));
        std::fs::create_dir_all(&sys).unwrap();
        std::fs::create_dir_all(&dev).unwrap();
        for (name, head) in [("vda", vec![1u8; 4096]), ("vdb", ext4_head("other")), ("vdc", ext4_head("ORC_STATE"))] {
            std::fs::create_dir(sys.join(name)).unwrap();
            std::fs::write(dev.join(name), head).unwrap();
        }
        assert_eq!(find_labelled(&sys, &dev), Some(dev.join("vdc")));
        std::fs::remove_file(dev.join("vdc")).unwrap();
        assert_eq!(find_labelled(&sys, &dev), None);
    }

    #[test]
    fn refuses_to_format_a_disk_with_data() {
        let dir = tempfile::tempdir().unwrap();
        let dev = dir.path().join("disk");
        std::fs::write(&dev, vec![7u8; 8192]).unwrap();
        let e = mount_state(Some(&dev), Path::new("/nonexistent"), &dir.path().join("mnt")).unwrap_err();
        assert!(matches!(e, StateError::NotBlank(_)), "{e}");
        assert_eq!(std::fs::read(&dev).unwrap(), vec![7u8; 8192], "the disk was changed");
    }
}
