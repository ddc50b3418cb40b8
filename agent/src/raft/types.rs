//! openraft's type configuration for orc.

use std::io::Cursor;

use crate::model::db::{Command, CommandResult};

/// A manager's Raft id.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// orc's Raft: commands on the cluster state, managers as nodes.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);
