//! What tasks use, as their nodes measure it (heartbeats), kept in the
//! leader's memory for the autoscaler — like Kubernetes' metrics-server,
//! not replicated: a new leader has measurements again within a sample
//! period or two, and until then decides nothing it cannot undo.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A measurement older than this is missing (three sample periods: a
/// node that stopped reporting a task is not believed for long).
pub const STALE: Duration = Duration::from_secs(15);

/// One task's use over the node's last sample period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Thousandths of a CPU.
    pub cpu_millis: u32,
    /// None where the node cannot tell.
    pub memory: Option<u64>,
}

/// The latest sample of each task, and when it came.
#[derive(Debug, Default)]
pub struct Measurements {
    by_task: Mutex<HashMap<String, (Sample, Instant)>>,
}

impl Measurements {
    pub fn record(&self, samples: impl IntoIterator<Item = (String, Sample)>) {
        let now = Instant::now();
        let mut m = crate::sync::lock(&self.by_task);
        for (task, s) in samples {
            m.insert(task, (s, now));
        }
    }

    /// Task `id`'s latest sample unless it is stale.
    pub fn get(&self, id: &str) -> Option<Sample> {
        let m = crate::sync::lock(&self.by_task);
        m.get(id).filter(|(_, at)| at.elapsed() < STALE).map(|(s, _)| *s)
    }

    /// Forgets stale samples (tasks that ended, nodes that left).
    pub fn prune(&self) {
        crate::sync::lock(&self.by_task).retain(|_, (_, at)| at.elapsed() < STALE);
    }
}
