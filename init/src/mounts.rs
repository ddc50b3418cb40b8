//! PID 1's mounts, as tables walked by one idempotent helper.

use std::path::Path;

use nix::mount::{mount, MsFlags};

#[derive(Debug, thiserror::Error)]
#[error("cannot mount {fstype} on {target}: {source}")]
pub struct MountError {
    pub fstype: String,
    pub target: String,
    pub source: nix::Error,
}

pub struct MountSpec {
    pub source: &'static str,
    pub target: &'static str,
    pub fstype: &'static str,
    pub flags: MsFlags,
    pub data: Option<&'static str>,
}

const NOSUID_NODEV_NOEXEC: MsFlags = MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV).union(MsFlags::MS_NOEXEC);

/// Mounted first, in the initramfs; moved into the real root later.
pub const EARLY: &[MountSpec] = &[
    MountSpec {
        source: "devtmpfs",
        target: "/dev",
        fstype: "devtmpfs",
        flags: MsFlags::MS_NOSUID,
        data: Some("mode=0755"),
    },
    MountSpec { source: "proc", target: "/proc", fstype: "proc", flags: NOSUID_NODEV_NOEXEC, data: None },
    MountSpec { source: "sysfs", target: "/sys", fstype: "sysfs", flags: NOSUID_NODEV_NOEXEC, data: None },
    MountSpec {
        source: "tmpfs",
        target: "/run",
        fstype: "tmpfs",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: Some("mode=0755"),
    },
];

/// Mounted after the switch to the real root.
pub const LATE: &[MountSpec] = &[
    MountSpec {
        source: "devpts",
        target: "/dev/pts",
        fstype: "devpts",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NOEXEC),
        data: Some("mode=0620,ptmxmode=0666"),
    },
    MountSpec {
        source: "tmpfs",
        target: "/dev/shm",
        fstype: "tmpfs",
        flags: NOSUID_NODEV_NOEXEC,
        data: Some("mode=1777"),
    },
    MountSpec {
        source: "cgroup2",
        target: "/sys/fs/cgroup",
        fstype: "cgroup2",
        flags: NOSUID_NODEV_NOEXEC,
        data: Some("nsdelegate"),
    },
    MountSpec {
        source: "tmpfs",
        target: "/tmp",
        fstype: "tmpfs",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: Some("mode=1777"),
    },
];

/// Makes moving processes between cgroups cheap: without `favordynmods`
/// every write to `cgroup.procs` (each container start) waits for an RCU
/// grace period (several ms); with it, forks and exits pay a little instead.
/// Containers start far more often than that matters. A kernel before 6.0
/// does not know the option: then the mount stays as it is, said once.
pub fn favor_dynamic_cgroups() {
    let flags = NOSUID_NODEV_NOEXEC.union(MsFlags::MS_REMOUNT);
    if let Err(e) = mount(None::<&str>, "/sys/fs/cgroup", Some("cgroup2"), flags, Some("nsdelegate,favordynmods")) {
        tracing::warn!(error = %e, "cgroup2 without favordynmods (kernel before 6.0?): container starts wait for RCU");
    }
}

/// The pseudo-filesystems moved from the initramfs into the real root.
pub const MOVED: &[&str] = &["/dev", "/proc", "/sys", "/run"];

/// Mounts each entry under `root`, creating the mount point (in the
/// initramfs) when missing. An entry already mounted (EBUSY) is fine.
pub fn mount_table(root: &Path, table: &[MountSpec]) -> Result<(), MountError> {
    for m in table {
        let target = root.join(m.target.trim_start_matches('/'));
        let _ = std::fs::create_dir_all(&target);
        match mount(Some(m.source), &target, Some(m.fstype), m.flags, m.data) {
            Ok(()) | Err(nix::Error::EBUSY) => {}
            Err(source) => {
                return Err(MountError { fstype: m.fstype.to_string(), target: target.display().to_string(), source })
            }
        }
    }
    Ok(())
}

/// Mounts a filesystem, with the error naming it.
pub fn mount_fs(
    source: &Path,
    target: &Path,
    fstype: &str,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), MountError> {
    mount(Some(source), target, Some(fstype), flags, data).map_err(|e| MountError {
        fstype: fstype.to_string(),
        target: target.display().to_string(),
        source: e,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_absolute_and_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for m in EARLY.iter().chain(LATE) {
            assert!(m.target.starts_with('/'), "{}", m.target);
            assert!(seen.insert(m.target), "{} twice", m.target);
        }
        for m in MOVED {
            assert!(EARLY.iter().any(|e| e.target == *m), "{m} is moved but not mounted early");
        }
    }
}
