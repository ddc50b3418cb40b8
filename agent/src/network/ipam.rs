//! Addresses for tasks, in two levels as Swarm and Kubernetes' node IPAM
//! do it: the cluster's container CIDR is split into one subnet per node
//! and network, leased by the leader through Raft ([`lease`]); within its
//! lease a node assigns task addresses itself ([`Addresses`]), never one
//! twice, kept on STATE so they survive agent restarts.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// Swarm's default address pool.
pub const DEFAULT_CIDR: &str = "10.0.0.0/8";
/// Swarm's default subnet size: a /24 per node and network (253 tasks).
pub const DEFAULT_PREFIX: u8 = 24;

/// What is wrong with a CIDR or why no address is left.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    #[error("container CIDR {0:?} is not an IPv4 network such as 10.0.0.0/8")]
    BadCidr(String),
    #[error(
        "container CIDR {cidr} cannot hold two /{prefix} subnets (nodes' and services' virtual IPs): give a \
         network larger than /{prefix}, or a longer --subnet-size"
    )]
    BadPrefix { cidr: Ipv4Net, prefix: u8 },
    #[error("a /{0} subnet holds too few tasks: use /16 to /28")]
    SubnetSize(u8),
    #[error(
        "container CIDR {cidr} overlaps {net} of this node's interface {iface}: choose another with \
         `orcctl cluster init --container-cidr`"
    )]
    Overlap { cidr: Ipv4Net, net: Ipv4Net, iface: String },
    #[error(
        "container CIDR {cidr} has no /{prefix} left for another node ({leased} leased): remove nodes that \
         left, or start the cluster with a larger CIDR"
    )]
    NoSubnet { cidr: Ipv4Net, prefix: u8, leased: usize },
    #[error(
        "subnet {subnet} of this node has no address left ({held} tasks hold one): spread the tasks, or use \
         larger subnets"
    )]
    NoAddress { subnet: Ipv4Net, held: usize },
    #[error(
        "no virtual IP is left in {range} ({held} services hold one): remove services, or start the cluster \
         with a larger container CIDR"
    )]
    NoVip { range: Ipv4Net, held: usize },
}

/// A container CIDR and subnet size as the user gave them, checked.
pub fn parse_pool(cidr: &str, prefix: u8) -> Result<Ipv4Net, IpamError> {
    let net: Ipv4Net = cidr.trim().parse().map_err(|_| IpamError::BadCidr(cidr.to_string()))?;
    if !(16..=28).contains(&prefix) {
        return Err(IpamError::SubnetSize(prefix));
    }
    // At least two blocks: one for nodes, the last for services' virtual IPs.
    if net.prefix_len() >= prefix {
        return Err(IpamError::BadPrefix { cidr: net, prefix });
    }
    Ok(net.trunc())
}

/// Refuses a container CIDR that overlaps one of the node's own networks
/// (`(interface, network)`): its tasks' traffic would be routed wrong.
pub fn check_overlap(cidr: Ipv4Net, own: &[(String, Ipv4Net)]) -> Result<(), IpamError> {
    for (iface, net) in own {
        if cidr.contains(&net.network()) || net.contains(&cidr.network()) {
            return Err(IpamError::Overlap { cidr, net: *net, iface: iface.clone() });
        }
    }
    Ok(())
}

/// The lowest subnet of `cidr` of size `prefix` neither in `leased` nor
/// overlapping a network of `avoid` (the nodes' own: with the default
/// pool, which the user did not choose, those subnets are skipped rather
/// than the pool refused — as Docker's default address pools do).
pub fn lease(cidr: Ipv4Net, prefix: u8, leased: &BTreeSet<Ipv4Net>, avoid: &[Ipv4Net]) -> Result<Ipv4Net, IpamError> {
    let subnets = cidr.subnets(prefix).map_err(|_| IpamError::BadPrefix { cidr, prefix })?;
    let clear = |s: &Ipv4Net| avoid.iter().all(|a| !s.contains(&a.network()) && !a.contains(&s.network()));
    subnets.into_iter().find(|s| !leased.contains(s) && clear(s)).ok_or(IpamError::NoSubnet {
        cidr,
        prefix,
        leased: leased.len(),
    })
}

/// The lowest address of `range` (past its network address, before its
/// broadcast) that `taken` does not hold: a new service's virtual IP.
pub fn vip(range: Ipv4Net, taken: impl Fn(Ipv4Addr) -> bool, held: usize) -> Result<Ipv4Addr, IpamError> {
    let (first, end) = (u32::from(range.network()) + 1, u32::from(range.broadcast()));
    (first..end).map(Ipv4Addr::from).find(|a| !taken(*a)).ok_or(IpamError::NoVip { range, held })
}

/// A node's addresses within its lease: the first host address is the
/// bridge's (the tasks' gateway); tasks get the others, handed out in turn
/// after the last one given (an address just freed is not given again
/// before the others: a peer may still hold it in its ARP or conntrack
/// tables).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Addresses {
    subnet: Ipv4Net,
    /// Address → the task holding it.
    held: BTreeMap<Ipv4Addr, String>,
    /// The last address given.
    last: Option<Ipv4Addr>,
}

impl Addresses {
    pub fn new(subnet: Ipv4Net) -> Self {
        Self { subnet: subnet.trunc(), held: BTreeMap::new(), last: None }
    }

    pub fn subnet(&self) -> Ipv4Net {
        self.subnet
    }

    /// The bridge's address: the subnet's first host.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.subnet.network()) + 1)
    }

    /// Task `task`'s address: the one it holds, or the next free one.
    pub fn assign(&mut self, task: &str) -> Result<Ipv4Addr, IpamError> {
        if let Some((a, _)) = self.held.iter().find(|(_, t)| t.as_str() == task) {
            return Ok(*a);
        }
        // Hosts: past the network address and the gateway, before broadcast.
        let first = u32::from(self.subnet.network()) + 2;
        let end = u32::from(self.subnet.broadcast());
        let count = end.saturating_sub(first);
        let start = self.last.map(u32::from).filter(|a| (first..end).contains(a)).map_or(first, |a| a + 1);
        for i in 0..count {
            let a = Ipv4Addr::from(first + (start - first + i) % count);
            if let std::collections::btree_map::Entry::Vacant(e) = self.held.entry(a) {
                e.insert(task.to_string());
                self.last = Some(a);
                return Ok(a);
            }
        }
        Err(IpamError::NoAddress { subnet: self.subnet, held: self.held.len() })
    }

    /// Frees what task `task` holds.
    pub fn release(&mut self, task: &str) {
        self.held.retain(|_, t| t != task);
    }

    /// Frees the addresses of tasks `live` does not name (tasks that ended
    /// while the agent was down).
    pub fn retain(&mut self, live: impl Fn(&str) -> bool) {
        self.held.retain(|_, t| live(t));
    }

    /// The address task `task` holds.
    pub fn held_by(&self, task: &str) -> Option<Ipv4Addr> {
        self.held.iter().find(|(_, t)| t.as_str() == task).map(|(a, _)| *a)
    }

    pub fn held(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn pools_are_checked_with_what_to_do() {
        assert_eq!(parse_pool("10.1.2.3/8", 24).unwrap(), net("10.0.0.0/8"));
        let e = parse_pool("10.0.0.0/25", 24).unwrap_err();
        assert!(e.to_string().contains("cannot hold two /24 subnets"), "{e}");
        assert!(parse_pool("10.0.0.0/24", 24).is_err(), "no room for the virtual IPs");
        assert!(matches!(parse_pool("ten/8", 24), Err(IpamError::BadCidr(_))));
        assert_eq!(parse_pool("10.0.0.0/8", 30), Err(IpamError::SubnetSize(30)));
        let own = vec![("eth0".to_string(), net("10.0.2.15/24")), ("lo".to_string(), net("127.0.0.1/8"))];
        let e = check_overlap(net("10.0.0.0/8"), &own).unwrap_err().to_string();
        assert!(e.contains("overlaps 10.0.2.15/24 of this node's interface eth0"), "{e}");
        assert!(check_overlap(net("172.30.0.0/16"), &own).is_ok());
        // A node network larger than the pool overlaps it too.
        let wide = vec![("eth1".to_string(), net("10.0.0.0/8"))];
        assert!(check_overlap(net("10.200.0.0/16"), &wide).is_err());
    }

    #[test]
    fn leases_are_the_lowest_free_subnet_until_none_is_left() {
        let pool = net("10.9.0.0/22");
        let mut leased = BTreeSet::new();
        for want in ["10.9.0.0/24", "10.9.1.0/24", "10.9.2.0/24"] {
            let s = lease(pool, 24, &leased, &[]).unwrap();
            assert_eq!(s, net(want));
            leased.insert(s);
        }
        // A lease given back is reused.
        leased.remove(&net("10.9.1.0/24"));
        assert_eq!(lease(pool, 24, &leased, &[]).unwrap(), net("10.9.1.0/24"));
        // Subnets over a node's own network are skipped.
        assert_eq!(lease(pool, 24, &BTreeSet::new(), &[net("10.9.0.15/24")]).unwrap(), net("10.9.1.0/24"));
        assert_eq!(lease(pool, 24, &BTreeSet::new(), &[net("10.9.0.0/23")]).unwrap(), net("10.9.2.0/24"));
        leased.insert(net("10.9.1.0/24"));
        leased.insert(lease(pool, 24, &leased, &[]).unwrap());
        let e = lease(pool, 24, &leased, &[]).unwrap_err();
        assert_eq!(e, IpamError::NoSubnet { cidr: pool, prefix: 24, leased: 4 });
        assert!(e.to_string().contains("no /24 left for another node (4 leased)"));
    }

    #[test]
    fn virtual_ips_are_the_lowest_free_until_none_is_left() {
        let range = net("10.255.0.0/30");
        let mut held: BTreeSet<Ipv4Addr> = BTreeSet::new();
        for want in ["10.255.0.1", "10.255.0.2"] {
            let a = vip(range, |a| held.contains(&a), held.len()).unwrap();
            assert_eq!(a.to_string(), want);
            held.insert(a);
        }
        let e = vip(range, |a| held.contains(&a), held.len()).unwrap_err();
        assert!(e.to_string().contains("no virtual IP is left in 10.255.0.0/30 (2 services hold one)"), "{e}");
        held.remove(&"10.255.0.1".parse().unwrap());
        assert_eq!(vip(range, |a| held.contains(&a), held.len()).unwrap().to_string(), "10.255.0.1");
    }

    #[test]
    fn addresses_are_never_given_twice_and_freed_ones_come_last() {
        let mut a = Addresses::new(net("10.0.5.0/29"));
        assert_eq!(a.gateway(), "10.0.5.1".parse::<Ipv4Addr>().unwrap());
        // .2 to .6: five hosts for tasks.
        let given: Vec<Ipv4Addr> = ["t1", "t2", "t3"].iter().map(|t| a.assign(t).unwrap()).collect();
        assert_eq!(given, ["10.0.5.2", "10.0.5.3", "10.0.5.4"].map(|s| s.parse::<Ipv4Addr>().unwrap()));
        assert_eq!(a.assign("t2").unwrap(), given[1], "a task keeps its address");
        a.release("t1");
        // The freed .2 comes after .5 and .6.
        assert_eq!(a.assign("t4").unwrap().to_string(), "10.0.5.5");
        assert_eq!(a.assign("t5").unwrap().to_string(), "10.0.5.6");
        assert_eq!(a.assign("t6").unwrap().to_string(), "10.0.5.2");
        let e = a.assign("t7").unwrap_err();
        assert_eq!(e, IpamError::NoAddress { subnet: net("10.0.5.0/29"), held: 5 });
        // Tasks gone while the agent was down give theirs back.
        a.retain(|t| t != "t3" && t != "t4");
        assert_eq!(a.held(), 3);
        let json = serde_json::to_string(&a).unwrap();
        let back: Addresses = serde_json::from_str(&json).unwrap();
        assert_eq!(back, a, "kept on STATE as it is");
        let mut back = back;
        assert_eq!(back.assign("t8").unwrap().to_string(), "10.0.5.4");
    }
}
