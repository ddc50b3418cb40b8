//! `orc.cluster.v1.Secrets` and `orc.cluster.v1.Configs`, on any manager:
//! one service serving either kind, calling [`crate::cluster::payloads`].
//! A secret's data never leaves in a reply.

use std::sync::Arc;

use orc_proto::cluster as pb;
use tonic::{Request, Response, Status};

use crate::cluster::objects::{Payload, PayloadKind, View};
use crate::cluster::payloads::{self, PayloadRequest};
use crate::model::namespace::{scoped, shown};
use crate::state::NodeState;

pub struct PayloadsService {
    state: Arc<NodeState>,
    kind: PayloadKind,
}

impl PayloadsService {
    pub fn new(state: Arc<NodeState>, kind: PayloadKind) -> Self {
        Self { state, kind }
    }

    /// A payload as `ls` shows it (`detail`: a config's data, as `inspect`).
    fn to_proto(&self, v: &View, p: &Payload, detail: bool) -> pb::Payload {
        let data = match (detail, self.kind.sealed()) {
            (true, false) => p.versions.get(&p.latest()).map(|x| x.data.clone()).unwrap_or_default(),
            _ => Vec::new(),
        };
        pb::Payload {
            id: p.id.clone(),
            name: p.name.clone(),
            version: p.latest(),
            versions: p
                .versions
                .iter()
                .map(|(n, x)| pb::PayloadVersion { version: *n, size: x.size, created_ms: x.created_ms })
                .collect(),
            labels: p.labels.clone().into_iter().collect(),
            created_ms: p.created_ms,
            updated_ms: p.updated_ms,
            services: payloads::users(v, self.kind, &scoped(&p.namespace, &p.name)),
            data,
            namespace: shown(&p.namespace).into(),
        }
    }

    async fn create(&self, ns: String, r: pb::CreatePayloadRequest) -> Result<pb::Payload, Status> {
        super::audit::target(&r.name);
        let req = PayloadRequest {
            kind: self.kind,
            namespace: ns,
            name: r.name.trim().to_string(),
            data: zeroize::Zeroizing::new(r.data),
            labels: r.labels.into_iter().collect(),
        };
        let key = payloads::data_key(&self.state);
        let p = payloads::create(&self.state.raft, key.as_ref(), req).await?;
        Ok(self.to_proto(&View::default(), &p, false))
    }

    async fn update(&self, ns: String, r: pb::UpdatePayloadRequest) -> Result<pb::UpdatePayloadResponse, Status> {
        super::audit::target(&r.name);
        let data = zeroize::Zeroizing::new(r.data);
        let key = payloads::data_key(&self.state);
        let raft = &self.state.raft;
        let (p, services) = payloads::update(raft, key.as_ref(), self.kind, &ns, r.name.trim(), &data).await?;
        let mut out = self.to_proto(&View::default(), &p, false);
        out.services = services.clone();
        Ok(pb::UpdatePayloadResponse { payload: Some(out), services })
    }

    async fn list(&self, ns: String) -> Result<pb::ListPayloadsResponse, Status> {
        let v = crate::cluster::objects::view(&self.state.raft).await?;
        let payloads = payloads::table(&v, self.kind)
            .values()
            .filter(|p| shown(&p.namespace) == ns)
            .map(|p| self.to_proto(&v, p, false))
            .collect();
        Ok(pb::ListPayloadsResponse { payloads })
    }

    async fn inspect(&self, ns: String, r: pb::InspectPayloadRequest) -> Result<pb::Payload, Status> {
        let (v, p) = payloads::inspect(&self.state.raft, self.kind, &ns, r.name.trim()).await?;
        Ok(self.to_proto(&v, &p, true))
    }

    async fn remove(&self, ns: String, r: pb::RemovePayloadRequest) -> Result<pb::RemovePayloadResponse, Status> {
        super::audit::target(&r.name);
        let p = payloads::remove(&self.state.raft, self.kind, &ns, r.name.trim()).await?;
        Ok(pb::RemovePayloadResponse { name: p.name })
    }
}

/// The two services are one, by kind.
macro_rules! serve {
    ($trait:path) => {
        #[tonic::async_trait]
        impl $trait for PayloadsService {
            async fn create(&self, req: Request<pb::CreatePayloadRequest>) -> Result<Response<pb::Payload>, Status> {
                PayloadsService::create(self, super::namespaces::of(&req)?, req.into_inner()).await.map(Response::new)
            }

            async fn update(
                &self,
                req: Request<pb::UpdatePayloadRequest>,
            ) -> Result<Response<pb::UpdatePayloadResponse>, Status> {
                PayloadsService::update(self, super::namespaces::of(&req)?, req.into_inner()).await.map(Response::new)
            }

            async fn list(
                &self,
                req: Request<pb::ListPayloadsRequest>,
            ) -> Result<Response<pb::ListPayloadsResponse>, Status> {
                PayloadsService::list(self, super::namespaces::of(&req)?).await.map(Response::new)
            }

            async fn inspect(&self, req: Request<pb::InspectPayloadRequest>) -> Result<Response<pb::Payload>, Status> {
                PayloadsService::inspect(self, super::namespaces::of(&req)?, req.into_inner()).await.map(Response::new)
            }

            async fn remove(
                &self,
                req: Request<pb::RemovePayloadRequest>,
            ) -> Result<Response<pb::RemovePayloadResponse>, Status> {
                PayloadsService::remove(self, super::namespaces::of(&req)?, req.into_inner()).await.map(Response::new)
            }
        }
    };
}

serve!(orc_proto::cluster::secrets_server::Secrets);
serve!(orc_proto::cluster::configs_server::Configs);
