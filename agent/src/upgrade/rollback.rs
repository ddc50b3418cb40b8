//! `orcctl rollback`: the other slot's version boots next. The booted
//! entry is marked bad (so systemd-boot picks the other); a version still
//! being proven is recorded as failed, "rolled back by hand", when the node
//! comes up on the old slot.

use orc_image::boot_entry::ENTRY_DIR;

use super::esp;
use super::record::OsRecord;
use super::UpgradeError;
use crate::node::boot_slots::{self, Slot};
use crate::state::NodeState;

pub const BY_HAND: &str = "rolled back by hand (orcctl rollback)";

/// What boots next.
#[derive(Debug, Clone)]
pub struct RolledBack {
    pub version: String,
    pub slot: Slot,
}

/// Marks the booted version's entry bad so the other slot's boots next. Blocks.
pub fn rollback(state: &NodeState) -> Result<RolledBack, UpgradeError> {
    let booted = boot_slots::booted().ok_or(UpgradeError::NotFromDisk)?;
    let other = booted.other();
    let dir = state.state_dir().to_path_buf();
    let mut rec = OsRecord::load(&dir)?;
    let to = esp::writable(&state.config.run_dir, |root| {
        let entries = boot_slots::entries(root)?;
        let to = entries
            .iter()
            .find(|e| e.slot == Some(other) && !e.entry.bad())
            .ok_or(UpgradeError::NothingToRollBackTo)?
            .entry
            .clone();
        // The other slot holds a version written this boot, not an older one.
        if let Some(p) =
            rec.pending.as_ref().filter(|p| p.written_boot_id == crate::node::version::boot_id() && p.slot == other)
        {
            return Err(UpgradeError::WrittenNotBooted { version: p.version.clone() });
        }
        let current = entries.iter().find(|e| e.slot == Some(booted)).ok_or(UpgradeError::NoEntry(booted.as_str()))?;
        esp::rename(root, &current.entry, &esp::bad(&current.entry))?;
        tracing::info!(from = %current.entry, to = %format!("{ENTRY_DIR}/{}", to.file_name()), "rolled back by hand: the other slot boots next");
        Ok(to)
    })?;
    if let Some(p) = rec.pending.as_mut().filter(|p| p.slot == booted) {
        p.verdict = Some(BY_HAND.into());
        rec.save(&dir)?;
    }
    Ok(RolledBack { version: to.version, slot: other })
}
