//! A unified kernel image: systemd's EFI stub with the kernel, the
//! initramfs, the command line (which names the slot's root and carries
//! its dm-verity root hash) and an os-release added as PE sections, so one
//! signed file boots one version and nothing on the ESP can change its
//! command line. Debian 12 has no `ukify`: the sections are added with
//! `objcopy`, placed after the stub's own as ukify places them.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where Debian's `systemd-boot-efi` puts the stub.
pub const STUB: &str = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";

#[derive(Debug, thiserror::Error)]
pub enum UkiError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("writing {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a PE32+ EFI image ({why}): install systemd-boot-efi, or give the stub's path")]
    NotPe { path: PathBuf, why: &'static str },
    #[error("running objcopy (package binutils): {0}")]
    Objcopy(std::io::Error),
    #[error("objcopy failed making {path}: {stderr}")]
    ObjcopyFailed { path: PathBuf, stderr: String },
}

/// The `.osrel` section of a version's image.
pub fn os_release(version: &str, revision: &str) -> String {
    format!(
        "NAME=orc\nID=orc\nVERSION_ID={version}\nPRETTY_NAME=\"orc {version} ({revision})\"\nIMAGE_VERSION={version}\n"
    )
}

/// What goes into one unified kernel image.
#[derive(Debug, Clone)]
pub struct UkiParts<'a> {
    pub stub: &'a Path,
    pub kernel: &'a Path,
    pub initrd: &'a Path,
    pub cmdline: &'a str,
    pub os_release: &'a str,
}

/// The numbers of the stub's PE header that place new sections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    image_base: u64,
    section_alignment: u64,
    size_of_image: u64,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Reads the PE32+ optional header of `b` (the stub).
fn layout(b: &[u8]) -> Result<Layout, &'static str> {
    if b.get(..2) != Some(b"MZ") {
        return Err("no MZ header");
    }
    let pe = u32_at(b, 0x3c).ok_or("truncated DOS header")? as usize;
    if b.get(pe..pe + 4) != Some(b"PE\0\0") {
        return Err("no PE signature");
    }
    let opt = pe + 4 + 20;
    if u16_at(b, opt) != Some(0x20b) {
        return Err("not PE32+");
    }
    let image_base = u64_at(b, opt + 24).ok_or("truncated optional header")?;
    let section_alignment = u64::from(u32_at(b, opt + 32).ok_or("truncated optional header")?);
    let size_of_image = u64::from(u32_at(b, opt + 56).ok_or("truncated optional header")?);
    if section_alignment == 0 || !section_alignment.is_power_of_two() {
        return Err("bad section alignment");
    }
    Ok(Layout { image_base, section_alignment, size_of_image })
}

/// Sets the COFF header's time stamp of the PE image `b` to 0 and its
/// checksum to what it then is: objcopy stamps the time of the build
/// (binutils 2.40 ignores SOURCE_DATE_EPOCH here), which would make every
/// build's images, and the disk and ISO holding them, differ.
fn pin_time_stamp(b: &mut [u8]) -> Result<(), &'static str> {
    let pe = u32_at(b, 0x3c).ok_or("truncated DOS header")? as usize;
    if b.get(pe..pe + 4) != Some(b"PE\0\0") {
        return Err("no PE signature");
    }
    let (stamp, sum) = (pe + 8, pe + 24 + 64);
    b.get_mut(stamp..stamp + 4).ok_or("truncated COFF header")?.fill(0);
    b.get_mut(sum..sum + 4).ok_or("truncated optional header")?.fill(0);
    let c = pe_checksum(b);
    b[sum..sum + 4].copy_from_slice(&c.to_le_bytes());
    Ok(())
}

/// The PE checksum of `b` (its checksum field zero): 16-bit words summed
/// with the carries folded in, plus the file's length.
fn pe_checksum(b: &[u8]) -> u32 {
    let mut sum: u64 = 0;
    for w in b.chunks(2) {
        sum += u64::from(u16::from_le_bytes([w[0], w.get(1).copied().unwrap_or(0)]));
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum = (sum & 0xffff) + (sum >> 16);
    (sum as u32).wrapping_add(b.len() as u32)
}

/// The file range (offset, length) of PE section `name` (`.cmdline`),
/// from the headers in `head` (the file's first bytes; 4 KiB hold them).
fn section_range(head: &[u8], name: &str) -> Option<(u64, u64)> {
    let pe = u32_at(head, 0x3c)? as usize;
    if head.get(pe..pe + 4)? != b"PE\0\0" {
        return None;
    }
    let count = usize::from(u16_at(head, pe + 6)?);
    let opt_size = usize::from(u16_at(head, pe + 20)?);
    let table = pe + 24 + opt_size;
    (0..count).find_map(|i| {
        let s = head.get(table + i * 40..table + (i + 1) * 40)?;
        let n = s[..8].split(|b| *b == 0).next()?;
        if n != name.as_bytes() {
            return None;
        }
        // The section's own size (its raw data is padded to the file alignment).
        let (virtual_size, raw_size) = (u32_at(s, 8)?, u32_at(s, 16)?);
        Some((u64::from(u32_at(s, 20)?), u64::from(virtual_size.min(raw_size))))
    })
}

/// The command line a unified kernel image at `path` carries (its
/// `.cmdline` section), None when it has none.
pub fn cmdline_of(path: &Path) -> Result<Option<String>, UkiError> {
    use std::io::{Read, Seek, SeekFrom};
    let err = |source| UkiError::Read { path: path.into(), source };
    let mut f = std::fs::File::open(path).map_err(err)?;
    let mut head = vec![0u8; 4096];
    let n = f.read(&mut head).map_err(err)?;
    head.truncate(n);
    let Some((at, len)) = section_range(&head, ".cmdline") else { return Ok(None) };
    if len > 64 << 10 {
        return Ok(None);
    }
    let mut b = vec![0u8; len as usize];
    f.seek(SeekFrom::Start(at)).map_err(err)?;
    f.read_exact(&mut b).map_err(err)?;
    let text = String::from_utf8_lossy(&b);
    Ok(Some(text.trim_end_matches('\0').trim().to_string()))
}

fn align_up(n: u64, a: u64) -> u64 {
    n.div_ceil(a) * a
}

/// The virtual address of each of `sizes` placed one after the other
/// after the stub's own sections.
fn addresses(l: Layout, sizes: &[u64]) -> Vec<u64> {
    let mut at = l.image_base + align_up(l.size_of_image, l.section_alignment);
    sizes
        .iter()
        .map(|s| {
            let here = at;
            at += align_up((*s).max(1), l.section_alignment);
            here
        })
        .collect()
}

/// Writes the unified kernel image of `p` to `out` (`work` holds the
/// command line and os-release files objcopy reads).
pub fn build(p: &UkiParts, work: &Path, out: &Path) -> Result<(), UkiError> {
    let read = |path: &Path| std::fs::read(path).map_err(|source| UkiError::Read { path: path.into(), source });
    let stub = read(p.stub)?;
    let l = layout(&stub).map_err(|why| UkiError::NotPe { path: p.stub.into(), why })?;
    let write = |path: PathBuf, data: &[u8]| -> Result<PathBuf, UkiError> {
        std::fs::write(&path, data).map_err(|source| UkiError::Write { path: path.clone(), source })?;
        Ok(path)
    };
    let osrel = write(work.join("uki.osrel"), p.os_release.as_bytes())?;
    let cmdline = write(work.join("uki.cmdline"), format!("{}\0", p.cmdline).as_bytes())?;
    let len = |path: &Path| {
        std::fs::metadata(path).map(|m| m.len()).map_err(|source| UkiError::Read { path: path.into(), source })
    };
    // The kernel last, as ukify places it (it may grow when it runs).
    let sections =
        [(".osrel", osrel), (".cmdline", cmdline), (".initrd", p.initrd.into()), (".linux", p.kernel.into())];
    let sizes = sections.iter().map(|(_, f)| len(f)).collect::<Result<Vec<_>, _>>()?;
    let mut cmd = Command::new("objcopy");
    for ((name, file), vma) in sections.iter().zip(addresses(l, &sizes)) {
        cmd.arg("--add-section").arg(format!("{name}={}", file.display()));
        cmd.arg("--change-section-vma").arg(format!("{name}={vma:#x}"));
    }
    let o = cmd.arg(p.stub).arg(out).output().map_err(UkiError::Objcopy)?;
    if !o.status.success() {
        return Err(UkiError::ObjcopyFailed {
            path: out.into(),
            stderr: String::from_utf8_lossy(&o.stderr).trim().to_string(),
        });
    }
    let mut made = read(out)?;
    pin_time_stamp(&mut made).map_err(|why| UkiError::NotPe { path: out.into(), why })?;
    std::fs::write(out, made).map_err(|source| UkiError::Write { path: out.into(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pe(image_base: u64, align: u32, size: u32) -> Vec<u8> {
        let mut b = vec![0u8; 0x200];
        b[..2].copy_from_slice(b"MZ");
        b[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
        b[0x80..0x84].copy_from_slice(b"PE\0\0");
        let opt = 0x80 + 24;
        b[opt..opt + 2].copy_from_slice(&0x20bu16.to_le_bytes());
        b[opt + 24..opt + 32].copy_from_slice(&image_base.to_le_bytes());
        b[opt + 32..opt + 36].copy_from_slice(&align.to_le_bytes());
        b[opt + 56..opt + 60].copy_from_slice(&size.to_le_bytes());
        b
    }

    #[test]
    fn the_time_stamp_is_pinned_and_the_checksum_follows() {
        let mut a = pe(0x1_0000_0000, 0x1000, 0x1_2345);
        let mut b = a.clone();
        a[0x88..0x8c].copy_from_slice(&1_700_000_000u32.to_le_bytes());
        b[0x88..0x8c].copy_from_slice(&1_800_000_000u32.to_le_bytes());
        pin_time_stamp(&mut a).unwrap();
        pin_time_stamp(&mut b).unwrap();
        assert_eq!(a, b, "two builds, one image");
        assert_eq!(u32_at(&a, 0x88), Some(0));
        let sum = 0x80 + 24 + 64;
        let mut zeroed = a.clone();
        zeroed[sum..sum + 4].fill(0);
        assert_eq!(u32_at(&a, sum), Some(pe_checksum(&zeroed)));
        assert_eq!(pe_checksum(&[1, 0, 2, 0]), 3 + 4, "words plus the length");
        assert!(pin_time_stamp(&mut b"MZ not a PE".to_vec()).is_err());
    }

    #[test]
    fn sections_go_after_the_stub_each_aligned() {
        let l = layout(&pe(0x1_0000_0000, 0x1000, 0x1_2345)).unwrap();
        let at = addresses(l, &[10, 0x1000, 0x1001, 5]);
        assert_eq!(at, [0x1_0001_3000, 0x1_0001_4000, 0x1_0001_5000, 0x1_0001_7000]);
        assert_eq!(layout(b"ELF").unwrap_err(), "no MZ header");
        let mut not_plus = pe(0, 0x1000, 0x1000);
        not_plus[0x80 + 24] = 0x0b;
        not_plus[0x80 + 25] = 0x01;
        assert_eq!(layout(&not_plus).unwrap_err(), "not PE32+");
        assert_eq!(layout(&pe(0, 3, 0x1000)).unwrap_err(), "bad section alignment");
    }

    #[test]
    fn a_section_is_found_by_name() {
        let mut b = pe(0, 0x1000, 0x1000);
        // Two sections after a 0xf0-byte optional header.
        let pe_at = 0x80;
        b[pe_at + 6..pe_at + 8].copy_from_slice(&2u16.to_le_bytes());
        b[pe_at + 20..pe_at + 22].copy_from_slice(&0xf0u16.to_le_bytes());
        let table = pe_at + 24 + 0xf0;
        for (i, (name, vsize, raw, at)) in
            [(".text", 10u32, 512u32, 0x400u32), (".cmdline", 9, 512, 0x600)].iter().enumerate()
        {
            let s = table + i * 40;
            b[s..s + name.len()].copy_from_slice(name.as_bytes());
            b[s + 8..s + 12].copy_from_slice(&vsize.to_le_bytes());
            b[s + 16..s + 20].copy_from_slice(&raw.to_le_bytes());
            b[s + 20..s + 24].copy_from_slice(&at.to_le_bytes());
        }
        assert_eq!(section_range(&b, ".cmdline"), Some((0x600, 9)));
        assert_eq!(section_range(&b, ".cmd"), None);
        b.resize(0x800, 0);
        b[0x600..0x609].copy_from_slice(b"orc.x=1\n\0");
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("x.efi");
        std::fs::write(&f, &b).unwrap();
        assert_eq!(cmdline_of(&f).unwrap().as_deref(), Some("orc.x=1"));
    }
}
