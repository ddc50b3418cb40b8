//! Certificate renewal. Nodes renew before expiry (half the configured
//! lifetime left), at once when their certificate outlives a shortened
//! setting, and when their role in the cluster changed (promote, demote):
//! a new key, a CSR, `Cluster.Renew` to a manager, which signs it with the
//! role of the node's Node object and the cluster's lifetime.

use std::time::Duration;

use orc_proto::cluster as pb;

use super::error::ClusterError;
use crate::error::AgentError;
use crate::pki::ca::{self, CertKey};
use crate::pki::role::{PeerIdentity, Role};
use crate::state::NodeState;

/// The manager's side: sign the caller's CSR for its current role.
pub async fn sign(state: &NodeState, caller: &PeerIdentity, csr_pem: &str) -> Result<pb::RenewResponse, ClusterError> {
    let id =
        state.identity().ok_or_else(|| ClusterError::FailedPrecondition("this node is not in a cluster".into()))?;
    let ca_key =
        id.ca_key_pem.clone().ok_or_else(|| ClusterError::FailedPrecondition("this node is not a manager".into()))?;
    let started = state.raft.linearizable().await?;
    let (node, removed, settings) = {
        let a = started.sm.applied.read().await;
        let node = a.state.nodes.get(&caller.name).cloned();
        (node, a.state.removed_nodes.contains_key(&caller.name), a.state.settings.clone())
    };
    if removed {
        return Err(ClusterError::PermissionDenied(format!("node {} was removed from the cluster", caller.name)));
    }
    let role = node.as_ref().map(|n| n.role).unwrap_or(caller.role);
    let ca = CertKey { cert_pem: id.ca_cert_pem.clone(), key_pem: ca_key.clone() };
    let cert_pem = ca::sign_csr(&ca, &id.meta.cluster_id, &caller.name, role, &[], settings.node_cert_ttl(), csr_pem)
        .map_err(|e| ClusterError::InvalidArgument(format!("the certificate request: {e}")))?;
    tracing::info!(node = %caller.name, role = %role, ttl_secs = settings.node_cert_ttl().as_secs(), "node certificate renewed");
    // Under autolock a manager renewing is not handed the CA key: it holds
    // its own, or is locked and waits for the operator. A promoted worker
    // gets it (and seals it under the unlock key once it follows the state).
    let hand_over = role == Role::Manager && !(settings.autolock.is_some() && caller.role == Role::Manager);
    Ok(pb::RenewResponse {
        cert_pem,
        role: role.as_str().into(),
        ca_key_pem: if hand_over { ca_key } else { String::new() },
    })
}

/// Seconds the certificate has left (negative: expired).
pub fn remaining(cert_pem: &str) -> Option<i64> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).ok()?;
    let cert = pem.parse_x509().ok()?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_secs() as i64;
    Some(cert.validity().not_after.timestamp() - now)
}

/// Whether the node should renew now: half the lifetime left, a
/// certificate longer than the setting allows, or another role wanted.
pub fn due(cert_pem: &str, ttl: Duration, have: Role, want: Option<Role>) -> bool {
    if want.is_some_and(|w| w != have) {
        return true;
    }
    let ttl = ttl.as_secs() as i64;
    match remaining(cert_pem) {
        Some(left) => left < ttl / 2 || left > ttl + 60,
        None => true,
    }
}

/// The node's side: new key, CSR, signed by a manager, adopted.
pub async fn renew(state: &NodeState, channel: tonic::transport::Channel) -> Result<Role, AgentError> {
    let (key_pem, csr_pem) = ca::new_csr()?;
    let res = orc_proto::cluster::cluster_client::ClusterClient::new(channel)
        .renew(pb::RenewRequest { csr_pem })
        .await
        .map_err(|s| AgentError::Unavailable(format!("renewing the node certificate: {}", s.message())))?
        .into_inner();
    let role = Role::of_node(&res.role);
    let ca_key = (!res.ca_key_pem.is_empty()).then_some(res.ca_key_pem);
    state.renew(CertKey { cert_pem: res.cert_pem, key_pem }, role, ca_key).await?;
    // The WireGuard key is renewed with the certificate: the next session
    // reports it, and the peers take it from the node's leases.
    if let Err(e) = crate::network::wg::Keys::at(state.state_dir()).rotate().await {
        tracing::warn!(error = %e, "the WireGuard key was not renewed: the old one stays");
    }
    Ok(role)
}

/// How often a node looks at its certificate.
pub fn check_every(ttl: Duration) -> Duration {
    (ttl / 10).clamp(Duration::from_secs(1), Duration::from_secs(60))
}
