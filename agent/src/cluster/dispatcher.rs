//! The dispatcher, on the leader: one session per node (its tasks streamed
//! down whenever they change), heartbeats with task statuses up, and the
//! node liveness the leader loop turns into ready/down.
//!
//! Liveness is leader memory, not replicated: a new leader gives every node
//! a full grace period from its election before calling it down.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::Stream;
use orc_proto::dispatcher as pb;
use orc_proto::dispatcher::dispatcher_server::Dispatcher;
use tonic::{Request, Response, Status};

use super::objects::*;
use super::patch::{NodePatch, TaskPatch};
use crate::pki::role::Role;
use crate::raft::command::Command;
use crate::raft::{RaftHandle, Started};

/// How often nodes send heartbeats.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// A node silent this long is down and its tasks go elsewhere.
pub const GRACE: Duration = Duration::from_secs(5);
/// How long a node waits for a heartbeat answer before it looks for
/// another manager.
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(10);
/// Added to the grace right after an election: nodes still waiting on the
/// old leader (heartbeat timeout) and reconnecting (session open) must not
/// be called down.
const ELECTION_EXTRA: Duration = Duration::from_secs(15);

pub struct DispatcherService {
    raft: Arc<RaftHandle>,
    liveness: Arc<Liveness>,
    /// What nodes report, committed in order by one writer, so a
    /// heartbeat never waits for the Raft log.
    reports: tokio::sync::mpsc::UnboundedSender<Command>,
}

/// Commits queued reports in order, as few entries as it can.
async fn write_reports(cluster: Arc<RaftHandle>, mut rx: tokio::sync::mpsc::UnboundedReceiver<Command>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        if let Err(e) = cluster.write(Command::Batch(batch)).await {
            // Lost with the leadership: the nodes report again to the next leader.
            tracing::warn!(error = %e, "committing node reports failed");
        }
    }
}

/// When each node was last heard of.
#[derive(Default)]
pub struct Liveness {
    seen: Mutex<HashMap<String, Instant>>,
}

impl Liveness {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        crate::sync::lock(&self.seen)
    }

    pub fn heard(&self, node: &str) {
        self.lock().insert(node.to_string(), Instant::now());
    }

    /// On election: everyone gets a full grace period, plus the time to
    /// notice the old leader is gone and find the new one.
    pub fn reset(&self, nodes: impl Iterator<Item = String>) {
        let now = Instant::now() + ELECTION_EXTRA;
        let mut seen = self.lock();
        seen.clear();
        seen.extend(nodes.map(|n| (n, now)));
    }

    /// Status patches for nodes whose liveness changed.
    pub fn check(&self, v: &View) -> Vec<Command> {
        let seen = self.lock();
        let mut out = Vec::new();
        for n in v.nodes.values() {
            let silent = seen.get(&n.id).map(|t| t.elapsed()).unwrap_or(GRACE);
            let alive = silent < GRACE;
            if n.status == NodeStatus::Ready && !alive {
                tracing::warn!(node = %n.id, hostname = %n.hostname, silent_ms = silent.as_millis() as u64, "node missed its heartbeats: down");
                let message = format!("no heartbeat for {}s", silent.as_secs());
                out.push(NodePatch::status(NodeStatus::Down, message).command(&n.id));
            }
        }
        out
    }
}

impl DispatcherService {
    pub fn new(raft: Arc<RaftHandle>, liveness: Arc<Liveness>) -> Self {
        let (reports, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(write_reports(raft.clone(), rx));
        Self { raft, liveness, reports }
    }

    fn report(&self, cmd: Command) -> Result<(), Status> {
        self.reports.send(cmd).map_err(|_| Status::unavailable("the dispatcher is shutting down"))
    }
}

/// The calling node's id and role, from its certificate.
fn caller<T>(req: &Request<T>) -> Result<(String, Role), Status> {
    let id = crate::pki::peer::caller(req)
        .ok_or_else(|| Status::unauthenticated("a certificate of this cluster is required"))?;
    Ok((id.name, id.role))
}

/// This manager's Raft if it leads; otherwise UNAVAILABLE naming the leader.
pub fn leading(cluster: &RaftHandle) -> Result<Started, Status> {
    let s = cluster.get().map_err(Status::from)?;
    let m = s.raft.metrics().borrow().clone();
    if m.current_leader == Some(s.id) && m.state.is_leader() {
        return Ok(s);
    }
    let addr = m.current_leader.and_then(|l| m.membership_config.membership().get_node(&l).map(|n| n.addr.clone()));
    let mut status = Status::unavailable(match &addr {
        Some(a) => format!("not the leader; the leader is at {a}"),
        None => "not the leader, and no leader is known right now".to_string(),
    });
    if let Some(a) = addr.and_then(|a| a.parse().ok()) {
        status.metadata_mut().insert("orc-leader", a);
    }
    Err(status)
}

/// What a node is sent: its tasks that are not over and forgotten.
fn tasks_of(v: &View, node: &str) -> Vec<Task> {
    v.tasks
        .values()
        .filter(|t| t.node == node && !(t.desired == TaskState::Shutdown && t.state.terminal()))
        .cloned()
        .collect()
}

fn managers(s: &Started) -> Vec<String> {
    let m = s.raft.metrics().borrow().clone();
    m.membership_config.membership().nodes().map(|(_, n)| n.addr.clone()).collect()
}

type SessionStream = Pin<Box<dyn Stream<Item = Result<pb::Assignments, Status>> + Send>>;

#[tonic::async_trait]
impl Dispatcher for DispatcherService {
    type SessionStream = SessionStream;

    async fn session(&self, req: Request<pb::SessionRequest>) -> Result<Response<SessionStream>, Status> {
        let (node_id, role) = caller(&req)?;
        let s = leading(&self.raft)?;
        // A new leader applies everything committed before it hands out tasks,
        // so no node is sent a list missing tasks it runs.
        tokio::time::timeout(Duration::from_secs(10), s.raft.ensure_linearizable())
            .await
            .map_err(|_| Status::unavailable("the leader could not confirm its leadership; reconnect"))?
            .map_err(|e| Status::unavailable(format!("not confirmed as leader: {e}")))?;
        let d = req.into_inner();
        let (known, removed) = {
            let a = s.sm.applied.read().await;
            (a.state.get(NODES, &node_id).is_some(), a.state.get(REMOVED_NODES, &node_id).is_some())
        };
        if removed {
            return Err(Status::permission_denied(format!(
                "node {node_id} was removed from the cluster: reinstall it and join again with a token"
            )));
        }
        let fields = NodePatch {
            hostname: Some(d.hostname.clone()),
            cpus: Some(d.cpus),
            memory: Some(d.memory),
            addr: Some(d.addr),
            agent_version: Some(d.agent_version),
            cert_role: Some(role),
            // Its role is the certificate's until promoted or demoted.
            role: (!known).then_some(role),
            ..NodePatch::status(NodeStatus::Ready, "")
        };
        let cmd = if known {
            fields.command(&node_id)
        } else {
            let node = Node { id: node_id.clone(), ..Default::default() };
            let mut value = serde_json::to_value(&node).map_err(|e| Status::internal(e.to_string()))?;
            crate::raft::command::merge(&mut value, &fields.value());
            // Unconditional: a failed condition would drop the whole batch of reports it travels in.
            Command::Put { table: NODES.into(), id: node_id.clone(), value, expect_version: None }
        };
        self.liveness.heard(&node_id);
        self.report(cmd)?;
        tracing::info!(node = %node_id, hostname = %d.hostname, "node session opened");

        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let cluster = self.raft.clone();
        tokio::spawn(async move {
            let mut changed = s.sm.changed.subscribe();
            let mut last: Option<Vec<u8>> = None;
            loop {
                if let Err(status) = leading(&cluster) {
                    let _ = tx.send(Err(status)).await;
                    return;
                }
                let v = super::objects::View::of(&s.sm.applied.read().await.state);
                let tasks = tasks_of(&v, &node_id);
                let role = v.nodes.get(&node_id).map(|n| n.role.as_str().to_string()).unwrap_or_default();
                let ttl = v.settings.node_cert_ttl().as_secs();
                let json = serde_json::to_vec(&(&tasks, &role, ttl)).unwrap_or_default();
                if last.as_ref() != Some(&json) {
                    let tasks_json = serde_json::to_vec(&tasks).unwrap_or_default();
                    let msg = pb::Assignments { tasks_json, managers: managers(&s), cert_ttl_secs: ttl, role };
                    if tx.send(Ok(msg)).await.is_err() {
                        tracing::info!(node = %node_id, "node session closed");
                        return;
                    }
                    last = Some(json);
                }
                // A change, or a periodic look (leadership can end quietly).
                let _ = tokio::time::timeout(Duration::from_secs(2), changed.changed()).await;
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn heartbeat(&self, req: Request<pb::HeartbeatRequest>) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let (node_id, _) = caller(&req)?;
        let s = leading(&self.raft)?;
        // (A node whose object is not applied yet has just opened its session.)
        if s.sm.applied.read().await.state.get(REMOVED_NODES, &node_id).is_some() {
            return Err(Status::permission_denied(format!("node {node_id} was removed from the cluster")));
        }
        self.liveness.heard(&node_id);
        let statuses = req.into_inner().statuses;
        let mut cmds = Vec::new();
        {
            let a = s.sm.applied.read().await;
            if let Some(n) = a.state.get(NODES, &node_id) {
                let status = serde_json::from_value::<Node>(n.value.clone()).map(|n| n.status).unwrap_or_default();
                if status != NodeStatus::Ready {
                    tracing::info!(node = %node_id, "node is back: ready");
                    cmds.push(NodePatch::status(NodeStatus::Ready, "").command(&node_id));
                }
            }
            for st in statuses {
                let Some(o) = a.state.get(TASKS, &st.id) else { continue };
                let Ok(t) = serde_json::from_value::<Task>(o.value.clone()) else { continue };
                if t.node != node_id {
                    continue;
                }
                let Ok(state) = serde_json::from_value::<TaskState>(serde_json::Value::String(st.state.clone())) else {
                    tracing::warn!(node = %node_id, task = %st.id, state = %st.state, "unknown task state reported; ignored");
                    continue;
                };
                if t.state == state
                    && t.message == st.message
                    && t.error == st.error
                    && t.container == st.container
                    && t.exit_code == st.exit_code
                {
                    continue;
                }
                // A task the managers already closed stays closed.
                if t.state.terminal() && !state.terminal() {
                    continue;
                }
                let p = TaskPatch {
                    state: Some(state),
                    message: Some(st.message),
                    error: Some(st.error),
                    container: Some(st.container),
                    exit_code: Some(st.exit_code),
                    updated_ms: Some(now_ms()),
                };
                cmds.push(p.command(&st.id));
            }
        }
        if !cmds.is_empty() {
            self.report(Command::Batch(cmds))?;
        }
        Ok(Response::new(pb::HeartbeatResponse { period_ms: HEARTBEAT.as_millis() as u32 }))
    }
}
