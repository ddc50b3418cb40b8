//! `orc.cluster.v1.Nodes`, on any manager: trace, call the domain function
//! in [`crate::cluster::nodes`], convert.

use std::sync::Arc;

use orc_proto::cluster as pb;
use orc_proto::cluster::nodes_server::Nodes;
use tonic::{Request, Response, Status};

use super::convert::node_to_proto;
use crate::cluster::nodes::{self, NodeUpdate};
use crate::cluster::objects::{view, Node, View};
use crate::raft::{raft_id, RaftHandle};
use crate::state::NodeState;

pub struct NodesService {
    state: Arc<NodeState>,
}

impl NodesService {
    pub fn new(state: Arc<NodeState>) -> Self {
        Self { state }
    }

    fn to_proto(&self, v: &View, n: &Node) -> pb::Node {
        node_proto(&self.state.raft, v, n)
    }
}

/// A node as the API shows it, with its place in this manager's quorum.
pub fn node_proto(raft: &RaftHandle, v: &View, n: &Node) -> pb::Node {
    let status = match raft_id(&n.id) {
        Ok(rid) => raft.manager_status(rid),
        Err(_) if raft.running() => "not in the quorum",
        Err(_) => "",
    };
    node_to_proto(v, n, status)
}

#[tonic::async_trait]
impl Nodes for NodesService {
    async fn list(&self, _: Request<pb::ListNodesRequest>) -> Result<Response<pb::ListNodesResponse>, Status> {
        let v = view(&self.state.raft).await?;
        let mut nodes: Vec<pb::Node> = v.nodes.values().map(|n| self.to_proto(&v, n)).collect();
        nodes.sort_by(|a, b| a.hostname.cmp(&b.hostname).then(a.id.cmp(&b.id)));
        Ok(Response::new(pb::ListNodesResponse { nodes }))
    }

    async fn inspect(&self, req: Request<pb::InspectNodeRequest>) -> Result<Response<pb::Node>, Status> {
        let v = view(&self.state.raft).await?;
        let n = v.find_node(&req.into_inner().node).map_err(Status::from)?;
        Ok(Response::new(self.to_proto(&v, n)))
    }

    async fn update(&self, req: Request<pb::UpdateNodeRequest>) -> Result<Response<pb::Node>, Status> {
        let caller = crate::pki::peer::caller(&req);
        let req = req.into_inner();
        super::audit::target(&req.node);
        if !req.role.is_empty() {
            super::authz::require_admin(super::authz::AdminOnly::NodeRole, caller.as_ref())?;
        }
        let u = NodeUpdate {
            availability: req.availability,
            role: req.role,
            label_add: req.label_add.into_iter().collect(),
            label_rm: req.label_rm,
        };
        let (v, n) = nodes::update(&self.state.raft, &req.node, &u).await?;
        Ok(Response::new(self.to_proto(&v, &n)))
    }

    async fn remove(&self, req: Request<pb::RemoveNodeRequest>) -> Result<Response<pb::RemoveNodeResponse>, Status> {
        let req = req.into_inner();
        super::audit::target(&req.node);
        let n = nodes::remove(&self.state.raft, &req.node, req.force).await?;
        Ok(Response::new(pb::RemoveNodeResponse { id: n.id }))
    }
}
