//! The raw GPT disk image a node boots from (and installs to a disk):
//!
//! | # | GPT name    | what |
//! |---|-------------|------|
//! | 1 | `orc-esp`    | FAT ESP: systemd-boot as the removable-media loader, `loader/loader.conf`, one unified kernel image per version under `EFI/Linux` ([`crate::boot_entry`]) |
//! | 2 | `orc-root-a` | slot A: the erofs root and its dm-verity tree |
//! | 3 | `orc-root-b` | slot B: the same, for the next version (empty until an upgrade) |
//! | 4 | `orc-state`  | STATE, blank: PID 1 formats and grows it on first boot |
//!
//! Each unified kernel image's command line names its slot by GPT name
//! (`orc.root=PARTLABEL=orc-root-a`) with the root hash of what was
//! written there, so a version only ever boots the root it was built with.
//! GUIDs are derived from a seed, not random: two builds give the same bytes.

use std::io::{Cursor, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use gpt::partition_types;

/// The GPT names of the partitions, which the kernel command line uses.
pub const ESP_NAME: &str = "orc-esp";
pub const SLOT_A_NAME: &str = "orc-root-a";
pub const SLOT_B_NAME: &str = "orc-root-b";
pub const STATE_NAME: &str = "orc-state";

const MIB: u64 = 1 << 20;
/// Where the first partition starts, and every partition's alignment.
const ALIGN: u64 = MIB;
/// The ESP holds two versions' unified kernel images (~15 MiB each today).
pub const ESP_SIZE: u64 = 128 * MIB;
/// Each slot holds one root image with its hash tree (~17 MiB today).
pub const SLOT_SIZE: u64 = 256 * MIB;
/// The least room STATE is given.
pub const MIN_STATE: u64 = 64 * MIB;
/// What the GPT's backup at the end takes (header + 128 entries).
const GPT_TAIL: u64 = MIB;

/// What systemd-boot is told: boot the newest good `orc-*` entry at once.
pub const LOADER_CONF: &str = "timeout 0\ndefault orc-*\nconsole-mode keep\n";
/// Where Debian's `systemd-boot-efi` puts the boot loader.
pub const SYSTEMD_BOOT: &str = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi";
/// Where the root image carries it, for the installer.
pub const SYSTEMD_BOOT_ON_NODE: &str = "/usr/lib/orc/systemd-bootx64.efi";

/// The ESP of a new disk: systemd-boot (read from `boot_loader`) as the
/// removable-media loader, its configuration (written into `work`), and
/// `uki` as the blessed entry of `version`.
pub fn esp_files(work: &Path, boot_loader: &Path, uki: &Path, version: &str) -> std::io::Result<Vec<EspFile>> {
    let loader = work.join("loader.conf");
    std::fs::write(&loader, LOADER_CONF)?;
    let entry = crate::boot_entry::BootEntry::blessed(version);
    Ok(vec![
        EspFile { path: "EFI/BOOT/BOOTX64.EFI".into(), source: boot_loader.to_path_buf() },
        EspFile { path: "loader/loader.conf".into(), source: loader },
        EspFile { path: format!("{}/{}", crate::boot_entry::ENTRY_DIR, entry.file_name()), source: uki.to_path_buf() },
    ])
}

/// The command line of the unified kernel image that boots the root in
/// the slot partition named `slot` (its dm-verity value `verity`), with
/// STATE on its own partition; a kernel panic reboots after 5 s, so a
/// version that panics falls back by boot counting without anyone.
pub fn slot_cmdline(slot: &str, verity: &str) -> String {
    format!(
        "console=ttyS0 panic=5 printk.devkmsg=on {}=PARTLABEL={slot} {}={verity} {}=PARTLABEL={STATE_NAME}",
        crate::cmdline::ROOT,
        crate::cmdline::VERITY,
        crate::cmdline::STATE
    )
}

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("writing the GPT of {path}: {source}")]
    Gpt { path: PathBuf, source: gpt::GptError },
    #[error("the ESP of {path}: {source}")]
    Esp { path: PathBuf, source: std::io::Error },
    #[error("{what} is {size} bytes, more than its partition's {room}: raise {constant} in image/src/disk.rs")]
    TooBig { what: String, size: u64, room: u64, constant: &'static str },
    #[error("a disk of {size} bytes is too small: it needs at least {need}")]
    TooSmall { size: u64, need: u64 },
}

/// One file on the ESP: its path there (`EFI/Linux/orc-0.1.0.efi`) and
/// where to read it from.
#[derive(Debug, Clone)]
pub struct EspFile {
    pub path: String,
    pub source: PathBuf,
}

/// What goes on a new disk image.
#[derive(Debug, Clone)]
pub struct DiskSpec {
    /// The whole image's size (STATE takes what the rest leaves).
    pub size: u64,
    /// The ESP's files (systemd-boot, the loader configuration, the
    /// unified kernel images).
    pub esp: Vec<EspFile>,
    /// The root image (erofs + hash tree) for slot A.
    pub root: PathBuf,
    /// Seeds the disk's and the partitions' GUIDs.
    pub seed: [u8; 16],
}

/// Where each partition is, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub esp: (u64, u64),
    pub slot_a: (u64, u64),
    pub slot_b: (u64, u64),
    pub state: (u64, u64),
}

/// The smallest disk orc lays out.
pub const MIN_DISK: u64 = ALIGN + ESP_SIZE + 2 * SLOT_SIZE + MIN_STATE + GPT_TAIL;

/// The partitions of a disk of `size` bytes: (start, length) of each.
pub fn layout(size: u64) -> Result<Layout, DiskError> {
    let need = MIN_DISK;
    if size < need {
        return Err(DiskError::TooSmall { size, need });
    }
    let esp = (ALIGN, ESP_SIZE);
    let slot_a = (esp.0 + esp.1, SLOT_SIZE);
    let slot_b = (slot_a.0 + slot_a.1, SLOT_SIZE);
    let start = slot_b.0 + slot_b.1;
    let end = (size - GPT_TAIL) / ALIGN * ALIGN;
    Ok(Layout { esp, slot_a, slot_b, state: (start, end - start) })
}

/// The block device of the partition named `name` on a running system:
/// the entry of `sys_block` (`/sys/class/block`) whose `uevent` says
/// `PARTNAME=<name>`, under `dev` (`/dev`), once its node is there. Shared
/// by PID 1 (the root and STATE) and the agent (the ESP).
pub fn partition_named(sys_block: &Path, dev: &Path, name: &str) -> Option<PathBuf> {
    let mut names: Vec<String> =
        std::fs::read_dir(sys_block).ok()?.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names.into_iter().find_map(|n| {
        let uevent = std::fs::read_to_string(sys_block.join(&n).join("uevent")).ok()?;
        let named = uevent.lines().any(|l| l.strip_prefix("PARTNAME=") == Some(name));
        let node = dev.join(&n);
        (named && node.exists()).then_some(node)
    })
}

fn guid(seed: [u8; 16], n: u8) -> uuid::Uuid {
    let mut b = seed;
    b[15] ^= n;
    // A version 4, variant 1 GUID, as random ones are.
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    uuid::Uuid::from_bytes(b)
}

/// `len` bytes of `inner` from `at`, seen as a device of their own (what
/// the FAT writer sees of the ESP partition on a whole disk).
struct Region<T> {
    inner: T,
    at: u64,
    len: u64,
    pos: u64,
}

impl<T: Seek> Region<T> {
    fn place(&mut self, want: usize) -> std::io::Result<usize> {
        self.inner.seek(SeekFrom::Start(self.at + self.pos))?;
        Ok(want.min(self.len.saturating_sub(self.pos) as usize))
    }
}

impl<T: Read + Seek> Read for Region<T> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.place(buf.len())?;
        let got = self.inner.read(&mut buf[..n])?;
        self.pos += got as u64;
        Ok(got)
    }
}

impl<T: Write + Seek> Write for Region<T> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.place(buf.len())?;
        if n == 0 && !buf.is_empty() {
            return Err(std::io::Error::new(std::io::ErrorKind::WriteZero, "past the end of the partition"));
        }
        let put = self.inner.write(&buf[..n])?;
        self.pos += put as u64;
        Ok(put)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<T> Seek for Region<T> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = pos.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.pos)
    }
}

/// Formats `storage` (the whole ESP) as FAT and writes `files` into it.
fn fill_esp<T: Read + Write + Seek>(mut storage: T, files: &[EspFile]) -> std::io::Result<()> {
    let label = *b"ORC-ESP    ";
    fatfs::format_volume(&mut storage, fatfs::FormatVolumeOptions::new().volume_label(label).volume_id(0x6f72_6301))?;
    storage.seek(SeekFrom::Start(0))?;
    let fs = fatfs::FileSystem::new(storage, fatfs::FsOptions::new())?;
    for f in files {
        let parts: Vec<&str> = f.path.split('/').filter(|p| !p.is_empty()).collect();
        let Some((_, dirs)) = parts.split_last() else { continue };
        for i in 1..=dirs.len() {
            let d = dirs[..i].join("/");
            if fs.root_dir().open_dir(&d).is_err() {
                fs.root_dir().create_dir(&d)?;
            }
        }
        let mut data = std::fs::File::open(&f.source)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", f.source.display())))?;
        let mut out = fs.root_dir().create_file(&f.path)?;
        out.truncate()?;
        std::io::copy(&mut data, &mut out)?;
    }
    fs.unmount()
}

/// The FAT filesystem of an ESP, `size` bytes, holding `files`.
pub fn esp_image(size: u64, files: &[EspFile]) -> Result<Vec<u8>, std::io::Error> {
    let mut img = Cursor::new(vec![0u8; size as usize]);
    fill_esp(&mut img, files)?;
    Ok(img.into_inner())
}

/// Formats the ESP of layout `l` on `disk` and writes `files` into it.
pub fn write_esp(disk: &mut std::fs::File, l: &Layout, files: &[EspFile]) -> std::io::Result<()> {
    fill_esp(Region { inner: disk, at: l.esp.0, len: l.esp.1, pos: 0 }, files)
}

/// The protective MBR and the GPT of a disk of `size` bytes on `file`
/// (an image or a whole block device), the partitions named and placed as
/// [`layout`] says, GUIDs from `seed`; returns the file and the layout.
pub fn write_table(
    file: std::fs::File,
    size: u64,
    seed: [u8; 16],
    path: &Path,
) -> Result<(std::fs::File, Layout), DiskError> {
    let l = layout(size)?;
    let lb = gpt::disk::LogicalBlockSize::Lb512;
    let mbr = gpt::mbr::ProtectiveMBR::with_lb_size(u32::try_from(size / 512 - 1).unwrap_or(u32::MAX));
    let mut file = file;
    mbr.overwrite_lba0(&mut file).map_err(|e| DiskError::Io { path: path.into(), source: std::io::Error::other(e) })?;
    let gpt_err = |source| DiskError::Gpt { path: path.into(), source };
    let mut disk = gpt::GptConfig::new()
        .writable(true)
        .logical_block_size(lb)
        .create_from_device(file, Some(guid(seed, 0)))
        .map_err(gpt_err)?;
    let parts = [
        (ESP_NAME, l.esp, partition_types::EFI),
        (SLOT_A_NAME, l.slot_a, partition_types::LINUX_FS),
        (SLOT_B_NAME, l.slot_b, partition_types::LINUX_FS),
        (STATE_NAME, l.state, partition_types::LINUX_FS),
    ];
    let mut table = std::collections::BTreeMap::new();
    for (i, (name, (start, len), kind)) in parts.iter().enumerate() {
        let id = i as u32 + 1;
        table.insert(
            id,
            gpt::partition::Partition {
                part_type_guid: kind.clone(),
                part_guid: guid(seed, id as u8),
                first_lba: start / 512,
                last_lba: (start + len) / 512 - 1,
                flags: 0,
                name: (*name).to_string(),
            },
        );
    }
    disk.update_partitions(table).map_err(gpt_err)?;
    let file = disk.write().map_err(gpt_err)?;
    Ok((file, l))
}

/// Checks that a root image of `len` bytes fits a slot.
pub fn check_root(what: &str, len: u64) -> Result<(), DiskError> {
    if len > SLOT_SIZE {
        return Err(DiskError::TooBig { what: what.into(), size: len, room: SLOT_SIZE, constant: "SLOT_SIZE" });
    }
    Ok(())
}

/// Writes the disk image `spec` describes to `out` (sparse: only what
/// holds data is written).
pub fn write(spec: &DiskSpec, out: &Path) -> Result<Layout, DiskError> {
    fn io(path: &Path) -> impl Fn(std::io::Error) -> DiskError + '_ {
        move |source| DiskError::Io { path: path.into(), source }
    }
    layout(spec.size)?;
    check_root(&spec.root.display().to_string(), std::fs::metadata(&spec.root).map_err(io(&spec.root))?.len())?;
    let esp_total: u64 = spec.esp.iter().filter_map(|f| std::fs::metadata(&f.source).ok()).map(|m| m.len()).sum();
    // FAT's own tables and slack: keep a tenth free.
    if esp_total > ESP_SIZE / 10 * 9 {
        return Err(DiskError::TooBig {
            what: "the ESP's files".into(),
            size: esp_total,
            room: ESP_SIZE,
            constant: "ESP_SIZE",
        });
    }
    let _ = std::fs::remove_file(out);
    let file =
        std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(out).map_err(io(out))?;
    file.set_len(spec.size).map_err(io(out))?;
    let (mut file, l) = write_table(file, spec.size, spec.seed, out)?;
    // What FAT writes, and no more: the rest of the image stays a hole.
    write_esp(&mut file, &l, &spec.esp).map_err(|source| DiskError::Esp { path: out.into(), source })?;
    let mut root = std::fs::File::open(&spec.root).map_err(io(&spec.root))?;
    file.seek(SeekFrom::Start(l.slot_a.0)).map_err(io(out))?;
    std::io::copy(&mut root, &mut file).map_err(io(out))?;
    file.sync_all().map_err(io(out))?;
    Ok(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_aligned_and_state_takes_the_rest() {
        let l = layout(2 << 30).unwrap();
        assert_eq!(l.esp, (MIB, ESP_SIZE));
        assert_eq!(l.slot_a.0, MIB + ESP_SIZE);
        assert_eq!(l.slot_b.0, l.slot_a.0 + SLOT_SIZE);
        assert_eq!(l.state.0 + l.state.1, (2 << 30) - GPT_TAIL);
        for (s, n) in [l.esp, l.slot_a, l.slot_b, l.state] {
            assert!(s % ALIGN == 0 && n % ALIGN == 0, "{s} {n}");
        }
        assert!(matches!(layout(512 * MIB), Err(DiskError::TooSmall { .. })));
    }

    #[test]
    fn an_image_has_its_partitions_by_name_and_its_files_on_the_esp() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root.img");
        std::fs::write(&root, b"erofs and its hash tree").unwrap();
        let uki = d.path().join("uki");
        std::fs::write(&uki, vec![7u8; 100_000]).unwrap();
        let spec = DiskSpec {
            size: 1 << 30,
            esp: vec![EspFile { path: "EFI/Linux/orc-0.1.0.efi".into(), source: uki.clone() }],
            root: root.clone(),
            seed: [1; 16],
        };
        let out = d.path().join("disk.raw");
        let l = write(&spec, &out).unwrap();
        let disk = gpt::GptConfig::new().open(&out).unwrap();
        let names: Vec<&str> = disk.partitions().values().map(|p| p.name.as_str()).collect();
        assert_eq!(names, [ESP_NAME, SLOT_A_NAME, SLOT_B_NAME, STATE_NAME]);
        // The image is sparse and mostly STATE: read what was written.
        let range = |path: &Path, at: u64, len: u64| {
            let mut f = std::fs::File::open(path).unwrap();
            f.seek(SeekFrom::Start(at)).unwrap();
            let mut b = vec![0u8; len as usize];
            std::io::Read::read_exact(&mut f, &mut b).unwrap();
            b
        };
        let written = |path: &Path| [range(path, 0, l.slot_a.0 + 64), range(path, spec.size - GPT_TAIL, GPT_TAIL)];
        assert_eq!(&range(&out, l.slot_a.0, 23), b"erofs and its hash tree");
        let esp = range(&out, l.esp.0, l.esp.1);
        let fs = fatfs::FileSystem::new(Cursor::new(esp), fatfs::FsOptions::new()).unwrap();
        let mut f = fs.root_dir().open_file("EFI/Linux/orc-0.1.0.efi").unwrap();
        let mut back = Vec::new();
        std::io::Read::read_to_end(&mut f, &mut back).unwrap();
        assert_eq!(back, vec![7u8; 100_000]);
        // Reproducible: the same spec, the same bytes.
        let again = d.path().join("again.raw");
        write(&spec, &again).unwrap();
        assert!(written(&again) == written(&out), "two writes differ");
        // A root too big for its slot is refused, saying which constant.
        let big = d.path().join("big");
        std::fs::File::create(&big).unwrap().set_len(SLOT_SIZE + 1).unwrap();
        let e = write(&DiskSpec { root: big, ..spec }, &out).unwrap_err().to_string();
        assert!(e.contains("SLOT_SIZE"), "{e}");
    }
}
