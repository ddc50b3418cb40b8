//! The dispatcher, on the leader: one session per node (its tasks streamed
//! down whenever they change), heartbeats with task statuses up, and the
//! node liveness ([`super::liveness`]) the leader loop turns into
//! ready/down. The gRPC service (`orc.dispatcher.v1`) is `api::dispatcher`;
//! this is what it does.

use crate::fields::truncate;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use super::fanout::{Networks, Pending};
pub use super::liveness::{Liveness, GRACE};
use super::objects::*;
use super::usage::{Measurements, Sample};
use crate::model::db::{Command, Key, Kind, Object, Table};
use crate::model::patch::{NodePatch, TaskPatch};
use crate::pki::role::Role;
use crate::raft::{raft_id, RaftError, RaftHandle, Started};

/// How often nodes send heartbeats.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long a node waits for a heartbeat answer before it looks for
/// another manager.
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// Sessions and heartbeats go to the leader only.
    #[error("{}", match .leader { Some(a) => format!("not the leader; the leader is at {a}"), None => "not the leader, and no leader is known right now".to_string() })]
    NotLeader { leader: Option<String> },
    #[error("the leader could not confirm its leadership; reconnect")]
    NotConfirmed,
    #[error("not confirmed as leader: {0}")]
    Unconfirmed(String),
    /// `node rm` was run for it.
    #[error("node {node} was removed from the cluster{}", if *.at_open { ": reinstall it and join again with a token" } else { "" })]
    Removed { node: String, at_open: bool },
    #[error("the dispatcher is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Raft(#[from] RaftError),
}

/// What nodes report, committed in order by one writer, so a heartbeat
/// never waits for the Raft log.
/// The queue of reports is bounded: when the log falls this far behind, new
/// reports are dropped (counted), as every heartbeat repeats every task's state.
pub struct Reports(tokio::sync::mpsc::Sender<Command>);

/// Reports waiting for the log at most.
pub const REPORTS_QUEUE: usize = 4096;

impl Reports {
    /// Starts the writer on `raft`.
    pub fn start(raft: Arc<RaftHandle>) -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel(REPORTS_QUEUE);
        tokio::spawn(write_reports(raft, rx));
        Self(tx)
    }

    fn send(&self, cmd: Command) -> Result<(), DispatchError> {
        match self.0.try_send(cmd) {
            Ok(()) => Ok(()),
            Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(
                    queue = REPORTS_QUEUE,
                    "node reports queue full: report dropped (the next heartbeat repeats it)"
                );
                Ok(())
            }
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => Err(DispatchError::ShuttingDown),
        }
    }
}

/// Commits queued reports in order, as few entries as it can.
async fn write_reports(raft: Arc<RaftHandle>, mut rx: tokio::sync::mpsc::Receiver<Command>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        if let Err(e) = raft.write(Command::Batch(batch)).await {
            // Lost with the leadership: the nodes report again to the next leader.
            tracing::warn!(error = %e, "committing node reports failed");
        }
    }
}

/// The most interface networks a node's report keeps.
pub const MAX_NETWORKS: usize = 64;

/// The longest string a node reports into the state (hostname, address,
/// version, a task's message or error); longer ones are cut.
pub const MAX_REPORTED: usize = 1024;

/// This manager's Raft if it leads; otherwise where the leader is.
pub fn leading(raft: &RaftHandle) -> Result<Started, DispatchError> {
    let s = raft.get()?;
    // Read in place: this runs on every heartbeat of every node.
    let leader = {
        let rx = s.raft.metrics();
        let m = rx.borrow();
        if m.current_leader == Some(s.id) && m.state.is_leader() {
            None
        } else {
            Some(m.current_leader.and_then(|l| m.membership_config.membership().get_node(&l).map(|n| n.addr.clone())))
        }
    };
    match leader {
        None => Ok(s),
        Some(leader) => Err(DispatchError::NotLeader { leader }),
    }
}

/// How long a manager holds a node that lost its leader, waiting for an
/// election (openraft's lease plus an election timeout: 3 to 4 s).
pub const AWAIT_LEADER: Duration = Duration::from_secs(5);

/// Returns once this manager knows a leader other than the one at `lost`
/// (or leads itself), or after `limit`: a node that lost its leader learns
/// the next one when this manager does, not on its back-off.
pub async fn leader_other_than(raft: &RaftHandle, lost: &str, limit: Duration) {
    let Ok(s) = raft.get() else { return };
    let mut rx = s.raft.metrics();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let known = {
            let m = rx.borrow_and_update();
            match m.current_leader {
                Some(l) if l == s.id => true,
                Some(l) => m.membership_config.membership().get_node(&l).is_some_and(|n| n.addr != lost),
                None => false,
            }
        };
        if known {
            return;
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => {}
            // Out of time, or the Raft stopped: answer with what is known.
            _ => return,
        }
    }
}

/// What a node says of itself when it opens its session.
pub struct NodeInfo {
    pub hostname: String,
    pub cpus: f64,
    pub memory: u64,
    pub addr: String,
    pub agent_version: String,
    /// The leader the node lost, if it lost one ([`leader_other_than`]).
    pub lost_leader: Option<String>,
    /// The IPv4 networks of its own interfaces.
    pub networks: Vec<ipnet::Ipv4Net>,
    /// Its WireGuard public key (empty: none).
    pub wg_key: String,
    /// The OS version it runs and the versions that failed to upgrade it.
    pub os_version: String,
    pub failed_upgrades: Vec<crate::model::os::FailedUpgrade>,
}

/// The key a node reports, when it is one: a malformed key would make
/// every peer's `wg` refuse the whole mesh.
fn wg_key(node: &str, key: String) -> String {
    if key.is_empty() || crate::model::objects::valid_wg_key(&key) {
        return key;
    }
    tracing::warn!(%node, "the node reported a malformed WireGuard key: its encrypted networks stay unreachable");
    String::new()
}

/// Opens the session of `node_id` (its certificate says `role`) on the
/// leader: checks it may, records it ready, and returns the leader's Raft
/// to follow the node's assignments with.
pub async fn open_session(
    raft: &RaftHandle,
    liveness: &Liveness,
    reports: &Reports,
    node_id: &str,
    role: Role,
    d: NodeInfo,
) -> Result<Started, DispatchError> {
    if let Some(lost) = d.lost_leader.as_deref() {
        leader_other_than(raft, lost, AWAIT_LEADER).await;
    }
    let s = leading(raft)?;
    // A new leader applies everything committed before it hands out tasks,
    // so no node is sent a list missing tasks it runs.
    tokio::time::timeout(Duration::from_secs(10), s.raft.ensure_linearizable())
        .await
        .map_err(|_| DispatchError::NotConfirmed)?
        .map_err(|e| DispatchError::Unconfirmed(e.to_string()))?;
    let (known, removed) = {
        let a = s.sm.applied.read().await;
        (a.state.nodes.contains_key(node_id), a.state.removed_nodes.contains_key(node_id))
    };
    if removed {
        return Err(DispatchError::Removed { node: node_id.to_string(), at_open: true });
    }
    // What a node says about itself is bounded before it enters the state.
    let fields = NodePatch {
        hostname: Some(truncate(d.hostname.clone(), MAX_REPORTED)),
        cpus: Some(d.cpus),
        memory: Some(d.memory),
        addr: Some(truncate(d.addr, MAX_REPORTED)),
        agent_version: Some(truncate(d.agent_version, MAX_REPORTED)),
        cert_role: Some(role),
        was_manager: (role == Role::Manager).then_some(true),
        networks: Some(d.networks.into_iter().take(MAX_NETWORKS).collect()),
        wg_key: Some(wg_key(node_id, d.wg_key)),
        os_version: Some(truncate(d.os_version, MAX_REPORTED)),
        failed_upgrades: Some(
            d.failed_upgrades
                .into_iter()
                .rev()
                .take(crate::model::os::MAX_FAILED)
                .rev()
                .map(|f| crate::model::os::FailedUpgrade {
                    version: truncate(f.version, MAX_REPORTED),
                    reason: truncate(f.reason, MAX_REPORTED * 4),
                    at_ms: f.at_ms,
                })
                .collect(),
        ),
        // Its role is the certificate's until promoted or demoted.
        role: (!known).then_some(role),
        ..NodePatch::status(NodeStatus::Ready, "")
    };
    let cmd = if known {
        fields.command(node_id)
    } else {
        let mut node = Node { id: node_id.to_string(), ..Default::default() };
        fields.apply(&mut node);
        // Unconditional: a failed condition would drop the whole batch of reports it travels in.
        Command::put(node_id, Object::Node(std::sync::Arc::new(node)))
    };
    liveness.heard(node_id);
    reports.send(cmd)?;
    tracing::info!(node = %node_id, hostname = %d.hostname, "node session opened");
    Ok(s)
}

/// What a node is sent: its tasks (each with the store version of its
/// last change), the role it should have, its certificate lifetime and the
/// managers to reach.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignments {
    /// Whether `tasks` is the node's whole list, or only those of its
    /// tasks that changed (the rest of those asked about are in `gone`).
    pub whole: bool,
    pub tasks: Vec<(u64, std::sync::Arc<Task>)>,
    /// Of the tasks asked about, those no longer the node's to run.
    pub gone: Vec<String>,
    pub role: Option<Role>,
    pub cert_ttl_secs: u64,
    pub managers: Vec<String>,
    pub deny: crate::pki::deny::DenyList,
    pub network: Arc<Networks>,
    /// Ids of removed volumes (every node deletes its copies).
    pub removed_volumes: Vec<String>,
    pub image_policy: Option<crate::model::image_policy::ImagePolicy>,
}

/// The assignments of `node_id` as the leader `s` has them applied, with
/// the deny list the fanout derived: the whole list, or (`pending` names
/// tasks) only those tasks.
pub async fn assignments(
    s: &Started,
    node_id: &str,
    deny: &crate::pki::deny::DenyList,
    network: &Arc<Networks>,
    pending: &Pending,
) -> Assignments {
    let v = s.sm.applied.read().await.state.clone();
    let (whole, tasks, gone) = match pending {
        Pending::All => (true, tasks_of(&v, node_id), Vec::new()),
        Pending::Tasks(ids) => {
            let (mut tasks, mut gone) = (Vec::new(), Vec::new());
            for id in ids {
                match v.tasks.get(id).filter(|t| t.node == node_id && sendable(t)) {
                    Some(t) => tasks.push((v.version_of(&Key::new(Kind::Task, id.as_str())), t.clone())),
                    None => gone.push(id.clone()),
                }
            }
            (false, tasks, gone)
        }
    };
    Assignments {
        whole,
        tasks,
        gone,
        role: v.nodes.get(node_id).map(|n| told_role(s, node_id, n.role)),
        cert_ttl_secs: v.settings.node_cert_ttl().as_secs(),
        managers: managers(s),
        deny: deny.clone(),
        network: network.clone(),
        removed_volumes: v.removed_volumes.keys().cloned().collect(),
        image_policy: v.settings.image_policy.clone(),
    }
}

/// A task's state as its node reports it.
pub struct TaskReport {
    pub id: String,
    pub state: String,
    pub message: String,
    pub error: String,
    pub container: String,
    pub exit_code: Option<i32>,
    /// "", "starting", "ready", "not-ready".
    pub health: String,
    /// The last probe failure.
    pub probe: String,
    /// Its address on each network it joined.
    pub addresses: BTreeMap<String, String>,
}

/// What the leader keeps of heartbeats: who was heard of, what tasks use,
/// and the task states queued for the log.
#[derive(Clone, Copy)]
pub struct Heard<'a> {
    pub liveness: &'a Liveness,
    pub measurements: &'a Measurements,
    pub reports: &'a Reports,
}

/// For each service of `services` (at most 64 asked), how many of its
/// tasks are ready on nodes other than `node_id`: a node that finds its
/// tasks failing readiness after an OS upgrade asks whether it is the
/// only one.
pub async fn ready_elsewhere(
    raft: &RaftHandle,
    node_id: &str,
    services: &[String],
) -> Result<std::collections::HashMap<String, u32>, DispatchError> {
    let s = leading(raft)?;
    let a = s.sm.applied.read().await;
    Ok(services
        .iter()
        .take(64)
        .map(|id| {
            let ready = a
                .state
                .tasks_of(id)
                .filter(|t| t.node != node_id && t.state == TaskState::Running && t.health == Health::Ready)
                .count();
            (id.clone(), ready as u32)
        })
        .collect())
}

/// A heartbeat of `node_id` on the leader: it is alive, back to ready if it
/// was not, its tasks' usage is kept, and the task states that changed are
/// queued for the log.
pub async fn heartbeat(
    raft: &RaftHandle,
    heard: Heard<'_>,
    node_id: &str,
    statuses: Vec<TaskReport>,
    usage: Vec<(String, Sample)>,
) -> Result<(), DispatchError> {
    let s = leading(raft)?;
    let mut cmds = Vec::new();
    {
        let a = s.sm.applied.read().await;
        // (A node whose object is not applied yet has just opened its session.)
        if a.state.removed_nodes.contains_key(node_id) {
            return Err(DispatchError::Removed { node: node_id.to_string(), at_open: false });
        }
        heard.liveness.heard(node_id);
        // Only of its own tasks.
        heard
            .measurements
            .record(usage.into_iter().filter(|(id, _)| a.state.tasks.get(id).is_some_and(|t| t.node == node_id)));
        if let Some(n) = a.state.nodes.get(node_id) {
            if n.status != NodeStatus::Ready {
                tracing::info!(node = %node_id, "node is back: ready");
                cmds.push(NodePatch::status(NodeStatus::Ready, "").command(node_id));
            }
        }
        for st in statuses {
            let Some(t) = a.state.tasks.get(&st.id) else { continue };
            if t.node != node_id {
                continue;
            }
            let Some(state) = TaskState::from_name(&st.state) else {
                tracing::warn!(node = %node_id, task = %st.id, state = %st.state, "unknown task state reported; ignored");
                continue;
            };
            let (message, error) = (truncate(st.message, MAX_REPORTED), truncate(st.error, MAX_REPORTED));
            let probe = truncate(st.probe, MAX_REPORTED);
            let health = Health::parse(&st.health).unwrap_or_default();
            // Health only means something while the task runs.
            let health = if state == TaskState::Running { health } else { Health::Unknown };
            // Only of the networks its spec joins: a node reports nothing else into the state.
            let nets = t.spec.networks();
            let addresses: BTreeMap<String, std::net::Ipv4Addr> = st
                .addresses
                .iter()
                .filter(|(n, _)| nets.contains(n))
                .filter_map(|(n, a)| Some((n.clone(), a.parse().ok()?)))
                .collect();
            if t.state == state
                && t.message == message
                && t.error == error
                && t.container == st.container
                && t.exit_code == st.exit_code
                && t.health == health
                && t.probe == probe
                && t.addresses == addresses
            {
                continue;
            }
            // A task the managers already closed stays closed.
            if t.state.terminal() && !state.terminal() {
                continue;
            }
            let now = now_ms();
            let ready = state == TaskState::Running && health == Health::Ready;
            let ready_ms = match (ready, t.ready_ms) {
                (true, 0) => Some(now),
                (false, r) if r != 0 => Some(0),
                _ => None,
            };
            let p = TaskPatch {
                state: Some(state),
                message: Some(message),
                error: Some(error),
                container: Some(truncate(st.container, MAX_REPORTED)),
                exit_code: Some(st.exit_code),
                updated_ms: Some(now),
                health: (t.health != health).then_some(health),
                probe: (t.probe != probe).then_some(probe),
                ready_ms,
                addresses: (t.addresses != addresses).then_some(addresses),
                ..Default::default()
            };
            cmds.push(p.command(&st.id));
        }
    }
    if !cmds.is_empty() {
        heard.reports.send(Command::Batch(cmds))?;
    }
    Ok(())
}

/// The role a node is told to take: a demoted manager stays one until it
/// is out of the quorum's membership, whose change may need its vote (with
/// two voters the joint configuration needs both). Told at once, it would
/// renew as a worker, stop answering Raft and leave the quorum stuck.
fn told_role(s: &Started, node_id: &str, role: Role) -> Role {
    let member = || {
        raft_id(node_id)
            .is_ok_and(|rid| s.raft.metrics().borrow().membership_config.membership().get_node(&rid).is_some())
    };
    if role != Role::Manager && member() {
        return Role::Manager;
    }
    role
}

/// What a node is sent: its tasks that are not over and forgotten.
fn tasks_of(v: &View, node: &str) -> Vec<(u64, std::sync::Arc<Task>)> {
    v.index
        .tasks_on(node)
        .iter()
        .filter_map(|id| v.tasks.get(id))
        .filter(|t| sendable(t))
        .map(|t| (v.version_of(&Key::new(Kind::Task, t.id.as_str())), t.clone()))
        .collect()
}

/// A task its node hears of: placed (a global task names its node before
/// the scheduler places it, and a node runs what it is sent) and not over
/// and forgotten.
fn sendable(t: &Task) -> bool {
    let placed = t.state >= TaskState::Assigned;
    let forgotten = t.desired == TaskState::Shutdown && t.state.terminal();
    placed && !forgotten
}

/// One message of a session.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    /// Only what changed since the last message (else: the whole list).
    pub delta: bool,
    pub tasks: Vec<std::sync::Arc<Task>>,
    /// With `delta`: tasks no longer sent (forgotten or gone elsewhere).
    pub removed: Vec<String>,
    pub role: Option<Role>,
    pub cert_ttl_secs: u64,
    pub managers: Vec<String>,
    pub deny: crate::pki::deny::DenyList,
    /// The network map, or what changed of it, when it changed.
    pub network: Option<NetworkMap>,
    /// The secret and config versions the tasks of this message mount
    /// that the session has not sent yet.
    pub files: Vec<FileKey>,
    /// Ids of removed volumes, when they changed.
    pub removed_volumes: Option<Vec<String>>,
    /// The image policy, when it changed (Some(None): any image runs).
    pub image_policy: Option<Option<crate::model::image_policy::ImagePolicy>>,
}

/// The plaintext of `keys` from the leader's state, for a node whose tasks
/// mount them (a version that cannot be opened is left out and logged: the
/// node then refuses the task, saying which).
pub async fn files(s: &Started, key: Option<&crate::pki::sealing::DataKey>, keys: &[FileKey]) -> Vec<Delivered> {
    if keys.is_empty() {
        return Vec::new();
    }
    let v = s.sm.applied.read().await.state.clone();
    keys.iter()
        .filter_map(|(k, name, n)| match super::payloads::deliver(&v, key, *k, name, *n) {
            Ok(d) => Some(d),
            Err(e) => {
                tracing::warn!(kind = %k, %name, version = n, error = %e, "not delivered");
                None
            }
        })
        .collect()
}

/// What a session has told its node so far: after the first message, a
/// node that takes deltas gets only the tasks whose orders changed and the
/// ids of those gone, so a change costs its size, not the node's task list,
/// and a node's own report of a task is not sent back to it.
#[derive(Debug, Default)]
pub struct Sent {
    /// Task id → the store version and the task last sent (or found to
    /// tell the node nothing new).
    tasks: HashMap<String, (u64, std::sync::Arc<Task>)>,
    meta: Option<(Option<Role>, u64, crate::pki::deny::DenyList)>,
    network: Option<Arc<Networks>>,
    /// The secret and config versions sent so far.
    files: std::collections::HashSet<FileKey>,
    removed_volumes: Option<Vec<String>>,
    image_policy: Option<Option<crate::model::image_policy::ImagePolicy>>,
}

/// What of `now` the node that was sent `before` is told (None: nothing).
fn network_news(before: Option<&Networks>, now: &Networks) -> Option<NetworkMap> {
    let Some(before) = before else {
        return Some(NetworkMap {
            pool: now.pool,
            networks: networks_of(now),
            leases: now.leases.values().map(|l| SubnetLease::clone(l)).collect(),
            services: now.services.values().map(|s| ServiceEndpoints::clone(s)).collect(),
            ..Default::default()
        });
    };
    let (leases, removed) = table_news(&before.leases, &now.leases);
    let (services, removed_services) = table_news(&before.services, &now.services);
    if leases.is_empty()
        && removed.is_empty()
        && services.is_empty()
        && removed_services.is_empty()
        && before.pool == now.pool
        && before.networks == now.networks
    {
        return None;
    }
    let networks = networks_of(now);
    Some(NetworkMap { pool: now.pool, networks, leases, delta: true, removed, services, removed_services })
}

/// The networks (beyond `default`) as every message carries them, whole.
fn networks_of(n: &Networks) -> Vec<NetworkRef> {
    n.networks
        .values()
        .map(|x| NetworkRef {
            name: x.key(),
            vni: x.vni,
            subnet: x.subnet.map(|p| p.cidr),
            encrypted: x.encrypted,
            attachable: x.attachable,
        })
        .collect()
}

/// The entries of `now` that are not those of `before`, and the ids gone.
fn table_news<T: Clone + PartialEq>(before: &Table<T>, now: &Table<T>) -> (Vec<T>, Vec<String>) {
    let changed = now
        .iter()
        .filter(|(id, x)| before.get(*id).is_none_or(|b| !Arc::ptr_eq(b, x) && b != *x))
        .map(|(_, x)| T::clone(x))
        .collect();
    let gone = before.keys().filter(|id| !now.contains_key(*id)).cloned().collect();
    (changed, gone)
}

impl Sent {
    /// Whether the next call to [`Sent::next`] must be given the node's
    /// whole list: the first message, and every message to a node that
    /// takes no deltas, carries it.
    pub fn wants_whole(&self, deltas: bool) -> bool {
        self.meta.is_none() || !deltas
    }

    /// Whether `t` at version `v` tells the node something it was not told.
    fn news(&self, v: u64, t: &Task) -> bool {
        match self.tasks.get(&t.id) {
            Some((sv, st)) => *sv != v && !st.same_orders(t),
            None => true,
        }
    }

    /// The next message for `a`; None when nothing changed.
    pub fn next(&mut self, a: Assignments, deltas: bool) -> Option<Update> {
        let first = self.meta.is_none();
        let meta = (a.role, a.cert_ttl_secs, a.deny.clone());
        let removed: Vec<String> = if a.whole {
            let now: std::collections::HashSet<&str> = a.tasks.iter().map(|(_, t)| t.id.as_str()).collect();
            self.tasks.keys().filter(|id| !now.contains(id.as_str())).cloned().collect()
        } else {
            a.gone.iter().filter(|id| self.tasks.contains_key(*id)).cloned().collect()
        };
        let changed: Vec<(u64, std::sync::Arc<Task>)> =
            a.tasks.iter().filter(|(v, t)| self.news(*v, t)).cloned().collect();
        for id in &removed {
            self.tasks.remove(id);
        }
        // Reports of the node's own: remembered at their version, not sent.
        for (v, t) in &a.tasks {
            self.tasks.insert(t.id.clone(), (*v, t.clone()));
        }
        let network = match &self.network {
            Some(n) if Arc::ptr_eq(n, &a.network) => None,
            before => network_news(before.as_deref(), &a.network),
        };
        let removed_volumes =
            (self.removed_volumes.as_ref() != Some(&a.removed_volumes)).then(|| a.removed_volumes.clone());
        if !first
            && self.meta.as_ref() == Some(&meta)
            && changed.is_empty()
            && removed.is_empty()
            && network.is_none()
            && removed_volumes.is_none()
            && self.image_policy.as_ref() == Some(&a.image_policy)
        {
            return None;
        }
        self.removed_volumes = Some(a.removed_volumes.clone());
        let image_policy = (self.image_policy.as_ref() != Some(&a.image_policy)).then(|| a.image_policy.clone());
        self.image_policy = Some(a.image_policy.clone());
        self.meta = Some(meta);
        self.network = Some(a.network.clone());
        let delta = deltas && !first;
        let tasks = if delta { changed } else { a.tasks };
        // The node keeps what a task on its list mounts (`worker::files`):
        // what it dropped is sent again when a task needs it.
        // (Nothing to look at, per message, while the node was sent none.)
        if !self.files.is_empty() {
            let held: std::collections::HashSet<FileKey> =
                self.tasks.values().flat_map(|(_, t)| t.spec.file_keys()).collect();
            self.files.retain(|f| held.contains(f));
        }
        let mut files = Vec::new();
        let wanted = tasks.iter().filter(|(_, t)| t.desired == TaskState::Running && !t.state.terminal());
        for f in wanted.flat_map(|(_, t)| t.spec.file_keys()) {
            if self.files.insert(f.clone()) {
                files.push(f);
            }
        }
        Some(Update {
            delta,
            tasks: tasks.into_iter().map(|(_, t)| t).collect(),
            removed: if delta { removed } else { Vec::new() },
            role: a.role,
            cert_ttl_secs: a.cert_ttl_secs,
            managers: a.managers,
            deny: a.deny,
            network,
            files,
            removed_volumes,
            image_policy,
        })
    }
}

/// The node's side: its tasks after a message (`delta`: changes to them).
pub fn take(current: &mut std::collections::BTreeMap<String, Task>, delta: bool, tasks: Vec<Task>, removed: &[String]) {
    if !delta {
        current.clear();
    }
    for id in removed {
        current.remove(id);
    }
    for t in tasks {
        current.insert(t.id.clone(), t);
    }
}

fn managers(s: &Started) -> Vec<String> {
    let m = s.raft.metrics().borrow().clone();
    m.membership_config.membership().nodes().map(|(_, n)| n.addr.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(tasks: &[(u64, &str)]) -> Assignments {
        Assignments {
            whole: true,
            gone: vec![],
            tasks: tasks
                .iter()
                // A new version tells the node something new (its spec version).
                .map(|(v, id)| {
                    (*v, std::sync::Arc::new(Task { id: id.to_string(), spec_version: *v, ..Default::default() }))
                })
                .collect(),
            role: Some(Role::Worker),
            cert_ttl_secs: 60,
            managers: vec![],
            deny: Default::default(),
            network: Default::default(),
            removed_volumes: Vec::new(),
            image_policy: None,
        }
    }

    /// Only the tasks of `step` named in `asked`, the others of `asked` gone.
    fn part(step: &[(u64, &str)], asked: &[&str]) -> Assignments {
        let mut x = a(&step.iter().filter(|(_, id)| asked.contains(id)).cloned().collect::<Vec<_>>());
        x.whole = false;
        x.gone = asked.iter().filter(|id| !step.iter().any(|(_, s)| s == *id)).map(|id| id.to_string()).collect();
        x
    }

    const STEPS: [&[(u64, &str)]; 5] =
        [&[(1, "a"), (1, "b")], &[(1, "a"), (2, "b"), (2, "c")], &[(1, "a"), (2, "b"), (2, "c")], &[(2, "c")], &[]];

    #[test]
    fn deltas_carry_only_changes_and_the_node_ends_up_with_the_whole_list() {
        // Given the whole list each time, or only the tasks that changed
        // (with one asked about that did not change, and one never sent).
        let asked: [&[&str]; 5] = [&[], &["a", "b", "c"], &["c", "z"], &["a", "b"], &["c"]];
        for whole in [true, false] {
            let mut sent = Sent::default();
            let mut node = std::collections::BTreeMap::new();
            let mut sizes = Vec::new();
            for (i, step) in STEPS.iter().enumerate() {
                let x = if whole || sent.wants_whole(true) { a(step) } else { part(step, asked[i]) };
                match sent.next(x, true) {
                    Some(u) => {
                        assert_eq!(u.delta, i > 0);
                        sizes.push(u.tasks.len() + u.removed.len());
                        take(&mut node, u.delta, u.tasks.iter().map(|t| Task::clone(t)).collect(), &u.removed);
                    }
                    None => sizes.push(0),
                }
                let want: Vec<&str> = step.iter().map(|(_, id)| *id).collect();
                assert_eq!(node.keys().map(String::as_str).collect::<Vec<_>>(), want, "step {i}, whole {whole}");
            }
            // Whole list, then b changed + c new, nothing, a and b gone, c gone.
            assert_eq!(sizes, [2, 2, 0, 2, 1], "whole {whole}");
        }
        // A node's own report (a new version, the same orders) is not sent back.
        let mut sent = Sent::default();
        sent.next(a(&[(1, "a")]), true);
        let mut x = a(&[(1, "a")]);
        let mut reported = Task::clone(&x.tasks[0].1);
        reported.state = TaskState::Running;
        reported.container = "c1".into();
        x.tasks[0] = (7, std::sync::Arc::new(reported));
        assert_eq!(sent.next(x, true), None);
        // A node that takes no deltas always gets the whole list.
        let mut sent = Sent::default();
        assert!(sent.wants_whole(false));
        sent.next(a(&[(1, "a")]), false);
        assert!(sent.wants_whole(false));
        let u = sent.next(a(&[(1, "a"), (1, "b")]), false).unwrap();
        assert!(!u.delta && u.tasks.len() == 2);
    }

    #[test]
    fn nodes_get_the_whole_network_map_then_only_what_changed() {
        let lease = |node: &str, third: u8| {
            Arc::new(SubnetLease {
                network: DEFAULT_NETWORK.into(),
                node: node.into(),
                subnet: format!("10.0.{third}.0/24").parse().unwrap(),
                underlay: format!("192.168.1.{third}").parse().unwrap(),
                key: String::new(),
            })
        };
        let pool = Some(Pool { cidr: "10.0.0.0/8".parse().unwrap(), prefix: 24 });
        let svc = |n: usize| {
            let endpoints = (0..n)
                .map(|i| Endpoint {
                    task: format!("t{i}"),
                    slot: i as u64 + 1,
                    addresses: [(DEFAULT_NETWORK.to_string(), std::net::Ipv4Addr::new(10, 0, 1, 2 + i as u8))].into(),
                })
                .collect();
            Arc::new(ServiceEndpoints { id: "s".into(), name: "web".into(), endpoints, ..Default::default() })
        };
        let nets_with = |ls: &[Arc<SubnetLease>], ss: &[Arc<ServiceEndpoints>]| {
            Arc::new(Networks {
                pool,
                networks: Default::default(),
                leases: ls.iter().map(|l| (SubnetLease::id(&l.network, &l.node), l.clone())).collect(),
                services: ss.iter().map(|s| (s.id.clone(), s.clone())).collect(),
            })
        };
        let nets = |ls: &[Arc<SubnetLease>]| nets_with(ls, &[]);
        let (a, b, c) = (lease("a", 1), lease("b", 2), lease("c", 3));
        let mut sent = Sent::default();
        let mut node = NetworkMap::default();
        let mut step = |n: Arc<Networks>| {
            let mut x = super::tests::a(&[]);
            x.network = n;
            let u = sent.next(x, true);
            let m = u.and_then(|u| u.network);
            if let Some(m) = m.clone() {
                node.take(m);
            }
            (m, node.leases.iter().map(|l| l.node.clone()).collect::<Vec<_>>())
        };
        let (m, on_node) = step(nets(&[a.clone(), b.clone()]));
        assert!(!m.unwrap().delta, "the first map is whole");
        assert_eq!(on_node, ["a", "b"]);
        // Nothing changed: nothing sent.
        let (m, _) = step(nets(&[a.clone(), b.clone()]));
        assert_eq!(m, None);
        // c joins, b moves: only those two; then a leaves: only its id.
        let b2 = Arc::new(SubnetLease { underlay: "192.168.1.22".parse().unwrap(), ..SubnetLease::clone(&b) });
        let (m, on_node) = step(nets(&[a.clone(), b2.clone(), c.clone()]));
        let m = m.unwrap();
        assert!(m.delta && m.leases.len() == 2 && m.removed.is_empty(), "{m:?}");
        assert_eq!(on_node, ["a", "b", "c"]);
        let (m, on_node) = step(nets(&[b2.clone(), c.clone()]));
        assert_eq!(m.unwrap().removed, ["default/a"]);
        assert_eq!(on_node, ["b", "c"]);
        // A service's endpoints: sent whole as they change, its id once gone.
        let (m, _) = step(nets_with(&[b2.clone(), c.clone()], &[svc(1)]));
        assert!(m.unwrap().leases.is_empty(), "leases unchanged: not sent again");
        let (m, _) = step(nets_with(&[b2.clone(), c.clone()], &[svc(3)]));
        let m = m.unwrap();
        assert!(m.delta && m.services[0].endpoints.len() == 3, "{m:?}");
        let (m, _) = step(nets(&[b2.clone(), c.clone()]));
        assert_eq!(m.unwrap().removed_services, ["s"]);
        assert_eq!(node.leases[0].underlay.to_string(), "192.168.1.22");
        assert!(node.services.is_empty());
    }

    #[test]
    fn secrets_are_sent_with_the_first_task_mounting_them_and_again_once_the_node_dropped_them() {
        let task = |id: &str, v: u64, desired: TaskState| {
            let secrets = vec![FileRef { name: "db".into(), version: v, ..Default::default() }];
            let spec = ServiceSpec { secrets, ..Default::default() };
            let t =
                Task { id: id.into(), spec, desired, state: TaskState::Running, spec_version: v, ..Default::default() };
            (v, std::sync::Arc::new(t))
        };
        let with = |tasks: Vec<(u64, std::sync::Arc<Task>)>| Assignments { tasks, ..a(&[]) };
        let db = |v: u64| (PayloadKind::Secret, "db".to_string(), v);
        let mut sent = Sent::default();
        let u = sent.next(with(vec![task("a", 1, TaskState::Running)]), true).unwrap();
        assert_eq!(u.files, [db(1)]);
        // A second task mounting it: the node holds it already.
        let u = sent.next(with(vec![task("a", 1, TaskState::Running), task("b", 1, TaskState::Running)]), true);
        assert!(u.unwrap().files.is_empty());
        // A task being stopped needs nothing new.
        let u = sent.next(with(vec![task("a", 1, TaskState::Running), task("c", 2, TaskState::Shutdown)]), true);
        assert!(u.unwrap().files.is_empty());
        // The last task mounting v1 gone (the node forgot v1 with it), then
        // a new one: sent again.
        assert!(sent.next(with(vec![]), true).unwrap().files.is_empty());
        let u = sent.next(with(vec![task("d", 1, TaskState::Running)]), true).unwrap();
        assert_eq!(u.files, [db(1)]);
    }

    #[test]
    fn nodes_hear_of_placed_tasks_only() {
        let t = |state, desired| Task { state, desired, node: "n1".into(), ..Default::default() };
        // A global task waiting to be placed (resources, or the task it
        // replaces still stopping) names its node already: not sent.
        assert!(!sendable(&t(TaskState::Pending, TaskState::Running)));
        assert!(sendable(&t(TaskState::Assigned, TaskState::Running)));
        assert!(sendable(&t(TaskState::Running, TaskState::Shutdown)), "to be stopped");
        assert!(!sendable(&t(TaskState::Shutdown, TaskState::Shutdown)), "over and forgotten");
    }
}
