//! `orc.cluster.v1.Cluster`: the cluster as this manager sees it.

use std::sync::Arc;

use orc_proto::cluster::cluster_server::Cluster;
use orc_proto::cluster::*;
use tonic::{Request, Response, Status};

use crate::state::NodeState;

pub struct ClusterService {
    state: Arc<NodeState>,
}

impl ClusterService {
    pub fn new(state: Arc<NodeState>) -> Self {
        Self { state }
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        Ok(Response::new(self.state.cluster.status().await?))
    }

    async fn join(&self, req: Request<JoinRequest>) -> Result<Response<JoinResponse>, Status> {
        Ok(Response::new(crate::cluster::join::admit(&self.state, req.into_inner()).await?))
    }

    async fn join_token(&self, req: Request<JoinTokenRequest>) -> Result<Response<JoinTokenResponse>, Status> {
        let req = req.into_inner();
        let id = self.state.identity().ok_or_else(|| Status::failed_precondition("the node has no cluster identity"))?;
        let ca_der = crate::cluster::join::pem_der(&id.ca_cert_pem)?;
        let token = self.state.cluster.join_token(&ca_der, &req.role, req.rotate).await?;
        Ok(Response::new(JoinTokenResponse { token }))
    }
}
