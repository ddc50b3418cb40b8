//! Crafted layers, benign and malicious. Each malicious case unpacks into
//! `sandbox/root` and checks that nothing appeared or changed in `sandbox`.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

use super::*;

/// One raw tar entry; names are written byte for byte, so `..` and absolute
/// paths get through (tar::Builder would refuse them).
enum E<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8]),
    FileMode(&'a str, &'a [u8], u32),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    CharDev(&'a str, u32, u32),
}

fn tar(entries: &[E<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let mut h = tar::Header::new_ustar();
        let (name, kind, data, link, mode): (&str, EntryType, &[u8], Option<&str>, u32) = match e {
            E::Dir(n) => (n, EntryType::Directory, b"", None, 0o755),
            E::File(n, d) => (n, EntryType::Regular, d, None, 0o644),
            E::FileMode(n, d, m) => (n, EntryType::Regular, d, None, *m),
            E::Symlink(n, t) => (n, EntryType::Symlink, b"", Some(t), 0o777),
            E::Hardlink(n, t) => (n, EntryType::Link, b"", Some(t), 0o644),
            E::CharDev(n, maj, min) => {
                h.set_device_major(*maj).ok();
                h.set_device_minor(*min).ok();
                (n, EntryType::Char, b"", None, 0o666)
            }
        };
        let raw = h.as_old_mut();
        raw.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            raw.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("root")).unwrap();
        std::fs::write(dir.path().join("victim"), b"original").unwrap();
        Self { dir }
    }
    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }
    fn unpack(&self, entries: &[E<'_>]) -> Result<Stats, Error> {
        unpack(&tar(entries)[..], &self.root())
    }
    /// The sandbox outside `root` is exactly as it was.
    fn untouched(&self) {
        let mut names: Vec<_> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["root", "victim"], "something was created next to the layer");
        assert_eq!(std::fs::read(self.dir.path().join("victim")).unwrap(), b"original");
        assert_eq!(std::fs::metadata(self.dir.path().join("victim")).unwrap().nlink(), 1, "victim got a hard link");
    }
}

#[test]
fn benign_layer_unpacks_with_modes_links_and_missing_parents() {
    let s = Sandbox::new();
    let stats = s
        .unpack(&[
            E::Dir("./bin/"),
            E::FileMode("./bin/sh", b"#!shell", 0o755),
            E::Symlink("./bin/ls", "sh"),
            E::Hardlink("./bin/ash", "./bin/sh"),
            E::File("etc/deep/er/passwd", b"root:x:0:0"),
        ])
        .unwrap();
    let r = s.root();
    assert_eq!(std::fs::read(r.join("bin/sh")).unwrap(), b"#!shell");
    assert_eq!(std::fs::metadata(r.join("bin/sh")).unwrap().permissions().mode() & 0o777, 0o755);
    assert_eq!(std::fs::read_link(r.join("bin/ls")).unwrap(), Path::new("sh"));
    assert_eq!(std::fs::metadata(r.join("bin/ash")).unwrap().ino(), std::fs::metadata(r.join("bin/sh")).unwrap().ino());
    assert_eq!(std::fs::read(r.join("etc/deep/er/passwd")).unwrap(), b"root:x:0:0");
    assert_eq!(std::fs::metadata(r.join("bin/sh")).unwrap().mtime(), 1_700_000_000);
    assert_eq!((stats.files, stats.dirs, stats.links, stats.bytes), (2, 1, 2, 17));
    s.untouched();
}

#[test]
fn dot_dot_is_refused() {
    let s = Sandbox::new();
    let err = s.unpack(&[E::File("../victim", b"pwned")]).unwrap_err();
    assert!(matches!(err, Error::Escape { .. }), "{err}");
    let err = s.unpack(&[E::File("a/../../victim", b"pwned")]).unwrap_err();
    assert!(matches!(err, Error::Escape { .. }), "{err}");
    s.untouched();
}

#[test]
fn absolute_paths_land_inside() {
    let s = Sandbox::new();
    s.unpack(&[E::File("/victim", b"inside")]).unwrap();
    assert_eq!(std::fs::read(s.root().join("victim")).unwrap(), b"inside");
    s.untouched();
}

#[test]
fn symlinked_parents_resolve_inside_the_layer() {
    for target in ["/", "..", "../..", "/../../..", "./../."] {
        let s = Sandbox::new();
        s.unpack(&[E::Symlink("evil", target), E::File("evil/victim", b"pwned")]).unwrap();
        assert_eq!(std::fs::read(s.root().join("victim")).unwrap(), b"pwned", "target {target}");
        s.untouched();
    }
}

#[test]
fn absolute_symlink_to_a_file_outside_is_replaced_not_followed() {
    let s = Sandbox::new();
    let victim = s.dir.path().join("victim");
    s.unpack(&[E::Symlink("link", victim.to_str().unwrap()), E::File("link", b"pwned")]).unwrap();
    assert!(std::fs::symlink_metadata(s.root().join("link")).unwrap().is_file());
    s.untouched();
}

#[test]
fn file_through_a_dangling_symlink_to_outside_stays_inside() {
    let s = Sandbox::new();
    let outside = s.dir.path().join("newdir");
    s.unpack(&[E::Symlink("d", outside.to_str().unwrap()), E::File("d/f", b"x")]).unwrap_err();
    s.untouched();
}

#[test]
fn hard_links_cannot_reach_outside() {
    let s = Sandbox::new();
    assert!(matches!(s.unpack(&[E::Hardlink("h", "../victim")]).unwrap_err(), Error::Escape { .. }));
    // Through a symlink to `/`: resolves to root/victim, which does not exist.
    let err = s.unpack(&[E::Symlink("up", "/"), E::Hardlink("h", "up/../victim")]).unwrap_err();
    assert!(matches!(err, Error::Escape { .. }), "{err}");
    let victim = s.dir.path().join("victim");
    let err = s.unpack(&[E::Hardlink("h", victim.to_str().unwrap())]).unwrap_err();
    assert!(matches!(err, Error::Invalid { .. }), "{err}");
    // A symlink to the victim, then a hard link to that symlink: links the
    // symlink itself, never the file it names.
    s.unpack(&[E::Symlink("sl", victim.to_str().unwrap()), E::Hardlink("h2", "sl")]).unwrap();
    assert!(std::fs::symlink_metadata(s.root().join("h2")).unwrap().file_type().is_symlink());
    s.untouched();
}

#[test]
fn device_nodes_are_skipped() {
    let s = Sandbox::new();
    let stats = s.unpack(&[E::CharDev("dev/mem", 1, 1), E::CharDev("null", 1, 3)]).unwrap();
    assert_eq!(stats.skipped, 2);
    assert!(!s.root().join("null").exists());
    s.untouched();
}

#[test]
fn whiteouts_become_overlay_whiteouts() {
    if !Uid::effective().is_root() {
        eprintln!("skipped: whiteouts need CAP_MKNOD");
        return;
    }
    let s = Sandbox::new();
    let stats = s.unpack(&[E::File("etc/.wh.passwd", b""), E::Dir("opt/"), E::File("opt/.wh..wh..opq", b"")]).unwrap();
    let m = std::fs::symlink_metadata(s.root().join("etc/passwd")).unwrap();
    assert!(m.file_type().is_char_device());
    assert_eq!(m.rdev(), 0);
    assert!(!s.root().join("etc/.wh.passwd").exists());
    assert!(!s.root().join("opt/.wh..wh..opq").exists());
    let mut buf = [0u8; 4];
    let name = CString::new(OVERLAY_OPAQUE_XATTR).unwrap();
    let path = CString::new(s.root().join("opt").as_os_str().as_bytes()).unwrap();
    // SAFETY: valid C strings and a buffer with its length.
    let n = unsafe { libc::getxattr(path.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert_eq!(n, 1);
    assert_eq!(&buf[..1], b"y");
    assert_eq!(stats.whiteouts, 2);
    // A whiteout aimed outside is an escape like any other path.
    assert!(matches!(s.unpack(&[E::File("../.wh.victim", b"")]).unwrap_err(), Error::Escape { .. }));
    // `.wh..` would name the parent directory: ignored.
    s.unpack(&[E::File(".wh..", b"")]).unwrap();
    s.untouched();
}

#[test]
fn truncated_layer_is_a_read_error() {
    let s = Sandbox::new();
    let t = tar(&[E::File("big", &[7u8; 4096])]);
    let err = unpack(&t[..1024], &s.root()).unwrap_err();
    assert!(matches!(err, Error::Read(_)), "{err}");
    s.untouched();
}

#[test]
fn file_replaces_directory_and_directory_replaces_file() {
    let s = Sandbox::new();
    s.unpack(&[E::File("a/b/c", b"1"), E::File("a", b"file now"), E::File("x", b"f"), E::Dir("x/")]).unwrap();
    assert_eq!(std::fs::read(s.root().join("a")).unwrap(), b"file now");
    assert!(s.root().join("x").is_dir());
    s.untouched();
}

/// A GNU sparse member claiming `real` bytes with one data block of
/// `data` at offset `at` (an extended sparse header when `extended`).
fn sparse_tar(name: &str, real: u64, at: u64, data: &[u8], extended: bool) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.set_path(name).unwrap();
    h.set_entry_type(EntryType::GNUSparse);
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    let g = h.as_gnu_mut().unwrap();
    g.set_real_size(real);
    g.sparse[0].set_offset(at);
    g.sparse[0].set_length(data.len() as u64);
    g.set_is_extended(extended);
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    if extended {
        let mut ext = tar::GnuExtSparseHeader::new();
        ext.set_is_extended(false);
        out.extend_from_slice(ext.as_bytes());
    }
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out.resize(out.len() + 1024, 0);
    out
}

#[test]
fn a_sparse_bomb_counts_by_its_logical_size_and_is_written_sparse() {
    let s = Sandbox::new();
    // 2 KB of tar claiming a 1 TB file: refused before a byte is written.
    let bomb = sparse_tar("bomb", 1 << 40, (1 << 40) - 512, &[7u8; 512], false);
    assert!(bomb.len() < 4096);
    let limits = Limits { max_bytes: 1 << 30 };
    let e = unpack_limited(&bomb[..], &s.root(), limits).unwrap_err();
    assert!(matches!(e, Error::TooLarge { size, .. } if size == 1 << 40), "{e}");
    assert!(!s.root().join("bomb").exists());
    s.untouched();
    // Within the limit, the hole stays a hole (with an extended sparse header too).
    for extended in [false, true] {
        let s = Sandbox::new();
        let small = sparse_tar("f", 64 << 20, (64 << 20) - 512, &[7u8; 512], extended);
        let stats = unpack_limited(&small[..], &s.root(), limits).unwrap();
        assert_eq!(stats.bytes, 64 << 20);
        let m = std::fs::metadata(s.root().join("f")).unwrap();
        assert_eq!(m.len(), 64 << 20);
        assert!(m.blocks() * 512 < 1 << 20, "{} blocks: the zeros were written", m.blocks());
        let data = std::fs::read(s.root().join("f")).unwrap();
        assert_eq!(&data[data.len() - 512..], &[7u8; 512]);
    }
}

#[test]
fn the_byte_limit_counts_all_files_of_a_layer() {
    let s = Sandbox::new();
    let layer = tar(&[E::File("a", &[1u8; 600]), E::File("b", &[1u8; 600])]);
    let e = unpack_limited(&layer[..], &s.root(), Limits { max_bytes: 1000 }).unwrap_err();
    assert!(e.to_string().contains("more than 1000 bytes") && e.to_string().contains("\"b\""), "{e}");
    let ok = Sandbox::new();
    assert_eq!(unpack_limited(&layer[..], &ok.root(), Limits { max_bytes: 1200 }).unwrap().bytes, 1200);
}

#[test]
fn huge_extension_headers_are_refused_and_normal_ones_work() {
    fn ext(kind: EntryType, data: &[u8]) -> Vec<u8> {
        let mut h = tar::Header::new_gnu();
        h.set_path("././@LongLink").unwrap();
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_cksum();
        let mut out = h.as_bytes().to_vec();
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
        out
    }
    for kind in [EntryType::GNULongName, EntryType::XHeader, EntryType::GNULongLink] {
        let s = Sandbox::new();
        let mut layer = ext(kind, &vec![b'a'; (guard::MAX_EXTENSION + 1) as usize]);
        layer.extend(tar(&[E::File("x", b"1")]));
        let e = unpack(&layer[..], &s.root()).unwrap_err();
        assert!(e.to_string().contains("at most 1048576"), "{kind:?}: {e}");
    }
    // A long name and a pax size record (for the member after it) unpack.
    let s = Sandbox::new();
    let long = format!("{}/file", "d".repeat(200));
    let mut layer = ext(EntryType::GNULongName, format!("{long}\0").as_bytes());
    layer.extend(tar(&[E::File("short", b"content")]));
    let record = "12 size=300\n";
    let mut pax = ext(EntryType::XHeader, record.as_bytes());
    let mut h = tar::Header::new_ustar();
    h.set_path("padded").unwrap();
    h.set_size(0); // The pax record says 300.
    h.set_entry_type(EntryType::Regular);
    h.set_mode(0o644);
    h.set_cksum();
    pax.extend_from_slice(h.as_bytes());
    pax.extend_from_slice(&[b'p'; 300]);
    pax.resize(pax.len().div_ceil(512) * 512, 0);
    layer.truncate(layer.len() - 1024); // Drop the end marker before appending.
    layer.extend(pax);
    layer.extend(tar(&[E::File("after", b"ok")]));
    unpack(&layer[..], &s.root()).unwrap();
    assert_eq!(std::fs::read(s.root().join(&long)).unwrap(), b"content");
    assert_eq!(std::fs::read(s.root().join("padded")).unwrap(), vec![b'p'; 300]);
    assert_eq!(std::fs::read(s.root().join("after")).unwrap(), b"ok");
}
