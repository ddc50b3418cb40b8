//! Typed changes to existing objects. Each patch is a struct of optional
//! fields named as the object's; what is set becomes a JSON merge patch
//! (RFC 7386) in the Raft log, so writers changing different fields of one
//! object lose nothing. A test checks every patch field is a field of its
//! object.

use std::collections::BTreeMap;

use serde::Serialize;

use super::objects::{now_ms, Availability, NodeStatus, TaskState, NODES, TASKS};
use crate::pki::role::Role;
use crate::raft::command::Command;

/// A change to a [`super::objects::Node`].
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NodePatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_role: Option<Role>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub availability: Option<Availability>,
    /// Labels to set (`Some`) or remove (`None`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, Option<String>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<NodeStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_ms: Option<i64>,
}

impl NodePatch {
    /// The node's status changes (to `status`, with `message`), now.
    pub fn status(status: NodeStatus, message: impl Into<String>) -> Self {
        Self { status: Some(status), message: Some(message.into()), updated_ms: Some(now_ms()), ..Self::default() }
    }

    /// Only a message, now.
    pub fn message(message: impl Into<String>) -> Self {
        Self { message: Some(message.into()), updated_ms: Some(now_ms()), ..Self::default() }
    }

    /// Whether it changes nothing but the time.
    pub fn is_empty(&self) -> bool {
        Self { updated_ms: None, ..self.clone() } == Self::default()
    }

    pub fn command(&self, id: &str) -> Command {
        merge_patch(NODES, id, self)
    }

    /// The patch as a JSON merge patch (also merged into a new object).
    pub fn value(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// A change to a [`super::objects::Task`], as a node reports it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TaskPatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<TaskState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// `Some(None)` clears it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<Option<i32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_ms: Option<i64>,
}

impl TaskPatch {
    pub fn command(&self, id: &str) -> Command {
        merge_patch(TASKS, id, self)
    }
}

fn merge_patch(table: &str, id: &str, p: &impl Serialize) -> Command {
    Command::Patch {
        table: table.into(),
        id: id.into(),
        patch: serde_json::to_value(p).unwrap_or(serde_json::Value::Object(Default::default())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::objects::{Node, Task};

    fn keys(v: serde_json::Value) -> Vec<String> {
        v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default()
    }

    #[test]
    fn every_patch_field_is_a_field_of_its_object() {
        let node = NodePatch {
            hostname: Some(String::new()),
            role: Some(Role::Manager),
            cert_role: Some(Role::Manager),
            addr: Some(String::new()),
            availability: Some(Availability::Drain),
            labels: Some(BTreeMap::new()),
            cpus: Some(1.0),
            memory: Some(1),
            status: Some(NodeStatus::Ready),
            message: Some(String::new()),
            agent_version: Some(String::new()),
            updated_ms: Some(1),
        };
        let fields = keys(serde_json::to_value(Node::default()).unwrap());
        for k in keys(node.value()) {
            assert!(fields.contains(&k), "NodePatch.{k} is not a field of Node");
        }
        let task = TaskPatch {
            state: Some(TaskState::Running),
            message: Some(String::new()),
            error: Some(String::new()),
            container: Some(String::new()),
            exit_code: Some(Some(1)),
            updated_ms: Some(1),
        };
        let fields = keys(serde_json::to_value(Task::default()).unwrap());
        for k in keys(serde_json::to_value(&task).unwrap()) {
            assert!(fields.contains(&k), "TaskPatch.{k} is not a field of Task");
        }
    }

    #[test]
    fn a_patch_changes_only_what_it_sets() {
        let mut state = crate::raft::command::ClusterState::default();
        let n = Node {
            id: "n1".into(),
            hostname: "a".into(),
            labels: [("x".into(), "1".into()), ("y".into(), "2".into())].into(),
            ..Default::default()
        };
        state.apply(&crate::cluster::objects::put(NODES, "n1", &n));
        let p = NodePatch {
            role: Some(Role::Manager),
            labels: Some([("x".into(), None), ("z".into(), Some("3".into()))].into()),
            ..Default::default()
        };
        state.apply(&p.command("n1"));
        let got: Node = serde_json::from_value(state.get(NODES, "n1").unwrap().value.clone()).unwrap();
        assert_eq!(got.role, Role::Manager);
        assert_eq!(got.hostname, "a");
        assert_eq!(got.labels, [("y".into(), "2".into()), ("z".into(), "3".into())].into());
    }
}
