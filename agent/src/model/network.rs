//! Container networking in the replicated state: the cluster's address
//! pool, the subnet each node leases per network, and how a service's
//! tasks reach the network.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// The network every task joins unless it runs on its node's own stack.
pub const DEFAULT_NETWORK: &str = "default";
/// Its VXLAN network identifier (Swarm numbers overlay VNIs from 256).
pub const DEFAULT_VNI: u32 = 256;
/// An encrypted network's WireGuard devices listen on UDP
/// `WG_PORT_BASE + (vni - DEFAULT_VNI)`: 51821 up (51820 is WireGuard's own).
pub const WG_PORT_BASE: u16 = 51820;
/// Encrypted networks take VNIs up to this one (ports up to 52075), which
/// the routing mesh never publishes.
pub const MAX_ENCRYPTED_VNI: u32 = DEFAULT_VNI + 255;

/// The UDP port of the WireGuard devices of the encrypted network with
/// VNI `vni`; None above [`MAX_ENCRYPTED_VNI`].
pub fn wg_port(vni: u32) -> Option<u16> {
    let n = vni.checked_sub(DEFAULT_VNI).filter(|_| vni <= MAX_ENCRYPTED_VNI)?;
    WG_PORT_BASE.checked_add(u16::try_from(n).ok()?)
}

/// A DNS label of at most `max` characters: lowercase letters, digits and
/// '-', starting and ending with a letter or digit. Network names are
/// (`<service>.<network>` resolves), and namespace names
/// (`<service>.<namespace>`).
pub fn dns_label(n: &str, max: usize) -> bool {
    (1..=max).contains(&n.len())
        && n.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !n.ends_with('-')
}

/// Whether `key` is a WireGuard key as `wg` writes it: 32 bytes in
/// canonical base64 (43 characters, the last holding 4 bits, and `=`).
pub fn valid_wg_key(key: &str) -> bool {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = key.as_bytes();
    let value = |c: u8| ALPHABET.iter().position(|a| *a == c);
    b.len() == 44
        && b[43] == b'='
        && b[..43].iter().all(|c| value(*c).is_some())
        && value(b[42]).is_some_and(|v| v % 4 == 0)
}

/// The UDP ports encrypted networks may take.
pub fn wg_ports() -> std::ops::RangeInclusive<u16> {
    WG_PORT_BASE..=WG_PORT_BASE + (MAX_ENCRYPTED_VNI - DEFAULT_VNI) as u16
}

/// The cluster's container CIDR and the size of the subnet each node gets
/// per network, chosen at `cluster init`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    pub cidr: Ipv4Net,
    pub prefix: u8,
}

impl Pool {
    /// Where services' virtual IPs come from: the pool's last block of
    /// up to 256 subnets (10.255.0.0/16 of the default 10.0.0.0/8), never
    /// leased to a node. Like Kubernetes' service CIDR, but inside the
    /// pool, so one CIDR is all a user chooses.
    pub fn vips(&self) -> Ipv4Net {
        let len = (self.cidr.prefix_len() + 8).min(self.prefix).max(self.cidr.prefix_len() + 1).min(32);
        let size = 1u64 << (32 - u32::from(len));
        let start = u64::from(u32::from(self.cidr.broadcast())) + 1 - size;
        Ipv4Net::new(Ipv4Addr::from(start as u32), len).unwrap_or(self.cidr)
    }
}

/// The key of network `name` as a service of `namespace` names it: the
/// network of that namespace (`team-a/back`; bare in `default`), or the
/// built-in `default`, which every namespace shares. Keys are what
/// services, leases, task addresses and the nodes refer to networks by.
pub fn network_key(namespace: &str, name: &str) -> String {
    if name == DEFAULT_NETWORK {
        return name.to_string();
    }
    super::namespace::scoped(namespace, name)
}

/// A network key's namespace (None: `default`'s, or the built-in one) and
/// the network's own name, the DNS label tasks use (`<service>.<network>`).
pub fn key_parts(key: &str) -> (Option<&str>, &str) {
    match key.split_once('/') {
        Some((ns, name)) => (Some(ns), name),
        None => (None, key),
    }
}

/// A network made with `orcctl network create`, kept at its key (its name
/// in its namespace, [`network_key`]: what services, leases, claims and
/// DNS names refer to; a network in use cannot be removed, so a key never
/// points at two networks at once). The `default` network is not one of
/// these: it is the cluster's pool, shared by every namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub id: String,
    pub name: String,
    /// Its namespace (empty: `default`): only that namespace's services
    /// join it, and the same name can be a network in each namespace.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Its VXLAN network identifier, unique in the cluster (257 up).
    pub vni: u32,
    /// Where its nodes' subnets (and its services' virtual IPs) come
    /// from: its own CIDR, or none to share the cluster's pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<Pool>,
    /// Traffic between nodes goes through WireGuard, not VXLAN.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub encrypted: bool,
    /// Standalone containers (`orcctl container run --network`) may join it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub attachable: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    pub created_ms: i64,
}

impl Network {
    /// Its key among networks ([`network_key`]).
    pub fn key(&self) -> String {
        network_key(&self.namespace, &self.name)
    }

    /// Where its leases and virtual IPs come from, given the cluster's pool.
    pub fn space(&self, pool: Pool) -> Pool {
        self.subnet.unwrap_or(pool)
    }
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
    /// On an encrypted network: the node's WireGuard public key.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
}

impl SubnetLease {
    pub fn id(network: &str, node: &str) -> String {
        format!("{network}/{node}")
    }
}

/// Where the claim of virtual IP `address` is kept: by address alone, as
/// every node's load balancer maps each VIP to one service whatever its
/// network, so two networks sharing the pool never share a VIP.
pub fn vip_id(address: Ipv4Addr) -> String {
    address.to_string()
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

/// A service as every node's load balancer and DNS server see it: its
/// name, virtual IP and the tasks in rotation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceEndpoints {
    /// The service's id.
    pub id: String,
    pub name: String,
    /// Its namespace (empty: `default`): outside `default`, its DNS name
    /// is `<name>.<namespace>`, so one name in two namespaces stays two.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Its virtual IP per network.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vips: BTreeMap<String, Ipv4Addr>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stateful: bool,
    /// The ports it publishes (the routing mesh and host-mode ports reach
    /// its tasks by their address on `ports_network`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<super::objects::Port>,
    /// Its first network.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ports_network: String,
    /// Its tasks that take traffic: wanted running, running, ready, with
    /// an address; by slot.
    pub endpoints: Vec<Endpoint>,
}

impl ServiceEndpoints {
    /// The name tasks resolve it by: `web` in `default`, `web.team-a` in
    /// namespace `team-a`.
    pub fn dns_name(&self) -> String {
        if self.namespace.is_empty() {
            self.name.clone()
        } else {
            format!("{}.{}", self.name, self.namespace)
        }
    }
}

/// A task in a service's rotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub task: String,
    /// Replicated services: its slot (stateful ones answer `<slot>.<service>`).
    #[serde(default, skip_serializing_if = "super::is_default")]
    pub slot: u64,
    /// Its address on each of the service's networks.
    pub addresses: BTreeMap<String, Ipv4Addr>,
}

/// What every node is sent of the networks: the pool, every lease (its
/// own and those of the nodes its overlay reaches) and every service's
/// endpoints. After the first, a session sends only the leases and
/// services that changed and the ids of those gone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkMap {
    pub pool: Option<Pool>,
    /// The networks beyond `default`, whole in every message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<NetworkRef>,
    pub leases: Vec<SubnetLease>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delta: bool,
    /// With `delta`: ids (`<network>/<node>`) of leases gone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ServiceEndpoints>,
    /// With `delta`: ids of services gone (or no longer on the overlay).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed_services: Vec<String>,
}

/// A network as nodes know it: its key, VNI and own CIDR if it has one
/// (its subnets on each node are the leases).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRef {
    /// Its key ([`network_key`]): `back`, `team-a/back`.
    pub name: String,
    pub vni: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<Ipv4Net>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub encrypted: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub attachable: bool,
}

impl NetworkMap {
    /// Every network with its VNI, `default` first (when there is a pool).
    pub fn all_networks(&self) -> Vec<NetworkRef> {
        let mut out: Vec<NetworkRef> = Vec::new();
        if self.pool.is_some() {
            out.push(NetworkRef {
                name: DEFAULT_NETWORK.into(),
                vni: DEFAULT_VNI,
                subnet: None,
                encrypted: false,
                attachable: false,
            });
        }
        out.extend(self.networks.iter().cloned());
        out
    }

    /// `self` (a whole map) with `next` (whole, or a delta) taken in.
    pub fn take(&mut self, next: NetworkMap) {
        if !next.delta {
            *self = NetworkMap { delta: false, removed: Vec::new(), removed_services: Vec::new(), ..next };
            return;
        }
        self.services.retain(|s| !next.removed_services.contains(&s.id) && !next.services.iter().any(|n| n.id == s.id));
        self.services.extend(next.services);
        self.services.sort_by(|a, b| a.id.cmp(&b.id));
        self.pool = next.pool;
        self.networks = next.networks;
        self.leases.retain(|l| {
            let id = SubnetLease::id(&l.network, &l.node);
            !next.removed.contains(&id) && !next.leases.iter().any(|n| n.network == l.network && n.node == l.node)
        });
        self.leases.extend(next.leases);
        self.leases.sort_by(|a, b| (&a.network, &a.node).cmp(&(&b.network, &b.node)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(cidr: &str, prefix: u8) -> Pool {
        Pool { cidr: cidr.parse().unwrap(), prefix }
    }

    #[test]
    fn wireguard_keys_are_checked_before_they_reach_a_node() {
        assert!(valid_wg_key("yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk="));
        assert!(!valid_wg_key("yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBml="), "bits past the 32 bytes");
        assert!(!valid_wg_key("yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk"));
        assert!(!valid_wg_key("yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3f\nmk="));
        assert!(!valid_wg_key(""));
    }

    #[test]
    fn encrypted_networks_take_one_port_each_in_a_bounded_range() {
        assert_eq!(wg_port(257), Some(51821));
        assert_eq!(wg_port(MAX_ENCRYPTED_VNI), Some(*wg_ports().end()));
        assert_eq!(wg_port(MAX_ENCRYPTED_VNI + 1), None);
        assert_eq!(wg_port(12), None);
    }

    #[test]
    fn virtual_ips_come_from_the_pools_last_block() {
        assert_eq!(pool("10.0.0.0/8", 24).vips().to_string(), "10.255.0.0/16");
        assert_eq!(pool("172.20.0.0/16", 24).vips().to_string(), "172.20.255.0/24");
        assert_eq!(pool("10.9.0.0/22", 24).vips().to_string(), "10.9.3.0/24");
        assert_eq!(pool("10.0.0.0/16", 26).vips().to_string(), "10.0.255.0/24");
    }
}
