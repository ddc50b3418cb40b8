//! Changes to the cluster database as the Raft log carries them: typed
//! objects, typed patches, conditional puts and atomic batches.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::model::namespace::Namespace;
use crate::model::objects::{
    Network, Node, Payload, PersonCert, RemovedNode, RemovedVolume, RevokedCert, Service, Settings, SubnetLease, Task,
    Tokens, Volume,
};
use crate::model::patch::{NodePatch, TaskPatch};

/// The kinds of object (the tables of the database).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Node,
    Service,
    Task,
    /// Service name → id: claimed in the same entry as the service, so two
    /// creates of one name cannot both win.
    ServiceName,
    /// Nodes removed with `node rm`: their certificates open no session.
    RemovedNode,
    /// People's certificates the cluster issued, by serial.
    PersonCert,
    /// Revoked certificates, by serial: refused by every node.
    RevokedCert,
    /// The cluster's settings (one object, id "").
    Settings,
    /// The two join tokens (one object, id "").
    JoinTokens,
    /// A node's subnet on a network, at `<network>/<node>`.
    Lease,
    /// A virtual IP → the id of the service holding it, at its address:
    /// claimed in the same entry as the service.
    Vip,
    /// A network made with `network create`, at its name.
    Network,
    /// A VXLAN network identifier → the network holding it, claimed in
    /// the same entry as the network.
    Vni,
    /// A port the routing mesh publishes, at `<protocol>/<port>` → the id
    /// of the service holding it: claimed in the same entry as the service.
    Published,
    /// A secret, at its name (versions sealed).
    Secret,
    /// A config, at its name.
    Config,
    /// A volume, at its name.
    Volume,
    /// A removed volume, at its id: nodes delete their copies.
    RemovedVolume,
    /// A namespace, at its name.
    Namespace,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Node => "node",
            Self::Service => "service",
            Self::Task => "task",
            Self::ServiceName => "service-name",
            Self::RemovedNode => "removed-node",
            Self::PersonCert => "person-cert",
            Self::RevokedCert => "revoked-cert",
            Self::Settings => "settings",
            Self::JoinTokens => "join-tokens",
            Self::Lease => "lease",
            Self::Vip => "vip",
            Self::Network => "network",
            Self::Vni => "vni",
            Self::Published => "published",
            Self::Secret => "secret",
            Self::Config => "config",
            Self::Volume => "volume",
            Self::RemovedVolume => "removed-volume",
            Self::Namespace => "namespace",
        }
    }
}

/// Where an object is: its kind and id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Key {
    pub kind: Kind,
    pub id: String,
}

impl Key {
    pub fn new(kind: Kind, id: impl Into<String>) -> Self {
        Self { kind, id: id.into() }
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.id.is_empty() {
            f.write_str(self.kind.as_str())
        } else {
            write!(f, "{}/{}", self.kind.as_str(), self.id)
        }
    }
}

/// An object of the database, whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Object {
    Node(Arc<Node>),
    Service(Arc<Service>),
    Task(Arc<Task>),
    /// The id of the service holding the name.
    ServiceName(String),
    RemovedNode(Arc<RemovedNode>),
    PersonCert(Arc<PersonCert>),
    RevokedCert(Arc<RevokedCert>),
    Settings(Settings),
    JoinTokens(Tokens),
    Lease(Arc<SubnetLease>),
    /// The id of the service holding the virtual IP.
    Vip(String),
    Network(Arc<Network>),
    /// The name of the network holding the VNI.
    Vni(String),
    /// The id of the service publishing the port on the routing mesh.
    Published(String),
    Secret(Arc<Payload>),
    Config(Arc<Payload>),
    Volume(Arc<Volume>),
    RemovedVolume(Arc<RemovedVolume>),
    Namespace(Arc<Namespace>),
}

impl Object {
    pub fn kind(&self) -> Kind {
        match self {
            Self::Node(_) => Kind::Node,
            Self::Service(_) => Kind::Service,
            Self::Task(_) => Kind::Task,
            Self::ServiceName(_) => Kind::ServiceName,
            Self::RemovedNode(_) => Kind::RemovedNode,
            Self::PersonCert(_) => Kind::PersonCert,
            Self::RevokedCert(_) => Kind::RevokedCert,
            Self::Settings(_) => Kind::Settings,
            Self::JoinTokens(_) => Kind::JoinTokens,
            Self::Lease(_) => Kind::Lease,
            Self::Vip(_) => Kind::Vip,
            Self::Network(_) => Kind::Network,
            Self::Vni(_) => Kind::Vni,
            Self::Published(_) => Kind::Published,
            Self::Secret(_) => Kind::Secret,
            Self::Config(_) => Kind::Config,
            Self::Volume(_) => Kind::Volume,
            Self::RemovedVolume(_) => Kind::RemovedVolume,
            Self::Namespace(_) => Kind::Namespace,
        }
    }
}

/// A change to the cluster database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Creates or replaces the object `id` of its kind. With
    /// `expect_version`, only if it is still at that version (0: must not exist).
    Put {
        id: String,
        object: Object,
        expect_version: Option<u64>,
    },
    Delete {
        key: Key,
    },
    /// Sets the fields the patch sets, so two writers changing different
    /// fields of one node lose nothing. A missing node is a conflict.
    PatchNode {
        id: String,
        patch: NodePatch,
    },
    /// The same for a task.
    PatchTask {
        id: String,
        patch: TaskPatch,
    },
    /// All of these, atomically, in order, as one store version. When a
    /// conditional put among them (top level) fails, none applies.
    Batch(Vec<Command>),
    /// Nothing, unless the object is not at `version` (0: absent): then,
    /// inside a [`Command::Batch`], nothing of the batch applies. What a
    /// write depends on without changing it (a service and the secrets it
    /// mounts).
    Expect {
        key: Key,
        version: u64,
    },
    /// Independent commands from several clients in one entry (group
    /// commit): each applies or conflicts on its own, as its own version,
    /// with its own result.
    Group(Vec<Command>),
}

impl Command {
    pub fn put(id: impl Into<String>, object: Object) -> Self {
        Self::Put { id: id.into(), object, expect_version: None }
    }

    /// A put that succeeds only if the object is still at `version` (0: absent).
    pub fn put_if(id: impl Into<String>, object: Object, version: u64) -> Self {
        Self::Put { id: id.into(), object, expect_version: Some(version) }
    }

    pub fn delete(kind: Kind, id: impl Into<String>) -> Self {
        Self::Delete { key: Key::new(kind, id) }
    }

    /// Fails its batch unless `key` is at `version` (0: absent).
    pub fn expect(kind: Kind, id: impl Into<String>, version: u64) -> Self {
        Self::Expect { key: Key::new(kind, id), version }
    }
}

/// What applying a command did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CommandResult {
    /// The store version after this command (unchanged when refused).
    pub version: u64,
    /// Why a conditional put was refused.
    pub conflict: Option<String>,
    /// For a [`Command::Group`]: each command's own result, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub each: Vec<CommandResult>,
}
