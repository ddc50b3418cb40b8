//! The STATE filesystem at `/var/lib/orc`.
//!
//! Disk safety: a device is formatted only when it was named with `orc.state=`
//! and is blank (all zeros where filesystem signatures live). Otherwise the
//! disk labelled `ORC_STATE` is used, and tmpfs when there is none. "Format"
//! means writing the small ext4 template carried in the initramfs and growing
//! it online to the device's size; the node needs no mkfs.

use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

use crate::mounts::{mount_fs, MountError};
use orc_image::cmdline::STATE_LABEL;
use orc_image::state_fs::{self, Probe, StateFsError};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("STATE device {0}")]
    Device(#[from] StateFsError),
    #[error("STATE device {0} holds data that is not an orc STATE filesystem; refusing to format it (wipe it, or name another disk with orc.state=)")]
    NotBlank(String),
    #[error(transparent)]
    Mount(#[from] MountError),
}

/// Where STATE ended up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateKind {
    Disk { device: PathBuf, formatted: bool },
    Tmpfs,
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
        .find(|p| matches!(state_fs::read_head(p).map(|h| state_fs::probe(&h)), Ok(Probe::Ext4 { label, .. }) if label == STATE_LABEL))
}

/// Mounts the ext4 on `dev`, enforcing project quotas where it has them
/// (STATE made before them has none: its volumes take no size limits).
fn mount_ext4(dev: &Path, mnt: &Path) -> Result<(), StateError> {
    let project_quota = matches!(state_fs::probe(&state_fs::read_head(dev)?), Probe::Ext4 { project_quota: true, .. });
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
    let formatted = match state_fs::probe(&state_fs::read_head(&dev)?) {
        Probe::Ext4 { .. } => false,
        Probe::Blank if named.is_some() => {
            tracing::info!(device = %dev.display(), "STATE device is blank, formatting it");
            state_fs::write_template(&dev, template_gz)?;
            true
        }
        _ => return Err(StateError::NotBlank(dev.display().to_string())),
    };
    mount_ext4(&dev, mnt)?;
    if formatted {
        let blocks = state_fs::grow(&dev, mnt)?;
        tracing::info!(device = %dev.display(), blocks, "STATE grown to fill its device");
    }
    Ok(StateKind::Disk { device: dev, formatted })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext4_head(label: &str) -> Vec<u8> {
        let mut h = vec![0u8; 4096];
        h[1024 + 0x38..1024 + 0x3a].copy_from_slice(&0xEF53u16.to_le_bytes());
        h[1024 + 0x78..1024 + 0x78 + label.len()].copy_from_slice(label.as_bytes());
        h
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
