//! `orc.dispatcher.v1` on the leader: node sessions and heartbeats. The
//! node is its certificate; what a session and a heartbeat do is
//! [`crate::cluster::dispatcher`].

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use orc_proto::dispatcher as pb;
use orc_proto::dispatcher::dispatcher_server::Dispatcher;
use tonic::{Request, Response, Status};

use crate::cluster::dispatcher::{self as domain, Liveness, NodeInfo, Reports, TaskReport, HEARTBEAT};
use crate::cluster::fanout::{Fanout, Pending};
use crate::cluster::usage::{Measurements, Sample};
use crate::pki::role::Role;
use crate::raft::RaftHandle;
use crate::state::NodeState;

pub struct DispatcherService {
    state: Arc<NodeState>,
    raft: Arc<RaftHandle>,
    liveness: Arc<Liveness>,
    measurements: Arc<Measurements>,
    reports: Reports,
    fanout: Arc<Fanout>,
}

impl DispatcherService {
    pub fn new(state: Arc<NodeState>, liveness: Arc<Liveness>, measurements: Arc<Measurements>) -> Self {
        let raft = state.raft.clone();
        let reports = Reports::start(raft.clone());
        let fanout = Fanout::start(raft.clone());
        Self { state, raft, liveness, measurements, reports, fanout }
    }
}

/// The calling node's id and role, from its certificate.
fn caller<T>(req: &Request<T>) -> Result<(String, Role), Status> {
    let id = super::peer::identity(req)?;
    Ok((id.name, id.role))
}

type SessionStream = Pin<Box<dyn Stream<Item = Result<pb::Assignments, Status>> + Send>>;

#[tonic::async_trait]
impl Dispatcher for DispatcherService {
    type SessionStream = SessionStream;

    async fn session(&self, req: Request<pb::SessionRequest>) -> Result<Response<SessionStream>, Status> {
        let (node_id, role) = caller(&req)?;
        let d = req.into_inner();
        let deltas = d.deltas;
        let info = NodeInfo {
            hostname: d.hostname,
            cpus: d.cpus,
            memory: d.memory,
            addr: d.addr,
            agent_version: d.agent_version,
            lost_leader: (!d.lost_leader.is_empty()).then_some(d.lost_leader),
            // Unparsable ones are dropped: they only steer leases away.
            networks: d.networks.iter().filter_map(|n| n.parse::<ipnet::Ipv4Net>().ok()).map(|n| n.trunc()).collect(),
            wg_key: d.wg_key,
            os_version: d.os_version,
            failed_upgrades: d
                .failed_upgrades
                .into_iter()
                .map(|f| crate::model::os::FailedUpgrade { version: f.version, reason: f.reason, at_ms: f.at_ms })
                .collect(),
        };
        let s = domain::open_session(&self.raft, &self.liveness, &self.reports, &node_id, role, info).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let raft = self.raft.clone();
        let state = self.state.clone();
        // Woken only when something of this node (or the deny list) changes.
        let (mut inbox, mut deny) = (self.fanout.inbox(&node_id), self.fanout.deny());
        let mut network = self.fanout.network();
        tokio::spawn(async move {
            let mut sent = domain::Sent::default();
            loop {
                if let Err(e) = domain::leading(&raft) {
                    let _ = tx.send(Err(e.into())).await;
                    return;
                }
                let current = deny.borrow_and_update().clone();
                let net = network.borrow_and_update().clone();
                // Only the tasks that changed, once the node has its list.
                let pending = match inbox.take() {
                    _ if sent.wants_whole(deltas) => Pending::All,
                    p => p,
                };
                let a = domain::assignments(&s, &node_id, &current, &net, &pending).await;
                // Removed while its session was open: ended now, not at its next call.
                if a.deny.removed_nodes.contains(&node_id) {
                    let removed = domain::DispatchError::Removed { node: node_id.clone(), at_open: false };
                    let _ = tx.send(Err(removed.into())).await;
                    return;
                }
                // Sent when the tasks, the role, the lifetime or the deny list change.
                if let Some(u) = sent.next(a, deltas) {
                    let key = if u.files.is_empty() { None } else { crate::cluster::payloads::data_key(&state) };
                    let files = domain::files(&s, key.as_ref(), &u.files).await;
                    let msg = pb::Assignments {
                        files: files
                            .into_iter()
                            .map(|f| pb::File {
                                kind: f.kind.as_str().into(),
                                name: f.name,
                                version: f.version,
                                data: f.data,
                            })
                            .collect(),
                        tasks_json: serde_json::to_vec(&u.tasks).unwrap_or_default(),
                        managers: u.managers,
                        cert_ttl_secs: u.cert_ttl_secs,
                        role: u.role.map(|r| r.as_str().to_string()).unwrap_or_default(),
                        deny_json: serde_json::to_vec(&u.deny).unwrap_or_default(),
                        delta: u.delta,
                        removed: u.removed,
                        network_json: u.network.and_then(|n| serde_json::to_vec(&n).ok()),
                        removed_volumes: u.removed_volumes.map(|ids| pb::RemovedVolumes { ids }),
                        image_policy_json: u.image_policy.and_then(|p| serde_json::to_vec(&p).ok()),
                    };
                    if tx.send(Ok(msg)).await.is_err() {
                        tracing::info!(node = %node_id, "node session closed");
                        return;
                    }
                }
                // A change, or a periodic look (leadership can end quietly);
                // a node that went away ends its session at once.
                tokio::select! {
                    _ = tokio::time::timeout(Duration::from_secs(2), inbox.changed()) => {}
                    _ = deny.changed() => {}
                    _ = network.changed() => {}
                    _ = tx.closed() => {
                        tracing::info!(node = %node_id, "node session closed");
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn heartbeat(&self, req: Request<pb::HeartbeatRequest>) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let (node_id, _) = caller(&req)?;
        let beat = req.into_inner();
        let usage = beat
            .usage
            .into_iter()
            .map(|u| (u.id, Sample { cpu_millis: u.cpu_millis, memory: u.memory_bytes }))
            .collect();
        let statuses = beat
            .statuses
            .into_iter()
            .map(|s| TaskReport {
                id: s.id,
                state: s.state,
                message: s.message,
                error: s.error,
                container: s.container,
                exit_code: s.exit_code,
                health: s.health,
                probe: s.probe,
                addresses: s.addresses.into_iter().collect(),
            })
            .collect();
        let heard =
            domain::Heard { liveness: &self.liveness, measurements: &self.measurements, reports: &self.reports };
        domain::heartbeat(&self.raft, heard, &node_id, statuses, usage).await?;
        let ready_elsewhere = match beat.ready_elsewhere_of.is_empty() {
            true => Default::default(),
            false => domain::ready_elsewhere(&self.raft, &node_id, &beat.ready_elsewhere_of).await?,
        };
        Ok(Response::new(pb::HeartbeatResponse { period_ms: HEARTBEAT.as_millis() as u32, ready_elsewhere }))
    }
}
