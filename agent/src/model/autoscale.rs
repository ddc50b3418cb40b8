//! Autoscaling: what a service asks (bounds, target utilisation of its
//! reservation) and what the leader last measured and decided, in Raft.

use serde::{Deserialize, Serialize};

/// Kubernetes' scale-down stabilisation window: 5 minutes.
pub const SCALE_DOWN_WINDOW_MS: u64 = 300_000;

/// The replica count of a replicated service follows its tasks' usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Autoscale {
    pub min: u64,
    pub max: u64,
    /// Target CPU use as a percentage of `reserve_cpus` (0: not a target).
    #[serde(default)]
    pub cpu_percent: u32,
    /// Target memory use as a percentage of `reserve_memory` (0: not a target).
    #[serde(default)]
    pub memory_percent: u32,
    /// A scale-down takes the highest recommendation of this window.
    pub scale_down_window_ms: u64,
}

impl Default for Autoscale {
    fn default() -> Self {
        Self { min: 1, max: 1, cpu_percent: 0, memory_percent: 0, scale_down_window_ms: SCALE_DOWN_WINDOW_MS }
    }
}

/// The resources a target measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resource {
    Cpu,
    Memory,
}

impl Resource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Memory => "memory",
        }
    }
}

/// One change of the replica count the autoscaler made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaleDecision {
    pub at_ms: i64,
    pub from: u64,
    pub to: u64,
    /// Why, in words: the utilisation against the target, and any limit
    /// (bounds, rate, stabilisation) that held the count back.
    pub reason: String,
}

/// Decisions kept per service.
pub const DECISIONS_KEPT: usize = 10;

/// What the leader last measured of a service and made of it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoscaleStatus {
    /// When it last looked.
    pub checked_ms: i64,
    /// Mean CPU use of the measured tasks, in % of the reservation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_percent: Option<u32>,
    /// Mean memory use of the measured tasks, in % of the reservation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_percent: Option<u32>,
    /// Running tasks with a measurement, of all running.
    pub measured: u64,
    pub running: u64,
    /// The count its measurements ask for before limits.
    pub recommended: u64,
    /// Why the count is what it is, or why nothing was decided.
    pub message: String,
    /// The latest changes, oldest first (at most [`DECISIONS_KEPT`]).
    pub decisions: Vec<ScaleDecision>,
}
