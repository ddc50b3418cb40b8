//! `orc.cluster.v1.Nodes`, on any manager.

use std::sync::Arc;

use orc_proto::cluster as pb;
use orc_proto::cluster::nodes_server::Nodes;
use tonic::{Request, Response, Status};

use crate::cluster::command::Command;
use crate::cluster::handle::raft_id;
use crate::cluster::objects::*;
use crate::state::NodeState;

pub struct NodesService {
    state: Arc<NodeState>,
}

impl NodesService {
    pub fn new(state: Arc<NodeState>) -> Self {
        Self { state }
    }
}

/// A node by id, unique id prefix or hostname.
pub fn find<'a>(v: &'a View, ident: &str) -> Result<&'a Node, Status> {
    if let Some(n) = v.nodes.get(ident) {
        return Ok(n);
    }
    let matches: Vec<&Node> =
        v.nodes.values().filter(|n| n.hostname == ident || (!ident.is_empty() && n.id.starts_with(ident))).collect();
    match matches.as_slice() {
        [one] => Ok(one),
        [] => Err(Status::not_found(format!("no node {ident:?} in the cluster (see `orcctl node ls`)"))),
        _ => Err(Status::invalid_argument(format!("{ident:?} matches {} nodes: use the node id", matches.len()))),
    }
}

impl NodesService {
    async fn to_proto(&self, v: &View, n: &Node) -> pb::Node {
        let manager_status = match self.state.cluster.get() {
            Ok(s) if n.role == "manager" => {
                let m = s.raft.metrics().borrow().clone();
                let rid = raft_id(&n.id).ok();
                let membership = m.membership_config.membership();
                if rid.is_some() && m.current_leader == rid {
                    "leader"
                } else if rid.is_some_and(|r| membership.voter_ids().any(|x| x == r)) {
                    "reachable"
                } else if rid.is_some_and(|r| membership.get_node(&r).is_some()) {
                    "learner"
                } else {
                    "not in the quorum"
                }
            }
            _ => "",
        };
        pb::Node {
            id: n.id.clone(),
            hostname: n.hostname.clone(),
            role: n.role.clone(),
            addr: n.addr.clone(),
            availability: serde_json::to_value(n.availability)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            status: serde_json::to_value(n.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            message: n.message.clone(),
            labels: n.labels.clone().into_iter().collect(),
            cpus: n.cpus,
            memory: n.memory,
            agent_version: n.agent_version.clone(),
            tasks: v.tasks.values().filter(|t| t.node == n.id && t.live()).count() as u64,
            manager_status: manager_status.into(),
            updated_ms: n.updated_ms,
        }
    }
}

#[tonic::async_trait]
impl Nodes for NodesService {
    async fn list(&self, _: Request<pb::ListNodesRequest>) -> Result<Response<pb::ListNodesResponse>, Status> {
        let v = self.state.cluster.view().await?;
        let mut nodes = Vec::new();
        for n in v.nodes.values() {
            nodes.push(self.to_proto(&v, n).await);
        }
        nodes.sort_by(|a, b| a.hostname.cmp(&b.hostname).then(a.id.cmp(&b.id)));
        Ok(Response::new(pb::ListNodesResponse { nodes }))
    }

    async fn inspect(&self, req: Request<pb::InspectNodeRequest>) -> Result<Response<pb::Node>, Status> {
        let v = self.state.cluster.view().await?;
        let n = find(&v, &req.into_inner().node)?;
        Ok(Response::new(self.to_proto(&v, n).await))
    }

    async fn update(&self, req: Request<pb::UpdateNodeRequest>) -> Result<Response<pb::Node>, Status> {
        let req = req.into_inner();
        let v = self.state.cluster.view().await?;
        let n = find(&v, &req.node)?.clone();
        let mut patch_value = serde_json::Map::new();
        match req.availability.as_str() {
            "" => {}
            a @ ("active" | "pause" | "drain") => {
                patch_value.insert("availability".into(), a.into());
            }
            a => return Err(Status::invalid_argument(format!("availability {a:?} is not active, pause or drain"))),
        }
        match req.role.as_str() {
            "" => {}
            "manager" => {
                patch_value.insert("role".into(), "manager".into());
            }
            "worker" => {
                let managers = v.nodes.values().filter(|m| m.role == "manager").count();
                if n.role == "manager" && managers <= 1 {
                    return Err(Status::failed_precondition(format!(
                        "{} is the last manager: promote another node first",
                        n.hostname
                    )));
                }
                patch_value.insert("role".into(), "worker".into());
            }
            r => return Err(Status::invalid_argument(format!("role {r:?} is not manager or worker"))),
        }
        let mut labels = serde_json::Map::new();
        for k in &req.label_rm {
            labels.insert(k.clone(), serde_json::Value::Null);
        }
        for (k, val) in &req.label_add {
            if k.is_empty() || k.contains(['=', ' ']) {
                return Err(Status::invalid_argument(format!(
                    "label key {k:?} must be non-empty, without '=' or spaces"
                )));
            }
            labels.insert(k.clone(), val.clone().into());
        }
        if !labels.is_empty() {
            patch_value.insert("labels".into(), labels.into());
        }
        if patch_value.is_empty() {
            return Err(Status::invalid_argument(
                "nothing to change: give --availability, --label-add or --label-rm (or promote/demote)",
            ));
        }
        patch_value.insert("updated_ms".into(), now_ms().into());
        let r = self.state.cluster.write(patch(NODES, &n.id, patch_value.into())).await?;
        if let Some(c) = r.conflict {
            return Err(Status::not_found(format!("node {}: {c}", n.hostname)));
        }
        tracing::info!(node = %n.id, availability = %req.availability, "node updated");
        let v = self.state.cluster.view().await?;
        let n = find(&v, &n.id)?;
        Ok(Response::new(self.to_proto(&v, n).await))
    }

    async fn remove(&self, req: Request<pb::RemoveNodeRequest>) -> Result<Response<pb::RemoveNodeResponse>, Status> {
        let req = req.into_inner();
        let v = self.state.cluster.view().await?;
        let n = find(&v, &req.node)?.clone();
        if n.role == "manager" {
            return Err(Status::failed_precondition(format!(
                "{} is a manager: demote it first (`orcctl node demote {}`) so the quorum stays whole",
                n.hostname, n.hostname
            )));
        }
        if n.status != NodeStatus::Down && !req.force {
            return Err(Status::failed_precondition(format!(
                "{} is {:?}, not down: shut it down first, or use --force (its tasks move elsewhere)",
                n.hostname, n.status
            )));
        }
        // Remembered, so the node's certificate cannot bring it back.
        let gone = put(REMOVED_NODES, &n.id, &serde_json::json!({"hostname": n.hostname, "removed_ms": now_ms()}));
        self.state
            .cluster
            .write(Command::Batch(vec![Command::Delete { table: NODES.into(), id: n.id.clone() }, gone]))
            .await?;
        tracing::info!(node = %n.id, hostname = %n.hostname, "node removed from the cluster");
        Ok(Response::new(pb::RemoveNodeResponse { id: n.id }))
    }
}
