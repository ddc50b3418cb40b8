//! The node's OS slots as `orcctl version` shows them: which slot this
//! boot came from (the root PID 1 was told to mount), and the boot entries
//! on the ESP (a unified kernel image per version, its boot counting in
//! its name, the slot its command line names). A node booted without the
//! disk image (a kernel handed to QEMU, PXE) has no slots: nothing to show.

use std::path::{Path, PathBuf};

use orc_image::boot_entry::{BootEntry, ENTRY_DIR};
use orc_image::disk::{ESP_NAME, SLOT_A_NAME, SLOT_B_NAME};

/// Where the agent mounts the ESP (read-only) to read it.
const ESP_MOUNT: &str = "esp";

/// One of the two root slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum Slot {
    A,
    B,
}

impl Slot {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::A => "A",
            Self::B => "B",
        }
    }

    /// The slot an upgrade writes while this one runs.
    pub fn other(self) -> Self {
        match self {
            Self::A => Self::B,
            Self::B => Self::A,
        }
    }

    /// Its partition's GPT name.
    pub fn partition_name(self) -> &'static str {
        match self {
            Self::A => SLOT_A_NAME,
            Self::B => SLOT_B_NAME,
        }
    }

    /// The slot a root device spec names (`PARTLABEL=orc-root-a`).
    pub fn of_root(spec: &str) -> Option<Self> {
        match spec.strip_prefix("PARTLABEL=")? {
            SLOT_A_NAME => Some(Self::A),
            SLOT_B_NAME => Some(Self::B),
            _ => None,
        }
    }

    /// The slot a kernel command line boots.
    pub fn of_cmdline(cmdline: &str) -> Option<Self> {
        cmdline.split_whitespace().find_map(|w| w.strip_prefix("orc.root=")).and_then(Self::of_root)
    }
}

/// An entry on the ESP and the slot it boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotEntry {
    pub entry: BootEntry,
    pub slot: Option<Slot>,
}

#[derive(Debug, thiserror::Error)]
pub enum BootSlotsError {
    #[error("no partition named {ESP_NAME}: {0}")]
    NoEsp(String),
    #[error("mounting the ESP {device} at {mount}: {source}")]
    Mount { device: PathBuf, mount: PathBuf, source: nix::Error },
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
}

/// The entries under `esp`'s entry directory, by file name; files that
/// are not ours are skipped (logged).
pub fn entries(esp: &Path) -> Result<Vec<SlotEntry>, BootSlotsError> {
    let dir = esp.join(ENTRY_DIR);
    let read = |source| BootSlotsError::Read { path: dir.clone(), source };
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map_err(read)?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut out = Vec::new();
    for name in names {
        let entry = match BootEntry::parse(&name) {
            Ok(e) => e,
            Err(e) => {
                tracing::debug!(error = %e, "not one of ours on the ESP");
                continue;
            }
        };
        let slot = match orc_image::uki::cmdline_of(&dir.join(&name)) {
            Ok(c) => c.as_deref().and_then(Slot::of_cmdline),
            Err(e) => {
                tracing::warn!(error = %e, "reading a boot entry's command line");
                None
            }
        };
        out.push(SlotEntry { entry, slot });
    }
    Ok(out)
}

/// Held while the ESP is looked at and mounted: two callers at once (a
/// `version` while an upgrade is blessed) would both mount it, and the
/// second would fail with EBUSY.
static MOUNTING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The ESP, mounted read-only under `run_dir` (once).
pub fn esp(run_dir: &Path) -> Result<PathBuf, BootSlotsError> {
    let mount = run_dir.join(ESP_MOUNT);
    let _one = MOUNTING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if crate::fsutil::is_mountpoint(&mount) {
        return Ok(mount);
    }
    let label = format!("PARTLABEL={ESP_NAME}");
    let device = orc_image::disk::partition_named(Path::new("/sys/class/block"), Path::new("/dev"), ESP_NAME)
        .ok_or_else(|| BootSlotsError::NoEsp(format!("this node did not boot from the disk image ({label})")))?;
    std::fs::create_dir_all(&mount).map_err(|source| BootSlotsError::Read { path: mount.clone(), source })?;
    use nix::mount::MsFlags;
    let flags = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    nix::mount::mount(Some(&device), &mount, Some("vfat"), flags, None::<&str>)
        .map_err(|source| BootSlotsError::Mount { device, mount: mount.clone(), source })?;
    Ok(mount)
}

/// The slot this boot came from; None when the node did not boot from
/// the disk image.
pub fn booted() -> Option<Slot> {
    Slot::of_cmdline(&std::fs::read_to_string("/proc/cmdline").ok()?)
}

/// The entries on this node's ESP (mounted under `run_dir` on first
/// use). Blocks (a mount, file reads).
pub fn read(run_dir: &Path) -> Result<Vec<SlotEntry>, BootSlotsError> {
    esp(run_dir).and_then(|e| entries(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_booted_slot_is_the_root_the_command_line_names() {
        assert_eq!(Slot::of_cmdline("console=ttyS0 orc.root=PARTLABEL=orc-root-b orc.verity=x"), Some(Slot::B));
        assert_eq!(Slot::of_cmdline("orc.root=PARTLABEL=orc-root-a"), Some(Slot::A));
        assert_eq!(Slot::of_cmdline("orc.root=/dev/vda"), None, "direct kernel boot: no slots");
        assert_eq!(Slot::of_cmdline("orc.root=PARTLABEL=other"), None);
        assert_eq!(Slot::of_cmdline(""), None);
    }

    #[test]
    fn entries_are_read_from_the_esp_with_the_slot_each_boots() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join(ENTRY_DIR);
        std::fs::create_dir_all(&dir).unwrap();
        // Not a PE image: no command line, so no slot known.
        std::fs::write(dir.join("orc-0.1.0.efi"), b"x").unwrap();
        std::fs::write(dir.join("orc-0.2.0+2-1.efi"), b"x").unwrap();
        std::fs::write(dir.join("debian.efi"), b"x").unwrap();
        let e = entries(d.path()).unwrap();
        let names: Vec<String> = e.iter().map(|x| x.entry.file_name()).collect();
        assert_eq!(names, ["orc-0.1.0.efi", "orc-0.2.0+2-1.efi"]);
        assert!(e.iter().all(|x| x.slot.is_none()));
        assert!(entries(&d.path().join("nope")).is_err());
    }
}
