//! What a node's heartbeats carry: only the task statuses that changed since
//! the leader last took them, and every status at the start of a session and
//! every [`FULL_EVERY`] heartbeats (a report the leader dropped — a full
//! queue, a lost leadership — is repeated within that time). The leader
//! treats a status it is not sent as unchanged, so a heartbeat costs the
//! leader what changed, not the node's task count.

use std::collections::HashMap;

use orc_proto::dispatcher::TaskStatus;

/// Every this many heartbeats, all statuses go again.
pub const FULL_EVERY: u32 = 10;

/// The statuses the leader of this session has taken.
#[derive(Debug, Default)]
pub struct Reported {
    taken: HashMap<String, TaskStatus>,
    beats: u32,
}

impl Reported {
    /// What the next heartbeat carries, out of the node's statuses `all`.
    pub fn next(&self, all: &[TaskStatus]) -> Vec<TaskStatus> {
        let full = self.beats.is_multiple_of(FULL_EVERY);
        all.iter().filter(|s| full || self.taken.get(&s.id) != Some(*s)).cloned().collect()
    }

    /// The leader took `sent` (the heartbeat was answered); `all` is what
    /// the node has now (statuses of tasks it dropped are forgotten).
    pub fn taken(&mut self, sent: Vec<TaskStatus>, all: &[TaskStatus]) {
        if self.beats.is_multiple_of(FULL_EVERY) {
            self.taken.clear();
        }
        self.beats = self.beats.wrapping_add(1);
        for s in sent {
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
        let all = vec![st("a", "running"), st("b", "starting")];
        // The first heartbeat of a session carries everything.
        let first = r.next(&all);
        assert_eq!(first.len(), 2);
        r.taken(first, &all);
        // Nothing changed: nothing travels.
        assert!(r.next(&all).is_empty());
        // b changed and c is new.
        let all = vec![st("a", "running"), st("b", "running"), st("c", "accepted")];
        let changed = r.next(&all);
        assert_eq!(changed.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["b", "c"]);
        // Not answered (the heartbeat failed): the same changes go again.
        assert_eq!(r.next(&all).len(), 2);
        r.taken(changed, &all);
        assert!(r.next(&all).is_empty());
        // Every FULL_EVERY heartbeats everything goes again.
        for _ in 2..FULL_EVERY {
            let n = r.next(&all);
            r.taken(n, &all);
        }
        assert_eq!(r.next(&all).len(), 3);
    }
}
