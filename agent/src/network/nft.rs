//! The node's nftables rules, generated as `nft -f` text and loaded as one
//! transaction (the table is replaced whole: what is loaded is what the
//! state says, nothing left from before).
//!
//! Why the `nft` binary and not netlink: the ruleset is text a person can
//! read in `docs/networking.md`, diff in tests (golden text) and load by
//! hand to debug; nft compiles it to the kernel's bytecode and loads it in
//! one atomic batch. The netlink crates for nf_tables need libmnl/libnftnl
//! (shared objects only in Debian) or are GPL. See docs/networking.md.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::NetError;
use crate::model::objects::Protocol;

/// Where the node image carries nft.
pub const NFT: &str = "/usr/sbin/nft";

/// orc's table (family `ip`): nothing else of the node's is touched.
pub const TABLE: &str = "orc";

/// What the rules are made from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    /// The networks' address spaces (the cluster's pool, networks' own
    /// CIDRs): traffic from them to anywhere else is masqueraded.
    pub spaces: Vec<Ipv4Net>,
    /// The networks on this node, kept apart from each other.
    pub networks: Vec<Segment>,
    /// Services' virtual IPs and the addresses of their tasks in rotation.
    pub services: Backends,
    /// Ports published on this node and where each goes: an empty list is
    /// refused (no ready task it may reach).
    pub published: Published,
}

/// (protocol, published port) → its backends.
pub type Published = BTreeMap<(Protocol, u16), Vec<MeshBackend>>;

/// Where a published port may send a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct MeshBackend {
    pub address: Ipv4Addr,
    pub target: u16,
    /// Masqueraded (the routing mesh: the task may be on another node, so
    /// its replies must come back through this one), or not (local and
    /// host modes: the task is here, and sees the client's address).
    pub masquerade: bool,
}

impl MeshBackend {
    fn chain(&self, protocol: Protocol) -> String {
        let kind = if self.masquerade { "mep" } else { "lep" };
        format!("{kind}-{}-{protocol}-{}", self.address, self.target)
    }
}

/// One network on the node: its devices (bridge, VXLAN or WireGuard) and its
/// bridge's address (where its DNS server listens).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub devices: Vec<String>,
    pub gateway: Ipv4Addr,
}

/// Virtual IP → the addresses of the service's tasks in rotation.
pub type Backends = BTreeMap<Ipv4Addr, Vec<Ipv4Addr>>;

/// The packet mark of connections a task makes to its own service that
/// land on itself (hairpin): masqueraded, so the replies come back
/// through the bridge (kube-proxy's mark).
const HAIRPIN_MARK: &str = "0x00004000";

/// The ruleset text for `r`: replaces the table in one transaction.
///
/// The load balancer has kube-proxy's nftables layout: a verdict map from
/// virtual IP to a chain per service, which picks one of its endpoint
/// chains at random; an endpoint chain marks a hairpin connection and
/// DNATs to the task. A VIP with no task in rotation is in the
/// `no-endpoints` set, rejected (connection refused) rather than left to
/// time out. A VIP forwards every port, as Swarm's do.
pub fn ruleset(r: &Rules) -> String {
    let mut s = String::new();
    // Create-then-delete: the delete cannot fail on a missing table, and
    // the new one is loaded in the same transaction.
    let _ = writeln!(s, "table ip {TABLE}");
    let _ = writeln!(s, "delete table ip {TABLE}");
    let _ = writeln!(s, "table ip {TABLE} {{");
    // Chains first: the maps name them.
    let endpoints: BTreeSet<Ipv4Addr> = r.services.values().flatten().copied().collect();
    for ep in &endpoints {
        let _ = writeln!(s, "  chain ep-{ep} {{");
        let _ = writeln!(s, "    ip saddr {ep} meta mark set meta mark | {HAIRPIN_MARK}");
        let _ = writeln!(s, "    dnat to {ep}");
        let _ = writeln!(s, "  }}");
    }
    // The routing mesh: a chain per (backend, protocol, target port), a
    // chain per published port choosing among them.
    let mesh: BTreeSet<(Protocol, MeshBackend)> =
        r.published.iter().flat_map(|((proto, _), bs)| bs.iter().map(|b| (*proto, *b))).collect();
    for (proto, b) in &mesh {
        let _ = writeln!(s, "  chain {} {{", b.chain(*proto));
        let (addr, target) = (b.address, b.target);
        if b.masquerade {
            let _ = writeln!(s, "    meta mark set meta mark | {HAIRPIN_MARK}");
        } else {
            let _ = writeln!(s, "    ip saddr {addr} meta mark set meta mark | {HAIRPIN_MARK}");
        }
        let _ = writeln!(s, "    meta l4proto {proto} dnat to {addr}:{target}");
        let _ = writeln!(s, "  }}");
    }
    for ((proto, port), bs) in r.published.iter().filter(|(_, b)| !b.is_empty()) {
        let _ = writeln!(s, "  chain pub-{proto}-{port} {{");
        pick(&mut s, bs.iter().map(|b| b.chain(*proto)).collect());
        let _ = writeln!(s, "  }}");
    }
    for (vip, eps) in r.services.iter().filter(|(_, e)| !e.is_empty()) {
        let _ = writeln!(s, "  chain svc-{vip} {{");
        pick(&mut s, eps.iter().map(|ep| format!("ep-{ep}")).collect());
        let _ = writeln!(s, "  }}");
    }
    let served: Vec<String> =
        r.services.iter().filter(|(_, e)| !e.is_empty()).map(|(vip, _)| format!("{vip} : goto svc-{vip}")).collect();
    block(&mut s, "map services", &["type ipv4_addr : verdict"], &served);
    let empty: Vec<String> = r.services.iter().filter(|(_, e)| e.is_empty()).map(|(vip, _)| vip.to_string()).collect();
    block(&mut s, "set no-endpoints", &["type ipv4_addr"], &empty);
    let (served, empty): (Vec<_>, Vec<_>) = r.published.iter().partition(|(_, b)| !b.is_empty());
    let served: Vec<String> =
        served.iter().map(|((proto, port), _)| format!("{proto} . {port} : goto pub-{proto}-{port}")).collect();
    block(&mut s, "map published", &["type inet_proto . inet_service : verdict"], &served);
    let empty: Vec<String> = empty.iter().map(|((proto, port), _)| format!("{proto} . {port}")).collect();
    block(&mut s, "set no-backends", &["type inet_proto . inet_service"], &empty);
    let spaces: Vec<String> = r.spaces.iter().map(|n| n.to_string()).collect();
    block(&mut s, "set spaces", &["type ipv4_addr", "flags interval"], &spaces);
    let all_devices: Vec<String> = r.networks.iter().flat_map(|n| n.devices.iter().cloned()).collect();
    let gateways: Vec<String> = r.networks.iter().map(|n| n.gateway.to_string()).collect();
    // `dstnat` (-100) is a name nft takes for prerouting only.
    for (chain, priority) in [("prerouting", "dstnat"), ("output", "-100")] {
        let _ = writeln!(s, "  chain {chain} {{");
        let _ = writeln!(s, "    type nat hook {chain} priority {priority}; policy accept;");
        let _ = writeln!(s, "    ip daddr vmap @services");
        // Published ports on any of the node's addresses but loopback
        // (kube-proxy's nftables mode leaves localhost out too).
        let _ = writeln!(s, "    fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @published");
        let _ = writeln!(s, "  }}");
    }
    let _ = writeln!(s, "  chain postrouting {{");
    let _ = writeln!(s, "    type nat hook postrouting priority srcnat; policy accept;");
    let _ = writeln!(s, "    meta mark & {HAIRPIN_MARK} == {HAIRPIN_MARK} masquerade");
    let _ = writeln!(s, "    ip saddr @spaces ip daddr != @spaces masquerade");
    let _ = writeln!(s, "  }}");
    let _ = writeln!(s, "  chain forward {{");
    let _ = writeln!(s, "    type filter hook forward priority filter; policy accept;");
    let _ = writeln!(s, "    ct state new ip daddr @no-endpoints reject");
    // Networks apart: nothing is routed from one network's devices to
    // another's (a VIP's DNAT has happened by now: a service reached
    // through its VIP on the client's network is on that network).
    if r.networks.len() > 1 {
        for n in &r.networks {
            let own = set_of(&n.devices);
            let _ = writeln!(s, "    iifname {own} oifname {} oifname != {own} drop", set_of(&all_devices));
        }
    }
    // Segments sized for the path's MTU (the overlay's is below the underlay's).
    let _ = writeln!(s, "    tcp flags syn / syn,rst tcp option maxseg size set rt mtu");
    let _ = writeln!(s, "  }}");
    let _ = writeln!(s, "  chain input {{");
    let _ = writeln!(s, "    type filter hook input priority filter; policy accept;");
    // A published port with no task to reach: refused, not left to whatever
    // else listens on the node.
    let _ = writeln!(s, "    ct state new meta l4proto . th dport @no-backends reject");
    // A task reaches its own network's bridge address (its DNS server),
    // not those of other networks.
    if r.networks.len() > 1 {
        for n in &r.networks {
            let _ = writeln!(
                s,
                "    iifname {} ip daddr {{ {} }} ip daddr != {} drop",
                set_of(&n.devices),
                gateways.join(", "),
                n.gateway
            );
        }
    }
    let _ = writeln!(s, "  }}");
    let _ = writeln!(s, "  chain filter-output {{");
    let _ = writeln!(s, "    type filter hook output priority filter; policy accept;");
    let _ = writeln!(s, "    ct state new ip daddr @no-endpoints reject");
    let _ = writeln!(s, "  }}");
    let _ = writeln!(s, "}}");
    s
}

/// A map or set (`what`: "map services") with its declaration `lines`
/// and its `elements` (no elements line when there are none).
fn block(s: &mut String, what: &str, lines: &[&str], elements: &[String]) {
    let _ = writeln!(s, "  {what} {{");
    for l in lines {
        let _ = writeln!(s, "    {l}");
    }
    if !elements.is_empty() {
        let _ = writeln!(s, "    elements = {{ {} }}", elements.join(", "));
    }
    let _ = writeln!(s, "  }}");
}

/// The rule sending a connection to one of `chains` (not empty): the
/// only one, or one at random.
fn pick(s: &mut String, chains: Vec<String>) {
    if let [one] = chains.as_slice() {
        let _ = writeln!(s, "    goto {one}");
    } else {
        let picks: Vec<String> = chains.iter().enumerate().map(|(i, c)| format!("{i} : goto {c}")).collect();
        let _ = writeln!(s, "    numgen random mod {} vmap {{ {} }}", chains.len(), picks.join(", "));
    }
}

/// `{ "a", "b" }`.
fn set_of(devices: &[String]) -> String {
    let quoted: Vec<String> = devices.iter().map(|d| format!("\"{d}\"")).collect();
    format!("{{ {} }}", quoted.join(", "))
}

/// Where the node image carries conntrack.
pub const CONNTRACK: &str = "/usr/sbin/conntrack";

/// Where a flow entered the load balancer: a virtual IP, or a port
/// published on the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Front {
    Vip(Ipv4Addr),
    Port(u16),
}

/// Forgets the UDP flows through `front` that went to `backend` (it left
/// the rotation): without it, a client's flow keeps going to the old task
/// for as long as it sends. TCP flows are left to end: a task leaving
/// drains its connections before it is stopped, and a stopped one resets
/// them.
pub async fn forget_flows(front: Front, backend: Ipv4Addr) -> Result<(), NetError> {
    let bin = if std::path::Path::new(CONNTRACK).exists() { CONNTRACK } else { "conntrack" };
    let front = match front {
        Front::Vip(vip) => ["--orig-dst".to_string(), vip.to_string()],
        Front::Port(port) => ["--orig-port-dst".to_string(), port.to_string()],
    };
    let out = tokio::process::Command::new(bin)
        .args(["-D", "-p", "udp"])
        .args(front)
        .args(["--reply-src", &backend.to_string()])
        .output()
        .await
        .map_err(|e| NetError::Nft(format!("running conntrack: {e} (is conntrack installed?)")))?;
    // Exit 1 with "0 flow entries have been deleted" is not a failure.
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && !err.contains("0 flow entries") {
        return Err(NetError::Nft(format!("conntrack: {}", err.trim())));
    }
    Ok(())
}

/// Loads `text` with `nft -f -`.
pub async fn load(text: &str) -> Result<(), NetError> {
    use tokio::io::AsyncWriteExt;
    // Where the image has it; elsewhere (tests on a host) from PATH.
    let bin = if std::path::Path::new(NFT).exists() { NFT } else { "nft" };
    let mut child = tokio::process::Command::new(bin)
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| NetError::Nft(format!("running nft: {e} (is nftables installed?)")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(text.as_bytes()).await.map_err(|e| NetError::Nft(format!("writing to nft: {e}")))?;
    }
    let out = child.wait_with_output().await.map_err(|e| NetError::Nft(format!("waiting for nft: {e}")))?;
    if !out.status.success() {
        return Err(NetError::Nft(String::from_utf8_lossy(&out.stderr).trim().to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ruleset_is_the_golden_text() {
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        let mut services = BTreeMap::new();
        services.insert(ip("10.255.0.1"), vec![ip("10.0.0.2"), ip("10.0.1.3")]);
        services.insert(ip("10.255.0.2"), vec![ip("10.0.1.4")]);
        services.insert(ip("10.255.0.3"), vec![]);
        let mb = |a: &str, target: u16, masquerade: bool| MeshBackend { address: ip(a), target, masquerade };
        let mut published = BTreeMap::new();
        published.insert((Protocol::Tcp, 8080), vec![mb("10.0.0.2", 80, true), mb("10.0.1.3", 80, true)]);
        published.insert((Protocol::Udp, 5353), vec![mb("10.0.0.2", 53, false)]);
        published.insert((Protocol::Tcp, 9000), vec![]);
        let r = Rules { spaces: vec!["10.0.0.0/8".parse().unwrap()], services, published, ..Default::default() };
        let want = "\
table ip orc
delete table ip orc
table ip orc {
  chain ep-10.0.0.2 {
    ip saddr 10.0.0.2 meta mark set meta mark | 0x00004000
    dnat to 10.0.0.2
  }
  chain ep-10.0.1.3 {
    ip saddr 10.0.1.3 meta mark set meta mark | 0x00004000
    dnat to 10.0.1.3
  }
  chain ep-10.0.1.4 {
    ip saddr 10.0.1.4 meta mark set meta mark | 0x00004000
    dnat to 10.0.1.4
  }
  chain mep-10.0.0.2-tcp-80 {
    meta mark set meta mark | 0x00004000
    meta l4proto tcp dnat to 10.0.0.2:80
  }
  chain mep-10.0.1.3-tcp-80 {
    meta mark set meta mark | 0x00004000
    meta l4proto tcp dnat to 10.0.1.3:80
  }
  chain lep-10.0.0.2-udp-53 {
    ip saddr 10.0.0.2 meta mark set meta mark | 0x00004000
    meta l4proto udp dnat to 10.0.0.2:53
  }
  chain pub-tcp-8080 {
    numgen random mod 2 vmap { 0 : goto mep-10.0.0.2-tcp-80, 1 : goto mep-10.0.1.3-tcp-80 }
  }
  chain pub-udp-5353 {
    goto lep-10.0.0.2-udp-53
  }
  chain svc-10.255.0.1 {
    numgen random mod 2 vmap { 0 : goto ep-10.0.0.2, 1 : goto ep-10.0.1.3 }
  }
  chain svc-10.255.0.2 {
    goto ep-10.0.1.4
  }
  map services {
    type ipv4_addr : verdict
    elements = { 10.255.0.1 : goto svc-10.255.0.1, 10.255.0.2 : goto svc-10.255.0.2 }
  }
  set no-endpoints {
    type ipv4_addr
    elements = { 10.255.0.3 }
  }
  map published {
    type inet_proto . inet_service : verdict
    elements = { tcp . 8080 : goto pub-tcp-8080, udp . 5353 : goto pub-udp-5353 }
  }
  set no-backends {
    type inet_proto . inet_service
    elements = { tcp . 9000 }
  }
  set spaces {
    type ipv4_addr
    flags interval
    elements = { 10.0.0.0/8 }
  }
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    ip daddr vmap @services
    fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @published
  }
  chain output {
    type nat hook output priority -100; policy accept;
    ip daddr vmap @services
    fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @published
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    meta mark & 0x00004000 == 0x00004000 masquerade
    ip saddr @spaces ip daddr != @spaces masquerade
  }
  chain forward {
    type filter hook forward priority filter; policy accept;
    ct state new ip daddr @no-endpoints reject
    tcp flags syn / syn,rst tcp option maxseg size set rt mtu
  }
  chain input {
    type filter hook input priority filter; policy accept;
    ct state new meta l4proto . th dport @no-backends reject
  }
  chain filter-output {
    type filter hook output priority filter; policy accept;
    ct state new ip daddr @no-endpoints reject
  }
}
";
        assert_eq!(ruleset(&r), want);
        // No services: empty maps and sets, no elements lines.
        let bare =
            ruleset(&Rules { services: BTreeMap::new(), spaces: Vec::new(), published: BTreeMap::new(), ..r.clone() });
        assert!(!bare.contains("elements") && bare.contains("map services"), "{bare}");
    }

    #[test]
    fn networks_are_kept_apart() {
        let seg = |devs: &[&str], gw: &str| Segment {
            devices: devs.iter().map(|d| d.to_string()).collect(),
            gateway: gw.parse().unwrap(),
        };
        let r = Rules {
            spaces: vec!["10.0.0.0/8".parse().unwrap(), "172.30.0.0/16".parse().unwrap()],
            networks: vec![seg(&["orc0", "orc-vx256"], "10.0.0.1"), seg(&["orc-br257", "orc-vx257"], "172.30.0.1")],
            services: BTreeMap::new(),
            published: BTreeMap::new(),
        };
        let text = ruleset(&r);
        for want in [
            "    elements = { 10.0.0.0/8, 172.30.0.0/16 }\n",
            "    iifname { \"orc0\", \"orc-vx256\" } oifname { \"orc0\", \"orc-vx256\", \"orc-br257\", \"orc-vx257\" } oifname != { \"orc0\", \"orc-vx256\" } drop\n",
            "    iifname { \"orc-br257\", \"orc-vx257\" } ip daddr { 10.0.0.1, 172.30.0.1 } ip daddr != 172.30.0.1 drop\n",
        ] {
            assert!(text.contains(want), "{want} not in\n{text}");
        }
        // One network: nothing to keep apart.
        let one = ruleset(&Rules { networks: r.networks[..1].to_vec(), ..r });
        assert!(!one.contains("drop"), "{one}");
    }
}
