//! Volumes in the replicated state: named storage that outlives tasks, and
//! how a service's tasks mount storage.
//!
//! A volume is a cluster object (its name, labels, and for a stateful
//! service's slot, the node that holds it); its data is local to each node
//! that ran a task mounting it, on that node's STATE (as Docker's local
//! driver keeps it), created on first use.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A volume's name: 1-64 letters, digits, '.', '_' or '-', starting with
/// a letter or digit (Docker's rule).
pub fn valid_volume_name(n: &str) -> bool {
    super::payload::valid_payload_name(n)
}

/// A volume, at its name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Volume {
    /// Changes when a volume of the same name is made again: a node's copy
    /// of an older one is not taken for it.
    pub id: String,
    pub name: String,
    /// Its namespace (empty: `default`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub created_ms: i64,
    /// A stateful service's slot volume (`<source>-<service>.<slot>`): the
    /// service id and slot it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<SlotOwner>,
    /// The node holding its data (slot volumes: where the slot ran; the
    /// scheduler prefers it).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotOwner {
    pub service: String,
    pub slot: u64,
}

/// A removed volume, at its id: every node deletes its copy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemovedVolume {
    pub name: String,
    pub removed_ms: i64,
}

/// What a service mount is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountKind {
    /// A volume: named (it must exist), or anonymous (no source: made for
    /// the task, removed with it). On a stateful service, a named one is a
    /// template: each slot gets its own, `<source>-<service>.<slot>`.
    #[default]
    Volume,
    /// A tmpfs of the task's own.
    Tmpfs,
}

impl MountKind {
    pub const ALL: [MountKind; 2] = [Self::Volume, Self::Tmpfs];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Volume => "volume",
            Self::Tmpfs => "tmpfs",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Storage a service's tasks mount.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceMount {
    pub kind: MountKind,
    /// The volume's name; empty: anonymous.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    pub target: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
}

impl ServiceMount {
    /// The volume a task of a service named `service` in slot `slot`
    /// mounts: the source, or for a stateful service the slot's own.
    pub fn volume_for(&self, stateful: bool, service: &str, slot: u64) -> Option<String> {
        if self.kind != MountKind::Volume || self.source.is_empty() {
            return None;
        }
        Some(match stateful {
            true => slot_volume(&self.source, service, slot),
            false => self.source.clone(),
        })
    }
}

/// A stateful service's slot volume: `web.1` with `data` gets `data-web.1`.
pub fn slot_volume(source: &str, service: &str, slot: u64) -> String {
    format!("{source}-{service}.{slot}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_get_volumes_of_their_own() {
        let m = ServiceMount { source: "data".into(), target: "/d".into(), ..Default::default() };
        assert_eq!(m.volume_for(true, "web", 1).as_deref(), Some("data-web.1"));
        assert_eq!(m.volume_for(false, "web", 1).as_deref(), Some("data"));
        let anon = ServiceMount { target: "/d".into(), ..Default::default() };
        assert_eq!(anon.volume_for(true, "web", 1), None);
        let tmp = ServiceMount { kind: MountKind::Tmpfs, target: "/t".into(), ..Default::default() };
        assert_eq!(tmp.volume_for(false, "web", 1), None);
    }
}
