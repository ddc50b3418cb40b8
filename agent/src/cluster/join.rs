//! Joining: the manager's side (check the token, sign the CSR, add a new
//! manager to the quorum) and the joiner's side (pin the manager's CA to
//! the token's digest, send a CSR, adopt the identity).

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::BasicNode;
use rustls::pki_types::CertificateDer;

use super::error::ClusterError;
use super::token::{JoinToken, TokenRole};
use crate::error::AgentError;
use crate::pki::ca::{self, CertKey};
use crate::pki::identity::{Identity, IdentityMeta};
use crate::pki::role::Role;
use crate::raft::{raft_id, RaftError, RaftHandle};
use crate::state::NodeState;
use orc_proto::cluster as pb;

/// The manager's side of `Cluster.Join`.
pub async fn admit(state: &NodeState, req: pb::JoinRequest) -> Result<pb::JoinResponse, ClusterError> {
    let id =
        state.identity().ok_or_else(|| ClusterError::FailedPrecondition("this node is not in a cluster".into()))?;
    let Some(ca_key) = id.ca_key_pem.clone() else {
        return Err(ClusterError::FailedPrecondition("this node is not a manager: join through a manager".into()));
    };
    let token = JoinToken::parse(&req.token).map_err(|e| ClusterError::InvalidArgument(e.to_string()))?;
    let ca_der = pem_der(&id.ca_cert_pem)?;
    let tokens = super::tokens::tokens(&state.raft, &ca_der, None).await?;
    let parse = |t: &str| JoinToken::parse(t).map_err(|e| ClusterError::Internal(e.to_string()));
    let (manager, worker) = (parse(&tokens.manager)?, parse(&tokens.worker)?);
    let role = match token.role(&manager, &worker).map_err(|e| ClusterError::PermissionDenied(e.to_string()))? {
        TokenRole::Manager => Role::Manager,
        TokenRole::Worker => Role::Worker,
    };
    let node_id = hex::encode(rand::random::<[u8; 8]>());
    let ttl = super::objects::view(&state.raft).await?.settings.node_cert_ttl();
    let ca = CertKey { cert_pem: id.ca_cert_pem.clone(), key_pem: ca_key.clone() };
    let cert_pem = ca::sign_csr(&ca, &id.meta.cluster_id, &node_id, role, &[], ttl, &req.csr_pem)
        .map_err(|e| ClusterError::InvalidArgument(format!("the certificate request: {e}")))?;
    tracing::info!(%node_id, role = %role, addr = %req.addr, "node admitted");
    if role == Role::Manager {
        let cluster = state.raft.clone();
        let (nid, addr) = (node_id.clone(), req.addr.clone());
        tokio::spawn(async move {
            if let Err(e) = add_manager(&cluster, &nid, &addr).await {
                tracing::error!(node_id = %nid, error = %e, "adding the manager to the quorum failed");
            }
        });
    }
    Ok(pb::JoinResponse {
        node_id,
        cluster_id: id.meta.cluster_id,
        cluster_name: id.meta.cluster_name,
        role: role.as_str().to_string(),
        cert_pem,
        ca_cert_pem: id.ca_cert_pem,
        ca_key_pem: if role == Role::Manager { ca_key } else { String::new() },
    })
}

/// Learner first (it catches up), then voter.
pub(crate) async fn add_manager(cluster: &RaftHandle, node_id: &str, addr: &str) -> Result<(), RaftError> {
    let s = cluster.get()?;
    let id = raft_id(node_id)?;
    let mut last = String::new();
    for _ in 0..60 {
        match s.raft.add_learner(id, BasicNode { addr: addr.to_string() }, true).await {
            Ok(_) => {
                let voters: BTreeSet<u64> =
                    s.raft.metrics().borrow().membership_config.membership().voter_ids().chain([id]).collect();
                s.raft.change_membership(voters, false).await.map_err(|e| RaftError::Unavailable(e.to_string()))?;
                tracing::info!(%node_id, "manager added to the quorum");
                return Ok(());
            }
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(RaftError::Unavailable(last))
}

pub(crate) fn pem_der(pem: &str) -> Result<CertificateDer<'static>, ClusterError> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| ClusterError::Internal(format!("cluster CA: {e}")))
}

/// The joiner's side of `Machine.Join`.
pub async fn join(state: &NodeState, token: &str, manager: &str) -> Result<Identity, AgentError> {
    let token = JoinToken::parse(token).map_err(|e| AgentError::InvalidArgument(e.to_string()))?;
    state.time.check_for_join().await.map_err(AgentError::FailedPrecondition)?;
    let tls = orc_tls::pin::client_config(orc_tls::pin::Pin::Ca(token.ca_digest.clone()))
        .map_err(|e| AgentError::Io(e.to_string()))?;
    let channel = crate::pki::channel::channel(manager, std::sync::Arc::new(tls))
        .await
        .map_err(|e| AgentError::Unavailable(format!("cannot reach the manager {manager}: {e}")))?;
    let (key_pem, csr_pem) = ca::new_csr()?;
    let res = orc_proto::cluster::cluster_client::ClusterClient::new(channel)
        .join(pb::JoinRequest { token: token.to_string(), csr_pem, addr: state.advertise_addr() })
        .await
        .map_err(|s| match s.code() {
            tonic::Code::PermissionDenied | tonic::Code::InvalidArgument => {
                AgentError::InvalidArgument(format!("the manager refused: {}", s.message()))
            }
            _ => AgentError::Unavailable(format!("joining through {manager}: {}", s.message())),
        })?
        .into_inner();
    // The CA handed over must be the one the token names (the TLS pin saw it
    // in the chain; this is what is kept).
    let ca = pem_der(&res.ca_cert_pem).map_err(|e| AgentError::InvalidArgument(format!("the manager's reply: {e}")))?;
    token.check_ca(&ca).map_err(|e| AgentError::InvalidArgument(e.to_string()))?;
    let role = Role::of_node(&res.role);
    let identity = Identity {
        meta: IdentityMeta { node_id: res.node_id, cluster_id: res.cluster_id, cluster_name: res.cluster_name, role },
        ca_cert_pem: res.ca_cert_pem,
        ca_key_pem: (role == Role::Manager && !res.ca_key_pem.is_empty()).then_some(res.ca_key_pem),
        node: CertKey { cert_pem: res.cert_pem, key_pem },
        at_rest: Default::default(),
    };
    let id = state.adopt(move || Ok(identity))?;
    super::managers::remember(state.state_dir(), &[manager.to_string()]);
    tracing::info!(node_id = %id.meta.node_id, cluster_id = %id.meta.cluster_id, role = %role, "joined the cluster");
    Ok(id)
}

/// `orc.join=TOKEN@manager:port`: joins at start, retrying while the
/// manager cannot be reached; a refused token is logged and not retried.
pub async fn join_at_start(state: &NodeState, spec: &str) {
    let Some((token, manager)) = spec.rsplit_once('@') else {
        tracing::error!(join = %spec, "orc.join must be TOKEN@manager:port");
        return;
    };
    loop {
        match join(state, token, manager).await {
            Ok(_) => {
                state.start_raft(false).await;
                return;
            }
            Err(AgentError::AlreadyMember) => return,
            Err(e @ AgentError::InvalidArgument(_)) => {
                tracing::error!(error = %e, "joining at start was refused; fix orc.join");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, %manager, "joining at start failed; retrying in 5 s");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    }
}
