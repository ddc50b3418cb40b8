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

/// Mounts `nfs`'s export at `dir` (an existing directory) unless it is
/// mounted there already. Blocks while the server is asked.
pub fn ensure(dir: &Path, nfs: &Nfs) -> Result<(), MountError> {
    if crate::fsutil::is_mountpoint(dir) {
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
    if !crate::fsutil::is_mountpoint(dir) {
        return true;
    }
    if let Err(e) = umount2(dir, MntFlags::MNT_DETACH) {
        tracing::warn!(path = %dir.display(), error = %e, "unmounting an NFS volume");
    }
    !crate::fsutil::is_mountpoint(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsutil::is_mountpoint;

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
