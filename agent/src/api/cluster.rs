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

    async fn renew(&self, req: Request<RenewRequest>) -> Result<Response<RenewResponse>, Status> {
        let caller = crate::api::peer::identity(&req)?;
        let csr = req.into_inner().csr_pem;
        Ok(Response::new(crate::cluster::renew::sign(&self.state, &caller, &csr).await?))
    }

    async fn update(&self, req: Request<UpdateClusterRequest>) -> Result<Response<ClusterSettings>, Status> {
        use crate::cluster::objects::{Settings, SETTINGS};
        let req = req.into_inner();
        let v = self.state.cluster.view().await?;
        let mut settings: Settings = v.settings.clone();
        if req.node_cert_ttl_secs != 0 {
            if req.node_cert_ttl_secs < 10 {
                return Err(Status::invalid_argument("a node certificate must live at least 10 seconds"));
            }
            settings.node_cert_ttl_secs = req.node_cert_ttl_secs;
        }
        let cmd = crate::cluster::objects::put(SETTINGS.0, SETTINGS.1, &settings);
        self.state.cluster.write(cmd).await?;
        tracing::info!(node_cert_ttl_secs = settings.node_cert_ttl().as_secs(), "cluster settings updated");
        Ok(Response::new(ClusterSettings { node_cert_ttl_secs: settings.node_cert_ttl().as_secs() }))
    }

    async fn recover(&self, req: Request<RecoverRequest>) -> Result<Response<RecoverResponse>, Status> {
        use crate::cluster::objects::{now_ms, patch, NODES};
        if !req.into_inner().force_new_cluster {
            return Err(Status::invalid_argument(
                "recovering makes this manager the only one: pass --force-new-cluster if the others are gone for good",
            ));
        }
        let me =
            self.state.identity().ok_or_else(|| Status::failed_precondition("the node has no cluster identity"))?;
        let log_index = self.state.cluster.force_new_cluster(&self.state.advertise_addr()).await?;
        let v = self.state.cluster.view().await?;
        let demoted: Vec<String> =
            v.nodes.values().filter(|n| n.role == "manager" && n.id != me.meta.node_id).map(|n| n.id.clone()).collect();
        let cmds = demoted
            .iter()
            .map(|id| patch(NODES, id, serde_json::json!({"role": "worker", "message": "demoted by cluster recover", "updated_ms": now_ms()})))
            .collect();
        self.state.cluster.write(crate::cluster::command::Command::Batch(cmds)).await?;
        tracing::warn!(log_index, demoted = ?demoted, "cluster recovered on this manager");
        Ok(Response::new(RecoverResponse { log_index, demoted }))
    }

    async fn join_token(&self, req: Request<JoinTokenRequest>) -> Result<Response<JoinTokenResponse>, Status> {
        let req = req.into_inner();
        let id =
            self.state.identity().ok_or_else(|| Status::failed_precondition("the node has no cluster identity"))?;
        let ca_der = crate::cluster::join::pem_der(&id.ca_cert_pem)?;
        let token = self.state.cluster.join_token(&ca_der, &req.role, req.rotate).await?;
        Ok(Response::new(JoinTokenResponse { token }))
    }
}
