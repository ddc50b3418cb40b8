//! Cluster-wide settings and recovery after losing the quorum.

use super::error::ClusterError;
use super::objects::{view, Settings, MAX_CERT_TTL_SECS, MAX_MAX_REPLICAS, MIN_CERT_TTL_SECS};
use crate::model::db::{Command, Object};
use crate::model::patch::NodePatch;
use crate::pki::role::Role;
use crate::raft::RaftHandle;

/// What `cluster update` changes; a field left at 0 keeps its value.
#[derive(Debug, Clone, Copy, Default)]
pub struct SettingsUpdate {
    pub node_cert_ttl_secs: u64,
    pub max_replicas: u64,
}

/// `cluster update`: every value checked against its range first.
pub async fn update(raft: &RaftHandle, u: SettingsUpdate) -> Result<Settings, ClusterError> {
    let mut settings = view(raft).await?.settings;
    if u.node_cert_ttl_secs != 0 {
        if !(MIN_CERT_TTL_SECS..=MAX_CERT_TTL_SECS).contains(&u.node_cert_ttl_secs) {
            return Err(ClusterError::InvalidArgument(format!(
                "--cert-ttl {}s: a node certificate lives {MIN_CERT_TTL_SECS} s to {} days",
                u.node_cert_ttl_secs,
                MAX_CERT_TTL_SECS / 86_400
            )));
        }
        settings.node_cert_ttl_secs = u.node_cert_ttl_secs;
    }
    if u.max_replicas != 0 {
        if u.max_replicas > MAX_MAX_REPLICAS {
            return Err(ClusterError::InvalidArgument(format!(
                "--max-replicas {}: at most {MAX_MAX_REPLICAS}",
                u.max_replicas
            )));
        }
        settings.max_replicas = u.max_replicas;
    }
    raft.write(Command::put("", Object::Settings(settings.clone()))).await?;
    tracing::info!(
        node_cert_ttl_secs = settings.node_cert_ttl().as_secs(),
        max_replicas = settings.max_replicas(),
        "cluster settings updated"
    );
    Ok(settings)
}

/// `cluster recover --force-new-cluster` on the manager `me` (reachable at
/// `addr`): it becomes the only voter keeping log and state, and every other
/// manager is demoted in the state. Returns the membership entry's index and
/// the demoted nodes.
pub async fn recover(
    raft: &std::sync::Arc<RaftHandle>,
    me: &str,
    addr: &str,
    force: bool,
) -> Result<(u64, Vec<String>), ClusterError> {
    if !force {
        return Err(ClusterError::InvalidArgument(
            "recovering makes this manager the only one: pass --force-new-cluster if the others are gone for good"
                .into(),
        ));
    }
    let log_index = raft.force_new_cluster(addr).await?;
    let v = view(raft).await?;
    let demoted: Vec<String> =
        v.nodes.values().filter(|n| n.role == Role::Manager && n.id != me).map(|n| n.id.clone()).collect();
    let cmds = demoted
        .iter()
        .map(|id| {
            let p = NodePatch { role: Some(Role::Worker), ..NodePatch::message("demoted by cluster recover") };
            p.command(id)
        })
        .collect();
    raft.write(Command::Batch(cmds)).await?;
    tracing::warn!(log_index, demoted = ?demoted, "cluster recovered on this manager");
    Ok((log_index, demoted))
}
