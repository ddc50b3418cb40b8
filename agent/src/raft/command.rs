//! The state the Raft state machine holds: named tables of JSON objects
//! (what they mean is `crate::cluster`'s), each change a command in
//! the log, each applied command bumping one store version (what watchers
//! and optimistic updates compare against).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A change to the cluster state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Creates or replaces `table/id`. With `expect_version`, only if the
    /// object is still at that version (0: must not exist).
    Put {
        table: String,
        id: String,
        value: serde_json::Value,
        expect_version: Option<u64>,
    },
    Delete {
        table: String,
        id: String,
    },
    /// Merges `patch` into `table/id` (JSON merge patch, RFC 7386), so two
    /// writers changing different fields of one object lose nothing. A
    /// missing object is left missing (a conflict).
    Patch {
        table: String,
        id: String,
        patch: serde_json::Value,
    },
    /// All of these, atomically, in order, as one store version. When a
    /// conditional put among them (top level) fails, none applies.
    Batch(Vec<Command>),
}

/// What applying a command did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CommandResult {
    /// The store version after this command (unchanged when refused).
    pub version: u64,
    /// Why a conditional put was refused.
    pub conflict: Option<String>,
}

/// One stored object with the store version of its last change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Object {
    pub version: u64,
    pub value: serde_json::Value,
}

/// The applied state: tables of objects and the store version.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterState {
    pub version: u64,
    pub tables: BTreeMap<String, BTreeMap<String, Object>>,
}

impl ClusterState {
    pub fn apply(&mut self, cmd: &Command) -> CommandResult {
        let mut conflicts = Vec::new();
        self.version += 1;
        self.apply_one(cmd, &mut conflicts);
        CommandResult { version: self.version, conflict: (!conflicts.is_empty()).then(|| conflicts.join("; ")) }
    }

    fn apply_one(&mut self, cmd: &Command, conflicts: &mut Vec<String>) {
        match cmd {
            Command::Put { table, id, value, expect_version } => {
                let current = self.get(table, id).map(|o| o.version).unwrap_or(0);
                if let Some(want) = expect_version {
                    if *want != current {
                        conflicts.push(format!("{table}/{id} is at version {current}, not {want}"));
                        return;
                    }
                }
                let object = Object { version: self.version, value: value.clone() };
                self.tables.entry(table.clone()).or_default().insert(id.clone(), object);
            }
            Command::Patch { table, id, patch } => {
                let version = self.version;
                match self.tables.get_mut(table).and_then(|t| t.get_mut(id)) {
                    Some(o) => {
                        merge(&mut o.value, patch);
                        o.version = version;
                    }
                    None => conflicts.push(format!("{table}/{id} does not exist")),
                }
            }
            Command::Delete { table, id } => {
                if let Some(t) = self.tables.get_mut(table) {
                    t.remove(id);
                    if t.is_empty() {
                        self.tables.remove(table);
                    }
                }
            }
            Command::Batch(cmds) => {
                let failed: Vec<String> = cmds
                    .iter()
                    .filter_map(|c| match c {
                        Command::Put { table, id, expect_version: Some(want), .. } => {
                            let current = self.get(table, id).map(|o| o.version).unwrap_or(0);
                            (current != *want).then(|| format!("{table}/{id} is at version {current}, not {want}"))
                        }
                        _ => None,
                    })
                    .collect();
                if !failed.is_empty() {
                    conflicts.extend(failed);
                    return;
                }
                for c in cmds {
                    self.apply_one(c, conflicts);
                }
            }
        }
    }

    pub fn get(&self, table: &str, id: &str) -> Option<&Object> {
        self.tables.get(table).and_then(|t| t.get(id))
    }
}

/// RFC 7386: objects merge key by key, `null` removes a key, anything else
/// replaces.
pub fn merge(target: &mut serde_json::Value, patch: &serde_json::Value) {
    use serde_json::Value;
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(id: &str, v: i64, expect: Option<u64>) -> Command {
        Command::Put { table: "services".into(), id: id.into(), value: serde_json::json!(v), expect_version: expect }
    }

    #[test]
    fn puts_deletes_and_conditional_puts() {
        let mut s = ClusterState::default();
        assert_eq!(s.apply(&put("a", 1, Some(0))).version, 1);
        let r = s.apply(&put("a", 2, Some(0)));
        assert!(r.conflict.unwrap().contains("at version 1"));
        assert_eq!(s.get("services", "a").unwrap().value, 1);
        assert_eq!(s.apply(&put("a", 3, Some(1))).version, 3);
        assert_eq!(s.get("services", "a").unwrap(), &Object { version: 3, value: serde_json::json!(3) });
        s.apply(&Command::Delete { table: "services".into(), id: "a".into() });
        assert!(s.get("services", "a").is_none());
        assert!(s.tables.is_empty());
        assert_eq!(s.version, 4);
    }

    #[test]
    fn patches_merge_and_batches_apply_together() {
        let mut s = ClusterState::default();
        let put = |id: &str, v| Command::Put { table: "tasks".into(), id: id.into(), value: v, expect_version: None };
        s.apply(&Command::Batch(vec![
            put("t1", serde_json::json!({"desired": "running", "state": "assigned", "node": "n1"})),
            put("t2", serde_json::json!({"desired": "running"})),
        ]));
        assert_eq!(s.version, 1);
        assert_eq!(s.get("tasks", "t2").unwrap().version, 1);
        let patch = |id: &str, p| Command::Patch { table: "tasks".into(), id: id.into(), patch: p };
        let r = s.apply(&Command::Batch(vec![
            patch("t1", serde_json::json!({"state": "running", "node": null})),
            patch("gone", serde_json::json!({"state": "running"})),
        ]));
        assert_eq!(r.conflict.as_deref(), Some("tasks/gone does not exist"));
        assert_eq!(s.get("tasks", "t1").unwrap().value, serde_json::json!({"desired": "running", "state": "running"}));
        assert_eq!(s.get("tasks", "t1").unwrap().version, 2);
        // A failed condition stops the whole batch.
        let r = s.apply(&Command::Batch(vec![
            patch("t1", serde_json::json!({"state": "failed"})),
            Command::Put {
                table: "tasks".into(),
                id: "t2".into(),
                value: serde_json::json!({}),
                expect_version: Some(0),
            },
        ]));
        assert!(r.conflict.unwrap().contains("tasks/t2 is at version 1, not 0"));
        assert_eq!(s.get("tasks", "t1").unwrap().value["state"], "running");
    }
}
