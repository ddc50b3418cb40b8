//! Writing the ESP: it stays mounted read-only (as `orcctl version` reads
//! it) and is remounted read-write only while an upgrade, a blessing or a
//! rollback changes it, one at a time; each change ends with the
//! filesystem synced, since the firmware reads it next.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::mount::MsFlags;
use orc_image::boot_entry::{BootEntry, ENTRY_DIR};

use super::UpgradeError;
use crate::node::boot_slots::{self, Slot, SlotEntry};

/// One writer at a time.
static WRITING: Mutex<()> = Mutex::new(());

const FLAGS: MsFlags = MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV).union(MsFlags::MS_NOEXEC);

fn remount(mount: &Path, writable: bool) -> Result<(), UpgradeError> {
    let flags = MsFlags::MS_REMOUNT | FLAGS | if writable { MsFlags::empty() } else { MsFlags::MS_RDONLY };
    nix::mount::mount(None::<&str>, mount, None::<&str>, flags, None::<&str>).map_err(|source| UpgradeError::Mount {
        what: if writable { "remounting read-write" } else { "remounting read-only" },
        path: mount.to_path_buf(),
        source,
    })
}

/// Runs `f` with the ESP (its root given) writable, then syncs it and
/// makes it read-only again (also when `f` failed).
pub fn writable<T>(run_dir: &Path, f: impl FnOnce(&Path) -> Result<T, UpgradeError>) -> Result<T, UpgradeError> {
    let _one = crate::sync::lock(&WRITING);
    let mount = boot_slots::esp(run_dir)?;
    remount(&mount, true)?;
    let result = f(&mount);
    if let Ok(dir) = std::fs::File::open(&mount) {
        if let Err(e) = nix::unistd::syncfs(&dir) {
            tracing::warn!(error = %e, "syncing the ESP");
        }
    }
    let back = remount(&mount, false);
    let t = result?;
    back?;
    Ok(t)
}

/// The path of `e` on the ESP mounted at `esp`.
pub fn entry_path(esp: &Path, e: &BootEntry) -> PathBuf {
    esp.join(ENTRY_DIR).join(e.file_name())
}

/// Renames entry `from` to `to` (a blessing, a bad mark).
pub fn rename(esp: &Path, from: &BootEntry, to: &BootEntry) -> Result<(), UpgradeError> {
    if from == to {
        return Ok(());
    }
    let (a, b) = (entry_path(esp, from), entry_path(esp, to));
    std::fs::rename(&a, &b).map_err(|e| UpgradeError::io("renaming", a, e))?;
    tracing::info!(from = %from, to = %to, "boot entry renamed");
    Ok(())
}

/// Removes every entry that boots `slot` (before the slot is written: none
/// may boot a half-written root) and returns them.
pub fn remove_entries_of(esp: &Path, slot: Slot) -> Result<Vec<SlotEntry>, UpgradeError> {
    let gone: Vec<SlotEntry> = boot_slots::entries(esp)?.into_iter().filter(|e| e.slot == Some(slot)).collect();
    for e in &gone {
        let p = entry_path(esp, &e.entry);
        std::fs::remove_file(&p).map_err(|err| UpgradeError::io("removing", p, err))?;
        tracing::info!(entry = %e.entry, slot = slot.as_str(), "boot entry removed before its slot is written");
    }
    Ok(gone)
}

/// The entry on the ESP that boots `slot`.
pub fn entry_of(esp: &Path, slot: Slot) -> Result<Option<BootEntry>, UpgradeError> {
    Ok(boot_slots::entries(esp)?.into_iter().find(|e| e.slot == Some(slot)).map(|e| e.entry))
}

/// `e` marked bad: no tries left, so systemd-boot sorts it after every
/// good entry.
pub fn bad(e: &BootEntry) -> BootEntry {
    let done = e.counter.map(|c| c.done).unwrap_or_default();
    BootEntry { counter: Some(orc_image::boot_entry::Counter { left: 0, done }), ..e.clone() }
}
