//! A volume's size limit on STATE: an ext4 (or XFS) project quota.
//!
//! The volume's directory gets a project id of its own, inherited by all
//! it holds (`FS_XFLAG_PROJINHERIT`), and that project a hard block limit
//! (`quotactl_fd(Q_SETQUOTA, PRJQUOTA)`), as Docker's overlay2 and
//! Kubernetes' `LocalStorageCapacityIsolationFSQuotaMonitoring` do. A write
//! past it fails with `EDQUOT` ("Disk quota exceeded") in the container.
//!
//! orc's STATE is made with the `quota` and `project` features and
//! mounted `prjquota` (see `init/src/state.rs`); a filesystem without them
//! refuses the project id or the limit, and the task is refused, naming
//! the volume: a size limit is never silently dropped.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Why a size limit could not be set.
#[derive(Debug, thiserror::Error)]
#[error(
    "{path}: a size limit of {bytes} bytes needs project quotas on the node's STATE (ext4 with the quota and \
     project features, mounted prjquota, as orc nodes' STATE is), and {what} failed: {source}"
)]
pub struct SizeError {
    pub path: PathBuf,
    pub bytes: u64,
    what: &'static str,
    source: std::io::Error,
}

/// `struct fsxattr` of `<linux/fs.h>`.
#[repr(C)]
#[derive(Default)]
struct FsXattr {
    xflags: u32,
    extsize: u32,
    nextents: u32,
    projid: u32,
    cowextsize: u32,
    pad: [u8; 8],
}

const FS_XFLAG_PROJINHERIT: u32 = 0x0000_0200;
nix::ioctl_read!(fs_get_xattr, b'X', 31, FsXattr);
nix::ioctl_write_ptr!(fs_set_xattr, b'X', 32, FsXattr);

/// `<linux/quota.h>`: `QCMD(Q_SETQUOTA, PRJQUOTA)`; limits in 1 KiB blocks.
const Q_SETQUOTA: u32 = 0x80_0008;
const PRJQUOTA: u32 = 2;
const QIF_BLIMITS: u32 = 1;
const QIF_DQBLKSIZE: u64 = 1024;

/// The project id of the volume known by `key` (its id, or a task's
/// anonymous volume's path): FNV-1a, never 0 (the default project).
pub fn project_id(key: &str) -> u32 {
    let h = key.bytes().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    h.max(1)
}

/// Limits what directory `dir` (and everything made in it) holds to
/// `bytes`, as project `project`.
pub fn limit(dir: &Path, project: u32, bytes: u64) -> Result<(), SizeError> {
    let err = |what, source| SizeError { path: dir.to_path_buf(), bytes, what, source };
    let f = std::fs::File::open(dir).map_err(|e| err("opening it", e))?;
    let mut x = FsXattr::default();
    // SAFETY: FS_IOC_FSGETXATTR fills one `struct fsxattr`, which `x` is.
    unsafe { fs_get_xattr(f.as_raw_fd(), &mut x) }.map_err(|e| err("reading its attributes", e.into()))?;
    x.projid = project;
    x.xflags |= FS_XFLAG_PROJINHERIT;
    // SAFETY: FS_IOC_FSSETXATTR reads one `struct fsxattr`, which `x` is.
    unsafe { fs_set_xattr(f.as_raw_fd(), &x) }.map_err(|e| err("setting its project id", e.into()))?;
    let blocks = bytes.div_ceil(QIF_DQBLKSIZE);
    // SAFETY: all-zero is a valid `dqblk` (integers only).
    let mut q: libc::dqblk = unsafe { std::mem::zeroed() };
    q.dqb_bhardlimit = blocks;
    q.dqb_bsoftlimit = blocks;
    q.dqb_valid = QIF_BLIMITS;
    let cmd = (Q_SETQUOTA << 8) | PRJQUOTA;
    // SAFETY: quotactl_fd(fd, cmd, id, addr) reads one `struct if_dqblk`
    // (which `libc::dqblk` lays out) for Q_SETQUOTA; `f` outlives the call.
    let rc = unsafe {
        libc::syscall(libc::SYS_quotactl_fd, f.as_raw_fd(), cmd, project, std::ptr::from_mut(&mut q).cast::<u8>())
    };
    if rc != 0 {
        return Err(err("setting its project's limit", std::io::Error::last_os_error()));
    }
    tracing::debug!(path = %dir.display(), project, bytes, "volume size limit set");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_ids_are_stable_and_never_the_default() {
        assert_eq!(project_id("abc"), project_id("abc"));
        assert_ne!(project_id("abc"), project_id("abd"));
        assert_eq!(project_id(""), 0x811c_9dc5);
        assert!((0..1000).all(|i| project_id(&i.to_string()) != 0));
    }

    #[test]
    fn a_filesystem_without_project_quotas_refuses_and_says_what_is_needed() {
        // The test host's filesystems have no project quotas (orc nodes'
        // STATE has; the VM tests check the limit holds there).
        let dir = tempfile::tempdir().unwrap();
        let Err(e) = limit(dir.path(), 7, 1 << 20) else {
            eprintln!("this host's filesystem takes project quotas: nothing refused here");
            return;
        };
        let e = e.to_string();
        assert!(e.contains("needs project quotas") && e.contains("prjquota"), "{e}");
        assert!(e.contains(&dir.path().display().to_string()), "{e}");
    }
}
