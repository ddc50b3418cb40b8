//! What STATE remembers of the node's OS across boots (STATE is shared by
//! both slots): the version each slot holds, the upgrade in progress, and
//! the versions that fell back. And what a boot means for a pending
//! upgrade: still waiting for its reboot, being tried, or fallen back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::UpgradeError;
use crate::model::os::{FailedUpgrade, ReadyBefore, MAX_FAILED};
use crate::node::boot_slots::Slot;

/// The record's file under the state directory.
pub const FILE: &str = "os.json";
/// The health window when the operator gives none.
pub const DEFAULT_WINDOW_SECS: u32 = 300;

/// Why a version fell back when the agent of the new version never said.
pub const NEVER_CAME_BACK: &str = "its boot tries ran out before its agent could judge it (the kernel panicked, \
     PID 1 exited, or the boot hung): the node booted the old version again";

/// An upgrade written and not yet blessed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub version: String,
    /// The version running when it was written (what it falls back to).
    pub from_version: String,
    pub slot: Slot,
    pub health_window_secs: u32,
    /// The boot it was written in: until the node reboots, it only waits.
    pub written_boot_id: String,
    /// Why the new version's agent gave up on it (written before it marks
    /// the entry bad and reboots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
    /// Services whose task here was ready when it was written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ready_before: Vec<ReadyBefore>,
    /// Its entry is blessed; its workloads are watched until the health
    /// window ends.
    #[serde(default)]
    pub blessed: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OsRecord {
    /// The version each slot holds, as last written.
    #[serde(default)]
    pub slots: BTreeMap<Slot, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Pending>,
    /// Oldest first, at most [`MAX_FAILED`].
    #[serde(default)]
    pub failed: Vec<FailedUpgrade>,
}

/// What this boot means for the pending upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assessment {
    /// Nothing pending.
    Nothing,
    /// Written; the node has not rebooted since.
    Waiting(Pending),
    /// This boot runs the new version: it has to prove itself.
    Trying(Pending),
    /// This boot runs another slot: the new version fell back (recorded).
    FellBack(FailedUpgrade),
}

fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE)
}

impl OsRecord {
    /// The record on STATE; none yet: empty.
    pub fn load(state_dir: &Path) -> Result<Self, UpgradeError> {
        let p = path(state_dir);
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).map_err(|source| UpgradeError::Record { path: p, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(UpgradeError::io("reading", p, e)),
        }
    }

    /// Written durably (a power loss leaves the old or the new record).
    pub fn save(&self, state_dir: &Path) -> Result<(), UpgradeError> {
        let data =
            serde_json::to_vec_pretty(self).map_err(|source| UpgradeError::Record { path: path(state_dir), source })?;
        crate::fsutil::write_atomic(&path(state_dir), &data)?;
        Ok(())
    }

    /// The version `booted` holds (`built`: the version of the running
    /// build, which is what a slot never written by an upgrade holds).
    pub fn version_of(&self, booted: Option<Slot>, built: &str) -> String {
        booted.and_then(|s| self.slots.get(&s).cloned()).unwrap_or_else(|| built.to_string())
    }

    /// Records `version` as failed for `reason`, keeping the newest
    /// [`MAX_FAILED`] (a version failing again moves to the end).
    pub fn fail(&mut self, version: &str, reason: String, at_ms: i64) -> FailedUpgrade {
        self.failed.retain(|f| f.version != version);
        let f = FailedUpgrade { version: version.to_string(), reason, at_ms };
        self.failed.push(f.clone());
        let over = self.failed.len().saturating_sub(MAX_FAILED);
        self.failed.drain(..over);
        f
    }

    /// What booting `booted` (in boot `boot_id`) means for the pending
    /// upgrade; a fall back is recorded (the pending upgrade is gone).
    pub fn assess(&mut self, booted: Slot, boot_id: &str, now_ms: i64) -> Assessment {
        let Some(p) = self.pending.clone() else { return Assessment::Nothing };
        if p.written_boot_id == boot_id {
            return Assessment::Waiting(p);
        }
        if booted == p.slot && p.verdict.is_none() {
            return Assessment::Trying(p);
        }
        self.pending = None;
        let reason = p.verdict.unwrap_or_else(|| NEVER_CAME_BACK.to_string());
        Assessment::FellBack(self.fail(&p.version, reason, now_ms))
    }
}

/// Seconds since this boot.
pub fn uptime_secs() -> f64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(slot: Slot) -> Pending {
        Pending {
            version: "0.3.0".into(),
            from_version: "0.2.0".into(),
            slot,
            health_window_secs: 60,
            written_boot_id: "boot-1".into(),
            verdict: None,
            ready_before: Vec::new(),
            blessed: false,
        }
    }

    #[test]
    fn a_pending_upgrade_waits_is_tried_and_falls_back() {
        let mut r = OsRecord { pending: Some(pending(Slot::B)), ..Default::default() };
        // Written in this boot: waits for the reboot (an agent restart is not one).
        assert!(matches!(r.assess(Slot::A, "boot-1", 0), Assessment::Waiting(_)));
        // Booted from slot B: tried.
        assert!(matches!(r.assess(Slot::B, "boot-2", 0), Assessment::Trying(_)));
        assert!(r.pending.is_some(), "still pending while tried");
        // Back on slot A after that: it fell back, and that is recorded once.
        let Assessment::FellBack(f) = r.assess(Slot::A, "boot-3", 7) else { panic!("{r:?}") };
        assert_eq!((f.version.as_str(), f.reason.as_str(), f.at_ms), ("0.3.0", NEVER_CAME_BACK, 7));
        assert_eq!(r.failed, vec![f]);
        assert_eq!(r.assess(Slot::A, "boot-4", 8), Assessment::Nothing);
    }

    #[test]
    fn the_agents_verdict_is_the_reason_and_a_judged_slot_is_not_tried_again() {
        let mut p = pending(Slot::B);
        p.verdict = Some("not back in the cluster within 60 s".into());
        let mut r = OsRecord { pending: Some(p), ..Default::default() };
        // Even if the firmware booted slot B again, the agent's verdict stands.
        let Assessment::FellBack(f) = r.assess(Slot::B, "boot-2", 1) else { panic!() };
        assert_eq!(f.reason, "not back in the cluster within 60 s");
    }

    #[test]
    fn failures_are_bounded_and_a_repeat_moves_to_the_end() {
        let mut r = OsRecord::default();
        for i in 0..MAX_FAILED + 3 {
            r.fail(&format!("0.{i}.0"), "x".into(), i as i64);
        }
        assert_eq!(r.failed.len(), MAX_FAILED);
        assert_eq!(r.failed[0].version, "0.3.0");
        r.fail("0.3.0", "again".into(), 99);
        assert_eq!(r.failed.last().unwrap().reason, "again");
        assert_eq!(r.failed.iter().filter(|f| f.version == "0.3.0").count(), 1);
    }

    #[test]
    fn the_version_of_a_slot_never_written_is_the_builds() {
        let mut r = OsRecord::default();
        assert_eq!(r.version_of(Some(Slot::A), "0.1.0"), "0.1.0");
        assert_eq!(r.version_of(None, "0.1.0"), "0.1.0");
        r.slots.insert(Slot::B, "0.2.0".into());
        assert_eq!(r.version_of(Some(Slot::B), "0.1.0"), "0.2.0");
        let d = tempfile::tempdir().unwrap();
        r.save(d.path()).unwrap();
        assert_eq!(OsRecord::load(d.path()).unwrap(), r);
        std::fs::write(d.path().join(FILE), b"{").unwrap();
        assert!(OsRecord::load(d.path()).unwrap_err().to_string().contains("move it away"));
    }
}
