//! The STATE filesystem's bytes, shared by PID 1 (which formats a blank
//! STATE disk on first boot) and the agent (which formats the STATE
//! partition of a disk it installs to): what a device's first bytes say it
//! holds, and "formatting" without mkfs — the small ext4 template the
//! initramfs carries, written to the device and grown online to its size.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

const EXT4_MAGIC: u16 = 0xEF53;
/// ext4's `EXT4_FEATURE_RO_COMPAT_QUOTA | EXT4_FEATURE_RO_COMPAT_PROJECT`.
const RO_COMPAT_QUOTA_PROJECT: u32 = 0x0100 | 0x2000;
/// How much of the device must be zero to call it blank: partition tables,
/// filesystem superblocks and LVM/MD signatures all live in the first MiB.
pub const BLANK_PROBE: usize = 1 << 20;
/// Where an ISO 9660 filesystem says so (`CD001`).
const ISO9660_AT: usize = 0x8001;

nix::ioctl_write_ptr!(ext4_resize_fs, b'f', 16, u64);
nix::ioctl_read!(blk_getsize64, 0x12, 114, u64);

#[derive(Debug, thiserror::Error)]
pub enum StateFsError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("cannot grow the ext4 on {path} to {blocks} blocks: {source}")]
    Resize { path: PathBuf, blocks: u64, source: nix::Error },
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> StateFsError + '_ {
    move |source| StateFsError::Io { path: path.to_path_buf(), source }
}

/// What the first bytes of a device say it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// `project_quota`: it has the quota and project features, so it is
    /// mounted `prjquota` (volumes' size limits).
    Ext4 {
        label: String,
        project_quota: bool,
    },
    /// A GPT partition table (`EFI PART` in its second sector).
    Gpt,
    /// An ISO 9660 filesystem (a CD image, or a USB stick written with one).
    Iso9660,
    /// An MBR boot signature without GPT.
    Mbr,
    Blank,
    Other,
}

impl std::fmt::Display for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Probe::Ext4 { label, .. } if label.is_empty() => f.write_str("an ext4 filesystem"),
            Probe::Ext4 { label, .. } => write!(f, "an ext4 filesystem labelled {label}"),
            Probe::Gpt => f.write_str("a GPT partition table"),
            Probe::Iso9660 => f.write_str("an ISO 9660 filesystem"),
            Probe::Mbr => f.write_str("an MBR partition table"),
            Probe::Blank => f.write_str("nothing (zeros)"),
            Probe::Other => f.write_str("data of an unknown kind"),
        }
    }
}

/// Classifies a device from its first [`BLANK_PROBE`] bytes (or fewer).
pub fn probe(head: &[u8]) -> Probe {
    if head.len() >= 1024 + 0x88 {
        let sb = &head[1024..];
        let magic = u16::from_le_bytes([sb[0x38], sb[0x39]]);
        if magic == EXT4_MAGIC {
            let label = &sb[0x78..0x88];
            let end = label.iter().position(|b| *b == 0).unwrap_or(label.len());
            let ro_compat = u32::from_le_bytes([sb[0x64], sb[0x65], sb[0x66], sb[0x67]]);
            return Probe::Ext4 {
                label: String::from_utf8_lossy(&label[..end]).into_owned(),
                project_quota: ro_compat & RO_COMPAT_QUOTA_PROJECT == RO_COMPAT_QUOTA_PROJECT,
            };
        }
    }
    if head.get(512..520) == Some(b"EFI PART") {
        return Probe::Gpt;
    }
    if head.get(ISO9660_AT..ISO9660_AT + 5) == Some(b"CD001") {
        return Probe::Iso9660;
    }
    if head.iter().all(|b| *b == 0) {
        Probe::Blank
    } else if head.get(510..512) == Some(&[0x55, 0xaa]) {
        Probe::Mbr
    } else {
        Probe::Other
    }
}

/// Up to `len` bytes of `dev` from `at`.
pub fn read_at(dev: &Path, at: u64, len: usize) -> Result<Vec<u8>, StateFsError> {
    let mut f = File::open(dev).map_err(io(dev))?;
    f.seek(SeekFrom::Start(at)).map_err(io(dev))?;
    let mut buf = vec![0u8; len];
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]).map_err(io(dev))? {
            0 => break,
            k => n += k,
        }
    }
    buf.truncate(n);
    Ok(buf)
}

/// The first [`BLANK_PROBE`] bytes of `dev`.
pub fn read_head(dev: &Path) -> Result<Vec<u8>, StateFsError> {
    read_at(dev, 0, BLANK_PROBE)
}

/// The size of the block device (or file) `dev` in bytes.
pub fn device_size(dev: &Path) -> Result<u64, StateFsError> {
    let d = File::open(dev).map_err(io(dev))?;
    let meta = d.metadata().map_err(io(dev))?;
    if meta.is_file() {
        return Ok(meta.len());
    }
    let mut size = 0u64;
    // SAFETY: BLKGETSIZE64 writes one u64 into `size`.
    unsafe { blk_getsize64(d.as_raw_fd(), &mut size) }
        .map_err(|e| StateFsError::Io { path: dev.to_path_buf(), source: std::io::Error::from(e) })?;
    Ok(size)
}

/// Writes the gzip'd ext4 template to the start of `dev`.
pub fn write_template(dev: &Path, template_gz: &Path) -> Result<(), StateFsError> {
    let gz = File::open(template_gz).map_err(io(template_gz))?;
    let mut img = Vec::new();
    flate2::read::GzDecoder::new(gz).read_to_end(&mut img).map_err(io(template_gz))?;
    let mut f = std::fs::OpenOptions::new().write(true).open(dev).map_err(io(dev))?;
    f.seek(SeekFrom::Start(0)).map_err(io(dev))?;
    f.write_all(&img).map_err(io(dev))?;
    f.sync_all().map_err(io(dev))
}

/// Grows the ext4 mounted at `mnt` to fill `dev` (4 KiB blocks); returns
/// the new block count.
pub fn grow(dev: &Path, mnt: &Path) -> Result<u64, StateFsError> {
    let blocks = device_size(dev)? / 4096;
    let m = File::open(mnt).map_err(io(mnt))?;
    // SAFETY: EXT4_IOC_RESIZE_FS reads one u64 (the new block count).
    unsafe { ext4_resize_fs(m.as_raw_fd(), &blocks) }.map_err(|source| StateFsError::Resize {
        path: dev.to_path_buf(),
        blocks,
        source,
    })?;
    Ok(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn ext4_head(label: &str) -> Vec<u8> {
        let mut h = vec![0u8; 4096];
        h[1024 + 0x38..1024 + 0x3a].copy_from_slice(&EXT4_MAGIC.to_le_bytes());
        h[1024 + 0x78..1024 + 0x78 + label.len()].copy_from_slice(label.as_bytes());
        h
    }

    #[test]
    fn probe_table() {
        let mut mbr = vec![0u8; 4096];
        mbr[510] = 0x55;
        mbr[511] = 0xaa;
        let mut gpt = mbr.clone();
        gpt[512..520].copy_from_slice(b"EFI PART");
        let mut iso = vec![0u8; 0x9000];
        iso[ISO9660_AT..ISO9660_AT + 5].copy_from_slice(b"CD001");
        let mut quota_head = ext4_head("ORC_STATE");
        quota_head[1024 + 0x64..1024 + 0x68].copy_from_slice(&0x2100u32.to_le_bytes());
        let cases: Vec<(Vec<u8>, Probe)> = vec![
            (vec![0u8; 4096], Probe::Blank),
            (vec![], Probe::Blank),
            (mbr, Probe::Mbr),
            (gpt, Probe::Gpt),
            (iso, Probe::Iso9660),
            (vec![7u8; 4096], Probe::Other),
            (ext4_head("ORC_STATE"), Probe::Ext4 { label: "ORC_STATE".into(), project_quota: false }),
            (ext4_head("data"), Probe::Ext4 { label: "data".into(), project_quota: false }),
            (quota_head.clone(), Probe::Ext4 { label: "ORC_STATE".into(), project_quota: true }),
        ];
        for (i, (head, want)) in cases.into_iter().enumerate() {
            assert_eq!(probe(&head), want, "case {i}");
        }
        assert_eq!(Probe::Gpt.to_string(), "a GPT partition table");
    }
}
