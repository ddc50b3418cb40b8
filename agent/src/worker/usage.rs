//! What running tasks use, from their containers' cgroups (cgroup v2:
//! `cpu.stat`'s `usage_usec`, `memory.current`), for the heartbeat. CPU is
//! a rate: the usage between two samples over the time between them, so a
//! task's first sample only sets its baseline.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use orc_proto::dispatcher::TaskUsage;

/// Samples at most this often (the leader decides every 15 s).
pub const PERIOD: Duration = Duration::from_secs(5);

/// The last reading of each container's CPU counter.
#[derive(Debug)]
pub struct Sampler {
    root: PathBuf,
    last: HashMap<String, (u64, Instant)>,
    taken: Option<Instant>,
}

impl Default for Sampler {
    fn default() -> Self {
        Self::at(crate::shim::cgroup::ROOT)
    }
}

impl Sampler {
    /// Reads cgroups under `root` (the cgroup2 mount).
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into(), last: HashMap::new(), taken: None }
    }

    /// The usage of the tasks `tasks` names (task id, container id; asked
    /// only when due) at `now`, unless the last sample is younger than
    /// [`PERIOD`]. A container whose cgroup cannot be read is left out (it
    /// just stopped).
    pub fn sample(&mut self, tasks: impl FnOnce() -> Vec<(String, String)>, now: Instant) -> Vec<TaskUsage> {
        if self.taken.is_some_and(|t| now.saturating_duration_since(t) < PERIOD) {
            return Vec::new();
        }
        self.taken = Some(now);
        let tasks = tasks();
        let mut out = Vec::new();
        let mut seen = HashMap::with_capacity(tasks.len());
        for (task, container) in tasks {
            let dir = self.root.join(crate::shim_contract::cgroup_path(&container).trim_start_matches('/'));
            let Ok(stat) = std::fs::read_to_string(dir.join("cpu.stat")) else { continue };
            let usec = crate::shim::cgroup::keyed(&stat, "usage_usec");
            let memory = std::fs::read_to_string(dir.join("memory.current")).ok().and_then(|m| m.trim().parse().ok());
            if let Some((before, at)) = self.last.get(&container) {
                let wall = now.saturating_duration_since(*at).as_micros() as u64;
                if let Some(millis) = usec.saturating_sub(*before).saturating_mul(1000).checked_div(wall) {
                    out.push(TaskUsage {
                        id: task,
                        cpu_millis: u32::try_from(millis).unwrap_or(u32::MAX),
                        memory_bytes: memory,
                    });
                }
            }
            seen.insert(container, (usec, now));
        }
        self.last = seen;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_a_rate_between_samples_and_memory_is_optional() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("orc/c1");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cpu.stat"), "usage_usec 1000000\nuser_usec 900000\n").unwrap();
        let mut s = Sampler::at(root.path());
        let tasks = || vec![("t1".to_string(), "c1".to_string()), ("t2".to_string(), "gone".to_string())];
        let t0 = Instant::now();
        assert!(s.sample(tasks, t0).is_empty(), "the first sample is a baseline");
        // 2.5 s of CPU in 5 s: half a CPU.
        std::fs::write(dir.join("cpu.stat"), "usage_usec 3500000\n").unwrap();
        assert!(s.sample(tasks, t0 + Duration::from_secs(1)).is_empty(), "too soon");
        let u = s.sample(tasks, t0 + PERIOD);
        assert_eq!(u, vec![TaskUsage { id: "t1".into(), cpu_millis: 500, memory_bytes: None }]);
        std::fs::write(dir.join("memory.current"), "1048576\n").unwrap();
        let u = s.sample(tasks, t0 + PERIOD * 2);
        assert_eq!((u[0].cpu_millis, u[0].memory_bytes), (0, Some(1 << 20)));
    }
}
