//! Container networking on a node (docs/networking.md).
//!
//! - [`ipam`]: the container CIDR split into per-node subnets, and a
//!   node's addresses within its subnet.
//! - [`netns`]: tasks' network namespaces, kept by bind mounts.
//! - [`links`]: the netlink calls (bridge, VXLAN, veths, routes,
//!   neighbours, forwarding entries).
//! - [`overlay`]: the entries a node programs for the other nodes.
//! - [`wg`]: encrypted networks' WireGuard devices and the node's key.
//! - [`nft`]: the node's nftables rules (masquerade, MSS clamp).
//! - [`files`]: a task's resolv.conf and hosts.
//! - [`node`]: the node's reconciler, and attaching tasks.

pub mod dns;
pub mod files;
pub mod ipam;
pub mod links;
pub mod netns;
pub mod nft;
pub mod node;
pub mod overlay;
pub mod side_routes;
pub mod wg;

use std::path::PathBuf;

use crate::error::AgentError;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("netlink: {0}")]
    Netlink(String),
    #[error("network namespace {}: {what}: {reason}", path.display())]
    Namespace { path: PathBuf, what: String, reason: String },
    #[error("nftables: {0}")]
    Nft(String),
    #[error("WireGuard: {0}")]
    WireGuard(String),
    #[error("container networking: {0}")]
    State(String),
    #[error("this node's container network is not ready ({0})")]
    NotReady(String),
    #[error(
        "network {0:?} is not one this node knows: see `orcctl network ls` (the node must be in a cluster, \
         and have heard from its managers)"
    )]
    NoSuchNetwork(String),
    #[error(
        "network {0:?} does not take standalone containers: only networks created with `orcctl network create \
         NAME --attachable` do"
    )]
    NotAttachable(String),
    #[error(transparent)]
    Ipam(#[from] ipam::IpamError),
}

/// What the Machine API answers for a network error.
impl From<NetError> for AgentError {
    fn from(e: NetError) -> Self {
        match e {
            NetError::NoSuchNetwork(_) => Self::NotFound(e.to_string()),
            NetError::NotAttachable(_) => Self::FailedPrecondition(e.to_string()),
            NetError::NotReady(_) => Self::Unavailable(e.to_string()),
            other => Self::Internal(other.to_string()),
        }
    }
}
