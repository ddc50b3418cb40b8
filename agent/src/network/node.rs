//! The node's side of container networking: from the network map its
//! session brings (the pool and every lease), a reconciler keeps the
//! bridge, the VXLAN device, the overlay entries and the nftables rules as
//! the map says; tasks are attached (a namespace, a veth into the bridge,
//! an address from the node's lease, resolv.conf and hosts) and detached.
//!
//! Names: the bridge `orc0`, the VXLAN device `orc-vx<vni>`, a task's host
//! end `orc<task id>` (its peer is `eth0` in the task).

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipnet::Ipv4Net;
use tokio::sync::watch;

use super::dns::{self, Names};
use super::ipam::Addresses;
use super::links::{Links, VXLAN_OVERHEAD};
use super::{netns, nft, overlay, NetError};
use crate::model::objects::{NetworkMap, SubnetLease, DEFAULT_NETWORK, DEFAULT_VNI};
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

fn vxlan_name(vni: u32) -> String {
    format!("orc-vx{vni}")
}

/// The rules last loaded: their text and the services' backends.
struct Loaded {
    text: String,
    backends: nft::Backends,
}

/// What a task is given on the overlay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub netns: PathBuf,
    pub address: Ipv4Addr,
    pub resolv_conf: PathBuf,
    pub hosts: PathBuf,
}

/// The reconciler's state, for `health`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Status {
    /// No map yet, or the cluster has no pool.
    #[default]
    Off,
    /// Waiting for the leader to lease this node a subnet.
    NoLease,
    /// Programmed: the node's subnet and how many peers.
    Ready {
        subnet: Ipv4Net,
        peers: usize,
    },
    Failed(String),
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Off => f.write_str("off: the cluster has no container CIDR, or no session yet"),
            Self::NoLease => f.write_str("waiting for the leader to lease this node a subnet"),
            Self::Ready { subnet, peers } => write!(f, "ready: subnet {subnet}, overlay to {peers} other nodes"),
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
    /// The programmed subnet (None until the bridge is up).
    ready: watch::Sender<Option<(SubnetLease, u32)>>,
    addresses: Mutex<Option<Addresses>>,
    status: Mutex<Status>,
    /// The names the DNS server answers (from the map's services).
    names: watch::Sender<Arc<Names>>,
    /// The DNS server, on the bridge's address.
    dns: tokio::sync::Mutex<Option<dns::Server>>,
    /// The rules last loaded.
    loaded: Mutex<Option<Loaded>>,
    /// Where `health` reads the status.
    state: Arc<NodeState>,
}

impl NodeNetwork {
    /// Starts the node's reconciler (idle until a map arrives).
    pub fn start(state: Arc<NodeState>) -> Arc<Self> {
        let (run_dir, state_dir) = (state.config.run_dir.clone(), state.state_dir().to_path_buf());
        let addresses_file = state_dir.join("network").join("addresses.json");
        let addresses = std::fs::read(&addresses_file).ok().and_then(|b| serde_json::from_slice(&b).ok());
        let n = Arc::new(Self {
            run_dir: run_dir.join("net"),
            addresses_file,
            map: watch::Sender::new(Arc::default()),
            ready: watch::Sender::new(None),
            addresses: Mutex::new(addresses),
            status: Mutex::default(),
            names: watch::Sender::new(Arc::default()),
            dns: tokio::sync::Mutex::new(None),
            loaded: Mutex::new(None),
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
        // The leases the devices were last programmed for, and when.
        let mut programmed: Option<(NetworkMap, std::time::Instant)> = None;
        loop {
            let map = rx.borrow_and_update().clone();
            // Devices and overlay entries when the pool or the leases
            // changed, and at every resync; rules and names at every pass.
            let devices = programmed
                .as_ref()
                .is_none_or(|(m, at)| m.pool != map.1.pool || m.leases != map.1.leases || at.elapsed() >= RESYNC);
            let next = match self.reconcile(&map.0, &map.1, devices).await {
                Ok(s) => {
                    if devices && matches!(s, Status::Ready { .. }) {
                        let leases =
                            NetworkMap { pool: map.1.pool, leases: map.1.leases.clone(), ..Default::default() };
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
        const MOST: Duration = Duration::from_secs(30);
        let pending = self.state.config.run_dir.join(orc_image::cmdline::LATE_MODULES_PENDING);
        let start = std::time::Instant::now();
        while pending.exists() && start.elapsed() < MOST {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Makes the node's devices, entries and rules what `map` says.
    async fn reconcile(&self, me: &str, map: &NetworkMap, devices: bool) -> Result<Status, NetError> {
        // Names first: an answer follows the rotation without waiting for
        // the devices.
        self.names.send_replace(Arc::new(Names::new(&map.services)));
        let Some(pool) = map.pool else { return Ok(Status::Off) };
        let Some(mine) = map.leases.iter().find(|l| l.node == me && l.network == DEFAULT_NETWORK) else {
            return Ok(Status::NoLease);
        };
        let gateway = Addresses::new(mine.subnet).gateway();
        let programmed = self.ready.borrow().as_ref().is_some_and(|(l, _)| l == mine);
        if !devices && programmed {
            self.serve_dns(gateway).await?;
            self.balance(pool.cidr, map, false).await?;
            let peers = map.leases.iter().filter(|l| l.network == DEFAULT_NETWORK && l.node != me).count();
            return Ok(Status::Ready { subnet: mine.subnet, peers });
        }
        let links = Links::connect()?;
        let mtu = underlay_mtu(mine.underlay)?.saturating_sub(VXLAN_OVERHEAD);
        forwarding()?;
        let bridge = links.bridge(BRIDGE, mtu).await?;
        links.address(BRIDGE, gateway, mine.subnet.prefix_len()).await?;
        let vx = vxlan_name(DEFAULT_VNI);
        let dev = links.vxlan(&vx, DEFAULT_VNI, mine.underlay, overlay::vtep_mac(mine.subnet), mtu).await?;
        links.address(&vx, overlay::vtep_ip(mine.subnet), 32).await?;
        let want = overlay::desired(me, DEFAULT_NETWORK, &map.leases);
        let removed = overlay::program(&links, dev.index, &want).await?;
        if removed > 0 {
            tracing::info!(removed, "overlay entries of nodes gone removed");
        }
        self.serve_dns(gateway).await?;
        self.balance(pool.cidr, map, true).await?;
        self.adopt(mine)?;
        self.ready.send_replace(Some((mine.clone(), bridge.index)));
        Ok(Status::Ready { subnet: mine.subnet, peers: want.routes.len() })
    }

    /// Keeps the DNS server listening on the bridge's address `at`.
    async fn serve_dns(&self, at: Ipv4Addr) -> Result<(), NetError> {
        let mut dns = self.dns.lock().await;
        if dns.as_ref().is_none_or(|d| d.addr != at) {
            *dns = None;
            *dns = Some(dns::Server::start(at, self.names.subscribe()).await?);
        }
        Ok(())
    }

    /// Loads the load balancer's rules for the map's services (the whole
    /// table: level-triggered) when they differ from those loaded, or with
    /// `force` (at every resync), then forgets the UDP flows of backends
    /// that left a service.
    async fn balance(&self, cidr: Ipv4Net, map: &NetworkMap, force: bool) -> Result<(), NetError> {
        let services: nft::Backends = map
            .services
            .iter()
            .filter_map(|s| Some((*s.vips.get(DEFAULT_NETWORK)?, s.endpoints.iter().map(|e| e.address).collect())))
            .collect();
        let text = nft::ruleset(&nft::Rules { cidr, services: services.clone() });
        if !force && crate::sync::lock(&self.loaded).as_ref().is_some_and(|l| l.text == text) {
            return Ok(());
        }
        nft::load(&text).await?;
        let before = crate::sync::lock(&self.loaded).replace(Loaded { text, backends: services.clone() });
        let Some(before) = before else { return Ok(()) };
        for (vip, old) in &before.backends {
            let now = services.get(vip);
            for gone in old.iter().filter(|b| now.is_none_or(|n| !n.contains(b))) {
                if let Err(e) = nft::forget_flows(*vip, *gone).await {
                    tracing::warn!(%vip, backend = %gone, error = %e, "forgetting the flows of a backend gone");
                }
            }
        }
        Ok(())
    }

    /// Takes `lease` as the node's: addresses kept from before when it is
    /// the same subnet, none otherwise.
    fn adopt(&self, lease: &SubnetLease) -> Result<(), NetError> {
        let mut a = crate::sync::lock(&self.addresses);
        if a.as_ref().is_some_and(|a| a.subnet() == lease.subnet) {
            return Ok(());
        }
        if let Some(old) = a.as_ref() {
            tracing::warn!(old = %old.subnet(), new = %lease.subnet, "this node's subnet changed: addresses start over");
        }
        *a = Some(Addresses::new(lease.subnet));
        self.save(a.as_ref())
    }

    fn save(&self, a: Option<&Addresses>) -> Result<(), NetError> {
        let Some(a) = a else { return Ok(()) };
        let bytes = serde_json::to_vec(a).map_err(|e| NetError::State(e.to_string()))?;
        if let Some(dir) = self.addresses_file.parent() {
            std::fs::create_dir_all(dir).map_err(|e| NetError::State(format!("{}: {e}", dir.display())))?;
        }
        crate::fsutil::write_atomic(&self.addresses_file, &bytes).map_err(|e| NetError::State(e.to_string()))
    }

    fn netns_path(&self, task: &str) -> PathBuf {
        self.run_dir.join(task).join("netns")
    }

    /// Gives task `task` (hostname `hostname`) its namespace on the overlay.
    pub async fn attach(&self, task: &str, hostname: &str) -> Result<Attachment, NetError> {
        let mut ready = self.ready.subscribe();
        let ready = match tokio::time::timeout(LEASE_WAIT, ready.wait_for(|r| r.is_some())).await {
            Ok(Ok(r)) => r.clone(),
            _ => None,
        };
        let (lease, bridge) = ready.ok_or_else(|| NetError::NotReady(self.status().to_string()))?;
        let address = {
            let mut a = crate::sync::lock(&self.addresses);
            let addrs = a.get_or_insert_with(|| Addresses::new(lease.subnet));
            let ip = addrs.assign(task)?;
            self.save(Some(addrs))?;
            ip
        };
        let dir = self.run_dir.join(task);
        let ns = self.netns_path(task);
        let ns2 = ns.clone();
        tokio::task::spawn_blocking(move || netns::create(&ns2))
            .await
            .map_err(|e| NetError::State(format!("creating the namespace: {e}")))??;
        let links = Links::connect()?;
        let bridge_mtu = links.get(BRIDGE).await?.map(|l| l.mtu).unwrap_or(1450);
        let short: String = task.chars().take(12).collect();
        let (host, peer) = (format!("orc{short}"), format!("orp{short}"));
        links.veth_into(&host, &peer, &ns, bridge, bridge_mtu).await?;
        hairpin(&host);
        let inside = Links::connect_in(&ns)?;
        inside.rename(&peer, "eth0").await?;
        inside.address("eth0", address, lease.subnet.prefix_len()).await?;
        inside.up("eth0", None).await?;
        inside.up("lo", None).await?;
        inside.default_route(Addresses::new(lease.subnet).gateway()).await?;
        let node_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let (resolv_conf, hosts) = (dir.join("resolv.conf"), dir.join("hosts"));
        let dns = Addresses::new(lease.subnet).gateway();
        write(&resolv_conf, &super::files::resolv_conf(&node_resolv, dns))?;
        write(&hosts, &super::files::hosts(hostname, address))?;
        tracing::info!(task, %address, "task attached to the overlay");
        Ok(Attachment { netns: ns, address, resolv_conf, hosts })
    }

    /// The address task `task` holds.
    pub fn address_of(&self, task: &str) -> Option<Ipv4Addr> {
        crate::sync::lock(&self.addresses).as_ref().and_then(|a| a.held_by(task))
    }

    /// Takes task `task` off the overlay: its namespace, files and address.
    pub fn detach(&self, task: &str) {
        if let Err(e) = netns::remove(&self.netns_path(task)) {
            tracing::warn!(task, error = %e, "removing a task's network namespace");
        }
        let _ = std::fs::remove_dir_all(self.run_dir.join(task));
        let mut a = crate::sync::lock(&self.addresses);
        if let Some(addrs) = a.as_mut() {
            addrs.release(task);
            if let Err(e) = self.save(Some(addrs)) {
                tracing::warn!(task, error = %e, "keeping the addresses");
            }
        }
    }

    /// Detaches every task `live` does not name (ended while the agent was down).
    pub fn retain(&self, live: &HashSet<String>) {
        let held: Vec<String> = match std::fs::read_dir(&self.run_dir) {
            Ok(d) => d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect(),
            Err(_) => Vec::new(),
        };
        for t in held.iter().filter(|t| !live.contains(*t)) {
            self.detach(t);
        }
        let mut a = crate::sync::lock(&self.addresses);
        if let Some(addrs) = a.as_mut() {
            let before = addrs.held();
            addrs.retain(|t| live.contains(t));
            if addrs.held() != before {
                let _ = self.save(Some(addrs));
            }
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
