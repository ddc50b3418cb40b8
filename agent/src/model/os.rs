//! The node's operating system as the cluster sees it: the version it runs
//! and the upgrades that failed on it (kept so that no automation applies
//! a version again that already fell back somewhere, unless forced).

use serde::{Deserialize, Serialize};

/// How many failed versions a node keeps and reports (the oldest go).
pub const MAX_FAILED: usize = 16;

/// A version that was tried on a node and fell back to the one before.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedUpgrade {
    pub version: String,
    /// What went wrong, as the node could tell.
    pub reason: String,
    /// When the node found it had fallen back (Unix ms).
    pub at_ms: i64,
}

/// Where an upgrade of a node stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpgradeStage {
    /// Written to the inactive slot: boots at the next reboot.
    Written,
    /// Booted, proving itself (back in the cluster, tasks running).
    Trying,
    /// Blessed; until the health window ends, a workload failing readiness
    /// on this node only still rolls it back.
    Watching,
    /// Not healthy in time: the entry is marked bad and the node reboots
    /// into the old version.
    GivingUp,
}

impl UpgradeStage {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Written => "written",
            Self::Trying => "trying",
            Self::Watching => "watching",
            Self::GivingUp => "giving-up",
        }
    }
}

/// An upgrade in progress, as `orcctl version` and `orcctl upgrade` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeProgress {
    pub version: String,
    /// `A` or `B`.
    pub slot: String,
    pub stage: UpgradeStage,
    /// What it waits for, or why it gives up.
    pub message: String,
    pub health_window_secs: u32,
}

/// A service whose task on the node was ready when an upgrade was written:
/// after the upgrade, its task failing readiness on this node only (the
/// same spec, ready on other nodes) rolls the upgrade back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadyBefore {
    pub service_id: String,
    pub service: String,
    pub spec_version: u64,
}

/// The node's question to the leader in its heartbeats (services whose
/// tasks fail readiness here) and the leader's last answer.
#[derive(Debug, Clone, Default)]
pub struct ReadyElsewhere {
    pub asked: Vec<String>,
    /// Service id → its tasks ready on other nodes.
    pub answer: std::collections::HashMap<String, u32>,
    /// When the answer came.
    pub at: Option<std::time::Instant>,
}

/// What the node says of its OS (to the managers at each session, to
/// `orcctl version`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OsReport {
    /// The version this boot runs.
    pub version: String,
    pub failed: Vec<FailedUpgrade>,
    pub upgrade: Option<UpgradeProgress>,
}
