//! `orc.cluster.v1.Cluster`: the cluster as this manager sees it.

use std::sync::Arc;

use orc_proto::cluster::cluster_server::Cluster;
use orc_proto::cluster::*;
use tonic::{Request, Response, Status};

use crate::cluster::handle::ClusterHandle;

pub struct ClusterService {
    cluster: Arc<ClusterHandle>,
}

impl ClusterService {
    pub fn new(cluster: Arc<ClusterHandle>) -> Self {
        Self { cluster }
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        Ok(Response::new(self.cluster.status().await?))
    }
}
