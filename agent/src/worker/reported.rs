//! What a node's heartbeats carry: only the task statuses that changed since
//! the leader last took them, and every status at the start of a session and
//! once every [`FULL_AFTER`] (a report the leader dropped — a full queue, a
//! lost leadership — is repeated within that time). The leader treats a
//! status it is not sent as unchanged, so a heartbeat costs the leader what
//! changed, not the node's task count. The full reports go by time, not by
//! count: a node whose tasks change often beats more often, and its full
//! reports must not come with them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use orc_proto::dispatcher::TaskStatus;

/// At least this often, all statuses go again.
pub const FULL_AFTER: Duration = Duration::from_secs(10);

/// The statuses the leader of this session has taken.
#[derive(Debug, Default)]
pub struct Reported {
    taken: HashMap<String, TaskStatus>,
    /// When the last full report was taken (None: not in this session yet).
    full_at: Option<Instant>,
}

/// What one heartbeat carries.
#[derive(Debug)]
pub struct Beat {
    pub statuses: Vec<TaskStatus>,
    full: bool,
}

impl Reported {
    /// What the heartbeat at `now` carries, out of the node's statuses `all`.
    pub fn next(&self, all: &[TaskStatus], now: Instant) -> Beat {
        let full = self.full_at.is_none_or(|t| now.saturating_duration_since(t) >= FULL_AFTER);
        let statuses = all.iter().filter(|s| full || self.taken.get(&s.id) != Some(*s)).cloned().collect();
        Beat { statuses, full }
    }

    /// The leader took `beat` (the heartbeat was answered at `now`); `all`
    /// is what the node has now (statuses of tasks it dropped are forgotten).
    pub fn taken(&mut self, beat: Beat, all: &[TaskStatus], now: Instant) {
        if beat.full {
            self.taken.clear();
            self.full_at = Some(now);
        }
        for s in beat.statuses {
            self.taken.insert(s.id.clone(), s);
        }
        if self.taken.len() > all.len() {
            let live: std::collections::HashSet<&str> = all.iter().map(|s| s.id.as_str()).collect();
            self.taken.retain(|id, _| live.contains(id.as_str()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(id: &str, state: &str) -> TaskStatus {
        TaskStatus { id: id.into(), state: state.into(), ..Default::default() }
    }

    #[test]
    fn only_changes_travel_between_full_reports() {
        let mut r = Reported::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_millis(s);
        let all = vec![st("a", "running"), st("b", "starting")];
        // The first heartbeat of a session carries everything.
        let first = r.next(&all, at(0));
        assert_eq!(first.statuses.len(), 2);
        r.taken(first, &all, at(0));
        // Nothing changed: nothing travels.
        assert!(r.next(&all, at(100)).statuses.is_empty());
        // b changed and c is new.
        let all = vec![st("a", "running"), st("b", "running"), st("c", "accepted")];
        let changed = r.next(&all, at(200));
        assert_eq!(changed.statuses.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["b", "c"]);
        // Not answered (the heartbeat failed): the same changes go again.
        assert_eq!(r.next(&all, at(300)).statuses.len(), 2);
        r.taken(changed, &all, at(300));
        // However many heartbeats come, only changes go until FULL_AFTER has passed.
        for ms in (400..10_000).step_by(50) {
            let n = r.next(&all, at(ms));
            assert!(n.statuses.is_empty(), "at {ms} ms");
            r.taken(n, &all, at(ms));
        }
        let full = r.next(&all, at(10_000));
        assert_eq!(full.statuses.len(), 3);
        r.taken(full, &all, at(10_000));
        assert!(r.next(&all, at(10_050)).statuses.is_empty());
    }
}
