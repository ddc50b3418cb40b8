//! `orc.cluster.v1.Volumes`, on any manager: call the domain function in
//! [`crate::cluster::volumes`], convert.

use std::sync::Arc;

use orc_proto::cluster as pb;
use orc_proto::cluster::volumes_server::Volumes;
use tonic::{Request, Response, Status};

use crate::cluster::objects::{view, View, Volume};
use crate::cluster::volumes::{self, VolumeRequest};
use crate::model::namespace::{scoped, shown};
use crate::state::NodeState;

pub struct VolumesService {
    state: Arc<NodeState>,
}

impl VolumesService {
    pub fn new(state: Arc<NodeState>) -> Self {
        Self { state }
    }
}

fn to_proto(v: &View, x: &Volume) -> pb::Volume {
    let (services, tasks) = volumes::users(v, &scoped(&x.namespace, &x.name));
    let slot = x.slot.clone().unwrap_or_default();
    pb::Volume {
        id: x.id.clone(),
        name: x.name.clone(),
        labels: x.labels.clone().into_iter().collect(),
        created_ms: x.created_ms,
        slot_service: v.services.get(&slot.service).map(|s| s.spec.name.clone()).unwrap_or(slot.service),
        slot: slot.slot,
        node_id: x.node.clone(),
        node_hostname: v.nodes.get(&x.node).map(|n| n.hostname.clone()).unwrap_or_default(),
        services,
        tasks: tasks as u64,
        namespace: shown(&x.namespace).into(),
        size: x.size,
        driver: if x.nfs.is_some() { "nfs" } else { "local" }.into(),
        nfs_source: x.nfs.as_ref().map(|n| n.source()).unwrap_or_default(),
        nfs_dir: x.nfs.as_ref().map(|n| n.dir.clone()).unwrap_or_default(),
        nfs_options: x.nfs.as_ref().map(|n| n.options.clone()).unwrap_or_default(),
    }
}

#[tonic::async_trait]
impl Volumes for VolumesService {
    async fn create(&self, req: Request<pb::CreateVolumeRequest>) -> Result<Response<pb::Volume>, Status> {
        let namespace = super::namespaces::of(&req)?;
        let r = req.into_inner();
        super::audit::target(&r.name);
        let r = VolumeRequest {
            namespace,
            name: r.name.trim().to_string(),
            labels: r.labels.into_iter().collect(),
            size: r.size,
            options: r.options.into_iter().collect(),
        };
        let x = volumes::create(&self.state.raft, r).await?;
        Ok(Response::new(to_proto(&View::default(), &x)))
    }

    async fn list(&self, req: Request<pb::ListVolumesRequest>) -> Result<Response<pb::ListVolumesResponse>, Status> {
        let ns = super::namespaces::of(&req)?;
        let v = view(&self.state.raft).await?;
        let volumes = v.volumes.values().filter(|x| shown(&x.namespace) == ns).map(|x| to_proto(&v, x)).collect();
        Ok(Response::new(pb::ListVolumesResponse { volumes }))
    }

    async fn inspect(&self, req: Request<pb::InspectVolumeRequest>) -> Result<Response<pb::Volume>, Status> {
        let ns = super::namespaces::of(&req)?;
        let (v, x) = volumes::inspect(&self.state.raft, &ns, req.into_inner().name.trim()).await?;
        Ok(Response::new(to_proto(&v, &x)))
    }

    async fn remove(
        &self,
        req: Request<pb::RemoveVolumeRequest>,
    ) -> Result<Response<pb::RemoveVolumeResponse>, Status> {
        let ns = super::namespaces::of(&req)?;
        let name = req.into_inner().name;
        super::audit::target(&name);
        let x = volumes::remove(&self.state.raft, &ns, name.trim()).await?;
        Ok(Response::new(pb::RemoveVolumeResponse { name: x.name }))
    }
}
