//! A reproducible initramfs writer: gzip'd cpio (newc), entries sorted by path,
//! every timestamp zero, every owner root. Two builds of the same inputs give
//! the same bytes.

use std::collections::BTreeMap;
use std::io::Write;

use flate2::write::GzEncoder;
use flate2::Compression;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Dir,
    File { mode: u32, data: Vec<u8> },
    Symlink { target: String },
    CharDev { mode: u32, major: u32, minor: u32 },
}

/// An in-memory tree of the initramfs. Parent directories are created implicitly.
#[derive(Debug, Default)]
pub struct Initramfs {
    entries: BTreeMap<String, Entry>,
}

impl Initramfs {
    pub fn new() -> Self {
        Self::default()
    }

    fn add_parents(&mut self, path: &str) {
        let mut cur = String::new();
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            if !cur.is_empty() {
                cur.push('/');
            }
            cur.push_str(part);
            self.entries.entry(cur.clone()).or_insert(Entry::Dir);
        }
    }

    fn key(path: &str) -> String {
        path.trim_start_matches('/').to_string()
    }

    pub fn dir(&mut self, path: &str) -> &mut Self {
        let key = Self::key(path);
        self.add_parents(&key);
        self.entries.insert(key, Entry::Dir);
        self
    }

    pub fn file(&mut self, path: &str, mode: u32, data: Vec<u8>) -> &mut Self {
        let key = Self::key(path);
        self.add_parents(&key);
        self.entries.insert(key, Entry::File { mode, data });
        self
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        let key = Self::key(path);
        self.add_parents(&key);
        self.entries.insert(key, Entry::Symlink { target: target.to_string() });
        self
    }

    /// A character device node, e.g. `/dev/console` (5, 1) so PID 1 has a console.
    pub fn char_dev(&mut self, path: &str, mode: u32, major: u32, minor: u32) -> &mut Self {
        let key = Self::key(path);
        self.add_parents(&key);
        self.entries.insert(key, Entry::CharDev { mode, major, minor });
        self
    }

    /// Writes the archive, gzip'd, to `out`.
    pub fn write_gz<W: Write>(&self, out: W) -> std::io::Result<W> {
        let mut gz = GzEncoder::new(out, Compression::new(6));
        self.write_cpio(&mut gz)?;
        gz.finish()
    }

    /// Writes the bare cpio archive to `out`.
    pub fn write_cpio<W: Write>(&self, out: &mut W) -> std::io::Result<()> {
        for (ino, (path, entry)) in self.entries.iter().enumerate() {
            let b = cpio::newc::Builder::new(path).ino(ino as u32 + 1).uid(0).gid(0).mtime(0);
            let (b, data): (_, &[u8]) = match entry {
                Entry::Dir => (b.mode(0o040755).nlink(2), &[]),
                Entry::File { mode, data } => (b.mode(0o100000 | (mode & 0o7777)).nlink(1), data),
                Entry::Symlink { target } => (b.mode(0o120777).nlink(1), target.as_bytes()),
                Entry::CharDev { mode, major, minor } => {
                    (b.mode(0o020000 | (mode & 0o7777)).nlink(1).rdev_major(*major).rdev_minor(*minor), &[])
                }
            };
            let mut w = b.write(&mut *out, data.len() as u32);
            w.write_all(data)?;
            w.finish()?;
        }
        cpio::newc::trailer(&mut *out)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build() -> Vec<u8> {
        let mut i = Initramfs::new();
        i.file("/init", 0o755, b"#!init".to_vec())
            .file("/etc/orc/modules", 0o644, b"a.ko\n".to_vec())
            .symlink("/sbin/init", "/init")
            .dir("/proc");
        i.write_gz(Vec::new()).unwrap()
    }

    #[test]
    fn reproducible() {
        assert_eq!(build(), build());
    }

    #[test]
    fn parents_are_created_before_children() {
        let mut i = Initramfs::new();
        i.file("/a/b/c", 0o644, vec![]);
        let mut raw = Vec::new();
        i.write_cpio(&mut raw).unwrap();
        let names: Vec<String> = {
            let mut names = vec![];
            let mut rd = std::io::Cursor::new(raw);
            loop {
                let r = cpio::NewcReader::new(rd).unwrap();
                if r.entry().is_trailer() {
                    break;
                }
                names.push(r.entry().name().to_string());
                rd = r.finish().unwrap();
            }
            names
        };
        assert_eq!(names, vec!["a", "a/b", "a/b/c"]);
    }
}
