//! Cluster-wide settings and recovery after losing the quorum.

use super::error::ClusterError;
use super::objects::{put, view, Settings, SETTINGS};
use super::patch::NodePatch;
use crate::pki::role::Role;
use crate::raft::command::Command;
use crate::raft::RaftHandle;

/// The shortest node certificate lifetime `cluster update --cert-ttl` takes.
pub const MIN_CERT_TTL_SECS: u64 = 10;

/// `cluster update`: a field left at 0 keeps its value.
pub async fn update(raft: &RaftHandle, node_cert_ttl_secs: u64) -> Result<Settings, ClusterError> {
    let mut settings = view(raft).await?.settings;
    if node_cert_ttl_secs != 0 {
        if node_cert_ttl_secs < MIN_CERT_TTL_SECS {
            return Err(ClusterError::InvalidArgument("a node certificate must live at least 10 seconds".into()));
        }
        settings.node_cert_ttl_secs = node_cert_ttl_secs;
    }
    raft.write(put(SETTINGS.0, SETTINGS.1, &settings)).await?;
    tracing::info!(node_cert_ttl_secs = settings.node_cert_ttl().as_secs(), "cluster settings updated");
    Ok(settings)
}

/// `cluster recover --force-new-cluster` on the manager `me` (reachable at
/// `addr`): it becomes the only voter keeping log and state, and every other
/// manager is demoted in the state. Returns the membership entry's index and
/// the demoted nodes.
pub async fn recover(raft: &RaftHandle, me: &str, addr: &str, force: bool) -> Result<(u64, Vec<String>), ClusterError> {
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
