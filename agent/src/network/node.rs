//! The node's side of container networking: from the network map its
//! session brings (the pool, the networks, every lease), a reconciler
//! keeps, per network, a bridge, a VXLAN device, the overlay entries and a
//! DNS server, and the nftables rules for all of them as the map says;
//! tasks are attached (a namespace, a veth per network into its bridge, an
//! address from the node's lease on each, resolv.conf and hosts) and
//! detached.
//!
//! Names: the `default` network's bridge is `orc0`, another network's
//! `orc-br<vni>`; VXLAN devices are `orc-vx<vni>`, an encrypted network's
//! WireGuard devices `orc-wg<vni>` (it has no VXLAN device); a task's host ends
//! `orc<task id>` (its first network) and `orc<n><11 of the task id>` (the others);
//! in the task they are `eth0`, `eth1`, … in the order of its networks.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipnet::Ipv4Net;
use tokio::sync::watch;

use super::dns::{self, Names};
use super::ipam::Addresses;
use super::links::{Links, VXLAN_OVERHEAD};
use super::{netns, nft, overlay, side_routes, wg, NetError};
use crate::model::objects::{wg_port, NetworkMap, NetworkRef, Protocol, PublishMode, SubnetLease, DEFAULT_NETWORK};
use crate::runtime::record::MountSpec;
use crate::state::NodeState;

pub const BRIDGE: &str = "orc0";
/// How long a task waits for its node's subnet before it is refused.
const LEASE_WAIT: Duration = Duration::from_secs(30);
/// The reconciler looks again this often even when nothing changed (a
/// device or entry removed by hand comes back).
const RESYNC: Duration = Duration::from_secs(10);
/// After a failure, the reconciler tries again this soon.
const RETRY: Duration = Duration::from_secs(2);
/// After a change, the reconciler waits this long for more before it
/// programs (a burst of changes is one pass: kube-proxy's min sync period,
/// shorter).
const MIN_SYNC: Duration = Duration::from_millis(100);

/// The device that carries network `n` between nodes: VXLAN, or
/// WireGuard when it is encrypted.
fn tunnel_name(n: &NetworkRef) -> String {
    if n.encrypted {
        format!("orc-wg{}", n.vni)
    } else {
        format!("orc-vx{}", n.vni)
    }
}

/// The bridge of network `n`.
fn bridge_name(n: &NetworkRef) -> String {
    if n.name == DEFAULT_NETWORK {
        BRIDGE.to_string()
    } else {
        format!("orc-br{}", n.vni)
    }
}

/// The MAC of the bridge of the network of `subnet`: set, never left to
/// the kernel. A bridge whose address nobody set takes the lowest of its
/// ports' and changes as tasks come and go; a task whose neighbour entry
/// for its gateway still holds the old one is cut off from its gateway (its
/// DNS server, everything outside) until the entry ages out, up to a
/// minute. Locally administered, `02:62:` and the subnet's four bytes.
fn bridge_mac(subnet: Ipv4Net) -> [u8; 6] {
    let o = subnet.network().octets();
    [0x02, 0x62, o[0], o[1], o[2], o[3]]
}

/// The rules last loaded: their text and the UDP flows they may carry.
struct Loaded {
    text: String,
    flows: BTreeSet<(nft::Front, Ipv4Addr)>,
}

/// A network programmed on this node: its lease, its bridge's index and MTU.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Programmed {
    lease: SubnetLease,
    bridge: u32,
    mtu: u32,
}

/// What a task is given on the overlay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub netns: PathBuf,
    /// Its address on each network, in the order it joined them.
    pub addresses: Vec<(String, Ipv4Addr)>,
    pub resolv_conf: PathBuf,
    pub hosts: PathBuf,
}

impl Attachment {
    /// Its generated `/etc/resolv.conf` and `/etc/hosts`, bind-mounted.
    pub fn mounts(&self) -> Vec<MountSpec> {
        let file = |source: &Path, target: &str| MountSpec {
            kind: "bind".into(),
            source: source.to_string_lossy().into_owned(),
            target: target.into(),
            read_only: false,
        };
        vec![file(&self.resolv_conf, "/etc/resolv.conf"), file(&self.hosts, "/etc/hosts")]
    }
}

/// The reconciler's state, for `health`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Status {
    /// No map yet, or the cluster has no pool.
    #[default]
    Off,
    /// Waiting for the leader to lease this node a subnet.
    NoLease,
    /// Programmed: the node's subnet per network and how many peers.
    Ready {
        subnets: Vec<(String, Ipv4Net)>,
        peers: usize,
    },
    Failed(String),
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Off => f.write_str("off: the cluster has no container CIDR, or no session yet"),
            Self::NoLease => f.write_str("waiting for the leader to lease this node a subnet"),
            Self::Ready { subnets, peers } => {
                let s: Vec<String> = subnets.iter().map(|(n, s)| format!("{n} {s}")).collect();
                write!(f, "ready: subnets {}, overlay to {peers} other nodes", s.join(", "))
            }
            Self::Failed(e) => write!(f, "failed: {e}"),
        }
    }
}

pub struct NodeNetwork {
    /// Namespaces of tasks, and their files.
    run_dir: PathBuf,
    /// Where the addresses given are kept.
    addresses_file: PathBuf,
    /// This node's id and the map the leader sent.
    map: watch::Sender<Arc<(String, NetworkMap)>>,
    /// The networks programmed, by name (a bridge is up for each).
    ready: watch::Sender<BTreeMap<String, Programmed>>,
    /// Addresses given, per network.
    addresses: Mutex<BTreeMap<String, Addresses>>,
    status: Mutex<Status>,
    /// The names the DNS servers answer (from the map's services).
    names: watch::Sender<Arc<Names>>,
    /// A DNS server per network, on its bridge's address.
    dns: tokio::sync::Mutex<BTreeMap<String, dns::Server>>,
    /// The rules last loaded.
    loaded: Mutex<Option<Loaded>>,
    /// Each task on several networks: its networks in order and the
    /// routes last set in its namespace.
    side_routes: Mutex<BTreeMap<String, SideRoutes>>,
    /// Those tasks' further networks, for the DNS servers.
    further: watch::Sender<Arc<dns::Further>>,
    /// Where `health` reads the status.
    state: Arc<NodeState>,
}

/// The ports this node publishes and where each goes: an ingress port to
/// every ready task (masqueraded: it may be on another node), a local one
/// to this node's ready tasks (none: refused), a host-mode one to this
/// node's ready tasks when it runs one (none: not this node's).
fn published(map: &NetworkMap, mine: &[(NetworkRef, &SubnetLease)]) -> nft::Published {
    let here = |network: &str, a: Ipv4Addr| mine.iter().any(|(n, l)| n.name == network && l.subnet.contains(&a));
    let mut out = nft::Published::new();
    for s in &map.services {
        let addresses: Vec<Ipv4Addr> =
            s.endpoints.iter().filter_map(|e| e.addresses.get(&s.ports_network).copied()).collect();
        for p in &s.ports {
            let masquerade = p.mode == PublishMode::Ingress;
            let backends: Vec<nft::MeshBackend> = addresses
                .iter()
                .filter(|a| masquerade || here(&s.ports_network, **a))
                .map(|a| nft::MeshBackend { address: *a, target: p.target, masquerade })
                .collect();
            if p.mode == PublishMode::Host && backends.is_empty() {
                continue;
            }
            out.entry((p.protocol, p.published)).or_default().extend(backends);
        }
    }
    out
}

/// A task's networks, in order, and the routes set for them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SideRoutes {
    order: Vec<String>,
    routes: BTreeMap<Ipv4Net, usize>,
}

/// Where a standalone container's attachment is kept: `c-<name>` (task
/// ids are hex, never this).
const CONTAINER_KEY_PREFIX: &str = "c-";

/// The attachment key of standalone container `name`.
pub fn container_key(name: &str) -> String {
    format!("{CONTAINER_KEY_PREFIX}{name}")
}

fn is_container_key(key: &str) -> bool {
    key.starts_with(CONTAINER_KEY_PREFIX)
}

/// The addresses kept on STATE: per network (an older file holds the
/// `default` network's alone).
fn load_addresses(path: &Path) -> BTreeMap<String, Addresses> {
    let Ok(bytes) = std::fs::read(path) else { return BTreeMap::new() };
    if let Ok(all) = serde_json::from_slice::<BTreeMap<String, Addresses>>(&bytes) {
        return all;
    }
    match serde_json::from_slice::<Addresses>(&bytes) {
        Ok(one) => [(DEFAULT_NETWORK.to_string(), one)].into(),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "unreadable task addresses: starting over");
            BTreeMap::new()
        }
    }
}

impl NodeNetwork {
    /// Starts the node's reconciler (idle until a map arrives).
    pub fn start(state: Arc<NodeState>) -> Arc<Self> {
        let (run_dir, state_dir) = (state.config.run_dir.clone(), state.state_dir().to_path_buf());
        let addresses_file = state_dir.join("network").join("addresses.json");
        let addresses = load_addresses(&addresses_file);
        let n = Arc::new(Self {
            run_dir: run_dir.join("net"),
            addresses_file,
            map: watch::Sender::new(Arc::default()),
            ready: watch::Sender::new(BTreeMap::new()),
            addresses: Mutex::new(addresses),
            status: Mutex::default(),
            names: watch::Sender::new(Arc::default()),
            dns: tokio::sync::Mutex::new(BTreeMap::new()),
            loaded: Mutex::new(None),
            side_routes: Mutex::default(),
            further: watch::Sender::new(Arc::default()),
            state,
        });
        tokio::spawn(n.clone().reconcile_loop());
        n
    }

    /// The map the leader sent node `node` (this one).
    pub fn set_map(&self, node: &str, map: NetworkMap) {
        let new = (node.to_string(), map);
        if **self.map.borrow() != new {
            self.map.send_replace(Arc::new(new));
        }
    }

    pub fn status(&self) -> Status {
        crate::sync::lock(&self.status).clone()
    }

    fn set_status(&self, s: Status) {
        let mut cur = crate::sync::lock(&self.status);
        if *cur != s {
            match &s {
                Status::Failed(e) => tracing::warn!(error = %e, "container networking failed"),
                s => tracing::info!(status = %s, "container networking"),
            }
            *crate::sync::write(&self.state.network) = (!matches!(s, Status::Failed(_)), s.to_string());
            *cur = s;
        }
    }

    async fn reconcile_loop(self: Arc<Self>) {
        let mut rx = self.map.subscribe();
        self.modules_loaded().await;
        // The networks and leases the devices were last programmed for, and when.
        let mut programmed: Option<(NetworkMap, std::time::Instant)> = None;
        loop {
            let map = rx.borrow_and_update().clone();
            // Devices and overlay entries when the pool, the networks or
            // the leases changed, and at every resync; rules and names at
            // every pass.
            let devices = programmed.as_ref().is_none_or(|(m, at)| {
                m.pool != map.1.pool
                    || m.networks != map.1.networks
                    || m.leases != map.1.leases
                    || at.elapsed() >= RESYNC
            });
            let next = match self.reconcile(&map.0, &map.1, devices).await {
                Ok(s) => {
                    if devices && matches!(s, Status::Ready { .. }) {
                        let leases = NetworkMap {
                            pool: map.1.pool,
                            networks: map.1.networks.clone(),
                            leases: map.1.leases.clone(),
                            ..Default::default()
                        };
                        programmed = Some((leases, std::time::Instant::now()));
                    }
                    self.set_status(s);
                    RESYNC
                }
                Err(e) => {
                    programmed = None;
                    self.set_status(Status::Failed(e.to_string()));
                    RETRY
                }
            };
            if tokio::time::timeout(next, rx.changed()).await.is_ok() {
                tokio::time::sleep(MIN_SYNC).await;
            }
        }
    }

    /// Waits while orc-init loads the late kernel modules (bridge, vxlan,
    /// nf_tables' NAT among them) after it started the agent; bounded, so
    /// a missing module ends as a failure naming it.
    async fn modules_loaded(&self) {
        crate::late_modules::loaded(&self.state.config.run_dir.join(orc_image::cmdline::LATE_MODULES_PENDING)).await;
    }

    /// This node's lease on each network of `map` that has one, with the network.
    fn mine<'a>(me: &str, map: &'a NetworkMap) -> Vec<(NetworkRef, &'a SubnetLease)> {
        map.all_networks()
            .into_iter()
            .filter_map(|n| {
                let l = map.leases.iter().find(|l| l.node == me && l.network == n.name)?;
                Some((n, l))
            })
            .collect()
    }

    /// Makes the node's devices, entries and rules what `map` says.
    async fn reconcile(&self, me: &str, map: &NetworkMap, devices: bool) -> Result<Status, NetError> {
        // Names last: a name answers once its VIP's rules are loaded (a VIP
        // without them would be routed out of the node and time out).
        let names = Arc::new(Names::new(&map.services));
        if map.pool.is_none() {
            self.names.send_replace(names);
            return Ok(Status::Off);
        }
        let mine = Self::mine(me, map);
        if mine.is_empty() {
            self.names.send_replace(names);
            return Ok(Status::NoLease);
        }
        let subnets: Vec<(String, Ipv4Net)> = mine.iter().map(|(n, l)| (n.name.clone(), l.subnet)).collect();
        let peers = map.leases.iter().filter(|l| l.network == DEFAULT_NETWORK && l.node != me).count();
        let programmed = {
            let ready = self.ready.borrow();
            mine.iter().all(|(n, l)| ready.get(&n.name).is_some_and(|p| p.lease == **l)) && ready.len() == mine.len()
        };
        if !devices && programmed {
            self.serve_dns(&mine).await?;
            let balanced = self.balance(map, &mine, false).await;
            self.names.send_replace(names);
            balanced?;
            self.sync_side_routes(me, map, &mine, false).await;
            return Ok(Status::Ready { subnets, peers });
        }
        let links = Links::connect()?;
        forwarding()?;
        let mut ready = BTreeMap::new();
        for (n, lease) in &mine {
            let (bridge, mtu) = self.program(&links, me, map, n, lease).await?;
            ready.insert(n.name.clone(), Programmed { lease: SubnetLease::clone(lease), bridge, mtu });
        }
        self.remove_stale(&links, &mine).await;
        self.serve_dns(&mine).await?;
        let balanced = self.balance(map, &mine, true).await;
        self.names.send_replace(names);
        balanced?;
        self.adopt(&mine)?;
        self.ready.send_replace(ready);
        self.sync_side_routes(me, map, &mine, true).await;
        Ok(Status::Ready { subnets, peers })
    }

    /// Keeps the routes of every task on several networks what the map
    /// says ([`side_routes`]): those that changed, or all with `force`.
    async fn sync_side_routes(&self, me: &str, map: &NetworkMap, mine: &[(NetworkRef, &SubnetLease)], force: bool) {
        let gateway = |n: &str| mine.iter().find(|(m, _)| m.name == n).map(|(_, l)| Addresses::new(l.subnet).gateway());
        let mut set = BTreeMap::new();
        for task in self.held() {
            let order = side_routes::order(&self.run_dir.join(&task));
            if order.len() < 2 {
                continue;
            }
            let routes = side_routes::desired(&order, me, map);
            let before = crate::sync::lock(&self.side_routes).get(&task).map(|s| s.routes.clone());
            let Some(gateways) = order.iter().map(|n| gateway(n)).collect::<Option<Vec<_>>>() else { continue };
            if force || before.as_ref() != Some(&routes) {
                if let Err(e) = side_routes::sync(&self.netns_path(&task), &routes, &gateways).await {
                    tracing::warn!(task, error = %e, "the routes of a task on several networks");
                    continue;
                }
            }
            set.insert(task, SideRoutes { order, routes });
        }
        *crate::sync::lock(&self.side_routes) = set;
        self.publish_further();
    }

    /// Tells the DNS servers the further networks of the tasks on several.
    fn publish_further(&self) {
        let orders: Vec<(String, Vec<String>)> =
            crate::sync::lock(&self.side_routes).iter().map(|(t, s)| (t.clone(), s.order.clone())).collect();
        let mut further = dns::Further::new();
        for (task, order) in orders {
            let Some((first, rest)) = order.split_first() else { continue };
            if let Some(a) = self.addresses_of(&task).get(first) {
                further.insert(*a, rest.to_vec());
            }
        }
        if **self.further.borrow() != further {
            self.further.send_replace(Arc::new(further));
        }
    }

    /// Network `n`'s bridge, VXLAN or WireGuard device and overlay
    /// entries on this node; the bridge's index and MTU.
    async fn program(
        &self,
        links: &Links,
        me: &str,
        map: &NetworkMap,
        n: &NetworkRef,
        lease: &SubnetLease,
    ) -> Result<(u32, u32), NetError> {
        let gateway = Addresses::new(lease.subnet).gateway();
        let overhead = if n.encrypted { wg::WG_OVERHEAD } else { VXLAN_OVERHEAD };
        let mtu = underlay_mtu(lease.underlay)?.saturating_sub(overhead);
        let name = bridge_name(n);
        let bridge = links.bridge(&name, bridge_mac(lease.subnet), mtu).await?;
        links.address(&name, gateway, lease.subnet.prefix_len()).await?;
        let tunnel = tunnel_name(n);
        let want = overlay::desired(me, &n.name, &map.leases);
        let removed = if n.encrypted {
            let port = wg_port(n.vni)
                .ok_or_else(|| NetError::State(format!("network {}: VNI {} has no WireGuard port", n.name, n.vni)))?;
            let dev = links.wireguard(&tunnel, mtu).await?;
            links.address(&tunnel, overlay::vtep_ip(lease.subnet), 32).await?;
            let key = wg::Keys::at(self.state.state_dir()).private().await?;
            let peers = wg::peers(me, &n.name, &map.leases, port);
            if peers.len() < want.routes.len() {
                tracing::warn!(network = %n.name, missing = want.routes.len() - peers.len(), "nodes without a WireGuard key: unreachable on this encrypted network");
            }
            wg::sync(&tunnel, &wg::config(&key, port, &peers)).await?;
            overlay::routes(links, dev.index, &want.routes).await?
        } else {
            let dev = links.vxlan(&tunnel, n.vni, lease.underlay, overlay::vtep_mac(lease.subnet), mtu).await?;
            links.address(&tunnel, overlay::vtep_ip(lease.subnet), 32).await?;
            overlay::program(links, dev.index, &want).await?
        };
        if removed > 0 {
            tracing::info!(network = %n.name, removed, "overlay entries of nodes gone removed");
        }
        Ok((bridge.index, mtu))
    }

    /// Takes down the bridges, VXLAN and WireGuard devices of networks
    /// gone (also while the agent was down) and forgets their addresses.
    async fn remove_stale(&self, links: &Links, mine: &[(NetworkRef, &SubnetLease)]) {
        let keep: HashSet<String> = mine.iter().flat_map(|(n, _)| [bridge_name(n), tunnel_name(n)]).collect();
        let devices = links.all().await.unwrap_or_default();
        let ours = |d: &&String| ["orc-br", "orc-vx", "orc-wg"].iter().any(|p| d.starts_with(p));
        for dev in devices.iter().map(|l| &l.name).filter(ours) {
            if !keep.contains(dev) {
                tracing::info!(device = %dev, "removing the device of a network gone");
                if let Err(e) = links.delete(dev).await {
                    tracing::warn!(device = %dev, error = %e, "removing a device of a network gone");
                }
            }
        }
        let mut a = crate::sync::lock(&self.addresses);
        let before = a.len();
        a.retain(|n, _| mine.iter().any(|(m, _)| &m.name == n));
        if a.len() != before {
            let _ = self.save(&a);
        }
    }

    /// Keeps a DNS server listening on each network's bridge address.
    async fn serve_dns(&self, mine: &[(NetworkRef, &SubnetLease)]) -> Result<(), NetError> {
        let mut dns = self.dns.lock().await;
        dns.retain(|n, _| mine.iter().any(|(m, _)| &m.name == n));
        for (n, lease) in mine {
            let at = Addresses::new(lease.subnet).gateway();
            if dns.get(&n.name).is_none_or(|d| d.addr != at) {
                dns.remove(&n.name);
                dns.insert(
                    n.name.clone(),
                    dns::Server::start(&n.name, at, self.names.subscribe(), self.further.subscribe()).await?,
                );
            }
        }
        Ok(())
    }

    /// Loads the load balancer's rules for the map's services (the whole
    /// table: level-triggered) when they differ from those loaded, or with
    /// `force` (at every resync), then forgets the UDP flows of backends
    /// that left a service.
    async fn balance(
        &self,
        map: &NetworkMap,
        mine: &[(NetworkRef, &SubnetLease)],
        force: bool,
    ) -> Result<(), NetError> {
        let mut services = nft::Backends::new();
        for s in &map.services {
            for (network, vip) in &s.vips {
                let backends = s.endpoints.iter().filter_map(|e| e.addresses.get(network).copied()).collect();
                services.insert(*vip, backends);
            }
        }
        let mut spaces: Vec<Ipv4Net> = map.pool.map(|p| p.cidr).into_iter().collect();
        spaces.extend(map.networks.iter().filter_map(|n| n.subnet));
        let networks = mine
            .iter()
            .map(|(n, l)| nft::Segment {
                devices: vec![bridge_name(n), tunnel_name(n)],
                gateway: Addresses::new(l.subnet).gateway(),
            })
            .collect();
        let published = published(map, mine);
        let mut flows: BTreeSet<(nft::Front, Ipv4Addr)> =
            services.iter().flat_map(|(vip, bs)| bs.iter().map(|b| (nft::Front::Vip(*vip), *b))).collect();
        flows.extend(
            published
                .iter()
                .filter(|((proto, _), _)| *proto == Protocol::Udp)
                .flat_map(|((_, port), bs)| bs.iter().map(|b| (nft::Front::Port(*port), b.address))),
        );
        let text = nft::ruleset(&nft::Rules { spaces, networks, services, published });
        if !force && crate::sync::lock(&self.loaded).as_ref().is_some_and(|l| l.text == text) {
            return Ok(());
        }
        nft::load(&text).await?;
        let before = crate::sync::lock(&self.loaded).replace(Loaded { text, flows: flows.clone() });
        let Some(before) = before else { return Ok(()) };
        for (front, backend) in before.flows.difference(&flows) {
            if let Err(e) = nft::forget_flows(*front, *backend).await {
                tracing::warn!(?front, %backend, error = %e, "forgetting the flows of a backend gone");
            }
        }
        Ok(())
    }

    /// Takes the leases of `mine` as the node's: addresses kept from
    /// before where the subnet is the same, none otherwise.
    fn adopt(&self, mine: &[(NetworkRef, &SubnetLease)]) -> Result<(), NetError> {
        let mut a = crate::sync::lock(&self.addresses);
        let mut changed = false;
        for (n, lease) in mine {
            if a.get(&n.name).is_some_and(|a| a.subnet() == lease.subnet) {
                continue;
            }
            if let Some(old) = a.get(&n.name) {
                tracing::warn!(network = %n.name, old = %old.subnet(), new = %lease.subnet, "this node's subnet changed: addresses start over");
            }
            a.insert(n.name.clone(), Addresses::new(lease.subnet));
            changed = true;
        }
        if changed {
            self.save(&a)?;
        }
        Ok(())
    }

    fn save(&self, a: &BTreeMap<String, Addresses>) -> Result<(), NetError> {
        let bytes = serde_json::to_vec(a).map_err(|e| NetError::State(e.to_string()))?;
        if let Some(dir) = self.addresses_file.parent() {
            std::fs::create_dir_all(dir).map_err(|e| NetError::State(format!("{}: {e}", dir.display())))?;
        }
        crate::fsutil::write_atomic(&self.addresses_file, &bytes).map_err(|e| NetError::State(e.to_string()))
    }

    fn netns_path(&self, task: &str) -> PathBuf {
        self.run_dir.join(task).join("netns")
    }

    /// Gives task `task` (hostname `hostname`, of the cluster's
    /// `namespace`, empty for `default`) its network namespace with an
    /// interface on each of `networks` (in order: the first holds the
    /// default route and the resolver).
    pub async fn attach(
        &self,
        task: &str,
        hostname: &str,
        namespace: &str,
        networks: &[String],
    ) -> Result<Attachment, NetError> {
        let mut ready = self.ready.subscribe();
        let all_ready = |r: &BTreeMap<String, Programmed>| networks.iter().all(|n| r.contains_key(n));
        let ready = match tokio::time::timeout(LEASE_WAIT, ready.wait_for(all_ready)).await {
            Ok(Ok(r)) => r.clone(),
            _ => {
                let missing: Vec<&str> =
                    networks.iter().map(String::as_str).filter(|n| !self.ready.borrow().contains_key(*n)).collect();
                let missing = missing.join(", ");
                return Err(NetError::NotReady(format!("network {missing} not ready on this node: {}", self.status())));
            }
        };
        let mut given = Vec::new();
        {
            let mut a = crate::sync::lock(&self.addresses);
            for n in networks {
                let lease = &ready[n].lease;
                let addrs = a.entry(n.to_string()).or_insert_with(|| Addresses::new(lease.subnet));
                given.push((n.to_string(), addrs.assign(task)?));
            }
            self.save(&a)?;
        }
        let dir = self.run_dir.join(task);
        let ns = self.netns_path(task);
        let ns2 = ns.clone();
        tokio::task::spawn_blocking(move || netns::create(&ns2))
            .await
            .map_err(|e| NetError::State(format!("creating the namespace: {e}")))??;
        let links = Links::connect()?;
        let inside = Links::connect_in(&ns)?;
        let short: String = task.chars().take(12).collect();
        for (i, (n, address)) in given.iter().enumerate() {
            let p = &ready[n];
            // Interface names hold 15 bytes: `orc` + the task id's 12, or
            // `orc` + the network's place + 11 of them.
            let tag: String = if i == 0 { short.clone() } else { format!("{i}{}", &short[..short.len().min(11)]) };
            let (host, peer) = (format!("orc{tag}"), format!("orp{tag}"));
            links.veth_into(&host, &peer, &ns, p.bridge, p.mtu).await?;
            hairpin(&host);
            let eth = format!("eth{i}");
            inside.rename(&peer, &eth).await?;
            inside.address(&eth, *address, p.lease.subnet.prefix_len()).await?;
            inside.up(&eth, None).await?;
            if i == 0 {
                inside.up("lo", None).await?;
                inside.default_route(Addresses::new(p.lease.subnet).gateway()).await?;
            }
        }
        let (first, address) = given
            .first()
            .cloned()
            .ok_or_else(|| NetError::State("a task on the overlay joins at least one network".into()))?;
        if networks.len() > 1 {
            write(&dir.join(side_routes::ORDER_FILE), &networks.join("\n"))?;
            let map = self.map.borrow().clone();
            let order: Vec<String> = given.iter().map(|(n, _)| n.clone()).collect();
            let routes = side_routes::desired(&order, &map.0, &map.1);
            let gateways: Vec<Ipv4Addr> =
                given.iter().map(|(n, _)| Addresses::new(ready[n].lease.subnet).gateway()).collect();
            side_routes::sync(&ns, &routes, &gateways).await?;
            crate::sync::lock(&self.side_routes).insert(task.to_string(), SideRoutes { order, routes });
            self.publish_further();
        }
        let node_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let (resolv_conf, hosts) = (dir.join("resolv.conf"), dir.join("hosts"));
        let dns = Addresses::new(ready[&first].lease.subnet).gateway();
        write(&resolv_conf, &super::files::resolv_conf(&node_resolv, dns, namespace))?;
        write(&hosts, &super::files::hosts(hostname, address))?;
        tracing::info!(task, addresses = ?given, "task attached to the overlay");
        Ok(Attachment { netns: ns, addresses: given, resolv_conf, hosts })
    }

    /// The addresses task `task` holds, per network.
    pub fn addresses_of(&self, task: &str) -> BTreeMap<String, Ipv4Addr> {
        crate::sync::lock(&self.addresses).iter().filter_map(|(n, a)| Some((n.clone(), a.held_by(task)?))).collect()
    }

    /// Takes task `task` off the overlay: its namespace, files and addresses.
    pub fn detach(&self, task: &str) {
        if let Err(e) = netns::remove(&self.netns_path(task)) {
            tracing::warn!(task, error = %e, "removing a task's network namespace");
        }
        let _ = std::fs::remove_dir_all(self.run_dir.join(task));
        let mut a = crate::sync::lock(&self.addresses);
        for addrs in a.values_mut() {
            addrs.release(task);
        }
        if let Err(e) = self.save(&a) {
            tracing::warn!(task, error = %e, "keeping the addresses");
        }
    }

    /// Refuses a standalone container's `networks` unless each is a
    /// network of the cluster made `--attachable`.
    pub fn check_attachable(&self, networks: &[String]) -> Result<(), NetError> {
        let all = self.map.borrow().1.all_networks();
        for name in networks {
            match all.iter().find(|n| &n.name == name) {
                None => return Err(NetError::NoSuchNetwork(name.clone())),
                Some(n) if !n.attachable => return Err(NetError::NotAttachable(name.clone())),
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Detaches every task `live` does not name (ended while the agent
    /// was down). Standalone containers' attachments are not tasks: see
    /// [`Self::retain_containers`].
    pub fn retain(&self, live: &HashSet<String>) {
        self.retain_where(|key| is_container_key(key) || live.contains(key));
    }

    /// Detaches every standalone container's attachment `live` (container
    /// names) does not name (removed while the agent was down).
    pub fn retain_containers(&self, live: &HashSet<String>) {
        self.retain_where(|key| key.strip_prefix(CONTAINER_KEY_PREFIX).is_none_or(|name| live.contains(name)));
    }

    /// The keys (task ids, `c-<name>`) of the attachments on the node.
    fn held(&self) -> Vec<String> {
        match std::fs::read_dir(&self.run_dir) {
            Ok(d) => d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect(),
            Err(_) => Vec::new(),
        }
    }

    fn retain_where(&self, keep: impl Fn(&str) -> bool) {
        for t in self.held().iter().filter(|t| !keep(t)) {
            self.detach(t);
        }
        let mut a = crate::sync::lock(&self.addresses);
        let mut changed = false;
        for addrs in a.values_mut() {
            let before = addrs.held();
            addrs.retain(|t| keep(t));
            changed |= addrs.held() != before;
        }
        if changed {
            let _ = self.save(&a);
        }
    }
}

/// Lets a task's connection to its own service's VIP come back to it
/// through the bridge port it left by (the hairpin the load balancer's
/// masquerade needs).
fn hairpin(port: &str) {
    let p = format!("/sys/class/net/{port}/brport/hairpin_mode");
    if let Err(e) = std::fs::write(&p, "1") {
        tracing::warn!(port, error = %e, "turning hairpin on: a task reaching its own service may land on itself and hang");
    }
}

fn write(path: &Path, text: &str) -> Result<(), NetError> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(|e| NetError::State(format!("{}: {e}", d.display())))?;
    }
    std::fs::write(path, text).map_err(|e| NetError::State(format!("{}: {e}", path.display())))
}

/// Routing between the bridge, the overlay and the underlay.
fn forwarding() -> Result<(), NetError> {
    let p = "/proc/sys/net/ipv4/ip_forward";
    if std::fs::read_to_string(p).is_ok_and(|v| v.trim() == "1") {
        return Ok(());
    }
    std::fs::write(p, "1").map_err(|e| NetError::State(format!("enabling IPv4 forwarding ({p}): {e}")))
}

/// The MTU of the interface holding `ip` (the underlay the overlay rides on).
fn underlay_mtu(ip: Ipv4Addr) -> Result<u32, NetError> {
    let iface = nix::ifaddrs::getifaddrs()
        .map_err(|e| NetError::State(format!("listing addresses: {e}")))?
        .find(|i| i.address.and_then(|a| a.as_sockaddr_in().map(|s| s.ip())) == Some(ip))
        .map(|i| i.interface_name)
        .ok_or_else(|| NetError::State(format!("no interface holds the underlay address {ip}")))?;
    let p = format!("/sys/class/net/{iface}/mtu");
    std::fs::read_to_string(&p)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| NetError::State(format!("reading {p}")))
}

/// The IPv4 networks of the node's own interfaces (not orc's devices,
/// not loopback), with the interface holding each.
pub fn own_interfaces() -> Vec<(String, Ipv4Net)> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else { return Vec::new() };
    addrs
        .filter(|i| !i.interface_name.starts_with("orc"))
        .filter_map(|i| {
            let ip = i.address?.as_sockaddr_in()?.ip();
            let mask = i.netmask?.as_sockaddr_in()?.ip();
            if ip.is_loopback() {
                return None;
            }
            Ipv4Net::with_netmask(ip, mask).ok().map(|n| (i.interface_name.clone(), n.trunc()))
        })
        .collect()
}

/// [`own_interfaces`]' networks.
pub fn own_networks() -> Vec<Ipv4Net> {
    let mut out: Vec<Ipv4Net> = own_interfaces().into_iter().map(|(_, n)| n).collect();
    out.sort();
    out.dedup();
    out
}
