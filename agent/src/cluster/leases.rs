//! Subnet leases, on the leader: every node gets a subnet per network as
//! it appears (of the network's own CIDR, or of the cluster's pool: the
//! lowest free one that overlaps no node's own network), keeps it while it
//! is a member (its underlay address follows the node's, and on an
//! encrypted network so does its WireGuard key), and gives it
//! back when it or the network is removed.
//! Only the leader's loop leases, from one view per pass, so no subnet is
//! leased twice; each new lease is a conditional put (absent).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;

use ipnet::Ipv4Net;

use super::objects::{SubnetLease, View};
use crate::model::db::{Command, Kind, Object};
use crate::network::ipam;

/// The address a node's overlay traffic goes to: its API's.
pub fn underlay_of(addr: &str) -> Option<Ipv4Addr> {
    match addr.parse::<std::net::SocketAddr>().ok()?.ip() {
        std::net::IpAddr::V4(ip) if !ip.is_unspecified() => Some(ip),
        _ => None,
    }
}

/// The lease changes the state `v` asks for.
pub fn reconcile(v: &View) -> Vec<Command> {
    let Some(pool) = v.settings.network else { return Vec::new() };
    let mut cmds = Vec::new();
    let mut leased: BTreeSet<Ipv4Net> = v.leases.values().map(|l| l.subnet).collect();
    let own: Vec<Ipv4Net> = v.nodes.values().flat_map(|n| n.networks.iter().copied()).collect();
    let networks = super::networks::all(v);
    for net in &networks {
        let space = net.space(pool);
        let network = net.key();
        let mut avoid = own.clone();
        avoid.push(space.vips());
        for n in v.nodes.values() {
            let Some(underlay) = underlay_of(&n.addr) else { continue };
            let id = SubnetLease::id(&network, &n.id);
            // Only an encrypted network's peers need the node's key.
            let key = if net.encrypted { n.wg_key.clone() } else { String::new() };
            match v.leases.get(&id) {
                Some(l) if l.underlay == underlay && l.key == key => {}
                Some(l) => {
                    let moved = SubnetLease { underlay, key, ..SubnetLease::clone(l) };
                    cmds.push(Command::put(id, Object::Lease(Arc::new(moved))));
                }
                None => match ipam::lease(space.cidr, space.prefix, &leased, &avoid) {
                    Ok(subnet) => {
                        leased.insert(subnet);
                        tracing::info!(%network, node = %n.id, hostname = %n.hostname, %subnet, "subnet leased");
                        let l = SubnetLease { network: network.clone(), node: n.id.clone(), subnet, underlay, key };
                        cmds.push(Command::put_if(id, Object::Lease(Arc::new(l)), 0));
                    }
                    Err(e) => tracing::warn!(%network, node = %n.id, error = %e, "no subnet for this node"),
                },
            }
        }
    }
    for (id, l) in &v.leases {
        if !v.nodes.contains_key(&l.node) {
            tracing::info!(node = %l.node, subnet = %l.subnet, "subnet of a removed node freed");
            cmds.push(Command::delete(Kind::Lease, id.clone()));
        } else if !networks.iter().any(|n| n.key() == l.network) {
            tracing::info!(network = %l.network, subnet = %l.subnet, "subnet of a removed network freed");
            cmds.push(Command::delete(Kind::Lease, id.clone()));
        }
    }
    cmds
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::db::ClusterState;
    use crate::model::objects::{Network, Node, Pool, Settings, DEFAULT_NETWORK};

    fn node(id: &str, addr: &str, nets: &[&str]) -> Command {
        let n = Node {
            id: id.into(),
            addr: addr.into(),
            networks: nets.iter().map(|s| s.parse().unwrap()).collect(),
            ..Default::default()
        };
        Command::put(id, Object::Node(Arc::new(n)))
    }

    fn subnet(s: &ClusterState, n: &str) -> Option<String> {
        s.leases.get(&SubnetLease::id(DEFAULT_NETWORK, n)).map(|l| l.subnet.to_string())
    }

    /// Runs the leader's pass on `s` and applies what it decides.
    fn pass(s: &mut ClusterState) {
        let cmds = reconcile(s);
        apply(s, cmds);
    }

    fn apply(s: &mut ClusterState, cmds: Vec<Command>) {
        for c in cmds {
            let r = s.apply(&c);
            assert_eq!(r.conflict, None);
        }
    }

    #[test]
    fn nodes_get_distinct_subnets_off_their_own_networks_and_give_them_back() {
        let mut s = ClusterState::default();
        assert!(reconcile(&s).is_empty(), "no pool: no leases");
        let pool = Pool { cidr: "10.0.0.0/8".parse().unwrap(), prefix: 24 };
        apply(&mut s, vec![Command::put("", Object::Settings(Settings { network: Some(pool), ..Default::default() }))]);
        // QEMU's user network is 10.0.2.0/24 on every VM.
        apply(&mut s, vec![node("a", "192.168.76.10:7443", &["10.0.2.0/24", "192.168.76.0/24"])]);
        apply(&mut s, vec![node("b", "192.168.76.11:7443", &["10.0.2.0/24"]), node("c", "0.0.0.0:7443", &[])]);
        pass(&mut s);
        assert_eq!(subnet(&s, "a").as_deref(), Some("10.0.0.0/24"));
        assert_eq!(subnet(&s, "b").as_deref(), Some("10.0.1.0/24"));
        assert_eq!(subnet(&s, "c"), None, "no underlay address yet");
        assert!(reconcile(&s).is_empty(), "settled");
        // The next skips the VMs' 10.0.2.0/24.
        apply(&mut s, vec![node("c", "192.168.76.12:7443", &[])]);
        pass(&mut s);
        assert_eq!(subnet(&s, "c").as_deref(), Some("10.0.3.0/24"));
        // A node that moves keeps its subnet; its underlay follows.
        apply(&mut s, vec![node("b", "192.168.76.21:7443", &[])]);
        pass(&mut s);
        let b = &s.leases[&SubnetLease::id(DEFAULT_NETWORK, "b")];
        assert_eq!((b.subnet.to_string().as_str(), b.underlay.to_string().as_str()), ("10.0.1.0/24", "192.168.76.21"));
        // Removed: its subnet is free again, and the next node gets it.
        apply(&mut s, vec![Command::delete(Kind::Node, "b")]);
        pass(&mut s);
        assert_eq!(subnet(&s, "b"), None);
        apply(&mut s, vec![node("d", "192.168.76.13:7443", &[])]);
        pass(&mut s);
        assert_eq!(subnet(&s, "d").as_deref(), Some("10.0.1.0/24"));
    }

    #[test]
    fn every_network_gets_a_subnet_per_node_from_its_space_freed_with_it() {
        let mut s = ClusterState::default();
        let pool = Pool { cidr: "10.0.0.0/8".parse().unwrap(), prefix: 24 };
        apply(&mut s, vec![Command::put("", Object::Settings(Settings { network: Some(pool), ..Default::default() }))]);
        apply(&mut s, vec![node("a", "192.168.76.10:7443", &[]), node("b", "192.168.76.11:7443", &[])]);
        let own = Pool { cidr: "172.30.0.0/16".parse().unwrap(), prefix: 24 };
        let back = Network { name: "back".into(), vni: 257, subnet: Some(own), ..Default::default() };
        let shared = Network { name: "shared".into(), vni: 258, ..Default::default() };
        apply(&mut s, vec![Command::put("back", Object::Network(Arc::new(back)))]);
        apply(&mut s, vec![Command::put("shared", Object::Network(Arc::new(shared)))]);
        pass(&mut s);
        let of =
            |s: &ClusterState, net: &str, n: &str| s.leases.get(&SubnetLease::id(net, n)).map(|l| l.subnet.to_string());
        assert_eq!(of(&s, "back", "a").as_deref(), Some("172.30.0.0/24"));
        assert_eq!(of(&s, "back", "b").as_deref(), Some("172.30.1.0/24"));
        // The pool is shared: no subnet is leased twice across networks.
        let mut pooled: Vec<String> =
            ["default", "shared"].iter().flat_map(|net| ["a", "b"].map(|n| of(&s, net, n).unwrap())).collect();
        pooled.sort();
        pooled.dedup();
        assert_eq!(pooled.len(), 4, "{pooled:?}");
        assert!(reconcile(&s).is_empty(), "settled");
        // Removed: its leases are freed.
        apply(&mut s, vec![Command::delete(Kind::Network, "back")]);
        pass(&mut s);
        assert_eq!(of(&s, "back", "a"), None);
        assert_eq!(s.leases.len(), 4);
    }

    #[test]
    fn an_encrypted_networks_leases_carry_the_nodes_key_and_follow_it() {
        let mut s = ClusterState::default();
        let pool = Pool { cidr: "10.0.0.0/8".parse().unwrap(), prefix: 24 };
        apply(&mut s, vec![Command::put("", Object::Settings(Settings { network: Some(pool), ..Default::default() }))]);
        let keyed = |key: &str| Node {
            id: "a".into(),
            addr: "192.168.76.10:7443".into(),
            wg_key: key.into(),
            ..Default::default()
        };
        apply(&mut s, vec![Command::put("a", Object::Node(Arc::new(keyed("k1"))))]);
        let secret = Network { name: "secret".into(), vni: 257, encrypted: true, ..Default::default() };
        apply(&mut s, vec![Command::put("secret", Object::Network(Arc::new(secret)))]);
        pass(&mut s);
        let key = |s: &ClusterState, net: &str| s.leases[&SubnetLease::id(net, "a")].key.clone();
        assert_eq!(key(&s, "secret"), "k1");
        assert_eq!(key(&s, DEFAULT_NETWORK), "", "a plain network's lease carries no key");
        // A renewed certificate, a new key: the lease follows, its subnet kept.
        let before = s.leases[&SubnetLease::id("secret", "a")].subnet;
        apply(&mut s, vec![Command::put("a", Object::Node(Arc::new(keyed("k2"))))]);
        pass(&mut s);
        assert_eq!(key(&s, "secret"), "k2");
        assert_eq!(s.leases[&SubnetLease::id("secret", "a")].subnet, before);
        assert!(reconcile(&s).is_empty(), "settled");
    }
}
