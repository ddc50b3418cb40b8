//! The cluster database: the replicated state as the Raft state machine
//! holds it, typed and indexed. Every applied command bumps one store
//! version (what watchers and conditional puts compare against) and is
//! recorded in the change feed.
//!
//! Objects are kept in persistent maps behind `Arc`s, so a reader takes
//! the whole state as of one version in O(1) ([`ClusterState::clone`]) and
//! works on it without holding up the log.
//!
//! # Layout
//! - [`command`]: what the log carries (typed puts, patches, batches, groups).
//! - [`index`]: tasks by node and by service, nodes by hostname.
//! - [`feed`]: what changed since version V.
//! - [`legacy`]: the JSON store of earlier versions, read once to migrate it.

pub mod command;
pub mod feed;
pub mod index;
pub mod legacy;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use command::{Command, CommandResult, Key, Kind, Object};
pub use feed::{Change, Feed};
pub use index::Index;

use crate::model::events::Events;
use crate::model::namespace::Namespace;
use crate::model::objects::Tokens;
use crate::model::objects::{
    Network, Node, Payload, PersonCert, RemovedNode, RemovedVolume, RevokedCert, Service, Settings, SubnetLease, Task,
    Volume,
};

/// Objects of one kind by id.
pub type Table<T> = imbl::OrdMap<String, Arc<T>>;

/// The applied state: every object, its version, the indexes and the feed.
#[derive(Debug, Clone, Default)]
pub struct ClusterState {
    pub version: u64,
    pub settings: Settings,
    pub join_tokens: Option<Tokens>,
    pub nodes: Table<Node>,
    pub services: Table<Service>,
    pub tasks: Table<Task>,
    /// Service name → service id.
    pub service_names: imbl::OrdMap<String, String>,
    pub removed_nodes: Table<RemovedNode>,
    pub person_certs: Table<PersonCert>,
    pub revoked_certs: Table<RevokedCert>,
    /// Subnet leases by `<network>/<node>`.
    pub leases: Table<SubnetLease>,
    /// Virtual IPs by address → the service holding each.
    pub vips: imbl::OrdMap<String, String>,
    /// Networks made with `network create`, by name.
    pub networks: Table<Network>,
    /// VNIs → the network holding each.
    pub vnis: imbl::OrdMap<String, String>,
    /// Ports on the routing mesh (`<protocol>/<port>`) → the service holding each.
    pub published: imbl::OrdMap<String, String>,
    /// Secrets by name (their versions sealed).
    pub secrets: Table<Payload>,
    /// Configs by name.
    pub configs: Table<Payload>,
    /// Volumes by name.
    pub volumes: Table<Volume>,
    /// Removed volumes by id.
    pub removed_volumes: Table<RemovedVolume>,
    /// Namespaces by name (`default` only once it has a quota).
    pub namespaces: Table<Namespace>,
    /// The version of every object's last change (absent: no object).
    versions: imbl::HashMap<Key, u64>,
    pub index: Index,
    pub feed: Feed,
    /// The latest changes told as events (derived, not stored).
    pub events: Events,
}

/// One object as a snapshot stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stored {
    pub id: String,
    pub version: u64,
    pub object: Object,
}

/// The state as a snapshot stores it (no indexes, no feed: rebuilt).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Image {
    pub version: u64,
    pub objects: Vec<Stored>,
}

impl ClusterState {
    pub fn apply(&mut self, cmd: &Command) -> CommandResult {
        if let Command::Group(cmds) = cmd {
            let each: Vec<CommandResult> = cmds.iter().map(|c| self.apply(c)).collect();
            return CommandResult { version: self.version, conflict: None, each };
        }
        let mut conflicts = Vec::new();
        self.version += 1;
        self.apply_one(cmd, &mut conflicts);
        CommandResult {
            version: self.version,
            conflict: (!conflicts.is_empty()).then(|| conflicts.join("; ")),
            each: Vec::new(),
        }
    }

    fn apply_one(&mut self, cmd: &Command, conflicts: &mut Vec<String>) {
        match cmd {
            Command::Put { id, object, expect_version } => {
                if let Some(c) = self.refuses(id, object, *expect_version) {
                    conflicts.push(c);
                    return;
                }
                self.set(id, object.clone(), self.version);
            }
            Command::Delete { key } => self.remove(key),
            Command::Expect { key, version } => {
                if let Some(c) = self.unexpected(key, *version) {
                    conflicts.push(c);
                }
            }
            Command::PatchNode { id, patch } => match self.nodes.get(id) {
                Some(n) => {
                    let mut n = Node::clone(n);
                    patch.apply(&mut n);
                    self.set(id, Object::Node(Arc::new(n)), self.version);
                }
                None => conflicts.push(format!("{} does not exist", Key::new(Kind::Node, id.as_str()))),
            },
            Command::PatchTask { id, patch } => match self.tasks.get(id) {
                Some(t) => {
                    let mut t = Task::clone(t);
                    patch.apply(&mut t);
                    self.set(id, Object::Task(Arc::new(t)), self.version);
                }
                None => conflicts.push(format!("{} does not exist", Key::new(Kind::Task, id.as_str()))),
            },
            Command::Batch(cmds) => {
                let failed: Vec<String> = cmds
                    .iter()
                    .filter_map(|c| match c {
                        Command::Put { id, object, expect_version } => self.refuses(id, object, *expect_version),
                        Command::Expect { key, version } => self.unexpected(key, *version),
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
            // Only at the top level does a group mean anything; inside a
            // batch its commands are the batch's.
            Command::Group(cmds) => {
                for c in cmds {
                    self.apply_one(c, conflicts);
                }
            }
        }
    }

    /// Why a conditional put of `object` as `id` is refused, if it is.
    fn refuses(&self, id: &str, object: &Object, expect: Option<u64>) -> Option<String> {
        let want = expect?;
        let key = Key::new(object.kind(), id);
        let current = self.version_of(&key);
        (current != want).then(|| format!("{key} is at version {current}, not {want}"))
    }

    /// Why `key` is not at `want`, if it is not.
    fn unexpected(&self, key: &Key, want: u64) -> Option<String> {
        let current = self.version_of(key);
        (current != want).then(|| format!("{key} is at version {current}, not {want}"))
    }

    /// The version of the object's last change; 0 when there is none.
    pub fn version_of(&self, key: &Key) -> u64 {
        self.versions.get(key).copied().unwrap_or(0)
    }

    pub fn exists(&self, key: &Key) -> bool {
        self.versions.contains_key(key)
    }

    /// Stores `object` as `id` at `version`, with its indexes and feed entry.
    fn set(&mut self, id: &str, object: Object, version: u64) {
        let key = Key::new(object.kind(), id);
        let mut change = Change { version, key: key.clone(), service: String::new(), nodes: Default::default() };
        match object {
            Object::Node(n) => {
                let old = self.nodes.get(id).cloned();
                if let Some(old) = &old {
                    self.index.remove_node(id, old);
                }
                self.events.node(version, id, old.as_deref(), Some(&n));
                self.index.add_node(id, &n);
                self.nodes.insert(id.to_string(), n);
            }
            Object::Service(s) => {
                let old = self.services.get(id).cloned();
                if let Some(old) = &old {
                    self.index.remove_service(id, old);
                }
                self.events.service(version, id, old.as_deref(), Some(&s));
                self.index.add_service(id, &s);
                self.services.insert(id.to_string(), s);
            }
            Object::Task(t) => {
                let old = self.tasks.get(id).cloned();
                if let Some(old) = &old {
                    change.nodes[0] = old.node.clone();
                    self.index.remove_task(id, old);
                }
                let nodes = &self.nodes;
                let hostname = |n: &str| nodes.get(n).map_or_else(|| n.to_string(), |n| n.hostname.clone());
                self.events.task(version, id, old.as_deref(), Some(&t), hostname);
                self.index.add_task(id, &t);
                change.service = t.service_id.clone();
                change.nodes[1] = t.node.clone();
                self.tasks.insert(id.to_string(), t);
            }
            Object::ServiceName(s) => {
                self.service_names.insert(id.to_string(), s);
            }
            Object::RemovedNode(r) => {
                self.removed_nodes.insert(id.to_string(), r);
            }
            Object::PersonCert(c) => {
                self.person_certs.insert(id.to_string(), c);
            }
            Object::RevokedCert(c) => {
                self.revoked_certs.insert(id.to_string(), c);
            }
            Object::Settings(s) => self.settings = s,
            Object::JoinTokens(t) => self.join_tokens = Some(t),
            Object::Lease(l) => {
                self.leases.insert(id.to_string(), l);
            }
            Object::Vip(s) => {
                self.vips.insert(id.to_string(), s);
            }
            Object::Network(n) => {
                self.networks.insert(id.to_string(), n);
            }
            Object::Vni(n) => {
                self.vnis.insert(id.to_string(), n);
            }
            Object::Published(s) => {
                self.published.insert(id.to_string(), s);
            }
            Object::Secret(p) => {
                self.secrets.insert(id.to_string(), p);
            }
            Object::Config(p) => {
                self.configs.insert(id.to_string(), p);
            }
            Object::Volume(x) => {
                self.volumes.insert(id.to_string(), x);
            }
            Object::RemovedVolume(x) => {
                self.removed_volumes.insert(id.to_string(), x);
            }
            Object::Namespace(x) => {
                self.namespaces.insert(id.to_string(), x);
            }
        }
        self.versions.insert(key, version);
        self.feed.push(change);
    }

    fn remove(&mut self, key: &Key) {
        if self.versions.remove(key).is_none() {
            return;
        }
        let id = key.id.as_str();
        let mut change =
            Change { version: self.version, key: key.clone(), service: String::new(), nodes: Default::default() };
        match key.kind {
            Kind::Node => {
                if let Some(old) = self.nodes.remove(id) {
                    self.index.remove_node(id, &old);
                    self.events.node(self.version, id, Some(&old), None);
                }
            }
            Kind::Service => {
                if let Some(old) = self.services.remove(id) {
                    self.index.remove_service(id, &old);
                    self.events.service(self.version, id, Some(&old), None);
                }
            }
            Kind::Task => {
                if let Some(old) = self.tasks.remove(id) {
                    self.index.remove_task(id, &old);
                    change.service = old.service_id.clone();
                    change.nodes[0] = old.node.clone();
                }
            }
            Kind::ServiceName => {
                self.service_names.remove(id);
            }
            Kind::RemovedNode => {
                self.removed_nodes.remove(id);
            }
            Kind::PersonCert => {
                self.person_certs.remove(id);
            }
            Kind::RevokedCert => {
                self.revoked_certs.remove(id);
            }
            Kind::Settings => self.settings = Settings::default(),
            Kind::JoinTokens => self.join_tokens = None,
            Kind::Lease => {
                self.leases.remove(id);
            }
            Kind::Vip => {
                self.vips.remove(id);
            }
            Kind::Network => {
                self.networks.remove(id);
            }
            Kind::Vni => {
                self.vnis.remove(id);
            }
            Kind::Published => {
                self.published.remove(id);
            }
            Kind::Secret => {
                self.secrets.remove(id);
            }
            Kind::Config => {
                self.configs.remove(id);
            }
            Kind::Volume => {
                self.volumes.remove(id);
            }
            Kind::RemovedVolume => {
                self.removed_volumes.remove(id);
            }
            Kind::Namespace => {
                self.namespaces.remove(id);
            }
        }
        self.feed.push(change);
    }

    /// Every object with its version, as a snapshot keeps them.
    pub fn image(&self) -> Image {
        let mut objects = Vec::with_capacity(self.versions.len());
        let mut push = |kind: Kind, id: &str, object: Object| {
            let version = self.version_of(&Key::new(kind, id));
            objects.push(Stored { id: id.to_string(), version, object });
        };
        if self.exists(&Key::new(Kind::Settings, "")) {
            push(Kind::Settings, "", Object::Settings(self.settings.clone()));
        }
        if let Some(t) = &self.join_tokens {
            push(Kind::JoinTokens, "", Object::JoinTokens(t.clone()));
        }
        for (id, v) in &self.nodes {
            push(Kind::Node, id, Object::Node(v.clone()));
        }
        for (id, v) in &self.services {
            push(Kind::Service, id, Object::Service(v.clone()));
        }
        for (id, v) in &self.tasks {
            push(Kind::Task, id, Object::Task(v.clone()));
        }
        for (id, v) in &self.service_names {
            push(Kind::ServiceName, id, Object::ServiceName(v.clone()));
        }
        for (id, v) in &self.removed_nodes {
            push(Kind::RemovedNode, id, Object::RemovedNode(v.clone()));
        }
        for (id, v) in &self.person_certs {
            push(Kind::PersonCert, id, Object::PersonCert(v.clone()));
        }
        for (id, v) in &self.revoked_certs {
            push(Kind::RevokedCert, id, Object::RevokedCert(v.clone()));
        }
        for (id, v) in &self.leases {
            push(Kind::Lease, id, Object::Lease(v.clone()));
        }
        for (id, v) in &self.vips {
            push(Kind::Vip, id, Object::Vip(v.clone()));
        }
        for (id, v) in &self.networks {
            push(Kind::Network, id, Object::Network(v.clone()));
        }
        for (id, v) in &self.vnis {
            push(Kind::Vni, id, Object::Vni(v.clone()));
        }
        for (id, v) in &self.published {
            push(Kind::Published, id, Object::Published(v.clone()));
        }
        for (id, v) in &self.secrets {
            push(Kind::Secret, id, Object::Secret(v.clone()));
        }
        for (id, v) in &self.configs {
            push(Kind::Config, id, Object::Config(v.clone()));
        }
        for (id, v) in &self.volumes {
            push(Kind::Volume, id, Object::Volume(v.clone()));
        }
        for (id, v) in &self.removed_volumes {
            push(Kind::RemovedVolume, id, Object::RemovedVolume(v.clone()));
        }
        for (id, v) in &self.namespaces {
            push(Kind::Namespace, id, Object::Namespace(v.clone()));
        }
        Image { version: self.version, objects }
    }

    /// The state a snapshot kept (indexes rebuilt; the feed starts here).
    pub fn from_image(image: Image) -> Self {
        let mut s = Self::default();
        for o in image.objects {
            s.set(&o.id, o.object, o.version);
        }
        s.version = image.version;
        s.feed.reset(image.version);
        s
    }
}

#[cfg(test)]
mod tests;
