//! The cluster state as the Raft state machine holds it: typed tables of
//! JSON objects (nodes, services, tasks, tokens…), each change a command in
//! the log, each applied command bumping one store version (what watchers
//! and optimistic updates compare against).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A change to the cluster state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Creates or replaces `table/id`. With `expect_version`, only if the
    /// object is still at that version (0: must not exist).
    Put { table: String, id: String, value: serde_json::Value, expect_version: Option<u64> },
    Delete { table: String, id: String },
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
        match cmd {
            Command::Put { table, id, value, expect_version } => {
                let current = self.tables.get(table).and_then(|t| t.get(id)).map(|o| o.version).unwrap_or(0);
                if let Some(want) = expect_version {
                    if *want != current {
                        return CommandResult {
                            version: self.version,
                            conflict: Some(format!("{table}/{id} is at version {current}, not {want}")),
                        };
                    }
                }
                self.version += 1;
                let object = Object { version: self.version, value: value.clone() };
                self.tables.entry(table.clone()).or_default().insert(id.clone(), object);
            }
            Command::Delete { table, id } => {
                self.version += 1;
                if let Some(t) = self.tables.get_mut(table) {
                    t.remove(id);
                    if t.is_empty() {
                        self.tables.remove(table);
                    }
                }
            }
        }
        CommandResult { version: self.version, conflict: None }
    }

    pub fn get(&self, table: &str, id: &str) -> Option<&Object> {
        self.tables.get(table).and_then(|t| t.get(id))
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
        assert_eq!(s.apply(&put("a", 3, Some(1))).version, 2);
        assert_eq!(s.get("services", "a").unwrap(), &Object { version: 2, value: serde_json::json!(3) });
        s.apply(&Command::Delete { table: "services".into(), id: "a".into() });
        assert!(s.get("services", "a").is_none());
        assert!(s.tables.is_empty());
        assert_eq!(s.version, 3);
    }
}
