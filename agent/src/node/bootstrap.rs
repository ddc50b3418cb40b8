//! `Bootstrap`: this node creates the cluster CA, becomes its first manager
//! and returns an admin client identity.

use orc_proto::machine::{BootstrapRequest, BootstrapResponse};
use rand::Rng;

use crate::error::AgentError;
use crate::pki::ca::{self, NODE_TTL, PERSON_TTL};
use crate::pki::identity::{Identity, IdentityMeta};
use crate::pki::role::Role;
use crate::state::NodeState;

fn random_id() -> String {
    let bytes: [u8; 8] = rand::rng().random();
    hex::encode(bytes)
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 63 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

pub fn do_bootstrap(state: &NodeState, req: BootstrapRequest) -> Result<BootstrapResponse, AgentError> {
    state.check_maintenance_token(&req.maintenance_token)?;
    if state.joins_at_start {
        return Err(AgentError::FailedPrecondition(
            "this node joins a cluster by itself (orc.join= on its command line): it cannot be bootstrapped".into(),
        ));
    }
    let cluster_name = if req.cluster_name.is_empty() { "orc".to_string() } else { req.cluster_name };
    let admin_name = if req.admin_name.is_empty() { "admin".to_string() } else { req.admin_name };
    for (what, v) in [("cluster name", &cluster_name), ("admin name", &admin_name)] {
        if !valid_name(v) {
            return Err(AgentError::InvalidArgument(format!(
                "{what} {v:?}: use 1-63 letters, digits, '-', '_' or '.'"
            )));
        }
    }
    let mut admin = None;
    let id = state.adopt(|| {
        let cluster_id = random_id();
        let node_id = random_id();
        let ca = ca::new_ca(&cluster_id, &cluster_name)?;
        let node = ca::issue(&ca, &cluster_id, &node_id, Role::Manager, NODE_TTL)?;
        admin = Some(ca::issue(&ca, &cluster_id, &admin_name, Role::Admin, PERSON_TTL)?);
        Ok(Identity {
            meta: IdentityMeta { node_id, cluster_id, cluster_name: cluster_name.clone(), role: Role::Manager },
            ca_cert_pem: ca.cert_pem,
            ca_key_pem: Some(ca.key_pem),
            node,
            at_rest: Default::default(),
        })
    })?;
    let admin = admin.ok_or_else(|| AgentError::Io("admin certificate was not issued".into()))?;
    tracing::info!(cluster_id = %id.meta.cluster_id, node_id = %id.meta.node_id, cluster = %cluster_name, "cluster bootstrapped; serving mutual TLS from now on");
    Ok(BootstrapResponse {
        cluster_id: id.meta.cluster_id,
        node_id: id.meta.node_id,
        ca_cert_pem: id.ca_cert_pem,
        admin_cert_pem: admin.cert_pem,
        admin_key_pem: admin.key_pem,
    })
}
