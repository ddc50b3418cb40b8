//! `orc.cluster.v1.Cluster`: the cluster as this manager sees it. Trace,
//! call the domain function, convert.

use std::sync::Arc;

use orc_proto::cluster::cluster_server::Cluster;
use orc_proto::cluster::*;
use tonic::{Request, Response, Status};

use super::convert::{person_cert_to_proto, status_to_proto};
use crate::cluster::{autolock, certs, join, renew, settings, tokens};
use crate::state::NodeState;

pub struct ClusterService {
    state: Arc<NodeState>,
}

impl ClusterService {
    pub fn new(state: Arc<NodeState>) -> Self {
        Self { state }
    }

    fn identity(&self) -> Result<crate::pki::identity::Identity, Status> {
        self.state.identity().ok_or_else(|| Status::failed_precondition("the node has no cluster identity"))
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        Ok(Response::new(status_to_proto(self.state.raft.status().await?)))
    }

    async fn join(&self, req: Request<JoinRequest>) -> Result<Response<JoinResponse>, Status> {
        Ok(Response::new(join::admit(&self.state, req.into_inner()).await?))
    }

    async fn renew(&self, req: Request<RenewRequest>) -> Result<Response<RenewResponse>, Status> {
        let caller = super::peer::identity(&req)?;
        let csr = req.into_inner().csr_pem;
        Ok(Response::new(renew::sign(&self.state, &caller, &csr).await?))
    }

    async fn update(&self, req: Request<UpdateClusterRequest>) -> Result<Response<ClusterSettings>, Status> {
        let r = req.into_inner();
        let image_policy = match (r.clear_image_policy, r.image_policy_json.trim()) {
            (true, _) => settings::PolicyChange::Clear,
            (false, "") => settings::PolicyChange::Keep,
            (false, json) => settings::PolicyChange::Set(
                serde_json::from_str(json)
                    .map_err(|e| Status::invalid_argument(format!("--image-policy: not a policy: {e}")))?,
            ),
        };
        let u = settings::SettingsUpdate {
            node_cert_ttl_secs: r.node_cert_ttl_secs,
            max_replicas: r.max_replicas,
            container_cidr: r.container_cidr,
            subnet_size: r.subnet_size,
            image_policy,
        };
        let s = settings::update(&self.state.raft, u).await?;
        let mut unlock_key = String::new();
        if let Some(on) = r.autolock {
            if let Some(k) = autolock::set(&self.state, on).await? {
                unlock_key = k.text().to_string();
            }
        }
        Ok(Response::new(ClusterSettings {
            autolock: r.autolock.unwrap_or(s.autolock.is_some()),
            unlock_key,
            node_cert_ttl_secs: s.node_cert_ttl().as_secs(),
            max_replicas: s.max_replicas(),
            container_cidr: s.network.map(|p| p.cidr.to_string()).unwrap_or_default(),
            subnet_size: s.network.map(|p| u32::from(p.prefix)).unwrap_or_default(),
            image_policy_json: s.image_policy.as_ref().and_then(|p| serde_json::to_string(p).ok()).unwrap_or_default(),
        }))
    }

    async fn unlock(&self, req: Request<UnlockRequest>) -> Result<Response<UnlockResponse>, Status> {
        let key = crate::pki::autolock::UnlockKey::parse(&req.into_inner().key)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        self.state.unlock(key).await?;
        Ok(Response::new(UnlockResponse {}))
    }

    async fn unlock_key(&self, req: Request<UnlockKeyRequest>) -> Result<Response<UnlockKeyResponse>, Status> {
        let key = autolock::unlock_key(&self.state, req.into_inner().rotate).await?;
        Ok(Response::new(UnlockKeyResponse { key: key.text().to_string() }))
    }

    async fn recover(&self, req: Request<RecoverRequest>) -> Result<Response<RecoverResponse>, Status> {
        let force = req.into_inner().force_new_cluster;
        let me = self.identity()?;
        let addr = self.state.advertise_addr();
        let (log_index, demoted) = settings::recover(&self.state.raft, &me.meta.node_id, &addr, force).await?;
        Ok(Response::new(RecoverResponse { log_index, demoted }))
    }

    async fn join_token(&self, req: Request<JoinTokenRequest>) -> Result<Response<JoinTokenResponse>, Status> {
        let req = req.into_inner();
        super::audit::target(&req.role);
        let id = self.identity()?;
        let ca_der = join::pem_der(&id.ca_cert_pem)?;
        let token = tokens::join_token(&self.state.raft, &ca_der, &req.role, req.rotate).await?;
        Ok(Response::new(JoinTokenResponse { token }))
    }

    async fn issue_cert(&self, req: Request<IssueCertRequest>) -> Result<Response<IssueCertResponse>, Status> {
        let by = super::peer::identity(&req)?;
        let r = req.into_inner();
        super::audit::target(&r.name);
        let (cert_pem, ca_cert_pem, c) =
            certs::issue(&self.state, &by, &r.name, &r.role, &r.namespaces, r.ttl_secs, &r.csr_pem).await?;
        Ok(Response::new(IssueCertResponse { cert_pem, ca_cert_pem, cert: Some(person_cert_to_proto(&c)) }))
    }

    async fn renew_cert(&self, req: Request<RenewCertRequest>) -> Result<Response<IssueCertResponse>, Status> {
        let caller = super::peer::identity(&req)?;
        let (cert_pem, ca_cert_pem, c) = certs::renew(&self.state, &caller, &req.into_inner().csr_pem).await?;
        Ok(Response::new(IssueCertResponse { cert_pem, ca_cert_pem, cert: Some(person_cert_to_proto(&c)) }))
    }

    async fn revoke_cert(&self, req: Request<RevokeCertRequest>) -> Result<Response<RevokeCertResponse>, Status> {
        let by = super::peer::identity(&req)?;
        let cert = req.into_inner().cert;
        super::audit::target(&cert);
        let revoked = certs::revoke(&self.state.raft, &by, &cert).await?;
        Ok(Response::new(RevokeCertResponse { revoked: revoked.iter().map(person_cert_to_proto).collect() }))
    }

    async fn list_certs(&self, _: Request<ListCertsRequest>) -> Result<Response<ListCertsResponse>, Status> {
        let all = certs::list(&self.state.raft).await?;
        Ok(Response::new(ListCertsResponse { certs: all.iter().map(person_cert_to_proto).collect() }))
    }
}
