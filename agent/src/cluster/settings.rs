//! Cluster-wide settings and recovery after losing the quorum.

use super::error::ClusterError;
use super::objects::{view, Pool, Settings, MAX_CERT_TTL_SECS, MAX_MAX_REPLICAS, MIN_CERT_TTL_SECS};
use crate::model::db::{Command, Object};
use crate::model::image_policy::ImagePolicy;
use crate::model::patch::NodePatch;
use crate::network::ipam;
use crate::pki::role::Role;
use crate::raft::RaftHandle;

/// What `cluster update` changes; a field left at 0 keeps its value.
#[derive(Debug, Clone, Default)]
pub struct SettingsUpdate {
    pub node_cert_ttl_secs: u64,
    pub max_replicas: u64,
    /// "" leaves it.
    pub container_cidr: String,
    /// 0: 24.
    pub subnet_size: u32,
    pub image_policy: PolicyChange,
}

/// What `cluster update` does to the image policy.
#[derive(Debug, Clone, Default)]
pub enum PolicyChange {
    #[default]
    Keep,
    /// Any image runs again.
    Clear,
    Set(ImagePolicy),
}

/// The pool `cidr`/`size` name ("": the default), checked.
pub fn pool(cidr: &str, size: u32) -> Result<Pool, ClusterError> {
    let prefix = match size {
        0 => ipam::DEFAULT_PREFIX,
        n => u8::try_from(n).unwrap_or(u8::MAX),
    };
    let cidr = if cidr.trim().is_empty() { ipam::DEFAULT_CIDR } else { cidr };
    let cidr = ipam::parse_pool(cidr, prefix).map_err(|e| ClusterError::InvalidArgument(e.to_string()))?;
    Ok(Pool { cidr, prefix })
}

/// The pool `cluster init` asked for: `cidr` ("": the default, whose
/// subnets over the nodes' own networks are skipped) must not overlap the
/// node's own networks when given.
pub fn bootstrap_pool(cidr: &str, size: u32) -> Result<Pool, ClusterError> {
    let p = pool(cidr, size)?;
    if !cidr.trim().is_empty() {
        ipam::check_overlap(p.cidr, &crate::network::node::own_interfaces())
            .map_err(|e| ClusterError::InvalidArgument(e.to_string()))?;
    }
    Ok(p)
}

/// Writes the first settings of a new cluster (its pool) before anything
/// else is leased, retrying while its one-member quorum elects itself.
pub async fn record_bootstrap(raft: &RaftHandle, pool: Pool) -> Result<(), ClusterError> {
    let settings = Settings { network: Some(pool), ..Default::default() };
    let mut tries = 0;
    loop {
        match raft.write(Command::put("", Object::Settings(settings.clone()))).await {
            Ok(_) => return Ok(()),
            Err(e) if tries >= 30 => return Err(e.into()),
            Err(e) => tracing::debug!(error = %e, "recording the cluster's first settings; retrying"),
        }
        tries += 1;
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
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
    if !u.container_cidr.is_empty() {
        let v = view(raft).await?;
        if !v.leases.is_empty() {
            return Err(ClusterError::FailedPrecondition(format!(
                "the container CIDR is {} and {} node subnets are leased from it: it cannot change under running \
                 tasks; make a new cluster to use another",
                settings.network.map(|p| p.cidr.to_string()).unwrap_or_default(),
                v.leases.len()
            )));
        }
        settings.network = Some(pool(&u.container_cidr, u.subnet_size)?);
    }
    match u.image_policy {
        PolicyChange::Keep => {}
        PolicyChange::Clear => settings.image_policy = None,
        PolicyChange::Set(p) => {
            p.check().map_err(|e| ClusterError::InvalidArgument(format!("--image-policy: {e}")))?;
            settings.image_policy = Some(p);
        }
    }
    raft.write(Command::put("", Object::Settings(settings.clone()))).await?;
    tracing::info!(
        image_policy_rules = settings.image_policy.as_ref().map_or(0, |p| p.rules.len()),
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
