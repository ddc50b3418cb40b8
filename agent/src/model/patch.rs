//! Typed changes to existing objects. Each patch is a struct of optional
//! fields named as the object's; the Raft log carries it as is and the
//! state machine sets what it sets, so writers changing different fields
//! of one object lose nothing.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use super::db::Command;
use super::objects::{now_ms, Availability, Health, Node, NodeStatus, Task, TaskState};
use crate::pki::role::Role;

/// `Some(None)` for a present null (clear), `None` for an absent field.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// A change to a [`super::objects::Node`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub was_manager: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networks: Option<Vec<ipnet::Ipv4Net>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wg_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_upgrades: Option<Vec<super::os::FailedUpgrade>>,
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
        Command::PatchNode { id: id.to_string(), patch: self.clone() }
    }

    /// Sets on `n` what the patch sets.
    pub fn apply(&self, n: &mut Node) {
        let Self {
            hostname,
            role,
            cert_role,
            addr,
            availability,
            labels,
            cpus,
            memory,
            status,
            message,
            agent_version,
            updated_ms,
            was_manager,
            networks,
            wg_key,
            os_version,
            failed_upgrades,
        } = self.clone();
        set(&mut n.hostname, hostname);
        set(&mut n.role, role);
        if cert_role.is_some() {
            n.cert_role = cert_role;
        }
        set(&mut n.addr, addr);
        set(&mut n.availability, availability);
        for (k, v) in labels.unwrap_or_default() {
            match v {
                Some(v) => n.labels.insert(k, v),
                None => n.labels.remove(&k),
            };
        }
        set(&mut n.cpus, cpus);
        set(&mut n.memory, memory);
        set(&mut n.status, status);
        set(&mut n.message, message);
        set(&mut n.agent_version, agent_version);
        set(&mut n.updated_ms, updated_ms);
        set(&mut n.was_manager, was_manager);
        set(&mut n.networks, networks);
        set(&mut n.wg_key, wg_key);
        set(&mut n.os_version, os_version);
        set(&mut n.failed_upgrades, failed_upgrades);
    }
}

fn set<T>(field: &mut T, v: Option<T>) {
    if let Some(v) = v {
        *field = v;
    }
}

/// A change to a [`super::objects::Task`]: what its node reports, or what
/// the managers decide (shut it down, place it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<TaskState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// `Some(None)` clears it.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<Option<i32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<TaskState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_alone: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addresses: Option<std::collections::BTreeMap<String, std::net::Ipv4Addr>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<std::collections::BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_sizes: Option<std::collections::BTreeMap<String, u64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nfs: Option<std::collections::BTreeMap<String, super::volume::Nfs>>,
}

impl TaskPatch {
    pub fn command(&self, id: &str) -> Command {
        Command::PatchTask { id: id.to_string(), patch: self.clone() }
    }

    /// Sets on `t` what the patch sets.
    pub fn apply(&self, t: &mut Task) {
        let Self {
            state,
            message,
            error,
            container,
            exit_code,
            updated_ms,
            desired,
            node,
            ended_alone,
            health,
            probe,
            ready_ms,
            addresses,
            volumes,
            volume_sizes,
            nfs,
        } = self.clone();
        set(&mut t.state, state);
        set(&mut t.message, message);
        set(&mut t.error, error);
        set(&mut t.container, container);
        set(&mut t.exit_code, exit_code);
        set(&mut t.updated_ms, updated_ms);
        set(&mut t.desired, desired);
        set(&mut t.node, node);
        set(&mut t.ended_alone, ended_alone);
        set(&mut t.health, health);
        set(&mut t.probe, probe);
        set(&mut t.ready_ms, ready_ms);
        set(&mut t.addresses, addresses);
        set(&mut t.volumes, volumes);
        set(&mut t.volume_sizes, volume_sizes);
        set(&mut t.nfs, nfs);
    }

    /// The fields of `new` that differ from `old`; None when nothing a
    /// patch can carry changed. What else changed is not carried (the
    /// managers change no other field of an existing task).
    pub fn between(old: &Task, new: &Task) -> Option<Self> {
        fn diff<T: PartialEq + Clone>(a: &T, b: &T) -> Option<T> {
            (a != b).then(|| b.clone())
        }
        let p = Self {
            state: diff(&old.state, &new.state),
            message: diff(&old.message, &new.message),
            error: diff(&old.error, &new.error),
            container: diff(&old.container, &new.container),
            exit_code: diff(&old.exit_code, &new.exit_code),
            updated_ms: diff(&old.updated_ms, &new.updated_ms),
            desired: diff(&old.desired, &new.desired),
            node: diff(&old.node, &new.node),
            ended_alone: diff(&old.ended_alone, &new.ended_alone),
            health: diff(&old.health, &new.health),
            probe: diff(&old.probe, &new.probe),
            ready_ms: diff(&old.ready_ms, &new.ready_ms),
            addresses: diff(&old.addresses, &new.addresses),
            volumes: diff(&old.volumes, &new.volumes),
            volume_sizes: diff(&old.volume_sizes, &new.volume_sizes),
            nfs: diff(&old.nfs, &new.nfs),
        };
        (p != Self::default()).then_some(p)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::db::{ClusterState, Object};

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
            was_manager: Some(true),
            networks: Some(vec![]),
            wg_key: Some(String::new()),
            os_version: Some(String::new()),
            failed_upgrades: Some(vec![]),
        };
        let set = Node {
            networks: vec!["10.0.2.0/24".parse().unwrap()],
            wg_key: "k".into(),
            os_version: "0.2.0".into(),
            failed_upgrades: vec![Default::default()],
            ..Default::default()
        };
        let fields = keys(serde_json::to_value(set).unwrap());
        for k in keys(serde_json::to_value(&node).unwrap()) {
            assert!(fields.contains(&k), "NodePatch.{k} is not a field of Node");
        }
        let task = TaskPatch {
            state: Some(TaskState::Running),
            message: Some(String::new()),
            error: Some(String::new()),
            container: Some(String::new()),
            exit_code: Some(Some(1)),
            updated_ms: Some(1),
            desired: Some(TaskState::Shutdown),
            node: Some(String::new()),
            ended_alone: Some(true),
            health: Some(Health::Ready),
            probe: Some(String::new()),
            ready_ms: Some(1),
            addresses: Some(Default::default()),
            volumes: Some(Default::default()),
            volume_sizes: Some(Default::default()),
            nfs: Some(Default::default()),
        };
        // Fields left out while default are named once set.
        let set = Task {
            health: Health::Ready,
            probe: "p".into(),
            ready_ms: 1,
            run: 1,
            addresses: [("default".to_string(), std::net::Ipv4Addr::LOCALHOST)].into(),
            volumes: [("data".to_string(), "id".to_string())].into(),
            volume_sizes: [("data".to_string(), 1)].into(),
            nfs: [(
                "data".to_string(),
                crate::model::volume::Nfs {
                    server: std::net::Ipv4Addr::LOCALHOST.into(),
                    path: "/".into(),
                    options: vec![],
                    dir: String::new(),
                },
            )]
            .into(),
            ..Default::default()
        };
        let fields = keys(serde_json::to_value(set).unwrap());
        for k in keys(serde_json::to_value(&task).unwrap()) {
            assert!(fields.contains(&k), "TaskPatch.{k} is not a field of Task");
        }
    }

    #[test]
    fn a_patch_changes_only_what_it_sets() {
        let mut state = ClusterState::default();
        let n = Node {
            id: "n1".into(),
            hostname: "a".into(),
            labels: [("x".into(), "1".into()), ("y".into(), "2".into())].into(),
            ..Default::default()
        };
        state.apply(&Command::put("n1", Object::Node(Arc::new(n))));
        let p = NodePatch {
            role: Some(Role::Manager),
            labels: Some([("x".into(), None), ("z".into(), Some("3".into()))].into()),
            ..Default::default()
        };
        state.apply(&p.command("n1"));
        let got = &state.nodes["n1"];
        assert_eq!(got.role, Role::Manager);
        assert_eq!(got.hostname, "a");
        assert_eq!(got.labels, [("y".into(), "2".into()), ("z".into(), "3".into())].into());
    }

    #[test]
    fn between_carries_every_change_and_a_cleared_exit_code_survives_encoding() {
        let old = Task { id: "t".into(), exit_code: Some(3), state: TaskState::Failed, ..Default::default() };
        let new = Task {
            exit_code: None,
            state: TaskState::Running,
            desired: TaskState::Shutdown,
            node: "n2".into(),
            ended_alone: true,
            ..old.clone()
        };
        let p = TaskPatch::between(&old, &new).unwrap();
        assert_eq!(p.exit_code, Some(None));
        let mut t = old.clone();
        p.apply(&mut t);
        assert_eq!(t, new);
        assert_eq!(TaskPatch::between(&new, &new), None);
        // Through the log's encoding, and from an old store's merge patch.
        let back: TaskPatch = rmp_serde::from_slice(&rmp_serde::to_vec_named(&p).unwrap()).unwrap();
        assert_eq!(back, p);
        let json: TaskPatch = serde_json::from_str(r#"{"exit_code":null,"state":"running"}"#).unwrap();
        assert_eq!(json.exit_code, Some(None));
        assert_eq!(json.state, Some(TaskState::Running));
    }
}
