//! What the Nodes API does: availability, labels, role (promote/demote),
//! removal, as domain functions on this manager's Raft.

use std::collections::BTreeMap;

use super::error::ClusterError;
use super::objects::{now_ms, view, Availability, Node, NodeStatus, RemovedNode, View};
use crate::model::db::{Command, Kind, Object};
use crate::model::patch::NodePatch;
use crate::pki::role::Role;
use crate::raft::RaftHandle;

/// What `node update` asks for, as the API received it.
#[derive(Debug, Default)]
pub struct NodeUpdate {
    pub availability: String,
    pub role: String,
    pub label_add: BTreeMap<String, String>,
    pub label_rm: Vec<String>,
}

/// The patch `u` makes to `n` in `v`, checked.
fn patch_for(v: &View, n: &Node, u: &NodeUpdate) -> Result<NodePatch, ClusterError> {
    let mut p = NodePatch::default();
    match u.availability.as_str() {
        "" => {}
        "active" => p.availability = Some(Availability::Active),
        "pause" => p.availability = Some(Availability::Pause),
        "drain" => p.availability = Some(Availability::Drain),
        a => return Err(ClusterError::InvalidArgument(format!("availability {a:?} is not active, pause or drain"))),
    }
    match u.role.as_str() {
        "" => {}
        "manager" => p.role = Some(Role::Manager),
        "worker" => {
            let managers = v.nodes.values().filter(|m| m.role == Role::Manager).count();
            if n.role == Role::Manager && managers <= 1 {
                return Err(ClusterError::FailedPrecondition(format!(
                    "{} is the last manager: promote another node first",
                    n.hostname
                )));
            }
            p.role = Some(Role::Worker);
        }
        r => return Err(ClusterError::InvalidArgument(format!("role {r:?} is not manager or worker"))),
    }
    let mut labels: BTreeMap<String, Option<String>> = u.label_rm.iter().map(|k| (k.clone(), None)).collect();
    for (k, val) in &u.label_add {
        if k.is_empty() || k.contains(['=', ' ']) {
            return Err(ClusterError::InvalidArgument(format!(
                "label key {k:?} must be non-empty, without '=' or spaces"
            )));
        }
        labels.insert(k.clone(), Some(val.clone()));
    }
    if !labels.is_empty() {
        p.labels = Some(labels);
    }
    if p.is_empty() {
        return Err(ClusterError::InvalidArgument(
            "nothing to change: give --availability, --label-add or --label-rm (or promote/demote)".into(),
        ));
    }
    p.updated_ms = Some(now_ms());
    Ok(p)
}

/// Applies `u` to the node `ident`; returns the node as it is now.
pub async fn update(raft: &RaftHandle, ident: &str, u: &NodeUpdate) -> Result<(View, Node), ClusterError> {
    let v = view(raft).await?;
    let n = v.find_node(ident)?.clone();
    let p = patch_for(&v, &n, u)?;
    let r = raft.write(p.command(&n.id)).await?;
    if let Some(c) = r.conflict {
        return Err(ClusterError::NotFound(format!("node {}: {c}", n.hostname)));
    }
    tracing::info!(node = %n.id, availability = %u.availability, "node updated");
    let v = view(raft).await?;
    let n = v.find_node(&n.id)?.clone();
    Ok((v, n))
}

/// Removes a worker for good (down, or `force`); it is remembered so its
/// certificate cannot bring it back.
pub async fn remove(raft: &RaftHandle, ident: &str, force: bool) -> Result<Node, ClusterError> {
    let v = view(raft).await?;
    let n = v.find_node(ident)?.clone();
    if n.role == Role::Manager {
        return Err(ClusterError::FailedPrecondition(format!(
            "{} is a manager: demote it first (`orcctl node demote {}`) so the quorum stays whole",
            n.hostname, n.hostname
        )));
    }
    if n.status != NodeStatus::Down && !force {
        return Err(ClusterError::FailedPrecondition(format!(
            "{} is {:?}, not down: shut it down first, or use --force (its tasks move elsewhere)",
            n.hostname, n.status
        )));
    }
    let gone = RemovedNode { hostname: n.hostname.clone(), removed_ms: now_ms() };
    let cmds = vec![
        Command::delete(Kind::Node, n.id.clone()),
        Command::put(n.id.clone(), Object::RemovedNode(std::sync::Arc::new(gone))),
    ];
    raft.write(Command::Batch(cmds)).await?;
    tracing::info!(node = %n.id, hostname = %n.hostname, "node removed from the cluster");
    Ok(n)
}
