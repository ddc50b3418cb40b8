//! Authorization: one table says who may call what; one tower layer
//! enforces it before any handler runs.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::Status;

use super::peer::Peer;
use crate::node::audit::{AuditLog, Record};
use crate::pki::deny::{DenyList, Refusal};
use crate::pki::role::Role;
use crate::state::NodeState;

/// Who may call a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Anyone who got through TLS, also in maintenance mode.
    Public,
    /// Only in maintenance mode (then anyone: the client pinned our fingerprint).
    MaintenanceOnly,
    /// People with at least this role, and nodes never.
    AtLeast(Role),
    /// Manager nodes of this cluster only (Raft between managers).
    Managers,
    /// Any node of this cluster (sessions with the dispatcher).
    Nodes,
    /// People with at least this role, and manager nodes (which gather
    /// service logs from the nodes).
    AtLeastOrManager(Role),
    /// Anyone who got through TLS, without a certificate, once the node is
    /// in a cluster: joining nodes (the handler checks their token).
    Joiners,
}

/// Every RPC and its rule, with why. A method missing here is refused.
/// Two calls carry more power in some of their requests than in others;
/// [`require_admin`] guards those parts (bind mounts, node roles).
pub const TABLE: &[(&str, Rule)] = &[
    // What a node runs and whether it is well: safe to tell anyone who got
    // through TLS (load balancers and `cluster init` probe it).
    ("/orc.machine.v1.Machine/Version", Rule::Public),
    ("/orc.machine.v1.Machine/Health", Rule::Public),
    // Claiming a blank node: whoever pinned its fingerprint (maintenance only).
    ("/orc.machine.v1.Machine/Bootstrap", Rule::MaintenanceOnly),
    // Power and service restarts disrupt workloads but grant no access.
    ("/orc.machine.v1.Machine/Reboot", Rule::AtLeast(Role::Operator)),
    ("/orc.machine.v1.Machine/Shutdown", Rule::AtLeast(Role::Operator)),
    // Reading the node's logs and state.
    ("/orc.machine.v1.Machine/Dmesg", Rule::AtLeast(Role::Reader)),
    ("/orc.machine.v1.Machine/Logs", Rule::AtLeast(Role::Reader)),
    ("/orc.machine.v1.Machine/Services", Rule::AtLeast(Role::Reader)),
    ("/orc.machine.v1.Machine/RestartService", Rule::AtLeast(Role::Operator)),
    // Who did what: admins only (it names every person and what they did).
    ("/orc.machine.v1.Machine/Audit", Rule::AtLeast(Role::Admin)),
    // The OS itself: what every workload and key on the node runs on.
    ("/orc.machine.v1.Machine/Upgrade", Rule::AtLeast(Role::Admin)),
    ("/orc.machine.v1.Machine/Rollback", Rule::AtLeast(Role::Admin)),
    // Installing to a disk: like claiming the node, whoever pinned its
    // fingerprint while it is blank (the handler checks the maintenance token).
    ("/orc.machine.v1.Machine/Install", Rule::MaintenanceOnly),
    // Images: bringing them in costs disk, not trust (layers are unpacked safely).
    ("/orc.container.v1.Images/Pull", Rule::AtLeast(Role::Operator)),
    ("/orc.container.v1.Images/Load", Rule::AtLeast(Role::Operator)),
    ("/orc.container.v1.Images/List", Rule::AtLeast(Role::Reader)),
    ("/orc.container.v1.Images/Remove", Rule::AtLeast(Role::Operator)),
    // Running workloads is the operator's job; a host bind mount reaches the
    // node's files (its keys among them), so it needs an admin ([`require_admin`]).
    ("/orc.container.v1.Containers/Run", Rule::AtLeast(Role::Operator)),
    ("/orc.container.v1.Containers/List", Rule::AtLeast(Role::Reader)),
    ("/orc.container.v1.Containers/Inspect", Rule::AtLeast(Role::Reader)),
    // Managers gather a service's logs from the nodes that ran its tasks.
    ("/orc.container.v1.Containers/Logs", Rule::AtLeastOrManager(Role::Reader)),
    // Exec runs code inside a workload: as much as running one.
    ("/orc.container.v1.Containers/Exec", Rule::AtLeast(Role::Operator)),
    ("/orc.container.v1.Containers/Stop", Rule::AtLeast(Role::Operator)),
    ("/orc.container.v1.Containers/Kill", Rule::AtLeast(Role::Operator)),
    ("/orc.container.v1.Containers/Wait", Rule::AtLeast(Role::Reader)),
    ("/orc.container.v1.Containers/Remove", Rule::AtLeast(Role::Operator)),
    ("/orc.cluster.v1.Cluster/Status", Rule::AtLeast(Role::Reader)),
    // A join token makes new members (a manager token: new CA key holders).
    ("/orc.cluster.v1.Cluster/JoinToken", Rule::AtLeast(Role::Admin)),
    // Certificate lifetimes and limits govern everyone's trust.
    ("/orc.cluster.v1.Cluster/Update", Rule::AtLeast(Role::Admin)),
    // Rewrites the quorum: the most dangerous call there is.
    ("/orc.cluster.v1.Cluster/Recover", Rule::AtLeast(Role::Admin)),
    // Making, listing and revoking people's certificates decides who gets in.
    ("/orc.cluster.v1.Cluster/IssueCert", Rule::AtLeast(Role::Admin)),
    ("/orc.cluster.v1.Cluster/RevokeCert", Rule::AtLeast(Role::Admin)),
    ("/orc.cluster.v1.Cluster/ListCerts", Rule::AtLeast(Role::Admin)),
    // Autolock: the key that opens every manager's CA key.
    ("/orc.cluster.v1.Cluster/UnlockKey", Rule::AtLeast(Role::Admin)),
    // Giving a locked manager that key: whoever holds it is trusted with
    // the CA key already; an admin's certificate is asked for all the same.
    ("/orc.cluster.v1.Cluster/Unlock", Rule::AtLeast(Role::Admin)),
    // Everyone renews their own certificate, keeping their role.
    ("/orc.cluster.v1.Cluster/RenewCert", Rule::AtLeast(Role::Reader)),
    // A node renews its own certificate; the role comes from its Node object.
    ("/orc.cluster.v1.Cluster/Renew", Rule::Nodes),
    // Services: the operator's daily work.
    ("/orc.cluster.v1.Services/Create", Rule::AtLeast(Role::Operator)),
    ("/orc.cluster.v1.Services/Update", Rule::AtLeast(Role::Operator)),
    ("/orc.cluster.v1.Services/Remove", Rule::AtLeast(Role::Operator)),
    ("/orc.cluster.v1.Services/List", Rule::AtLeast(Role::Reader)),
    ("/orc.cluster.v1.Services/Inspect", Rule::AtLeast(Role::Reader)),
    ("/orc.cluster.v1.Services/Tasks", Rule::AtLeast(Role::Reader)),
    ("/orc.cluster.v1.Services/Logs", Rule::AtLeast(Role::Reader)),
    ("/orc.cluster.v1.Services/Rollback", Rule::AtLeast(Role::Operator)),
    // Networks: made and removed with the services that use them.
    ("/orc.cluster.v1.Networks/Create", Rule::AtLeast(Role::Operator)),
    ("/orc.cluster.v1.Networks/List", Rule::AtLeast(Role::Reader)),
    ("/orc.cluster.v1.Networks/Inspect", Rule::AtLeast(Role::Reader)),
    ("/orc.cluster.v1.Networks/Remove", Rule::AtLeast(Role::Operator)),
    // Secrets: written by those who run services; a secret's data is never
    // read back through the API (only nodes running a task mounting it get
    // it), so reading the list and versions is a reader's.
    ("/orc.cluster.v1.Secrets/Create", Rule::AtLeast(Role::Operator)),
    ("/orc.cluster.v1.Secrets/Update", Rule::AtLeast(Role::Operator)),
    ("/orc.cluster.v1.Secrets/List", Rule::AtLeast(Role::Reader)),
    ("/orc.cluster.v1.Secrets/Inspect", Rule::AtLeast(Role::Reader)),
    ("/orc.cluster.v1.Secrets/Remove", Rule::AtLeast(Role::Operator)),
    // Volumes: made and removed with the services that use them.
    ("/orc.cluster.v1.Volumes/Create", Rule::AtLeast(Role::Operator)),
    ("/orc.cluster.v1.Volumes/List", Rule::AtLeast(Role::Reader)),
    ("/orc.cluster.v1.Volumes/Inspect", Rule::AtLeast(Role::Reader)),
    ("/orc.cluster.v1.Volumes/Remove", Rule::AtLeast(Role::Operator)),
    // Configs: the same, their data shown to readers (not secret).
    ("/orc.cluster.v1.Configs/Create", Rule::AtLeast(Role::Operator)),
    ("/orc.cluster.v1.Configs/Update", Rule::AtLeast(Role::Operator)),
    ("/orc.cluster.v1.Configs/List", Rule::AtLeast(Role::Reader)),
    ("/orc.cluster.v1.Configs/Inspect", Rule::AtLeast(Role::Reader)),
    ("/orc.cluster.v1.Configs/Remove", Rule::AtLeast(Role::Operator)),
    // Namespaces and their quotas divide the cluster among teams: admins
    // make them; anyone sees those they work in.
    ("/orc.cluster.v1.Namespaces/Create", Rule::AtLeast(Role::Admin)),
    ("/orc.cluster.v1.Namespaces/SetQuota", Rule::AtLeast(Role::Admin)),
    ("/orc.cluster.v1.Namespaces/Remove", Rule::AtLeast(Role::Admin)),
    ("/orc.cluster.v1.Namespaces/List", Rule::AtLeast(Role::Reader)),
    ("/orc.cluster.v1.Namespaces/Inspect", Rule::AtLeast(Role::Reader)),
    ("/orc.cluster.v1.Nodes/List", Rule::AtLeast(Role::Reader)),
    ("/orc.cluster.v1.Watch/Watch", Rule::AtLeast(Role::Reader)),
    ("/orc.cluster.v1.Watch/Events", Rule::AtLeast(Role::Reader)),
    ("/orc.cluster.v1.Nodes/Inspect", Rule::AtLeast(Role::Reader)),
    // Draining and labelling nodes is operations; changing a node's role
    // hands it (or takes away) the CA key: admin only ([`require_admin`]).
    ("/orc.cluster.v1.Nodes/Update", Rule::AtLeast(Role::Operator)),
    // Removing a member is a trust decision.
    ("/orc.cluster.v1.Nodes/Remove", Rule::AtLeast(Role::Admin)),
    // The joiner has no certificate yet: the handler checks its token.
    ("/orc.cluster.v1.Cluster/Join", Rule::Joiners),
    ("/orc.machine.v1.Machine/Join", Rule::MaintenanceOnly),
    // The replicated log: managers among themselves.
    ("/orc.raft.v1.Raft/AppendEntries", Rule::Managers),
    ("/orc.raft.v1.Raft/Vote", Rule::Managers),
    ("/orc.raft.v1.Raft/InstallSnapshot", Rule::Managers),
    // Writes forwarded to the leader, linearizable reads: managers only.
    ("/orc.raft.v1.Raft/Propose", Rule::Managers),
    ("/orc.raft.v1.Raft/ReadIndex", Rule::Managers),
    // Every node's session with the leader (its tasks, its heartbeats).
    ("/orc.dispatcher.v1.Dispatcher/Session", Rule::Nodes),
    ("/orc.dispatcher.v1.Dispatcher/Heartbeat", Rule::Nodes),
];

/// The part of a request that needs an admin, though its method does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminOnly {
    /// A bind mount of a host path into a container.
    BindMount,
    /// Promoting or demoting a node (it gains or loses the CA key).
    NodeRole,
}

/// Refuses `what` unless the caller is an admin.
pub fn require_admin(what: AdminOnly, peer: Option<&crate::pki::role::PeerIdentity>) -> Result<(), Status> {
    match peer {
        Some(p) if p.role == Role::Admin => Ok(()),
        other => {
            let who = other.map(|p| format!("{} {:?}", p.role, p.name)).unwrap_or_else(|| "an unknown caller".into());
            Err(Status::permission_denied(match what {
                AdminOnly::BindMount => format!(
                    "{who} may not bind-mount host paths (they reach the node's own files): ask an admin, \
                     or use a tmpfs mount"
                ),
                AdminOnly::NodeRole => {
                    format!("{who} may not promote or demote nodes (a manager holds the CA key): ask an admin")
                }
            }))
        }
    }
}

/// Methods that work in the request's namespace (its header): a person
/// limited to namespaces calls them only in one of theirs.
const IN_A_NAMESPACE: &[&str] = &[
    "/orc.cluster.v1.Services/",
    "/orc.cluster.v1.Secrets/",
    "/orc.cluster.v1.Configs/",
    "/orc.cluster.v1.Volumes/",
    // The shared `default` network shows such a person only theirs.
    "/orc.cluster.v1.Networks/",
    "/orc.cluster.v1.Watch/Events",
    // Services and tasks; the handler refuses such a person nodes.
    "/orc.cluster.v1.Watch/Watch",
];

/// What such a person may call besides: renewing their own certificate,
/// the quorum's state, and the namespaces they are in (the handlers show
/// only those). The rest reaches the whole cluster (nodes, their
/// containers and logs, certificates, settings).
const ANY_NAMESPACE: &[&str] = &[
    "/orc.cluster.v1.Cluster/RenewCert",
    "/orc.cluster.v1.Cluster/Status",
    "/orc.cluster.v1.Namespaces/List",
    "/orc.cluster.v1.Namespaces/Inspect",
];

/// Refuses a person limited to namespaces a call outside them; `ns` is
/// the namespace the request names.
fn within_scope(path: &str, who: &crate::pki::role::PeerIdentity, ns: &str) -> Result<(), Status> {
    if who.namespaces.is_empty() || ANY_NAMESPACE.contains(&path) {
        return Ok(());
    }
    let scope = who.namespaces.join(", ");
    if IN_A_NAMESPACE.iter().any(|p| path.starts_with(p)) {
        if who.namespaces.iter().any(|n| n == ns) {
            return Ok(());
        }
        return Err(Status::permission_denied(format!(
            "{} {:?} works in namespaces {scope} only, not in {ns}: pass one of them with -N",
            who.role, who.name
        )));
    }
    Err(Status::permission_denied(format!(
        "{} {:?} works in namespaces {scope} only: {path} reaches the whole cluster; ask someone not limited to \
         namespaces",
        who.role, who.name
    )))
}

/// The namespaces the caller of `req` may work in.
#[derive(Debug, Clone, Default)]
pub struct Scope(Vec<String>);

/// The scope of the caller of `req` (no identity: none to limit).
pub fn scope<T>(req: &tonic::Request<T>) -> Scope {
    Scope(crate::pki::peer::caller(req).map(|p| p.namespaces).unwrap_or_default())
}

impl Scope {
    /// Not limited to namespaces.
    pub fn whole_cluster(&self) -> bool {
        self.0.is_empty()
    }

    pub fn allows(&self, ns: &str) -> bool {
        self.whole_cluster() || self.0.iter().any(|n| n == ns)
    }

    pub fn check(&self, ns: &str) -> Result<(), Status> {
        if self.allows(ns) {
            return Ok(());
        }
        Err(Status::permission_denied(format!("you work in namespaces {} only, not in {ns}", self.0.join(", "))))
    }
}

fn rank(r: Role) -> u8 {
    match r {
        Role::Reader => 1,
        Role::Operator => 2,
        Role::Admin => 3,
        Role::Worker | Role::Manager => 0,
    }
}

/// Decides one call. `maintenance` is the node's mode now; `peer` who calls;
/// `deny` the certificates and nodes refused whatever they call.
pub fn authorize(
    path: &str,
    maintenance: bool,
    cluster_id: Option<&str>,
    peer: Option<&Peer>,
    deny: &DenyList,
    namespace: &str,
) -> Result<(), Status> {
    let Some((_, rule)) = TABLE.iter().find(|(p, _)| *p == path) else {
        return Err(Status::permission_denied(format!("{path} is not allowed for anyone")));
    };
    if maintenance {
        return match rule {
            Rule::Public | Rule::MaintenanceOnly => Ok(()),
            Rule::AtLeast(_) | Rule::AtLeastOrManager(_) | Rule::Managers | Rule::Nodes | Rule::Joiners => {
                Err(Status::failed_precondition(
                    "the node is in maintenance mode (no cluster yet): run `orcctl cluster init <addr>` first",
                ))
            }
        };
    }
    if *rule == Rule::Joiners {
        return Ok(());
    }
    let identity = peer
        .and_then(|p| p.identity.as_ref())
        .ok_or_else(|| Status::unauthenticated("a client certificate from this cluster's CA is required"))?;
    if cluster_id.is_some_and(|c| c != identity.cluster_id) {
        return Err(Status::unauthenticated(format!(
            "certificate is for cluster {:?}, not this one",
            identity.cluster_id
        )));
    }
    match deny.refused(identity) {
        Some(Refusal::Revoked(why)) => return Err(Status::unauthenticated(why)),
        Some(Refusal::Removed(why)) => return Err(Status::permission_denied(why)),
        None => {}
    }
    match rule {
        Rule::Public => Ok(()),
        Rule::MaintenanceOnly => Err(Status::already_exists("the node is already part of a cluster")),
        Rule::Joiners => Ok(()),
        Rule::Managers if deny.is_manager(identity) => Ok(()),
        Rule::Managers => Err(Status::permission_denied(format!(
            "{} {:?} may not call {path}: only manager nodes may",
            identity.role, identity.name
        ))),
        Rule::Nodes if !identity.role.is_person() => Ok(()),
        Rule::Nodes => Err(Status::permission_denied(format!(
            "{} {:?} may not call {path}: only nodes may",
            identity.role, identity.name
        ))),
        Rule::AtLeastOrManager(_) if deny.is_manager(identity) => Ok(()),
        Rule::AtLeastOrManager(min) | Rule::AtLeast(min)
            if identity.role.is_person() && rank(identity.role) >= rank(*min) =>
        {
            within_scope(path, identity, namespace)
        }
        Rule::AtLeastOrManager(min) | Rule::AtLeast(min) => Err(Status::permission_denied(format!(
            "{} {:?} may not call {path}: it needs the {min} role or higher",
            identity.role, identity.name
        ))),
    }
}

/// What a locked manager (autolock) serves: health and version, and the
/// call that unlocks it.
pub fn allowed_while_locked(path: &str) -> Result<(), Status> {
    let public = TABLE.iter().any(|(p, r)| *p == path && *r == Rule::Public);
    if public || path == "/orc.cluster.v1.Cluster/Unlock" {
        return Ok(());
    }
    Err(Status::failed_precondition(
        "this manager is locked (autolock): it serves nothing until it is unlocked: run `orcctl cluster unlock` \
         against it with the unlock key (`orcctl cluster unlock-key` on an unlocked manager shows it)",
    ))
}

/// At most this many refusals are logged per [`REFUSAL_WINDOW`].
pub const REFUSALS_LOGGED: u32 = 20;
pub const REFUSAL_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);

/// The log of refused calls and connections, rate limited.
pub static REFUSALS: RateLimit = RateLimit::new("refusals", REFUSALS_LOGGED, REFUSAL_WINDOW);

/// Audit records of calls without a certificate, rate limited the same way.
static STRANGERS_RECORDED: RateLimit =
    RateLimit::new("audit records of callers without a certificate", REFUSALS_LOGGED, REFUSAL_WINDOW);

/// Lets `per_window` events through per window; says how many it held back
/// when the next window opens.
pub struct RateLimit {
    /// What is limited, for the line saying how many were held back.
    what: &'static str,
    per_window: u32,
    window: std::time::Duration,
    state: std::sync::Mutex<Option<(std::time::Instant, u32, u64)>>,
}

impl RateLimit {
    pub const fn new(what: &'static str, per_window: u32, window: std::time::Duration) -> Self {
        Self { what, per_window, window, state: std::sync::Mutex::new(None) }
    }

    /// Whether to log this event.
    pub fn allow(&self) -> bool {
        let mut s = crate::sync::lock(&self.state);
        let now = std::time::Instant::now();
        let (start, logged, dropped) = s.get_or_insert((now, 0, 0));
        if now.duration_since(*start) >= self.window {
            if *dropped > 0 {
                tracing::info!(
                    what = self.what,
                    held_back = *dropped,
                    "over the rate in the last window: not one by one"
                );
            }
            (*start, *logged, *dropped) = (now, 0, 0);
        }
        if *logged < self.per_window {
            *logged += 1;
            true
        } else {
            *dropped += 1;
            false
        }
    }
}

/// The tower layer around every gRPC service.
#[derive(Clone)]
pub struct AuthzLayer {
    pub state: Arc<NodeState>,
    pub audit: Arc<AuditLog>,
}

impl<S> tower::Layer<S> for AuthzLayer {
    type Service = Authz<S>;
    fn layer(&self, inner: S) -> Authz<S> {
        Authz { inner, state: self.state.clone(), audit: self.audit.clone() }
    }
}

#[derive(Clone)]
pub struct Authz<S> {
    inner: S,
    state: Arc<NodeState>,
    audit: Arc<AuditLog>,
}

/// The audit record of a call of `path` by `peer` that ended with `code`.
fn audit_record(path: &str, peer: Option<&Peer>, target: String, code: i32, message: String) -> Record {
    let id = peer.and_then(|p| p.identity.as_ref());
    let time_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    Record {
        time_ms,
        who: id.map(|i| i.name.clone()).unwrap_or_default(),
        role: id.map(|i| i.role),
        serial: id.map(|i| i.serial.clone()).unwrap_or_default(),
        remote: peer.map(|p| p.remote.clone()).unwrap_or_default(),
        method: super::audit::method_name(path),
        target,
        code,
        message,
    }
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for Authz<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let path = req.uri().path().to_string();
        let peer = req.extensions().get::<Peer>().cloned();
        let peer = peer.as_ref();
        let (maintenance, cluster_id) = self.state.mode();
        let locked = || if self.state.locked() { allowed_while_locked(&path) } else { Ok(()) };
        let caller = peer.and_then(|p| p.identity.as_ref());
        // Callers without a certificate are recorded at a bounded rate: a
        // flood of them must not push people's records out of the log.
        let recorded = super::audit::recorded(&path, caller) && (caller.is_some() || STRANGERS_RECORDED.allow());
        let audit = recorded.then(|| self.audit.clone());
        let namespace = req
            .headers()
            .get(orc_proto::NAMESPACE_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or(crate::model::namespace::DEFAULT_NAMESPACE);
        let decided = authorize(&path, maintenance, cluster_id.as_deref(), peer, &self.state.deny(), namespace);
        match decided.and_then(|()| locked()) {
            Ok(()) => {
                tracing::debug!(method = %path, peer = ?peer.map(|p| &p.remote), "authorized");
                let call = self.inner.call(req);
                let Some(audit) = audit else { return Box::pin(call) };
                let peer = peer.cloned();
                Box::pin(async move {
                    let (res, target) = super::audit::with_target(call).await;
                    if let Ok(r) = &res {
                        let (code, message) = super::audit::status_of(r.headers());
                        audit.record(audit_record(&path, peer.as_ref(), target, code, message));
                    }
                    res
                })
            }
            Err(status) => {
                // Refusals are what an unauthenticated flood produces: logged
                // at a bounded rate, the rest counted.
                if REFUSALS.allow() {
                    tracing::info!(method = %path, peer = ?peer, code = ?status.code(), "refused");
                }
                if let Some(audit) = audit {
                    let r = audit_record(&path, peer, String::new(), status.code() as i32, status.message().into());
                    audit.record(r);
                }
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::role::PeerIdentity;
    use tonic::Code;

    fn peer(role: Role, cluster: &str) -> Peer {
        Peer {
            remote: "t".into(),
            identity: Some(PeerIdentity { name: "x".into(), cluster_id: cluster.into(), role, ..Default::default() }),
        }
    }

    #[test]
    fn matrix() {
        use Role::*;
        let m = |s: &str| format!("/orc.machine.v1.Machine/{s}");
        // (method, role, expected code or Ok)
        let cases: &[(&str, Role, Option<Code>)] = &[
            ("Version", Reader, None),
            ("Version", Worker, None),
            ("Health", Manager, None),
            ("Dmesg", Reader, None),
            ("Logs", Reader, None),
            ("Services", Reader, None),
            ("Reboot", Reader, Some(Code::PermissionDenied)),
            ("Shutdown", Reader, Some(Code::PermissionDenied)),
            ("Reboot", Operator, None),
            ("Shutdown", Admin, None),
            ("Reboot", Worker, Some(Code::PermissionDenied)),
            ("Dmesg", Manager, Some(Code::PermissionDenied)),
            ("Bootstrap", Admin, Some(Code::AlreadyExists)),
            ("Nope", Admin, Some(Code::PermissionDenied)),
        ];
        for (i, (method, role, want)) in cases.iter().enumerate() {
            let got = authorize(&m(method), false, Some("c"), Some(&peer(*role, "c")), &DenyList::default(), "default")
                .err()
                .map(|s| s.code());
            assert_eq!(got, *want, "case {i}: {method} as {role}");
        }
    }

    #[test]
    fn secrets_and_configs_are_written_by_operators_and_never_reached_by_node_certificates() {
        use Role::*;
        for service in ["Secrets", "Configs"] {
            for (method, role, ok) in [
                ("Create", Operator, true),
                ("Update", Operator, true),
                ("Remove", Admin, true),
                ("List", Reader, true),
                ("Inspect", Reader, true),
                ("Create", Reader, false),
                ("Update", Reader, false),
                ("Remove", Reader, false),
                ("Inspect", Manager, false),
                ("Inspect", Worker, false),
                ("List", Worker, false),
            ] {
                let path = format!("/orc.cluster.v1.{service}/{method}");
                let got = authorize(&path, false, Some("c"), Some(&peer(role, "c")), &DenyList::default(), "default");
                assert_eq!(got.is_ok(), ok, "{path} as {role}");
            }
        }
    }

    #[test]
    fn a_person_limited_to_namespaces_reaches_nothing_of_another_by_any_rpc() {
        let none = DenyList::default();
        for role in [Role::Operator, Role::Reader] {
            let mut p = peer(role, "c");
            if let Some(id) = p.identity.as_mut() {
                id.namespaces = vec!["team-a".into()];
            }
            for (path, rule) in TABLE {
                let open = matches!(rule, Rule::Public | Rule::Joiners) || ANY_NAMESPACE.contains(path);
                let r = authorize(path, false, Some("c"), Some(&p), &none, "team-b");
                if open {
                    // Those show only what is hers (the handlers filter).
                    continue;
                }
                let e = r.err().unwrap_or_else(|| panic!("{role} of team-a reached {path} in team-b"));
                assert!(
                    matches!(e.code(), Code::PermissionDenied | Code::AlreadyExists),
                    "{path}: {:?} {}",
                    e.code(),
                    e.message()
                );
            }
        }
    }

    #[test]
    fn a_person_limited_to_namespaces_works_only_in_them() {
        let mut op = peer(Role::Operator, "c");
        if let Some(id) = op.identity.as_mut() {
            id.namespaces = vec!["team-a".into()];
        }
        let none = DenyList::default();
        let call =
            |path: &str, ns: &str| authorize(path, false, Some("c"), Some(&op), &none, ns).err().map(|s| s.code());
        for service in ["Services", "Secrets", "Configs", "Volumes", "Networks"] {
            for method in ["Create", "List", "Inspect", "Remove"] {
                let path = format!("/orc.cluster.v1.{service}/{method}");
                assert_eq!(call(&path, "team-a"), None, "{path} in its own namespace");
                assert_eq!(call(&path, "team-b"), Some(Code::PermissionDenied), "{path} in another");
                assert_eq!(call(&path, "default"), Some(Code::PermissionDenied), "{path} in default");
            }
        }
        for path in [
            "/orc.cluster.v1.Services/Logs",
            "/orc.cluster.v1.Services/Tasks",
            "/orc.cluster.v1.Services/Update",
            "/orc.cluster.v1.Watch/Events",
            "/orc.cluster.v1.Watch/Watch",
        ] {
            assert_eq!(call(path, "team-b"), Some(Code::PermissionDenied), "{path}");
            assert_eq!(call(path, "team-a"), None, "{path}");
        }
        // What reaches the whole cluster, whatever namespace is named.
        for path in [
            "/orc.cluster.v1.Nodes/List",
            "/orc.machine.v1.Machine/Logs",
            "/orc.container.v1.Containers/Logs",
            "/orc.container.v1.Containers/Exec",
            "/orc.container.v1.Images/Pull",
        ] {
            assert_eq!(call(path, "team-a"), Some(Code::PermissionDenied), "{path}");
        }
        for path in
            ["/orc.cluster.v1.Cluster/RenewCert", "/orc.cluster.v1.Namespaces/List", "/orc.machine.v1.Machine/Version"]
        {
            assert_eq!(call(path, "team-b"), None, "{path}");
        }
        // Admin-only calls stay admin-only.
        assert_eq!(call("/orc.cluster.v1.Namespaces/SetQuota", "team-a"), Some(Code::PermissionDenied));
        // Not limited: every namespace.
        let all = peer(Role::Operator, "c");
        assert!(authorize("/orc.cluster.v1.Services/Create", false, Some("c"), Some(&all), &none, "team-b").is_ok());
    }

    #[test]
    fn maintenance_and_identity_rules() {
        let m = "/orc.machine.v1.Machine/";
        let none = DenyList::default();
        assert!(authorize(&format!("{m}Bootstrap"), true, None, None, &none, "default").is_ok());
        assert!(authorize(&format!("{m}Version"), true, None, None, &none, "default").is_ok());
        assert_eq!(
            authorize(&format!("{m}Reboot"), true, None, None, &none, "default").unwrap_err().code(),
            Code::FailedPrecondition
        );
        assert_eq!(
            authorize(&format!("{m}Version"), false, Some("c"), None, &none, "default").unwrap_err().code(),
            Code::Unauthenticated
        );
        let other = peer(Role::Admin, "other");
        assert_eq!(
            authorize(&format!("{m}Version"), false, Some("c"), Some(&other), &none, "default").unwrap_err().code(),
            Code::Unauthenticated
        );
    }

    #[test]
    fn the_deny_list_applies_to_every_rule() {
        let raft = "/orc.raft.v1.Raft/Propose";
        let mut deny = DenyList::default();
        let m1 = peer(Role::Manager, "c");
        assert!(authorize(raft, false, Some("c"), Some(&m1), &deny, "default").is_ok());
        // Demoted: still a node (its session, its renewal), no longer a manager.
        deny.workers.insert("x".into());
        assert_eq!(
            authorize(raft, false, Some("c"), Some(&m1), &deny, "default").unwrap_err().code(),
            Code::PermissionDenied
        );
        assert!(authorize("/orc.cluster.v1.Cluster/Renew", false, Some("c"), Some(&m1), &deny, "default").is_ok());
        let logs = "/orc.container.v1.Containers/Logs";
        assert!(authorize(logs, false, Some("c"), Some(&m1), &deny, "default").is_err());
        // Removed: nothing at all, not even public calls.
        deny.removed_nodes.insert("x".into());
        let e = authorize("/orc.dispatcher.v1.Dispatcher/Session", false, Some("c"), Some(&m1), &deny, "default")
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied);
        assert!(e.message().contains("removed from the cluster"), "{}", e.message());
        assert!(authorize("/orc.machine.v1.Machine/Version", false, Some("c"), Some(&m1), &deny, "default").is_err());
        // A revoked person certificate.
        let mut admin = peer(Role::Admin, "c");
        if let Some(id) = admin.identity.as_mut() {
            id.serial = "0a".into();
        }
        assert!(authorize("/orc.cluster.v1.Nodes/List", false, Some("c"), Some(&admin), &deny, "default").is_ok());
        deny.serials.insert("0a".into());
        let e = authorize("/orc.cluster.v1.Nodes/List", false, Some("c"), Some(&admin), &deny, "default").unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated);
        assert!(e.message().contains("revoked"), "{}", e.message());
    }

    #[test]
    fn refusals_are_logged_at_a_bounded_rate() {
        let r = RateLimit::new("test events", 3, std::time::Duration::from_millis(200));
        let allowed = (0..1000).filter(|_| r.allow()).count();
        assert_eq!(allowed, 3);
        std::thread::sleep(std::time::Duration::from_millis(250));
        assert!(r.allow(), "a new window");
    }

    #[test]
    fn admin_only_parts_of_requests() {
        use crate::pki::role::PeerIdentity;
        let who = |role| PeerIdentity { name: "x".into(), cluster_id: "c".into(), role, ..Default::default() };
        for what in [AdminOnly::BindMount, AdminOnly::NodeRole] {
            assert!(require_admin(what, Some(&who(Role::Admin))).is_ok());
            for role in [Role::Operator, Role::Reader, Role::Manager, Role::Worker] {
                let e = require_admin(what, Some(&who(role))).unwrap_err();
                assert_eq!(e.code(), Code::PermissionDenied);
                assert!(e.message().contains("ask an admin"), "{}", e.message());
            }
            assert!(require_admin(what, None).is_err());
        }
    }

    #[test]
    fn a_locked_manager_serves_health_version_and_unlock_only() {
        for path in
            ["/orc.machine.v1.Machine/Health", "/orc.machine.v1.Machine/Version", "/orc.cluster.v1.Cluster/Unlock"]
        {
            assert!(allowed_while_locked(path).is_ok(), "{path}");
        }
        for (path, _) in TABLE.iter().filter(|(p, r)| *r != Rule::Public && !p.ends_with("/Unlock")) {
            let e = allowed_while_locked(path).unwrap_err();
            assert_eq!(e.code(), Code::FailedPrecondition, "{path}");
            assert!(e.message().contains("orcctl cluster unlock"), "{}", e.message());
        }
    }

    #[test]
    fn every_machine_rpc_has_a_rule() {
        for name in ["Version", "Health", "Bootstrap", "Reboot", "Shutdown", "Dmesg", "Logs", "Services"] {
            let path = format!("/orc.machine.v1.Machine/{name}");
            assert!(TABLE.iter().any(|(p, _)| *p == path), "{path}");
        }
    }
}
