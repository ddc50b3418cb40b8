//! Networks as objects (`orcctl network create|ls|inspect|rm`): what the
//! Networks API does on this manager's Raft. A network is a VNI and an
//! address space (its own CIDR, or the cluster's pool shared with
//! `default`); the leader leases each node a subnet of it ([`super::leases`]),
//! services join it by name and get a virtual IP on it ([`super::vips`]),
//! and tasks on different networks cannot reach each other (the nodes'
//! forward chain, [`crate::network::nft`]). `default` is the pool itself:
//! always there, never removed, shared by every namespace. Other networks
//! are objects of a namespace: only its services join them, and each
//! namespace can have a network of the same name (keys as in
//! [`network_key`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use ipnet::Ipv4Net;

use super::error::ClusterError;
use super::objects::{
    new_id, now_ms, view, wg_port, Network, Pool, ServiceSpec, View, DEFAULT_NETWORK, DEFAULT_VNI, MAX_ENCRYPTED_VNI,
};
use crate::model::db::{Command, Kind, Object};
use crate::model::namespace::{shown, stored, DEFAULT_NAMESPACE};
use crate::model::network::{key_parts, network_key};
use crate::network::ipam;
use crate::raft::RaftHandle;

/// Names a network cannot have: the built-in one and the modes.
const RESERVED: [&str; 3] = [DEFAULT_NETWORK, "host", "overlay"];
/// The largest VXLAN network identifier (24 bits).
const MAX_VNI: u32 = (1 << 24) - 1;

/// What `network create` asks for.
#[derive(Debug, Clone, Default)]
pub struct NetworkRequest {
    /// Its namespace (`default` included).
    pub namespace: String,
    pub name: String,
    /// A CIDR of its own; None: the cluster's pool.
    pub subnet: Option<String>,
    /// Each node's subnet's prefix length; None: the pool's.
    pub subnet_size: Option<u8>,
    /// Traffic between nodes in a WireGuard mesh.
    pub encrypted: bool,
    /// Standalone containers may join it.
    pub attachable: bool,
    pub labels: BTreeMap<String, String>,
}

/// A network name is a DNS label (`<service>.<network>` resolves).
pub fn valid_name(n: &str) -> bool {
    crate::model::network::dns_label(n, 32)
}

/// The error for the network at `key` that does not exist.
pub fn missing(key: &str) -> String {
    let (ns, name) = key_parts(key);
    let n = ns.map(|ns| format!("-N {ns} ")).unwrap_or_default();
    let inside = ns.map(|ns| format!(" in namespace {ns}")).unwrap_or_default();
    format!(
        "network {name:?} does not exist{inside}: create it with `orcctl {n}network create {name}` (or see \
         `orcctl {n}network ls`)"
    )
}

/// Where the leases and virtual IPs of the network at `key` come from;
/// None when it does not exist.
pub fn space(v: &View, key: &str, pool: Pool) -> Option<Pool> {
    if key == DEFAULT_NETWORK {
        return Some(pool);
    }
    v.networks.get(key).map(|n| n.space(pool))
}

/// Every network of every namespace: `default` first (when the cluster
/// has a pool), then by key.
pub fn all(v: &View) -> Vec<Arc<Network>> {
    let mut out = Vec::new();
    if let Some(pool) = v.settings.network {
        out.push(Arc::new(builtin(pool)));
    }
    out.extend(v.networks.values().cloned());
    out
}

/// The networks namespace `ns` sees: `default`, then its own by name.
pub fn in_namespace(v: &View, ns: &str) -> Vec<Arc<Network>> {
    all(v).into_iter().filter(|n| n.name == DEFAULT_NETWORK || shown(&n.namespace) == ns).collect()
}

/// The `default` network as an object.
pub fn builtin(pool: Pool) -> Network {
    Network { name: DEFAULT_NETWORK.into(), vni: DEFAULT_VNI, subnet: Some(pool), ..Default::default() }
}

/// Refuses a spec that joins a network its namespace does not have.
pub fn check_joined(v: &View, spec: &ServiceSpec) -> Result<(), ClusterError> {
    for key in spec.networks() {
        if key != DEFAULT_NETWORK && !v.networks.contains_key(&key) {
            return Err(ClusterError::FailedPrecondition(missing(&key)));
        }
    }
    Ok(())
}

/// Names of the services of namespace `ns` joining the network at `key`
/// (only `default` has those of other namespaces too, which one namespace
/// does not see), and how many tasks not over yet still hold an address
/// on it in any namespace.
pub fn users(v: &View, key: &str, ns: &str) -> (Vec<String>, usize) {
    let key = key.to_string();
    let mut services: Vec<String> = v
        .services
        .values()
        .filter(|s| shown(&s.spec.namespace) == ns && s.spec.networks().contains(&key))
        .map(|s| s.spec.name.clone())
        .collect();
    services.sort();
    let tasks = v.tasks.values().filter(|t| !t.state.terminal() && t.addresses.contains_key(&key)).count();
    (services, tasks)
}

/// The checked network `r` asks for in state `v`.
fn plan(v: &View, r: &NetworkRequest) -> Result<Network, ClusterError> {
    let bad = ClusterError::InvalidArgument;
    if !valid_name(&r.name) {
        return Err(bad(format!(
            "network name {:?}: use 1-32 lowercase letters, digits or '-', starting with a letter or digit \
             (it is a DNS label: <service>.<network>)",
            r.name
        )));
    }
    if RESERVED.contains(&r.name.as_str()) {
        return Err(bad(format!("network name {:?} is reserved: pick another", r.name)));
    }
    crate::fields::labels("labels", &r.labels).map_err(|e| bad(e.to_string()))?;
    let Some(pool) = v.settings.network else {
        return Err(ClusterError::FailedPrecondition(
            "this cluster has no container CIDR: set one with `orcctl cluster update --container-cidr` first".into(),
        ));
    };
    if v.namespace(&r.namespace).is_none() {
        return Err(super::quota::missing(&r.namespace));
    }
    if v.networks.contains_key(&network_key(&r.namespace, &r.name)) {
        return Err(ClusterError::AlreadyExists(format!(
            "a network named {:?} exists{}: see `orcctl network inspect {}`",
            r.name,
            Some(r.namespace.as_str())
                .filter(|ns| *ns != DEFAULT_NAMESPACE)
                .map(|ns| format!(" in namespace {ns}"))
                .unwrap_or_default(),
            r.name
        )));
    }
    let subnet = match &r.subnet {
        None => {
            if r.subnet_size.is_some_and(|s| s != pool.prefix) {
                return Err(bad(format!(
                    "--subnet-size needs --subnet: a network sharing the pool gives nodes /{} subnets",
                    pool.prefix
                )));
            }
            None
        }
        Some(cidr) => {
            let prefix = r.subnet_size.unwrap_or(pool.prefix);
            let net = ipam::parse_pool(cidr, prefix).map_err(|e| bad(format!("network {}: {e}", r.name)))?;
            overlaps(v, &r.namespace, pool, net)?;
            Some(Pool { cidr: net, prefix })
        }
    };
    let vni = (DEFAULT_VNI + 1..=MAX_VNI).find(|n| !v.vnis.contains_key(&n.to_string())).ok_or_else(|| {
        ClusterError::FailedPrecondition("no VXLAN network identifier is left: remove networks first".into())
    })?;
    if r.encrypted && wg_port(vni).is_none() {
        return Err(ClusterError::FailedPrecondition(format!(
            "an encrypted network needs a VNI up to {MAX_ENCRYPTED_VNI} (its WireGuard port is {} + VNI - \
             {DEFAULT_VNI}), and the lowest free one is {vni}: remove networks first",
            super::objects::WG_PORT_BASE
        )));
    }
    Ok(Network {
        id: new_id(),
        name: r.name.clone(),
        namespace: stored(&r.namespace),
        vni,
        subnet,
        encrypted: r.encrypted,
        attachable: r.attachable,
        labels: r.labels.clone(),
        created_ms: now_ms(),
    })
}

/// Refuses a subnet over the pool, another network's, or a node's own
/// (a network of another namespace than `ns` is not named).
fn overlaps(v: &View, ns: &str, pool: Pool, net: Ipv4Net) -> Result<(), ClusterError> {
    let over = |a: &Ipv4Net, b: &Ipv4Net| a.contains(&b.network()) || b.contains(&a.network());
    let taken = |what: String| {
        Err(ClusterError::FailedPrecondition(format!("subnet {net} overlaps {what}: choose a CIDR outside it")))
    };
    if over(&net, &pool.cidr) {
        return taken(format!("the cluster's container CIDR {}", pool.cidr));
    }
    for n in v.networks.values() {
        if let Some(s) = n.subnet.filter(|s| over(&net, &s.cidr)) {
            if shown(&n.namespace) == ns {
                return taken(format!("network {}'s {}", n.name, s.cidr));
            }
            return taken(format!("{} (a network of another namespace)", s.cidr));
        }
    }
    for n in v.nodes.values() {
        if let Some(own) = n.networks.iter().find(|o| over(&net, o)) {
            return taken(format!("{own} of node {}", n.hostname));
        }
    }
    Ok(())
}

/// Creates a network; its name and VNI are claimed in the same entry, so
/// two creates cannot both win either.
pub async fn create(raft: &RaftHandle, r: NetworkRequest) -> Result<(View, Network), ClusterError> {
    let v = view(raft).await?;
    let n = plan(&v, &r)?;
    let cmds = vec![
        super::namespaces::expect(&v, &r.namespace),
        Command::put_if(n.vni.to_string(), Object::Vni(n.key()), 0),
        Command::put_if(n.key(), Object::Network(Arc::new(n.clone())), 0),
    ];
    let res = raft.write(Command::Batch(cmds)).await?;
    if let Some(c) = res.conflict {
        return Err(ClusterError::changed("creating the network", &c));
    }
    tracing::info!(network = %n.key(), vni = n.vni, encrypted = n.encrypted, attachable = n.attachable, subnet = ?n.subnet.map(|s| s.cidr), "network created");
    Ok((v, n))
}

/// Network `name` of namespace `ns` (`default` included) and the view it
/// was read in.
pub async fn inspect(raft: &RaftHandle, ns: &str, name: &str) -> Result<(View, Arc<Network>), ClusterError> {
    let v = view(raft).await?;
    let key = network_key(ns, name);
    let n = all(&v).into_iter().find(|n| n.key() == key).ok_or_else(|| ClusterError::NotFound(missing(&key)))?;
    Ok((v, n))
}

/// Removes network `name` of namespace `ns` unless a service joins it or
/// a task still holds an address on it; its leases are freed by the leader.
pub async fn remove(raft: &RaftHandle, ns: &str, name: &str) -> Result<Network, ClusterError> {
    let v = view(raft).await?;
    if name == DEFAULT_NETWORK {
        return Err(ClusterError::FailedPrecondition(
            "the default network is the cluster's container CIDR and cannot be removed".into(),
        ));
    }
    let key = network_key(ns, name);
    let n = v.networks.get(&key).ok_or_else(|| ClusterError::NotFound(missing(&key)))?.clone();
    let (services, tasks) = users(&v, &key, ns);
    if !services.is_empty() {
        return Err(ClusterError::FailedPrecondition(format!(
            "network {name} is in use by services {}: remove them, or update them onto other networks \
             (`orcctl service update SERVICE --network NAME`), first",
            services.join(", ")
        )));
    }
    if tasks > 0 {
        return Err(ClusterError::FailedPrecondition(format!(
            "network {name} still has {tasks} tasks on it being stopped: try again in a few seconds"
        )));
    }
    let cmds = vec![Command::delete(Kind::Network, key.clone()), Command::delete(Kind::Vni, n.vni.to_string())];
    raft.write(Command::Batch(cmds)).await?;
    tracing::info!(network = %key, "network removed");
    Ok(Network::clone(&n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::objects::{Node, Service, Settings};

    fn state() -> View {
        let mut v = View::default();
        let pool = Pool { cidr: "10.0.0.0/8".parse().unwrap(), prefix: 24 };
        v.apply(&Command::put("", Object::Settings(Settings { network: Some(pool), ..Default::default() })));
        let n = Node {
            id: "a".into(),
            hostname: "host-a".into(),
            networks: vec!["192.168.76.0/24".parse().unwrap()],
            ..Default::default()
        };
        v.apply(&Command::put("a", Object::Node(Arc::new(n))));
        v
    }

    fn req(name: &str, subnet: Option<&str>) -> NetworkRequest {
        NetworkRequest {
            namespace: "default".into(),
            name: name.into(),
            subnet: subnet.map(String::from),
            ..Default::default()
        }
    }

    fn made(v: &mut View, r: NetworkRequest) -> Network {
        let n = plan(v, &r).unwrap();
        v.apply(&Command::put(n.vni.to_string(), Object::Vni(n.key())));
        v.apply(&Command::put(n.key(), Object::Network(Arc::new(n.clone()))));
        n
    }

    fn err(v: &View, r: NetworkRequest) -> String {
        plan(v, &r).unwrap_err().to_string()
    }

    #[test]
    fn networks_get_their_own_vni_and_checked_subnets() {
        let mut v = state();
        let a = made(&mut v, req("back", None));
        let b = made(&mut v, req("db", Some("172.30.0.0/16")));
        assert_eq!((a.vni, b.vni), (257, 258));
        assert_eq!(b.subnet.map(|s| (s.cidr.to_string(), s.prefix)), Some(("172.30.0.0/16".into(), 24)));
        assert!(err(&v, req("back", None)).contains("exists"));
        assert!(err(&v, req("default", None)).contains("reserved"));
        assert!(err(&v, req("Bad_Name", None)).contains("lowercase"));
        assert!(err(&v, req("x", Some("10.9.0.0/16"))).contains("container CIDR 10.0.0.0/8"));
        assert!(err(&v, req("x", Some("172.30.128.0/17"))).contains("network db's"));
        assert!(err(&v, req("x", Some("192.168.0.0/16"))).contains("node host-a"));
        assert!(err(&v, req("x", Some("172.31.0.0/24"))).contains("subnet-size"));
        assert!(err(&v, req("x", Some("nonsense"))).contains("not an IPv4 network"));
        let shared_size = NetworkRequest { subnet_size: Some(26), ..req("x", None) };
        assert!(err(&v, shared_size).contains("needs --subnet"));
        // A freed VNI is given again.
        v.apply(&Command::delete(Kind::Vni, "257"));
        v.apply(&Command::delete(Kind::Network, "back"));
        assert_eq!(made(&mut v, req("again", None)).vni, 257);
    }

    #[test]
    fn services_join_only_networks_that_exist_and_hold_them() {
        let mut v = state();
        made(&mut v, req("back", None));
        let mut spec = ServiceSpec { name: "web".into(), networks: vec!["back".into()], ..Default::default() };
        check_joined(&v, &spec).unwrap();
        spec.networks.push("nope".into());
        let e = check_joined(&v, &spec).unwrap_err().to_string();
        assert!(e.contains("\"nope\" does not exist") && e.contains("orcctl network create nope"), "{e}");
        spec.networks.pop();
        check_joined(&v, &ServiceSpec::default()).unwrap();
        let s = Service { id: "s".into(), spec, ..Default::default() };
        v.apply(&Command::put("s", Object::Service(Arc::new(s))));
        assert_eq!(users(&v, "back", "default").0, ["web"]);
        assert!(users(&v, DEFAULT_NETWORK, "default").0.is_empty(), "web joins back only");
        let names: Vec<String> = all(&v).iter().map(|n| n.name.clone()).collect();
        assert_eq!(names, ["default", "back"]);
    }

    #[test]
    fn networks_are_objects_of_a_namespace() {
        let mut v = state();
        for ns in ["team-a", "team-b"] {
            let n = crate::model::namespace::Namespace { name: ns.into(), ..Default::default() };
            v.apply(&Command::put(ns, Object::Namespace(Arc::new(n))));
        }
        let in_ns = |ns: &str, name: &str| NetworkRequest { namespace: ns.into(), ..req(name, None) };
        let back = made(&mut v, req("back", None));
        let a = made(&mut v, in_ns("team-a", "back"));
        let b = made(&mut v, in_ns("team-b", "back"));
        assert_eq!((back.key(), a.key(), b.key()), ("back".into(), "team-a/back".into(), "team-b/back".into()));
        assert_eq!(a.namespace, "team-a");
        assert!(err(&v, in_ns("team-a", "back")).contains("exists in namespace team-a"));
        assert!(err(&v, in_ns("team-c", "back")).contains("team-c"), "no such namespace");
        // Another namespace's subnet is not named.
        let own = made(&mut v, NetworkRequest { namespace: "team-b".into(), ..req("db", Some("172.30.0.0/16")) });
        let e = err(&v, NetworkRequest { namespace: "team-a".into(), ..req("x", Some("172.30.128.0/17")) });
        assert!(e.contains("another namespace") && !e.contains(&own.name), "{e}");
        // A service joins its own namespace's network of that name, or the shared default.
        let spec = |ns: &str, nets: &[&str]| ServiceSpec {
            name: "web".into(),
            namespace: ns.into(),
            networks: nets.iter().map(|n| n.to_string()).collect(),
            ..Default::default()
        };
        assert_eq!(spec("team-a", &["back", "default"]).networks(), ["team-a/back", "default"]);
        check_joined(&v, &spec("team-a", &["back", "default"])).unwrap();
        for reach in [spec("default", &["team-a/back"]), spec("team-b", &["team-a/back"])] {
            let e = crate::cluster::spec::validate(&ServiceSpec { image: "x".into(), ..reach }, 10);
            assert!(e.unwrap_err().to_string().contains("own namespace"), "a key reaches another namespace");
        }
        let e = check_joined(&v, &spec("team-a", &["db"])).unwrap_err().to_string();
        assert!(
            e.contains("\"db\" does not exist in namespace team-a") && e.contains("orcctl -N team-a network create db"),
            "{e}"
        );
        let s = Service { id: "s".into(), spec: spec("team-a", &["back", "default"]), ..Default::default() };
        v.apply(&Command::put("team-a/web", Object::Service(Arc::new(s))));
        assert_eq!(users(&v, "team-a/back", "team-a").0, ["web"]);
        assert!(users(&v, "back", "default").0.is_empty(), "default's back is another network");
        assert!(users(&v, DEFAULT_NETWORK, "team-b").0.is_empty(), "team-b does not see team-a's services");
        let seen = |ns: &str| in_namespace(&v, ns).iter().map(|n| n.key()).collect::<Vec<_>>();
        assert_eq!(seen("team-a"), ["default", "team-a/back"]);
        assert_eq!(seen("default"), ["default", "back"]);
    }
}
