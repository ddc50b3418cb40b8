//! The routes of a task on several networks. Its first network holds its
//! default route; what it reaches on a further network beyond that
//! network's subnet on its own node (the other nodes' subnets of it, or
//! its own CIDR, and the VIPs of the services on it) needs a route through
//! that network's interface. Without one the packets leave by the first
//! network, carrying its address, and die at the border the node keeps
//! between networks (and a WireGuard peer would refuse their source).
//! Kept level-triggered with the map, like the overlay's entries.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

use ipnet::Ipv4Net;

use super::links::Links;
use super::{overlay, NetError};
use crate::model::objects::NetworkMap;

/// The file in a task's run directory listing its networks, in order.
pub const ORDER_FILE: &str = "networks";

/// Destination → the task's interface (`eth<i>`, i ≥ 1) for a task on
/// `order` on node `me`.
pub fn desired(order: &[String], me: &str, map: &NetworkMap) -> BTreeMap<Ipv4Net, usize> {
    let networks = map.all_networks();
    let mut out = BTreeMap::new();
    for (i, name) in order.iter().enumerate().skip(1) {
        match networks.iter().find(|n| &n.name == name).and_then(|n| n.subnet) {
            Some(cidr) => {
                out.insert(cidr, i);
            }
            None => {
                for l in map.leases.iter().filter(|l| &l.network == name && l.node != me) {
                    out.insert(l.subnet, i);
                }
            }
        }
        for vip in map.services.iter().filter_map(|s| s.vips.get(name)) {
            out.insert(Ipv4Net::from(*vip), i);
        }
    }
    out
}

/// Makes the routes orc keeps in namespace `ns` exactly `want`, through
/// `gateways[i]` (the node's address on the task's i-th network).
pub async fn sync(ns: &Path, want: &BTreeMap<Ipv4Net, usize>, gateways: &[Ipv4Addr]) -> Result<(), NetError> {
    let links = Links::connect_in(ns)?;
    for (i, gateway) in gateways.iter().enumerate().skip(1) {
        let Some(dev) = links.get(&format!("eth{i}")).await? else { continue };
        let routes: BTreeMap<Ipv4Net, Ipv4Addr> =
            want.iter().filter(|(_, e)| **e == i).map(|(dst, _)| (*dst, *gateway)).collect();
        overlay::routes(&links, dev.index, &routes).await?;
    }
    Ok(())
}

/// The networks task directory `dir` lists (none: not on the overlay).
pub fn order(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join(ORDER_FILE))
        .map(|s| s.lines().filter(|l| !l.is_empty()).map(str::to_string).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::objects::{NetworkRef, Pool, ServiceEndpoints, SubnetLease};

    fn lease(network: &str, node: &str, subnet: &str) -> SubnetLease {
        SubnetLease {
            network: network.into(),
            node: node.into(),
            subnet: subnet.parse().unwrap(),
            underlay: "192.168.1.1".parse().unwrap(),
            key: String::new(),
        }
    }

    #[test]
    fn further_networks_route_their_other_subnets_cidrs_and_vips_through_their_interface() {
        let map = NetworkMap {
            pool: Some(Pool { cidr: "10.0.0.0/8".parse().unwrap(), prefix: 24 }),
            networks: vec![
                NetworkRef { name: "secret".into(), vni: 257, subnet: None, encrypted: true, attachable: false },
                NetworkRef {
                    name: "back".into(),
                    vni: 258,
                    subnet: Some("172.30.0.0/16".parse().unwrap()),
                    encrypted: false,
                    attachable: true,
                },
            ],
            leases: vec![
                lease("default", "a", "10.0.0.0/24"),
                lease("default", "b", "10.0.1.0/24"),
                lease("secret", "a", "10.0.2.0/24"),
                lease("secret", "b", "10.0.3.0/24"),
                lease("back", "a", "172.30.0.0/24"),
            ],
            services: vec![ServiceEndpoints {
                id: "s1".into(),
                name: "db".into(),
                vips: [("secret".to_string(), "10.255.0.7".parse().unwrap())].into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let order = |o: &[&str]| o.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let want = desired(&order(&["default", "secret", "back"]), "a", &map);
        let net = |s: &str| s.parse::<Ipv4Net>().unwrap();
        assert_eq!(
            want,
            BTreeMap::from([(net("10.0.3.0/24"), 1), (net("10.255.0.7/32"), 1), (net("172.30.0.0/16"), 2)]),
            "the first network (default) has the default route; its own node's subnets are connected"
        );
        assert!(desired(&order(&["secret"]), "a", &map).is_empty(), "one network: the default route does it");
    }
}
