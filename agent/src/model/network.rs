//! Container networking in the replicated state: the cluster's address
//! pool, the subnet each node leases per network, and how a service's
//! tasks reach the network.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// The network every task joins unless it runs on its node's own stack.
pub const DEFAULT_NETWORK: &str = "default";
/// Its VXLAN network identifier (Swarm numbers overlay VNIs from 256).
pub const DEFAULT_VNI: u32 = 256;

/// The cluster's container CIDR and the size of the subnet each node gets
/// per network, chosen at `cluster init`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    pub cidr: Ipv4Net,
    pub prefix: u8,
}

/// A subnet of the pool leased to one node for one network, at
/// `lease/<network>/<node>`. The leader leases one as a node appears and
/// frees it when the node is removed; the node gives its tasks addresses
/// from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetLease {
    pub network: String,
    pub node: String,
    pub subnet: Ipv4Net,
    /// Where the node's overlay traffic goes (the address its API is
    /// reached at).
    pub underlay: Ipv4Addr,
}

impl SubnetLease {
    pub fn id(network: &str, node: &str) -> String {
        format!("{network}/{node}")
    }
}

/// How a service's tasks reach the network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// A namespace of its own with an address on the cluster's overlay.
    #[default]
    Overlay,
    /// The node's own network stack (`--network host`).
    Host,
}

impl NetworkMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Overlay => "overlay",
            Self::Host => "host",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Overlay, Self::Host].into_iter().find(|m| m.as_str() == s)
    }
}

/// What every node is sent of the networks: the pool and every lease (its
/// own and those of the nodes its overlay reaches). After the first, a
/// session sends only the leases that changed and the ids of those gone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkMap {
    pub pool: Option<Pool>,
    pub leases: Vec<SubnetLease>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delta: bool,
    /// With `delta`: ids (`<network>/<node>`) of leases gone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
}

impl NetworkMap {
    /// `self` (a whole map) with `next` (whole, or a delta) taken in.
    pub fn take(&mut self, next: NetworkMap) {
        if !next.delta {
            *self = NetworkMap { delta: false, removed: Vec::new(), ..next };
            return;
        }
        self.pool = next.pool;
        self.leases.retain(|l| {
            let id = SubnetLease::id(&l.network, &l.node);
            !next.removed.contains(&id) && !next.leases.iter().any(|n| n.network == l.network && n.node == l.node)
        });
        self.leases.extend(next.leases);
        self.leases.sort_by(|a, b| (&a.network, &a.node).cmp(&(&b.network, &b.node)));
    }
}
