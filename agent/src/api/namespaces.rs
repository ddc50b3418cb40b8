//! `orc.cluster.v1.Namespaces`, on any manager, and the namespace every
//! Cluster API call works in: the one its `orc-namespace` header names.

use std::sync::Arc;

use orc_proto::cluster as pb;
use orc_proto::cluster::namespaces_server::Namespaces;
use tonic::{Request, Response, Status};

use crate::cluster::namespaces::{self, Listed};
use crate::cluster::objects::view;
use crate::model::db::index::milli;
use crate::model::namespace::{valid_namespace_name, Quota, DEFAULT_NAMESPACE};
use crate::state::NodeState;

/// The namespace the caller of `req` works in (absent header: `default`).
pub fn of<T>(req: &Request<T>) -> Result<String, Status> {
    named(req.metadata())
}

/// The same, from the request's headers.
pub fn named(headers: &tonic::metadata::MetadataMap) -> Result<String, Status> {
    let Some(v) = headers.get(orc_proto::NAMESPACE_HEADER) else { return Ok(DEFAULT_NAMESPACE.into()) };
    let ns = v.to_str().unwrap_or_default();
    if !valid_namespace_name(ns) {
        return Err(Status::invalid_argument(format!(
            "namespace {ns:?}: use 1-63 lowercase letters, digits or '-' (see `orcctl namespace ls`)"
        )));
    }
    Ok(ns.to_string())
}

pub struct NamespacesService {
    state: Arc<NodeState>,
}

impl NamespacesService {
    pub fn new(state: Arc<NodeState>) -> Self {
        Self { state }
    }
}

fn quota_from_proto(q: Option<pb::Quota>) -> Result<Quota, Status> {
    let q = q.unwrap_or_default();
    if let Some(c) = q.cpus.filter(|c| !c.is_finite() || *c < 0.0) {
        return Err(Status::invalid_argument(format!("cpu quota {c}: give a number of CPUs, 0 or more")));
    }
    Ok(Quota {
        milli_cpus: q.cpus.map(milli),
        memory: q.memory,
        tasks: q.tasks,
        volumes: q.volumes,
        volume_bytes: q.volume_size,
    })
}

fn quota_to_proto(q: &Quota) -> pb::Quota {
    pb::Quota {
        cpus: q.milli_cpus.map(|m| m as f64 / 1000.0),
        memory: q.memory,
        tasks: q.tasks,
        volumes: q.volumes,
        volume_size: q.volume_bytes,
    }
}

fn to_proto(l: &Listed) -> pb::Namespace {
    pb::Namespace {
        name: l.namespace.name.clone(),
        quota: Some(quota_to_proto(&l.namespace.quota)),
        used: Some(pb::QuotaUse {
            cpus: l.used.milli_cpus as f64 / 1000.0,
            memory: l.used.memory,
            tasks: l.used.tasks,
            volumes: l.used.volumes,
            volume_size: l.used.volume_bytes,
        }),
        created_ms: l.namespace.created_ms,
        services: l.services as u32,
        secrets: l.secrets as u32,
        configs: l.configs as u32,
        networks: l.networks as u32,
    }
}

#[tonic::async_trait]
impl Namespaces for NamespacesService {
    async fn create(&self, req: Request<pb::CreateNamespaceRequest>) -> Result<Response<pb::Namespace>, Status> {
        let r = req.into_inner();
        super::audit::target(&r.name);
        let quota = quota_from_proto(r.quota)?;
        namespaces::create(&self.state.raft, r.name.trim(), quota).await?;
        let v = view(&self.state.raft).await?;
        Ok(Response::new(to_proto(&namespaces::listed(&v, r.name.trim())?)))
    }

    async fn list(
        &self,
        req: Request<pb::ListNamespacesRequest>,
    ) -> Result<Response<pb::ListNamespacesResponse>, Status> {
        let scope = super::authz::scope(&req);
        let v = view(&self.state.raft).await?;
        let namespaces =
            namespaces::list(&v).iter().filter(|l| scope.allows(&l.namespace.name)).map(to_proto).collect();
        Ok(Response::new(pb::ListNamespacesResponse { namespaces }))
    }

    async fn inspect(&self, req: Request<pb::InspectNamespaceRequest>) -> Result<Response<pb::Namespace>, Status> {
        let scope = super::authz::scope(&req);
        let name = req.into_inner().name;
        scope.check(&name)?;
        let v = view(&self.state.raft).await?;
        Ok(Response::new(to_proto(&namespaces::listed(&v, name.trim())?)))
    }

    async fn set_quota(&self, req: Request<pb::SetQuotaRequest>) -> Result<Response<pb::Namespace>, Status> {
        let r = req.into_inner();
        super::audit::target(&r.name);
        let quota = quota_from_proto(r.quota)?;
        namespaces::set_quota(&self.state.raft, r.name.trim(), quota).await?;
        let v = view(&self.state.raft).await?;
        Ok(Response::new(to_proto(&namespaces::listed(&v, r.name.trim())?)))
    }

    async fn remove(
        &self,
        req: Request<pb::RemoveNamespaceRequest>,
    ) -> Result<Response<pb::RemoveNamespaceResponse>, Status> {
        let r = req.into_inner();
        super::audit::target(&r.name);
        let n = namespaces::remove(&self.state.raft, r.name.trim()).await?;
        Ok(Response::new(pb::RemoveNamespaceResponse { name: n.name }))
    }
}
