//! The change feed: which objects changed at which store version, so the
//! leader loop, node sessions and watchers do work proportional to what
//! changed instead of reading everything.

use std::sync::Arc;

use crate::model::db::Key;

/// One object changed (put, patched or deleted) at `version`.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub version: u64,
    pub key: Key,
    /// For a task: its service.
    pub service: String,
    /// For a task: the nodes it was on before and after (empty: none), so
    /// both nodes' sessions hear of a move or a removal.
    pub nodes: [String; 2],
}

/// The latest changes, oldest first; cheap to clone (readers take it with
/// the state).
#[derive(Debug, Clone, Default)]
pub struct Feed {
    changes: imbl::Vector<Arc<Change>>,
    /// Changes at or before this version are not kept (any more).
    floor: u64,
}

/// Changes kept: at least a few full reconciles of the largest cluster
/// measured (100,000 tasks); a reader further behind reads everything.
pub const KEEP: usize = 250_000;

impl Feed {
    pub fn push(&mut self, c: Change) {
        self.changes.push_back(Arc::new(c));
        while self.changes.len() > KEEP {
            if let Some(old) = self.changes.pop_front() {
                self.floor = old.version;
            }
        }
    }

    /// Forgets every change: nothing before `version` can be told apart
    /// (a snapshot was installed).
    pub fn reset(&mut self, version: u64) {
        self.changes.clear();
        self.floor = version;
    }

    /// The changes after `version`, or None when some of them are no
    /// longer kept (the reader must read everything).
    pub fn since(&self, version: u64) -> Option<Vec<Arc<Change>>> {
        if version < self.floor {
            return None;
        }
        let start = self
            .changes
            .binary_search_by(
                |c| if c.version <= version { std::cmp::Ordering::Less } else { std::cmp::Ordering::Greater },
            )
            .unwrap_or_else(|i| i);
        Some(self.changes.skip(start).iter().cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::db::command::Kind;

    fn change(version: u64, id: &str) -> Change {
        Change { version, key: Key::new(Kind::Task, id), service: String::new(), nodes: Default::default() }
    }

    #[test]
    fn since_returns_what_came_after_and_admits_what_it_forgot() {
        let mut f = Feed::default();
        for (v, id) in [(1, "a"), (2, "b"), (2, "c"), (5, "d")] {
            f.push(change(v, id));
        }
        let ids = |f: &Feed, v| f.since(v).map(|c| c.iter().map(|c| c.key.id.clone()).collect::<Vec<_>>());
        assert_eq!(ids(&f, 0), Some(vec!["a".into(), "b".into(), "c".into(), "d".into()]));
        assert_eq!(ids(&f, 1), Some(vec!["b".into(), "c".into(), "d".into()]));
        assert_eq!(ids(&f, 4), Some(vec!["d".into()]));
        assert_eq!(ids(&f, 5), Some(vec![]));
        f.reset(9);
        assert_eq!(ids(&f, 5), None, "changes before the reset are unknown");
        assert_eq!(ids(&f, 9), Some(vec![]));
    }
}
