//! The parts of a service spec and status that govern a task's life after
//! it starts: health probes (startup, liveness, readiness, as Kubernetes
//! has them), how an update replaces tasks and how a failed one is rolled
//! back (Swarm's update and rollback configs), and how a task is stopped.

use serde::{Deserialize, Serialize};

/// What a probe does to learn whether the task is well.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeAction {
    /// A command run in the container: exit 0 passes.
    Exec { command: Vec<String> },
    /// An HTTP GET of `path` on the task's `port`: 200-399 passes.
    Http { port: u16, path: String },
    /// A TCP connect to the task's `port`.
    Tcp { port: u16 },
}

/// Kubernetes' defaults: every 10 s, 1 s to answer, 3 failures in a row
/// fail, 1 success passes, no start period.
pub const PROBE_INTERVAL_MS: u64 = 10_000;
pub const PROBE_TIMEOUT_MS: u64 = 1_000;
pub const PROBE_FAILURES: u32 = 3;
pub const PROBE_SUCCESSES: u32 = 1;

/// One probe and its timing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    pub action: ProbeAction,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    /// Failures in a row that make the probe fail.
    pub failure_threshold: u32,
    /// Successes in a row that make it pass again (1 for startup and liveness).
    pub success_threshold: u32,
    /// Failures in this time after the task started do not count (Docker's
    /// start period; Kubernetes' initial delay does the same job).
    pub start_period_ms: u64,
}

impl Probe {
    /// `action` with Kubernetes' default timing.
    pub fn new(action: ProbeAction) -> Self {
        Self {
            action,
            interval_ms: PROBE_INTERVAL_MS,
            timeout_ms: PROBE_TIMEOUT_MS,
            failure_threshold: PROBE_FAILURES,
            success_threshold: PROBE_SUCCESSES,
            start_period_ms: 0,
        }
    }
}

/// The three roles a probe can play.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeRole {
    /// Holds the other two off until it passes; failing it restarts the task.
    Startup,
    /// Failing it restarts the task.
    Liveness,
    /// Failing it marks the task not ready; it keeps running.
    Readiness,
}

impl ProbeRole {
    pub const ALL: [ProbeRole; 3] = [Self::Startup, Self::Liveness, Self::Readiness];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Startup => "startup",
            Self::Liveness => "liveness",
            Self::Readiness => "readiness",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// A service's probes. With none declared, the image's `HEALTHCHECK`
/// serves as liveness and readiness unless `ignore_image` is set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthChecks {
    #[serde(default)]
    pub startup: Option<Probe>,
    #[serde(default)]
    pub liveness: Option<Probe>,
    #[serde(default)]
    pub readiness: Option<Probe>,
    #[serde(default)]
    pub ignore_image: bool,
}

impl HealthChecks {
    pub fn get(&self, role: ProbeRole) -> Option<&Probe> {
        match role {
            ProbeRole::Startup => self.startup.as_ref(),
            ProbeRole::Liveness => self.liveness.as_ref(),
            ProbeRole::Readiness => self.readiness.as_ref(),
        }
    }

    pub fn slot(&mut self, role: ProbeRole) -> &mut Option<Probe> {
        match role {
            ProbeRole::Startup => &mut self.startup,
            ProbeRole::Liveness => &mut self.liveness,
            ProbeRole::Readiness => &mut self.readiness,
        }
    }

    pub fn declared(&self) -> bool {
        self.startup.is_some() || self.liveness.is_some() || self.readiness.is_some()
    }
}

/// A task's health as its node last reported it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Health {
    /// Not running, or nothing reported yet.
    #[default]
    Unknown,
    /// Running, its startup probe (or first readiness result) not in yet.
    Starting,
    /// Running and ready: its readiness probe passes, or it has none.
    Ready,
    /// Running but its readiness probe fails.
    NotReady,
}

impl Health {
    pub const ALL: [Health; 4] = [Self::Unknown, Self::Starting, Self::Ready, Self::NotReady];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "",
            Self::Starting => "starting",
            Self::Ready => "ready",
            Self::NotReady => "not-ready",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|h| h.as_str() == s)
    }
}

/// Which of a slot's tasks runs while it is replaced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateOrder {
    /// The old task stops before the new one starts.
    #[default]
    StopFirst,
    /// The new task starts; the old one stops once the new one is ready.
    StartFirst,
}

impl UpdateOrder {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StopFirst => "stop-first",
            Self::StartFirst => "start-first",
        }
    }
}

/// What an update (or rollback) does when too many new tasks fail.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureAction {
    #[default]
    Pause,
    Continue,
    /// Updates only: go back to the previous spec.
    Rollback,
}

impl FailureAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pause => "pause",
            Self::Continue => "continue",
            Self::Rollback => "rollback",
        }
    }
}

/// Swarm's update (and rollback) config, with its defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdatePolicy {
    /// Tasks replaced at once; 0: all.
    pub parallelism: u64,
    /// Wait after a batch is ready before the next one.
    pub delay_ms: u64,
    pub order: UpdateOrder,
    /// How long a new task is watched after it is ready: a failure within
    /// it counts against the update.
    pub monitor_ms: u64,
    /// Failed new tasks tolerated, as a share of the tasks (0 to 1).
    pub max_failure_ratio: f64,
    pub failure_action: FailureAction,
}

/// Swarm's monitor window.
pub const MONITOR_MS: u64 = 5_000;

impl Default for UpdatePolicy {
    fn default() -> Self {
        Self {
            parallelism: 1,
            delay_ms: 0,
            order: UpdateOrder::StopFirst,
            monitor_ms: MONITOR_MS,
            max_failure_ratio: 0.0,
            failure_action: FailureAction::Pause,
        }
    }
}

/// Where an update of a service stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateState {
    Updating,
    Paused,
    Completed,
    RollingBack,
    RollbackPaused,
    RolledBack,
}

impl UpdateState {
    pub const ALL: [UpdateState; 6] =
        [Self::Updating, Self::Paused, Self::Completed, Self::RollingBack, Self::RollbackPaused, Self::RolledBack];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Updating => "updating",
            Self::Paused => "paused",
            Self::Completed => "completed",
            Self::RollingBack => "rolling-back",
            Self::RollbackPaused => "rollback-paused",
            Self::RolledBack => "rolled-back",
        }
    }

    /// Replacing tasks now.
    pub fn moving(self) -> bool {
        matches!(self, Self::Updating | Self::RollingBack)
    }

    /// Started and not over (moving or paused).
    pub fn open(self) -> bool {
        !matches!(self, Self::Completed | Self::RolledBack)
    }

    pub fn rollback(self) -> bool {
        matches!(self, Self::RollingBack | Self::RollbackPaused | Self::RolledBack)
    }
}

/// The latest update of a service: where it stands, under which policy,
/// and why it stopped or turned back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateStatus {
    pub state: UpdateState,
    /// The policy it runs under (the update config, or the rollback config
    /// when rolling back).
    pub policy: UpdatePolicy,
    pub started_ms: i64,
    /// 0 until it is completed or rolled back.
    pub completed_ms: i64,
    pub message: String,
}

impl UpdateStatus {
    pub fn start(state: UpdateState, policy: UpdatePolicy, now: i64, message: impl Into<String>) -> Self {
        Self { state, policy, started_ms: now, completed_ms: 0, message: message.into() }
    }
}

/// Signals a service may stop its tasks with.
pub const STOP_SIGNALS: [&str; 8] =
    ["SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGWINCH", "SIGKILL"];

/// Docker's and Swarm's stop grace period.
pub const STOP_GRACE_MS: u64 = 10_000;

/// How long a task on the overlay is out of its service's rotation before
/// it is signalled: every node has heard of it well within (its
/// connections drain, new ones go to the others).
pub const STOP_DRAIN_MS: u64 = 2_000;

fn stop_drain_ms() -> u64 {
    STOP_DRAIN_MS
}

/// How a task is stopped: out of its service's rotation for the drain
/// period, its stop signal, then SIGKILL after the grace period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopPolicy {
    pub signal: String,
    pub grace_ms: u64,
    #[serde(default = "stop_drain_ms")]
    pub drain_ms: u64,
}

impl Default for StopPolicy {
    fn default() -> Self {
        Self { signal: "SIGTERM".into(), grace_ms: STOP_GRACE_MS, drain_ms: STOP_DRAIN_MS }
    }
}

impl StopPolicy {
    /// The signal's number (SIGTERM for anything not in [`STOP_SIGNALS`]).
    pub fn signal_number(&self) -> i32 {
        signal_number(&self.signal).unwrap_or(15)
    }
}

/// The number of a signal in [`STOP_SIGNALS`] (`SIGTERM`, `TERM`, or `15`).
pub fn signal_number(name: &str) -> Option<i32> {
    let n = name.trim().to_ascii_uppercase();
    let n = if n.starts_with("SIG") { n } else { format!("SIG{n}") };
    let by_name = match n.as_str() {
        "SIGTERM" => Some(15),
        "SIGINT" => Some(2),
        "SIGQUIT" => Some(3),
        "SIGHUP" => Some(1),
        "SIGUSR1" => Some(10),
        "SIGUSR2" => Some(12),
        "SIGWINCH" => Some(28),
        "SIGKILL" => Some(9),
        _ => None,
    };
    by_name.or_else(|| name.trim().parse::<i32>().ok().filter(|s| (1..=31).contains(s)))
}

/// What a cron job does when its schedule comes while a run is going.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Concurrency {
    /// Start the new run beside it.
    #[default]
    Allow,
    /// Skip the new run.
    Forbid,
    /// Stop it and start the new run.
    Replace,
}

impl Concurrency {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Forbid => "forbid",
            Self::Replace => "replace",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Allow, Self::Forbid, Self::Replace].into_iter().find(|c| c.as_str() == s)
    }
}

/// Kubernetes' history limits.
pub const SUCCESS_HISTORY: u32 = 3;
pub const FAILED_HISTORY: u32 = 1;

/// A job run on a schedule (Kubernetes' CronJob fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CronSchedule {
    /// Five fields (minute hour day-of-month month day-of-week), or six
    /// with seconds first.
    pub schedule: String,
    /// An IANA time zone (`Europe/Berlin`); empty: UTC.
    pub time_zone: String,
    pub concurrency: Concurrency,
    /// A run more than this late is skipped (0: never too late).
    pub starting_deadline_ms: u64,
    /// Finished runs whose tasks are kept, successful and failed.
    pub success_history: u32,
    pub failed_history: u32,
    /// No new runs while set.
    pub suspend: bool,
}

/// Where a cron job's schedule stands (the leader's record, in Raft).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CronStatus {
    /// The scheduled time last acted on (run, skipped or missed).
    pub last_schedule_ms: i64,
    /// The latest run (0: none yet); tasks carry theirs.
    pub run: u64,
    /// What happened at `last_schedule_ms`.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for h in Health::ALL {
            assert_eq!(Health::parse(h.as_str()), Some(h));
        }
        for s in UpdateState::ALL {
            let json = serde_json::to_value(s).unwrap();
            assert_eq!(json.as_str(), Some(s.as_str()));
        }
        for r in ProbeRole::ALL {
            assert_eq!(ProbeRole::parse(r.as_str()), Some(r));
        }
        assert_eq!(serde_json::to_value(UpdateOrder::StartFirst).unwrap(), "start-first");
    }

    #[test]
    fn signals_by_name_or_number() {
        assert_eq!(signal_number("SIGTERM"), Some(15));
        assert_eq!(signal_number("quit"), Some(3));
        assert_eq!(signal_number("9"), Some(9));
        assert_eq!(signal_number("SIGFOO"), None);
        assert_eq!(signal_number("99"), None);
        for s in STOP_SIGNALS {
            assert!(signal_number(s).is_some(), "{s}");
        }
    }
}
