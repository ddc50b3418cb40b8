//! The overlay between nodes, in flannel's VXLAN layout: one VXLAN device
//! per network on each node (VNI = the network's), learning off, no
//! multicast. A node holds one address per network on it, the `.0` of its
//! subnet (its VTEP), with a MAC derived from the subnet; for each other
//! node's subnet S at underlay address U it programs
//!
//! - a route `S via S.0 dev <vxlan> onlink`,
//! - a permanent neighbour `S.0 lladdr mac(S)`,
//! - a forwarding entry `mac(S) dst U self permanent`,
//!
//! and removes every such entry it no longer wants: the full desired state
//! from the leases, reconciled level-triggered, not events.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use rtnetlink::packet_route::AddressFamily;

use super::links::Links;
use super::NetError;
use crate::model::objects::SubnetLease;

/// A node's VTEP MAC on the network of `subnet`: locally administered,
/// `02:6f:` and the subnet's four bytes (unique as leases are).
pub fn vtep_mac(subnet: Ipv4Net) -> [u8; 6] {
    let o = subnet.network().octets();
    [0x02, 0x6f, o[0], o[1], o[2], o[3]]
}

/// A node's VTEP address on the network of `subnet`: its `.0`.
pub fn vtep_ip(subnet: Ipv4Net) -> Ipv4Addr {
    subnet.network()
}

/// The entries a node programs for the other nodes on one network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    /// Remote subnet → its VTEP address (the route's gateway).
    pub routes: BTreeMap<Ipv4Net, Ipv4Addr>,
    /// VTEP address → MAC.
    pub neighbours: BTreeMap<Ipv4Addr, [u8; 6]>,
    /// VTEP MAC → underlay address.
    pub fdb: BTreeMap<[u8; 6], Ipv4Addr>,
}

/// What node `me` programs on `network`, from every lease.
pub fn desired(me: &str, network: &str, leases: &[SubnetLease]) -> Desired {
    let mut d = Desired::default();
    for l in leases.iter().filter(|l| l.network == network && l.node != me) {
        let (ip, mac) = (vtep_ip(l.subnet), vtep_mac(l.subnet));
        d.routes.insert(l.subnet, ip);
        d.neighbours.insert(ip, mac);
        d.fdb.insert(mac, l.underlay);
    }
    d
}

/// Makes the VXLAN device `index` carry exactly `want`: adds (replacing)
/// every wanted entry, removes every other route orc made, neighbour and
/// forwarding entry on it. Returns how many entries it removed.
pub async fn program(links: &Links, index: u32, want: &Desired) -> Result<usize, NetError> {
    for (mac, dst) in &want.fdb {
        links.fdb(index, *mac, *dst).await?;
    }
    for (ip, mac) in &want.neighbours {
        links.neighbour(index, *ip, *mac).await?;
    }
    let mut removed = routes(links, index, &want.routes).await?;
    for (ip, _, n) in links.neighbours_on(index, AddressFamily::Inet).await? {
        if ip.is_some_and(|ip| !want.neighbours.contains_key(&ip)) {
            links.delete_neighbour(n).await?;
            removed += 1;
        }
    }
    for (_, mac, n) in links.neighbours_on(index, AddressFamily::Bridge).await? {
        let Ok(mac) = <[u8; 6]>::try_from(mac.as_slice()) else { continue };
        // The device's own address has an entry of its own: not ours to remove.
        if mac[0] == 0x02 && mac[1] == 0x6f && !want.fdb.contains_key(&mac) {
            links.delete_neighbour(n).await?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Makes link `index` carry exactly the routes `want` (remote subnet →
/// its VTEP address, onlink) of those orc makes; returns how many it
/// removed. On a WireGuard device (no link layer) the gateway only names
/// the peer's subnet: the device picks the peer by destination.
pub async fn routes(links: &Links, index: u32, want: &BTreeMap<Ipv4Net, Ipv4Addr>) -> Result<usize, NetError> {
    for (dst, gw) in want {
        links.route_onlink(*dst, *gw, index).await?;
    }
    let mut removed = 0;
    for (dst, r) in links.routes_on(index).await? {
        if !want.contains_key(&dst) {
            links.delete_route(r).await?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(node: &str, subnet: &str, underlay: &str) -> SubnetLease {
        SubnetLease {
            network: "default".into(),
            node: node.into(),
            subnet: subnet.parse().unwrap(),
            underlay: underlay.parse().unwrap(),
            key: String::new(),
        }
    }

    #[test]
    fn each_other_node_is_one_route_one_neighbour_one_forwarding_entry() {
        let leases = vec![
            lease("a", "10.0.1.0/24", "192.168.1.10"),
            lease("b", "10.0.2.0/24", "192.168.1.11"),
            lease("c", "10.0.3.0/24", "192.168.1.12"),
            SubnetLease { network: "other".into(), ..lease("b", "10.9.0.0/24", "192.168.1.11") },
        ];
        let d = desired("a", "default", &leases);
        assert_eq!(d.routes.len(), 2);
        assert_eq!(d.routes[&"10.0.2.0/24".parse().unwrap()], "10.0.2.0".parse::<Ipv4Addr>().unwrap());
        assert_eq!(d.neighbours[&"10.0.3.0".parse().unwrap()], [0x02, 0x6f, 10, 0, 3, 0]);
        assert_eq!(d.fdb[&[0x02, 0x6f, 10, 0, 2, 0]], "192.168.1.11".parse::<Ipv4Addr>().unwrap());
        // A node gone: its entries are no longer wanted.
        let d2 = desired("a", "default", &leases[..2]);
        assert_eq!(d2.routes.len(), 1);
        assert!(!d2.fdb.contains_key(&[0x02, 0x6f, 10, 0, 3, 0]));
    }
}
