//! The node's DNS server for its tasks (Docker's embedded DNS, Kubernetes'
//! cluster DNS): one per network, on the address of that network's bridge,
//! where the resolv.conf of every task whose first network it is points;
//! it answers from the services the node was sent that joined the network —
//!
//! - `<service>` and `<service>.<network>`: the service's virtual IP on it,
//! - `tasks.<service>`: the addresses on it of its tasks in rotation,
//! - `<slot>.<service>`: a stateful service's task of that slot,
//!
//! with short TTLs, so an answer changes as soon as the node hears of a
//! task becoming ready or going away. A task sees only the names of its
//! network (the nodes' rules keep it off the others' servers). Other names
//! go to the node's own resolvers. The protocol (UDP, TCP, truncation) is
//! hickory-server's.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_server::proto::op::{Message, Metadata, ResponseCode};
use hickory_server::proto::rr::rdata::A;
use hickory_server::proto::rr::{RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tokio::sync::watch;

use super::NetError;
use crate::model::objects::{Endpoint, ServiceEndpoints};

/// A virtual IP does not change while its service lives.
const VIP_TTL: u32 = 5;
/// Task addresses change with the rotation: not to be cached.
const TASK_TTL: u32 = 0;
/// How long an upstream resolver is given.
const UPSTREAM_WAIT: Duration = Duration::from_secs(3);

/// The names a node answers, from the services it was sent: per network,
/// the services on it by name.
#[derive(Debug, Default)]
pub struct Names {
    by_network: HashMap<String, HashMap<String, Arc<ServiceEndpoints>>>,
}

/// What a name is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A cluster name: these addresses (none: the name exists, no task is in rotation).
    Cluster { addresses: Vec<Ipv4Addr>, ttl: u32 },
    /// Not a cluster name: the node's resolvers answer it.
    Forward,
}

impl Names {
    pub fn new<'a>(services: impl IntoIterator<Item = &'a ServiceEndpoints>) -> Self {
        let mut by_network: HashMap<String, HashMap<String, Arc<ServiceEndpoints>>> = HashMap::new();
        for s in services {
            let s = Arc::new(s.clone());
            for network in s.vips.keys() {
                by_network.entry(network.clone()).or_default().insert(s.dns_name(), s.clone());
            }
        }
        Self { by_network }
    }

    /// What `name` (any case, with or without the final dot) is to a task
    /// on the network at key `network`.
    pub fn answer(&self, network: &str, name: &str) -> Answer {
        let Some(by_name) = self.by_network.get(network) else { return Answer::Forward };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        // As given first: `web.back` is service web of namespace back
        // before it is `web` on network back. A network of namespace
        // team-a (`team-a/back`) holds only team-a's services, named
        // `web.team-a`: `web.back` and `web.back.team-a` (the resolver's
        // search path) are that one too.
        let (ns, label) = crate::model::network::key_parts(network);
        let mut names = vec![name.clone()];
        let suffixes = [Some(format!(".{label}")), ns.map(|ns| format!(".{label}.{ns}"))];
        for base in suffixes.iter().flatten().filter_map(|s| name.strip_suffix(s.as_str())) {
            names.push(ns.map(|ns| format!("{base}.{ns}")).unwrap_or_else(|| base.to_string()));
        }
        names.iter().find_map(|n| lookup(by_name, network, n)).unwrap_or(Answer::Forward)
    }
}

/// What `name` (lowercase, no network suffix) is among `by_name`.
fn lookup(by_name: &HashMap<String, Arc<ServiceEndpoints>>, network: &str, name: &str) -> Option<Answer> {
    if let Some(s) = by_name.get(name) {
        return Some(match s.vips.get(network) {
            Some(vip) => Answer::Cluster { addresses: vec![*vip], ttl: VIP_TTL },
            None => tasks(s, network, |_| true),
        });
    }
    if let Some(s) = name.strip_prefix("tasks.").and_then(|n| by_name.get(n)) {
        return Some(tasks(s, network, |_| true));
    }
    let (slot, service) = name.split_once('.')?;
    let (slot, s) = (slot.parse::<u64>().ok()?, by_name.get(service)?);
    s.stateful.then(|| tasks(s, network, |e| e.slot == slot))
}

/// The addresses on `network` of the tasks of `s` that `which` picks.
fn tasks(s: &ServiceEndpoints, network: &str, which: impl Fn(&Endpoint) -> bool) -> Answer {
    let addresses = s.endpoints.iter().filter(|e| which(e)).filter_map(|e| e.addresses.get(network).copied()).collect();
    Answer::Cluster { addresses, ttl: TASK_TTL }
}

/// The node's resolvers, from its resolv.conf text.
pub fn upstreams(resolv_conf: &str) -> Vec<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|a| a.trim().parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// The further networks of each task on several networks, by its address
/// on its first one (where its queries come from): it resolves the names
/// of all its networks, the first's first.
pub type Further = HashMap<Ipv4Addr, Vec<String>>;

struct Handler {
    network: String,
    names: watch::Receiver<Arc<Names>>,
    further: watch::Receiver<Arc<Further>>,
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: hickory_server::net::runtime::Time>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        let builder = MessageResponseBuilder::from_message_request(request);
        let req = &request.metadata;
        let Ok(info) = request.request_info() else {
            return send(&mut response, builder.error_msg(req, ResponseCode::FormErr), req).await;
        };
        let name = info.query.original().name().clone();
        let names = self.names.borrow().clone();
        let mut answer = names.answer(&self.network, &name.to_ascii());
        if matches!(answer, Answer::Forward) {
            let further = match request.src().ip() {
                std::net::IpAddr::V4(ip) => self.further.borrow().get(&ip).cloned().unwrap_or_default(),
                std::net::IpAddr::V6(_) => Vec::new(),
            };
            for network in &further {
                answer = names.answer(network, &name.to_ascii());
                if !matches!(answer, Answer::Forward) {
                    break;
                }
            }
        }
        match answer {
            Answer::Cluster { addresses, ttl } => {
                let mut meta = Metadata::response_from_request(&request.metadata);
                meta.authoritative = true;
                meta.recursion_available = true;
                // Other types of a cluster name: no records, but the name exists.
                let records: Vec<Record> = if info.query.query_type() == RecordType::A {
                    addresses.iter().map(|a| Record::from_rdata(name.clone(), ttl, RData::A(A(*a)))).collect()
                } else {
                    Vec::new()
                };
                send(&mut response, builder.build(meta, records.iter(), &[], &[], &[]), req).await
            }
            Answer::Forward => match forward(request.as_slice()).await {
                Some(m) => {
                    let mut meta = m.metadata;
                    meta.id = request.metadata.id;
                    let built = builder.build(meta, &m.answers, &m.authorities, &[], &m.additionals);
                    send(&mut response, built, req).await
                }
                None => send(&mut response, builder.error_msg(req, ResponseCode::ServFail), req).await,
            },
        }
    }
}

async fn send<'a, R: ResponseHandler>(
    response: &mut R,
    message: hickory_server::zone_handler::MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
    request: &Metadata,
) -> ResponseInfo {
    match response.send_response(message).await {
        Ok(info) => info,
        Err(e) => {
            tracing::debug!(error = %e, "sending a DNS answer");
            let mut m = Metadata::response_from_request(request);
            m.response_code = ResponseCode::ServFail;
            hickory_server::proto::op::Header { metadata: m, counts: Default::default() }.into()
        }
    }
}

/// Asks the node's resolvers, in turn, over UDP.
async fn forward(query: &[u8]) -> Option<Message> {
    let conf = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    for up in upstreams(&conf) {
        let bind: SocketAddr = if up.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
        let Ok(sock) = tokio::net::UdpSocket::bind(bind).await else { continue };
        if sock.send_to(query, up).await.is_err() {
            continue;
        }
        let mut buf = vec![0u8; 4096];
        match tokio::time::timeout(UPSTREAM_WAIT, sock.recv(&mut buf)).await {
            Ok(Ok(n)) => match Message::from_vec(&buf[..n]) {
                Ok(m) => return Some(m),
                Err(e) => tracing::debug!(upstream = %up, error = %e, "an upstream's answer did not parse"),
            },
            _ => tracing::debug!(upstream = %up, "an upstream resolver did not answer"),
        }
    }
    None
}

/// A DNS server on `addr:53` (UDP and TCP), answering from `names`;
/// stopped when dropped.
pub struct Server {
    pub addr: Ipv4Addr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    pub async fn start(
        network: &str,
        addr: Ipv4Addr,
        names: watch::Receiver<Arc<Names>>,
        further: watch::Receiver<Arc<Further>>,
    ) -> Result<Self, NetError> {
        let sa = SocketAddr::from((addr, 53));
        let err = |e: std::io::Error| NetError::State(format!("DNS server on {sa}: {e}"));
        let udp = tokio::net::UdpSocket::bind(sa).await.map_err(err)?;
        let tcp = tokio::net::TcpListener::bind(sa).await.map_err(err)?;
        let mut server = hickory_server::Server::new(Handler { network: network.to_string(), names, further });
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5), 64 * 1024);
        let task = tokio::spawn(async move {
            if let Err(e) = server.block_until_done().await {
                tracing::warn!(error = %e, "DNS server ended");
            }
        });
        tracing::info!(%sa, network, "DNS server for tasks listening");
        Ok(Self { addr, task })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::objects::DEFAULT_NETWORK;

    fn svc(name: &str, vip: Option<&str>, stateful: bool, eps: &[(u64, &str)]) -> ServiceEndpoints {
        ServiceEndpoints {
            id: format!("id-{name}"),
            name: name.into(),
            namespace: String::new(),
            vips: vip.map(|v| (DEFAULT_NETWORK.to_string(), v.parse().unwrap())).into_iter().collect(),
            stateful,
            ports: Vec::new(),
            ports_network: String::new(),
            endpoints: eps
                .iter()
                .map(|(slot, a)| Endpoint {
                    task: format!("t{slot}"),
                    slot: *slot,
                    addresses: [(DEFAULT_NETWORK.to_string(), a.parse().unwrap())].into(),
                })
                .collect(),
        }
    }

    fn addrs(a: Answer) -> Vec<String> {
        match a {
            Answer::Cluster { addresses, .. } => addresses.iter().map(|a| a.to_string()).collect(),
            Answer::Forward => vec!["forward".into()],
        }
    }

    const D: &str = DEFAULT_NETWORK;

    #[test]
    fn a_task_sees_only_the_names_of_its_network() {
        let mut web = svc("web", Some("10.255.0.1"), false, &[(1, "10.0.0.2")]);
        web.vips.insert("back".into(), "172.30.255.1".parse().unwrap());
        web.endpoints[0].addresses.insert("back".into(), "172.30.0.2".parse().unwrap());
        let db = ServiceEndpoints {
            vips: [("back".to_string(), "172.30.255.2".parse().unwrap())].into(),
            ..svc("db", None, false, &[])
        };
        let n = Names::new([&web, &db]);
        assert_eq!(addrs(n.answer("back", "web")), ["172.30.255.1"]);
        assert_eq!(addrs(n.answer("back", "web.back")), ["172.30.255.1"]);
        assert_eq!(addrs(n.answer("back", "tasks.web")), ["172.30.0.2"], "its address on that network");
        assert_eq!(addrs(n.answer("back", "db")), ["172.30.255.2"]);
        assert_eq!(addrs(n.answer(D, "db")), ["forward"], "db is not on default");
        assert_eq!(addrs(n.answer(D, "web.back")), ["forward"]);
        assert_eq!(addrs(n.answer("elsewhere", "web")), ["forward"]);
    }

    #[test]
    fn one_name_in_two_namespaces_is_two_names() {
        let web = svc("web", Some("10.255.0.1"), false, &[(1, "10.0.0.2")]);
        let theirs =
            ServiceEndpoints { namespace: "team-a".into(), ..svc("web", Some("10.255.0.9"), true, &[(1, "10.0.0.8")]) };
        let n = Names::new([&web, &theirs]);
        assert_eq!(addrs(n.answer(D, "web")), ["10.255.0.1"], "default's keeps the short name");
        assert_eq!(addrs(n.answer(D, "web.team-a")), ["10.255.0.9"]);
        assert_eq!(addrs(n.answer(D, &format!("web.team-a.{D}."))), ["10.255.0.9"]);
        assert_eq!(addrs(n.answer(D, "tasks.web.team-a")), ["10.0.0.8"]);
        assert_eq!(addrs(n.answer(D, "1.web.team-a")), ["10.0.0.8"]);
        assert_eq!(addrs(n.answer(D, "web.team-b")), ["forward"]);
        // A namespace named like the network: the namespace's service wins.
        let theirs_too = ServiceEndpoints { namespace: D.into(), ..svc("web", Some("10.255.0.7"), false, &[]) };
        let n = Names::new([&web, &theirs_too]);
        assert_eq!(addrs(n.answer(D, &format!("web.{D}"))), ["10.255.0.7"]);
        assert_eq!(addrs(n.answer(D, "web")), ["10.255.0.1"]);
    }

    #[test]
    fn a_network_of_a_namespace_answers_its_services_by_every_spelling() {
        const BACK: &str = "team-a/back";
        let on_back = |mut s: ServiceEndpoints, vip: &str, task: &str| {
            s.namespace = "team-a".into();
            s.vips = [(BACK.to_string(), vip.parse().unwrap())].into();
            for e in &mut s.endpoints {
                e.addresses = [(BACK.to_string(), task.parse().unwrap())].into();
            }
            s
        };
        let db = on_back(svc("db", None, true, &[(1, "10.0.0.1")]), "172.30.255.2", "172.30.0.5");
        let n = Names::new([&db]);
        for name in ["db.team-a", "db.back", "db.back.team-a", "DB.Back.Team-A."] {
            assert_eq!(addrs(n.answer(BACK, name)), ["172.30.255.2"], "{name}");
        }
        assert_eq!(addrs(n.answer(BACK, "tasks.db.back")), ["172.30.0.5"]);
        assert_eq!(addrs(n.answer(BACK, "1.db.back.team-a")), ["172.30.0.5"]);
        assert_eq!(addrs(n.answer(BACK, "db")), ["forward"], "the resolver's search path makes it db.team-a");
        assert_eq!(addrs(n.answer("team-b/back", "db.back")), ["forward"], "team-b's back is another network");
        assert_eq!(addrs(n.answer("back", "db.back")), ["forward"], "and so is default's");
    }

    #[test]
    fn service_names_answer_their_vip_tasks_and_slots() {
        let web = svc("web", Some("10.255.0.1"), false, &[(1, "10.0.0.2"), (2, "10.0.1.3")]);
        let db = svc("db", Some("10.255.0.2"), true, &[(1, "10.0.0.5"), (2, "10.0.1.6")]);
        let idle = svc("idle", Some("10.255.0.3"), false, &[]);
        let n = Names::new([&web, &db, &idle]);
        assert_eq!(addrs(n.answer(D, "web")), ["10.255.0.1"]);
        assert_eq!(addrs(n.answer(D, "WEB.default.")), ["10.255.0.1"], "any case, the network, a final dot");
        assert_eq!(
            n.answer(D, "web"),
            Answer::Cluster { addresses: vec!["10.255.0.1".parse().unwrap()], ttl: VIP_TTL }
        );
        assert_eq!(addrs(n.answer(D, "tasks.web")), ["10.0.0.2", "10.0.1.3"]);
        assert_eq!(addrs(n.answer(D, "tasks.idle")), Vec::<String>::new(), "known, none ready");
        assert_eq!(addrs(n.answer(D, "2.db")), ["10.0.1.6"]);
        assert_eq!(addrs(n.answer(D, "2.web")), ["forward"], "slots of stateful services only");
        assert_eq!(addrs(n.answer(D, "example.org")), ["forward"]);
        assert_eq!(addrs(n.answer(D, "tasks.nope")), ["forward"]);
    }

    #[test]
    fn upstreams_are_the_nameservers_of_resolv_conf() {
        let u = upstreams("search lan\nnameserver 10.0.2.3\nnameserver 127.0.0.53\nnameserver bogus\n");
        assert_eq!(u, ["10.0.2.3:53".parse().unwrap(), "127.0.0.53:53".parse().unwrap()]);
    }
}
