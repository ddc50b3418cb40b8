//! Small filesystem helpers the agent uses in several places: atomic
//! writes, disk usage, reading files an image or archive supplied, and
//! whether a directory is a mount point.

use std::io::{Read, Write};
use std::path::Path;

use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;

use crate::error::AgentError;

/// Writes `data` to `path` so that a crash leaves the old or the new file,
/// never a mix: temporary file, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), AgentError> {
    replace(path, data, true, 0o666)
}

/// [`write_atomic`] for a secret: the file is made with mode 0600 (the
/// temporary one too, so the secret is never readable by others).
pub fn write_private(path: &Path, data: &[u8]) -> Result<(), AgentError> {
    replace(path, data, true, 0o600)
}

/// Writes `data` to `path` so that readers see the old or the new file,
/// never a part (temporary file, rename) — without the two fsyncs of
/// [`write_atomic`], for what need not outlive a power loss: what a
/// container did before the machine went down is moot after it comes back.
pub fn write_replace(path: &Path, data: &[u8]) -> Result<(), AgentError> {
    replace(path, data, false, 0o666)
}

/// A temporary file (made with `mode`, less the umask) renamed over
/// `path`; `durable`: fsync'd, file and directory.
fn replace(path: &Path, data: &[u8], durable: bool, mode: u32) -> Result<(), AgentError> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{}.tmp", path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()));
    let write = || -> std::io::Result<()> {
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
        f.write_all(data)?;
        if durable {
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        if durable {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        AgentError::io(path, e)
    })
}

/// Bytes used by a file or a directory tree (apparent sizes, no symlinks followed).
pub fn du(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else { return 0 };
    if !meta.is_dir() {
        return meta.len();
    }
    let Ok(entries) = std::fs::read_dir(path) else { return 0 };
    entries.flatten().map(|e| du(&e.path())).sum()
}

/// Opens `rel` inside the directory `root` for reading, resolved with
/// `resolve` (e.g. `RESOLVE_IN_ROOT` for an image's own symlinks,
/// `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS` for an archive's paths), and
/// only if it is a regular file: the open never blocks (a FIFO or a device
/// placed there by an image is refused, not waited on).
pub fn open_regular_in(root: &Path, rel: &Path, resolve: ResolveFlag) -> std::io::Result<std::fs::File> {
    let dir = nix::fcntl::open(root, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?;
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK | OFlag::O_NOCTTY)
        .resolve(resolve | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let file = std::fs::File::from(openat2(&dir, rel, how)?);
    let kind = file.metadata()?.file_type();
    if !kind.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} is not a regular file ({kind:?})", rel.display()),
        ));
    }
    Ok(file)
}

/// Reads a regular file opened with [`open_regular_in`], refusing one of
/// more than `max` bytes.
pub fn read_regular_in(root: &Path, rel: &Path, resolve: ResolveFlag, max: u64) -> std::io::Result<Vec<u8>> {
    let mut data = Vec::new();
    open_regular_in(root, rel, resolve)?.take(max + 1).read_to_end(&mut data)?;
    if data.len() as u64 > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} is larger than {max} bytes", rel.display()),
        ));
    }
    Ok(data)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mount_table_names_mount_points_escaped() {
        let table =
            "36 35 98:0 / /mnt/a\\040b rw - nfs4 10.0.0.5:/ rw\n37 35 98:0 / /v/x/_data rw - ext4 /dev/vdb rw\n";
        assert!(mounted_in(table, Path::new("/mnt/a b")));
        assert!(mounted_in(table, Path::new("/v/x/_data")));
        assert!(!mounted_in(table, Path::new("/v/x")));
    }

    #[test]
    fn only_regular_files_are_read_and_a_fifo_never_blocks() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("ok"), b"hello").unwrap();
        nix::unistd::mkfifo(&root.path().join("fifo"), Mode::from_bits_truncate(0o644)).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", root.path().join("link")).unwrap();
        let beneath = ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS;
        assert_eq!(read_regular_in(root.path(), Path::new("ok"), beneath, 10).unwrap(), b"hello");
        let e = read_regular_in(root.path(), Path::new("fifo"), beneath, 10).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        assert!(read_regular_in(root.path(), Path::new("link"), beneath, 10).is_err());
        assert!(read_regular_in(root.path(), Path::new("../etc/hostname"), beneath, 10).is_err());
        assert!(read_regular_in(root.path(), Path::new("/etc/hostname"), beneath, 10).is_err());
        let e = read_regular_in(root.path(), Path::new("ok"), beneath, 4).unwrap_err();
        assert!(e.to_string().contains("larger than 4"), "{e}");
        // Through /dev: a character device is refused too.
        assert!(read_regular_in(Path::new("/dev"), Path::new("zero"), beneath, 10).is_err());
    }
}
