//! A volume on NFS, mounted by the node's kernel NFS client at the
//! volume's place on STATE (`volumes/<id>/_data`) when a task needs it,
//! as Docker's local driver does with `type=nfs`; tasks bind it (or their
//! slot's directory in it). Unmounted, never deleted, when the volume is
//! removed: the data is the server's.

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::model::volume::Nfs;

/// Why an NFS volume could not be mounted.
#[derive(Debug, thiserror::Error)]
#[error("mounting NFS export {source_} ({fs_type}, {data}) at {path}: {errno}{hint}")]
pub struct MountError {
    path: PathBuf,
    source_: String,
    fs_type: &'static str,
    data: String,
    errno: nix::Error,
    hint: &'static str,
}

/// What an errno of mount(2) for NFS most often means.
fn hint(e: nix::Error) -> &'static str {
    match e {
        nix::Error::ENODEV => ": this kernel has no NFS client (modules nfs and nfsv4)",
        nix::Error::EACCES | nix::Error::EPERM => ": the server refused this node (see its exports)",
        nix::Error::ENOENT => ": the server exports no such path",
        nix::Error::ETIMEDOUT | nix::Error::EHOSTUNREACH | nix::Error::ECONNREFUSED => {
            ": the server did not answer on port 2049 (is it up, and reachable from the node?)"
        }
        nix::Error::EPROTONOSUPPORT => {
            ": the server does not speak that NFS version (vers=…), or this node's kernel lacks it"
        }
        _ => "",
    }
}

/// Whether something is mounted at `dir`, as this process's mount table
/// says (never by a `stat` of it, which an NFS server that went away
/// would answer with an error or not at all).
pub fn is_mountpoint(dir: &Path) -> bool {
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mounted_in(&table, dir)
}

/// Whether `mountinfo` lists a mount at `dir` (its fifth field, with
/// space, tab, newline and backslash octal-escaped).
fn mounted_in(mountinfo: &str, dir: &Path) -> bool {
    let want = dir.to_string_lossy().replace('\\', "\\134").replace(' ', "\\040").replace('\t', "\\011");
    mountinfo.lines().any(|l| l.split(' ').nth(4) == Some(want.as_str()))
}

/// Mounts `nfs`'s export at `dir` (an existing directory) unless it is
/// mounted there already. Blocks while the server is asked.
pub fn ensure(dir: &Path, nfs: &Nfs) -> Result<(), MountError> {
    if is_mountpoint(dir) {
        return Ok(());
    }
    let (source, fs_type, data) = (nfs.source(), nfs.fs_type(), nfs.mount_data());
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    mount(Some(source.as_str()), dir, Some(fs_type), flags, Some(data.as_str())).map_err(|errno| MountError {
        path: dir.to_path_buf(),
        source_: source.clone(),
        fs_type,
        data: data.clone(),
        errno,
        hint: hint(errno),
    })?;
    tracing::info!(path = %dir.display(), %source, fs_type, %data, "NFS volume mounted");
    Ok(())
}

/// Unmounts what is at `dir` (lazily: a task still in it keeps its view
/// until it ends). Whether nothing is mounted there any more.
pub fn release(dir: &Path) -> bool {
    if !is_mountpoint(dir) {
        return true;
    }
    if let Err(e) = umount2(dir, MntFlags::MNT_DETACH) {
        tracing::warn!(path = %dir.display(), error = %e, "unmounting an NFS volume");
    }
    !is_mountpoint(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_directory_is_no_mountpoint_and_needs_no_release() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("_data");
        std::fs::create_dir(&d).unwrap();
        assert!(!is_mountpoint(&d));
        assert!(release(&d));
        assert!(is_mountpoint(Path::new("/proc")), "/proc is a filesystem of its own");
    }

    #[test]
    fn the_mount_table_names_mount_points_escaped() {
        let table =
            "36 35 98:0 / /mnt/a\\040b rw - nfs4 10.0.0.5:/ rw\n37 35 98:0 / /v/x/_data rw - ext4 /dev/vdb rw\n";
        assert!(mounted_in(table, Path::new("/mnt/a b")));
        assert!(mounted_in(table, Path::new("/v/x/_data")));
        assert!(!mounted_in(table, Path::new("/v/x")));
    }

    #[test]
    fn errors_name_the_export_and_what_to_check() {
        let e = MountError {
            path: "/v/_data".into(),
            source_: "10.0.0.5:/srv".into(),
            fs_type: "nfs4",
            data: "vers=4.2,addr=10.0.0.5".into(),
            errno: nix::Error::ETIMEDOUT,
            hint: hint(nix::Error::ETIMEDOUT),
        };
        let e = e.to_string();
        assert!(e.contains("10.0.0.5:/srv") && e.contains("/v/_data") && e.contains("port 2049"), "{e}");
    }
}
