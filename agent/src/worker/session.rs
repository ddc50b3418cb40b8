//! The node's session with the cluster: find the leader (any known manager
//! names it), open `Dispatcher.Session`, hand the tasks to the executor,
//! heartbeat every period and at once when a task changes. When the
//! manager dies or stops leading, reconnect — to the leader it names, else
//! to the next manager known.
//!
//! Known managers: [`crate::cluster::managers`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use orc_proto::dispatcher::dispatcher_client::DispatcherClient;
use orc_proto::dispatcher::{HeartbeatRequest, SessionRequest};
use tonic::transport::Channel;

use super::executor::Executor;
use super::reported::Reported;
use crate::cluster::dispatcher::{self, HEARTBEAT, HEARTBEAT_TIMEOUT};
use crate::cluster::objects::{Delivered, NetworkMap, PayloadKind, Task};
use crate::cluster::{managers, renew};
use crate::pki::role::Role;
use crate::state::NodeState;

const SESSION_OPEN: Duration = Duration::from_secs(10);
/// How long a node told it was removed keeps its tasks (a mistaken `node rm`
/// undone in time costs nothing); then they stop, as their replacements run
/// elsewhere.
pub const REMOVED_GRACE: Duration = Duration::from_secs(30);

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    /// The cluster refuses this node (`node rm`).
    #[error("{0}")]
    Refused(String),
    /// This manager does not lead; the leader is at `leader`.
    #[error("{message}")]
    NotLeader { leader: String, message: String },
    /// Anything else: the manager went away, a timeout, TLS.
    #[error("{0}")]
    Lost(String),
}

impl From<tonic::Status> for SessionError {
    fn from(s: tonic::Status) -> Self {
        let leader = s.metadata().get("orc-leader").and_then(|v| v.to_str().ok()).map(str::to_string);
        match (s.code(), leader) {
            (tonic::Code::PermissionDenied, _) => Self::Refused(s.message().to_string()),
            (_, Some(leader)) => Self::NotLeader { leader, message: s.message().to_string() },
            _ => Self::Lost(s.message().to_string()),
        }
    }
}

fn known_managers(state: &NodeState) -> Vec<String> {
    // Joining remembers the manager it joined through (the join token
    // itself is not kept).
    let mut v = managers::remembered(state.state_dir());
    if state.identity().is_some_and(|i| i.meta.role == crate::pki::role::Role::Manager) {
        let me = state.advertise_addr();
        if !v.contains(&me) {
            v.insert(0, me);
        }
    }
    v
}

/// Runs the node's sessions for as long as the agent runs.
pub async fn run(state: Arc<NodeState>, executor: Arc<Executor>) {
    let mut next = 0usize;
    let mut hint: Option<String> = None;
    // Since when the cluster refuses this node, and whether its tasks are stopped.
    let mut refused_since: Option<std::time::Instant> = None;
    let mut stopped = false;
    let mut backoff = super::backoff::Backoff::default();
    // The manager of the last session lost (told to the next one asked, so
    // it answers once an election named the next leader).
    let mut lost: Option<String> = None;
    // Usage baselines outlive sessions.
    let mut usage = super::usage::Sampler::default();
    loop {
        let Some(id) = state.identity() else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        let managers = known_managers(&state);
        let addr = match hint.take() {
            Some(a) => a,
            None if managers.is_empty() => {
                tracing::warn!("no manager known to report to; waiting");
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
            None => {
                next = (next + 1) % managers.len();
                managers[next].clone()
            }
        };
        let began = std::time::Instant::now();
        let result = session(&state, &executor, &mut usage, &id, &addr, lost.as_deref()).await;
        // A manager that took this node as a member ends the refusal (a
        // manager that could not be reached says nothing either way).
        if matches!(result, Ok(()) | Err(SessionError::NotLeader { .. })) {
            (refused_since, stopped) = (None, false);
        }
        // A session that lasted was had: its end starts the waits over.
        if result.is_ok() || began.elapsed() >= super::backoff::HAD {
            backoff.reset();
        }
        match result {
            // Renewed: the same manager again, with the new certificate.
            Ok(()) => {
                lost = None;
                hint = Some(addr);
            }
            Err(SessionError::Refused(why)) => {
                // Removed from the cluster (`node rm`): its tasks run elsewhere
                // now; after the grace period they stop here.
                let since = *refused_since.get_or_insert_with(std::time::Instant::now);
                if since.elapsed() >= REMOVED_GRACE && !stopped {
                    tracing::warn!(error = %why, "this node was removed from the cluster: stopping its tasks");
                    println!("orc: this node was removed from the cluster ({why}); its tasks are stopped");
                    executor.assign(Vec::new()).await;
                    stopped = true;
                } else if !stopped {
                    let left = REMOVED_GRACE.saturating_sub(since.elapsed()).as_secs();
                    tracing::warn!(manager = %addr, error = %why, left_secs = left, "the cluster refuses this node; its tasks stop after the grace period");
                }
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            Err(SessionError::NotLeader { leader, .. }) => hint = Some(leader),
            Err(e @ SessionError::Lost(_)) => {
                tracing::info!(manager = %addr, error = %e, "no session with this manager");
                lost = Some(addr);
                tokio::time::sleep(backoff.after_failure()).await;
            }
        }
    }
}

/// The node's WireGuard public key for its encrypted networks (empty,
/// said in the log, when it cannot have one).
async fn wg_key(state: &NodeState) -> String {
    match crate::network::wg::Keys::at(state.state_dir()).public().await {
        Ok(k) => k,
        Err(e) => {
            tracing::warn!(error = %e, "no WireGuard key: this node cannot join encrypted networks");
            String::new()
        }
    }
}

async fn session(
    state: &NodeState,
    executor: &Arc<Executor>,
    usage: &mut super::usage::Sampler,
    id: &crate::pki::identity::Identity,
    addr: &str,
    lost: Option<&str>,
) -> Result<(), SessionError> {
    let tls = id.client_tls().map_err(|e| SessionError::Lost(e.to_string()))?;
    let channel: Channel = crate::pki::channel::channel(addr, tls)
        .await
        .map_err(|e| SessionError::Lost(format!("cannot reach {addr}: {e}")))?;
    let mut client = DispatcherClient::new(channel.clone()).max_decoding_message_size(64 << 20);
    let (cpus, memory) = resources();
    let req = SessionRequest {
        hostname: nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default(),
        cpus,
        memory,
        addr: state.advertise_addr(),
        agent_version: env!("CARGO_PKG_VERSION").into(),
        deltas: true,
        lost_leader: lost.unwrap_or_default().to_string(),
        networks: crate::network::node::own_networks().iter().map(|n| n.to_string()).collect(),
        wg_key: wg_key(state).await,
        os_version: crate::sync::read(&state.os).version.clone(),
        failed_upgrades: crate::sync::read(&state.os)
            .failed
            .iter()
            .map(|f| orc_proto::dispatcher::FailedUpgrade {
                version: f.version.clone(),
                reason: f.reason.clone(),
                at_ms: f.at_ms,
            })
            .collect(),
    };
    // A frozen or cut-off manager must not hold the node: give up after a while.
    let mut stream = tokio::time::timeout(SESSION_OPEN, client.session(req))
        .await
        .map_err(|_| SessionError::Lost(format!("{addr} did not open a session in time")))??
        .into_inner();
    tracing::info!(manager = %addr, "session with the leader open");
    let mut beat = tokio::time::interval(HEARTBEAT);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // What the cluster wants of this node's certificate.
    let (mut ttl, mut want) = (crate::pki::ca::NODE_TTL, None);
    let mut cert_check = tokio::time::interval(renew::check_every(ttl));
    // The node's tasks and network map as the messages so far make them.
    let mut tasks = std::collections::BTreeMap::new();
    let mut network = NetworkMap::default();
    // Which statuses the leader has: a new session starts with all of them.
    let mut reported = Reported::default();
    loop {
        tokio::select! {
            msg = stream.message() => {
                let Some(a) = msg? else {
                    return Err(SessionError::Lost("the manager ended the session".into()));
                };
                if !a.managers.is_empty() {
                    managers::remember(state.state_dir(), &a.managers);
                }
                if a.cert_ttl_secs > 0 {
                    ttl = Duration::from_secs(a.cert_ttl_secs);
                    cert_check = tokio::time::interval(renew::check_every(ttl));
                }
                want = match a.role.parse() {
                    Ok(r @ (Role::Manager | Role::Worker)) => Some(r),
                    _ => None,
                };
                if !a.deny_json.is_empty() {
                    match serde_json::from_slice(&a.deny_json) {
                        Ok(deny) => state.set_deny(deny),
                        Err(e) => tracing::error!(error = %e, "undecodable deny list; ignored"),
                    }
                }
                if let (Some(json), Some(net)) = (&a.network_json, &executor.network) {
                    match serde_json::from_slice::<NetworkMap>(json) {
                        Ok(news) => {
                            network.take(news);
                            net.set_map(&id.meta.node_id, network.clone());
                        }
                        // A lost delta would leave the overlay wrong: start over.
                        Err(e) => return Err(SessionError::Lost(format!("undecodable network map: {e}"))),
                    }
                }
                executor.files.take(a.files.into_iter().filter_map(delivered).collect());
                if let Some(json) = &a.image_policy_json {
                    match serde_json::from_slice(json) {
                        Ok(p) => executor.set_image_policy(p),
                        // Without it the node would run what the policy refuses: start over.
                        Err(e) => return Err(SessionError::Lost(format!("undecodable image policy: {e}"))),
                    }
                }
                if let Some(gone) = &a.removed_volumes {
                    executor.forget_volumes(&gone.ids);
                }
                match serde_json::from_slice::<Vec<Task>>(&a.tasks_json) {
                    Ok(changed) => {
                        dispatcher::take(&mut tasks, a.delta, changed, &a.removed);
                        executor.assign(tasks.values().cloned().collect()).await;
                    }
                    // A lost delta would leave the node wrong: start over.
                    Err(e) => return Err(SessionError::Lost(format!("undecodable assignments: {e}"))),
                }
            }
            _ = cert_check.tick() => {}
            _ = beat.tick() => heartbeat(state, &mut client, executor, &mut reported, usage).await?,
            _ = executor.changed.notified() => heartbeat(state, &mut client, executor, &mut reported, usage).await?,
        }
        let Some(current) = state.identity() else { return Ok(()) };
        if renew::due(&current.node.cert_pem, ttl, current.meta.role, want) {
            match renew::renew(state, channel.clone()).await {
                // Reconnect: the session is tied to the old certificate.
                Ok(role) => {
                    tracing::info!(role = %role, "reconnecting with the renewed certificate");
                    return Ok(());
                }
                Err(e) => tracing::warn!(error = %e, "certificate renewal failed; trying again later"),
            }
        }
    }
}

async fn heartbeat(
    state: &NodeState,
    client: &mut DispatcherClient<Channel>,
    executor: &Executor,
    reported: &mut Reported,
    usage: &mut super::usage::Sampler,
) -> Result<(), SessionError> {
    let all = executor.statuses();
    let beat = reported.next(&all, Instant::now());
    // Every running task's: a service's autoscaling may be turned on
    // without replacing its tasks (their specs on the node do not say).
    let usage = usage.sample(|| executor.running(|_| true), Instant::now());
    let ready_elsewhere_of = crate::sync::read(&state.ready_elsewhere).asked.clone();
    let mut req = tonic::Request::new(HeartbeatRequest { statuses: beat.statuses.clone(), usage, ready_elsewhere_of });
    // Generous: a slow leader (an emulated VM under load) must not look dead.
    // A new leader's grace covers this wait when the old one froze.
    req.set_timeout(HEARTBEAT_TIMEOUT);
    let answer = client.heartbeat(req).await?.into_inner();
    executor.contact.heard();
    if !answer.ready_elsewhere.is_empty() {
        let mut r = crate::sync::write(&state.ready_elsewhere);
        r.answer = answer.ready_elsewhere.into_iter().collect();
        r.at = Some(Instant::now());
    }
    reported.taken(beat, &all, Instant::now());
    Ok(())
}

/// A secret or config version as the leader sent it (an unknown kind,
/// from a newer leader, is left out: its task is then refused, saying so).
fn delivered(f: orc_proto::dispatcher::File) -> Option<Delivered> {
    let kind = PayloadKind::parse(&f.kind)?;
    Some(Delivered { kind, name: f.name, version: f.version, data: f.data })
}

/// CPUs and memory the node offers.
fn resources() -> (f64, u64) {
    let cpus = std::thread::available_parallelism().map(|n| n.get() as f64).unwrap_or(1.0);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0);
    (cpus, memory)
}
