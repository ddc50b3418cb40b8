//! Safe unpacking of one OCI image layer (an uncompressed tar stream) into a
//! directory of its own.
//!
//! A layer comes from whoever built the image, so unpacking it is a security
//! boundary: nothing in the tar may create or change anything outside the
//! destination. The rules:
//!
//! - every path is made relative (a leading `/` or `./` is dropped) and a `..`
//!   component is an error;
//! - parent directories are resolved with `openat2(RESOLVE_IN_ROOT)`, so a
//!   symlink unpacked earlier (even `a -> /` or `a -> ../../..`) resolves
//!   inside the destination, never outside it;
//! - the last component is never followed: files are created with
//!   `O_CREAT|O_EXCL|O_NOFOLLOW` after removing what was there, links with
//!   `symlinkat`/`linkat` relative to the resolved parent;
//! - a hard link's target is resolved the same way, so it can only name a
//!   file inside the destination;
//! - device nodes in the tar are skipped (counted in [`Stats::skipped`]);
//! - OCI whiteouts become overlayfs whiteouts: `.wh.NAME` a 0/0 character
//!   device `NAME`, `.wh..wh..opq` the `trusted.overlay.opaque=y` xattr on
//!   its directory.
//!
//! - regular files count against [`Limits::max_bytes`] by their logical
//!   size (a sparse member by the size it claims, before a byte is written),
//!   and runs of zeros are written as holes, so a small sparse tar cannot
//!   fill the disk;
//! - extension members (long names, pax headers), which the tar parser
//!   reads into memory, are bounded ([`guard`]).
//!
//! Ownership is kept when running as root (the agent always does); as
//! another user it is left to the caller.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fchmod, fchmodat, mkdirat, mknodat, utimensat, FchmodatFlags, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, linkat, mkfifoat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use tar::EntryType;

pub mod guard;

/// Prefix of an OCI whiteout file.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// Name of an OCI opaque-directory marker.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// The overlayfs xattr that makes a directory opaque.
pub const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("layer entry {path:?} leaves the layer (`..` is not allowed in layer paths)")]
    Escape { path: PathBuf },
    #[error("layer entry {path:?} is not valid: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("reading the layer: {0} (the layer is truncated or not a tar archive)")]
    Read(#[source] io::Error),
    #[error("unpacking {path:?}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the layer unpacks to more than {limit} bytes (at {path:?}, which claims {size}): raise the node's image size limit if the image is genuine")]
    TooLarge { path: PathBuf, size: u64, limit: u64 },
    #[error("opening the destination {path:?}: {source}")]
    Destination {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What one unpack did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub files: u64,
    pub dirs: u64,
    pub links: u64,
    pub whiteouts: u64,
    /// Bytes of regular-file content written.
    pub bytes: u64,
    /// Entries not created: device nodes and unknown entry types.
    pub skipped: u64,
}

/// Bounds on what one unpack may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Logical bytes of regular files, all together.
    pub max_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_bytes: u64::MAX }
    }
}

/// Unpacks the tar stream `layer` into `dest`, which must be an existing
/// directory (normally empty). On error `dest` may hold part of the layer;
/// the caller unpacks into a temporary directory and removes it.
pub fn unpack(layer: impl Read, dest: &Path) -> Result<Stats, Error> {
    unpack_limited(layer, dest, Limits::default())
}

/// [`unpack`] within `limits`.
pub fn unpack_limited(layer: impl Read, dest: &Path, limits: Limits) -> Result<Stats, Error> {
    let root = nix::fcntl::open(dest, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| Error::Destination { path: dest.to_owned(), source: e.into() })?;
    let mut unpacker =
        Unpacker { root, stats: Stats::default(), dirs: Vec::new(), as_root: Uid::effective().is_root(), limits };
    let mut archive = tar::Archive::new(guard::Guard::new(layer));
    for entry in archive.entries().map_err(Error::Read)? {
        let mut entry = entry.map_err(Error::Read)?;
        let raw = entry.path().map_err(Error::Read)?.into_owned();
        let path = clean(&raw)?;
        unpacker.entry(&mut entry, &path)?;
    }
    unpacker.finish_dirs()?;
    Ok(unpacker.stats)
}

/// Makes a tar path relative to the layer root; `..` anywhere is an error.
pub fn clean(path: &Path) -> Result<PathBuf, Error> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => return Err(Error::Escape { path: path.to_owned() }),
            Component::Normal(n) => out.push(n),
        }
    }
    Ok(out)
}

struct DirMeta {
    path: PathBuf,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
}

struct Unpacker {
    root: OwnedFd,
    stats: Stats,
    /// Directory modes and times, applied at the end so a read-only or
    /// re-timed directory does not get in the way of its own children.
    dirs: Vec<DirMeta>,
    as_root: bool,
    limits: Limits,
}

fn werr(path: &Path) -> impl FnOnce(Errno) -> Error + '_ {
    move |e| Error::Write { path: path.to_owned(), source: e.into() }
}

impl Unpacker {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>, path: &Path) -> Result<(), Error> {
        let kind = entry.header().entry_type();
        let Some(name) = path.file_name().map(OsStr::to_owned) else {
            // The layer root itself ("./"): only its metadata.
            if kind == EntryType::Directory {
                self.dirs.push(self.meta(entry, path));
            }
            return Ok(());
        };
        let parent_path = path.parent().unwrap_or(Path::new(""));
        let parent = self.dir(parent_path)?;
        let name_bytes = name.as_bytes();

        if name_bytes == OPAQUE_MARKER.as_bytes() {
            set_opaque(&parent).map_err(|e| Error::Write { path: path.to_owned(), source: e })?;
            self.stats.whiteouts += 1;
            return Ok(());
        }
        if let Some(hidden) = name_bytes.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            if hidden.is_empty() || hidden.starts_with(WHITEOUT_PREFIX.as_bytes()) || hidden == b"." || hidden == b".."
            {
                // `.wh..wh.plnk` and friends are aufs bookkeeping, not content.
                self.stats.skipped += 1;
                return Ok(());
            }
            let hidden = OsStr::from_bytes(hidden);
            let target = parent_path.join(hidden);
            self.remove(&parent, hidden, &target)?;
            mknodat(&parent, hidden, SFlag::S_IFCHR, Mode::empty(), 0).map_err(werr(&target))?;
            self.stats.whiteouts += 1;
            return Ok(());
        }

        match kind {
            EntryType::Directory => {
                match nix::sys::stat::fstatat(&parent, name.as_os_str(), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
                    Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {}
                    Ok(_) => {
                        self.remove(&parent, &name, path)?;
                        mkdirat(&parent, name.as_os_str(), Mode::from_bits_truncate(0o755)).map_err(werr(path))?;
                    }
                    Err(Errno::ENOENT) => {
                        mkdirat(&parent, name.as_os_str(), Mode::from_bits_truncate(0o755)).map_err(werr(path))?
                    }
                    Err(e) => return Err(werr(path)(e)),
                }
                self.dirs.push(self.meta(entry, path));
                self.stats.dirs += 1;
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                // The logical size: a pax record's, or a sparse member's real size.
                let size = entry.size();
                if self.stats.bytes.saturating_add(size) > self.limits.max_bytes {
                    return Err(Error::TooLarge { path: path.to_owned(), size, limit: self.limits.max_bytes });
                }
                self.remove(&parent, &name, path)?;
                let fd = nix::fcntl::openat(
                    &parent,
                    name.as_os_str(),
                    OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(werr(path))?;
                let mut file = File::from(fd);
                let n = copy_sparse(entry, &mut file, size).map_err(|e| match e.kind() {
                    io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData => Error::Read(e),
                    _ => Error::Write { path: path.to_owned(), source: e },
                })?;
                let m = self.meta(entry, path);
                self.chown(&file, OsStr::new(""), m.uid, m.gid, path)?;
                fchmod(&file, Mode::from_bits_truncate(m.mode & 0o7777)).map_err(werr(path))?;
                let t = TimeSpec::new(m.mtime as i64, 0);
                nix::sys::stat::futimens(&file, &t, &t).map_err(werr(path))?;
                self.stats.files += 1;
                self.stats.bytes += n;
            }
            EntryType::Symlink => {
                let target = entry.link_name().map_err(Error::Read)?.ok_or_else(|| Error::Invalid {
                    path: path.to_owned(),
                    reason: "symlink without a target".into(),
                })?;
                self.remove(&parent, &name, path)?;
                symlinkat(target.as_os_str(), &parent, name.as_os_str()).map_err(werr(path))?;
                let m = self.meta(entry, path);
                self.chown(&parent, name.as_os_str(), m.uid, m.gid, path)?;
                let t = TimeSpec::new(m.mtime as i64, 0);
                // Times on a symlink: best effort (some filesystems refuse).
                let _ = utimensat(&parent, name.as_os_str(), &t, &t, UtimensatFlags::NoFollowSymlink);
                self.stats.links += 1;
            }
            EntryType::Link => {
                let target = entry.link_name().map_err(Error::Read)?.ok_or_else(|| Error::Invalid {
                    path: path.to_owned(),
                    reason: "hard link without a target".into(),
                })?;
                let target = clean(&target)?;
                let (Some(tname), tparent) = (target.file_name(), target.parent().unwrap_or(Path::new(""))) else {
                    return Err(Error::Invalid { path: path.to_owned(), reason: "hard link to the layer root".into() });
                };
                let tparent = self.existing_dir(tparent).map_err(|e| Error::Invalid {
                    path: path.to_owned(),
                    reason: format!("hard link target {target:?} is not in this layer: {e}"),
                })?;
                self.remove(&parent, &name, path)?;
                linkat(&tparent, tname, &parent, name.as_os_str(), nix::fcntl::AtFlags::empty()).map_err(|e| {
                    Error::Invalid { path: path.to_owned(), reason: format!("hard link to {target:?}: {e}") }
                })?;
                self.stats.links += 1;
            }
            EntryType::Fifo => {
                self.remove(&parent, &name, path)?;
                let m = self.meta(entry, path);
                mkfifoat(&parent, name.as_os_str(), Mode::from_bits_truncate(m.mode & 0o777)).map_err(werr(path))?;
                self.chown(&parent, name.as_os_str(), m.uid, m.gid, path)?;
                self.stats.files += 1;
            }
            other => {
                // Block and character devices (a container gets its /dev from
                // the runtime), and entry kinds we do not know.
                tracing::debug!(path = %path.display(), kind = ?other, "layer entry skipped");
                self.stats.skipped += 1;
            }
        }
        Ok(())
    }

    fn meta<R: Read>(&self, entry: &tar::Entry<'_, R>, path: &Path) -> DirMeta {
        let h = entry.header();
        DirMeta {
            path: path.to_owned(),
            mode: h.mode().unwrap_or(0o755),
            uid: h.uid().unwrap_or(0),
            gid: h.gid().unwrap_or(0),
            mtime: h.mtime().unwrap_or(0),
        }
    }

    fn chown<Fd: AsFd>(&self, fd: Fd, name: &OsStr, uid: u64, gid: u64, path: &Path) -> Result<(), Error> {
        if !self.as_root {
            return Ok(());
        }
        let (Ok(uid), Ok(gid)) = (u32::try_from(uid), u32::try_from(gid)) else {
            return Err(Error::Invalid { path: path.to_owned(), reason: format!("owner {uid}:{gid} is out of range") });
        };
        let flags =
            if name.is_empty() { nix::fcntl::AtFlags::AT_EMPTY_PATH } else { nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW };
        fchownat(fd, name, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)), flags).map_err(werr(path))
    }

    /// Opens the directory `rel` inside the root, creating missing parts
    /// (mode 0755) as tar streams may leave parents out.
    fn dir(&self, rel: &Path) -> Result<OwnedFd, Error> {
        match self.existing_dir(rel) {
            Ok(fd) => return Ok(fd),
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(werr(rel)(e)),
        }
        let mut prefix = PathBuf::new();
        for c in rel.components() {
            prefix.push(c);
            match self.existing_dir(&prefix) {
                Ok(_) => continue,
                Err(Errno::ENOENT) => {}
                Err(e) => return Err(werr(&prefix)(e)),
            }
            let parent = self.existing_dir(prefix.parent().unwrap_or(Path::new(""))).map_err(werr(&prefix))?;
            match mkdirat(&parent, c.as_os_str(), Mode::from_bits_truncate(0o755)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(werr(&prefix)(e)),
            }
        }
        self.existing_dir(rel).map_err(werr(rel))
    }

    /// Opens the existing directory `rel`, resolved with the root as `/`.
    fn existing_dir(&self, rel: &Path) -> Result<OwnedFd, Errno> {
        let rel = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
        let how = OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS | ResolveFlag::RESOLVE_NO_XDEV);
        openat2(&self.root, rel, how)
    }

    /// Removes whatever is at `parent/name` (a directory with its contents).
    fn remove(&self, parent: &OwnedFd, name: &OsStr, path: &Path) -> Result<(), Error> {
        match unlinkat(parent, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(Errno::EISDIR) => {
                // `remove_dir_all` does not follow symlinks below the start,
                // and /proc/self/fd/N names our already-resolved parent.
                let dir = PathBuf::from(format!("/proc/self/fd/{}", parent.as_raw_fd())).join(name);
                std::fs::remove_dir_all(&dir).map_err(|e| Error::Write { path: path.to_owned(), source: e })
            }
            Err(e) => Err(werr(path)(e)),
        }
    }

    fn finish_dirs(&mut self) -> Result<(), Error> {
        for d in std::mem::take(&mut self.dirs).into_iter().rev() {
            let fd = self.existing_dir(&d.path).map_err(werr(&d.path))?;
            self.chown(&fd, OsStr::new(""), d.uid, d.gid, &d.path)?;
            fchmodat(&fd, "", Mode::from_bits_truncate(d.mode & 0o7777), FchmodatFlags::FollowSymlink)
                .or_else(|_| fchmod(&fd, Mode::from_bits_truncate(d.mode & 0o7777)))
                .map_err(werr(&d.path))?;
            let t = TimeSpec::new(d.mtime as i64, 0);
            nix::sys::stat::futimens(&fd, &t, &t).map_err(werr(&d.path))?;
        }
        Ok(())
    }
}

/// Copies at most `size` bytes of `from` into `to`, leaving holes where
/// whole blocks are zero (as `cp --sparse=always`).
fn copy_sparse(from: &mut impl Read, to: &mut File, size: u64) -> io::Result<u64> {
    const CHUNK: usize = 64 * 1024;
    let mut buf = vec![0u8; CHUNK];
    let mut from = from.take(size);
    let mut written = 0u64;
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            break;
        }
        if buf[..n].iter().all(|b| *b == 0) {
            to.seek(io::SeekFrom::Current(n as i64))?;
        } else {
            to.write_all(&buf[..n])?;
        }
        written += n as u64;
    }
    if written < size {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "member shorter than its header says"));
    }
    // A trailing hole still needs the file to have its length.
    to.set_len(written)?;
    Ok(written)
}

/// Marks the directory `dir` opaque for overlayfs.
fn set_opaque(dir: &OwnedFd) -> io::Result<()> {
    let name = CString::new(OVERLAY_OPAQUE_XATTR).map_err(io::Error::other)?;
    // SAFETY: `dir` is an open descriptor, `name` a NUL-terminated string and
    // the value a 1-byte buffer whose length we pass.
    let rc = unsafe { libc::fsetxattr(dir.as_raw_fd(), name.as_ptr(), b"y".as_ptr().cast(), 1, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests;
