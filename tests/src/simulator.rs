//! A node simulator for scale tests and `cargo xtask bench scale`: one
//! process, N simulated nodes, each a real member of the cluster. Every node
//! joins with a worker token through `Cluster.Join` (its own key and CSR,
//! the manager's CA pinned to the token's digest), then keeps a real
//! `Dispatcher.Session` open over mTLS with its own certificate, follows the
//! leader (`orc-leader`), heartbeats every [`HEARTBEAT`] with its task states
//! as an agent does (those that changed, all of them every 10 s), and reports each assigned task `starting`, then
//! `running` after a set delay. Nodes can be made to fail (their sessions
//! and heartbeats stop) and to come back.
//!
//! It runs nothing: it is the managers' load of N nodes without N machines.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use orc_agent::cluster::dispatcher::{HEARTBEAT, HEARTBEAT_TIMEOUT};
use orc_agent::cluster::objects::{Task, TaskState};
use orc_agent::cluster::token::JoinToken;
use orc_agent::pki::ca::CertKey;
use orc_agent::pki::channel::{client_tls, Expect};
use orc_proto::cluster::cluster_client::ClusterClient;
use orc_proto::cluster::JoinRequest;
use orc_proto::dispatcher::dispatcher_client::DispatcherClient;
use orc_proto::dispatcher::{HeartbeatRequest, SessionRequest, TaskStatus};
use tokio::task::JoinSet;

/// What the simulated nodes are and do.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// The managers' API addresses (any of them; sessions follow the leader).
    pub managers: Vec<String>,
    /// A worker join token (`orcctl cluster join-token worker`).
    pub token: String,
    pub nodes: usize,
    /// From a task's assignment to its report as running.
    pub run_delay: Duration,
    /// Hostnames are `<prefix>-<index>`.
    pub prefix: String,
    /// What each node offers.
    pub cpus: f64,
    pub memory: u64,
    /// Joins in flight at once.
    pub join_concurrency: usize,
}

impl SimOptions {
    pub fn new(managers: Vec<String>, token: String, nodes: usize) -> Self {
        Self {
            managers,
            token,
            nodes,
            run_delay: Duration::from_millis(200),
            prefix: "sim".into(),
            cpus: 64.0,
            memory: 256 << 30,
            join_concurrency: 16,
        }
    }
}

/// One task as the simulated node has it.
#[derive(Debug, Clone)]
struct SimTask {
    state: TaskState,
    since: Instant,
}

/// One simulated node.
pub struct SimNode {
    pub index: usize,
    pub hostname: String,
    /// Its node id (the certificate's name).
    pub id: String,
    tls: Arc<rustls::ClientConfig>,
    tasks: Mutex<HashMap<String, SimTask>>,
    failed: AtomicBool,
    /// A session is open with the leader right now.
    connected: AtomicBool,
    /// Sessions opened so far.
    sessions: AtomicU64,
    /// Running tasks the cluster stopped (shut down, or no longer sent): a
    /// leader change must stop none.
    stopped: AtomicU64,
    wake: tokio::sync::Notify,
}

/// The simulated nodes and the runtime they run on.
pub struct Simulator {
    rt: tokio::runtime::Runtime,
    pub nodes: Vec<Arc<SimNode>>,
    opts: SimOptions,
}

/// Why one session ended.
enum Ended {
    /// Go to this manager (the leader it named).
    Leader(String),
    /// Try the next manager after a pause.
    Lost(String),
    /// The node was made to fail.
    Failed,
}

impl Simulator {
    /// Joins `opts.nodes` nodes and opens their sessions; returns once every
    /// node has joined (sessions open in the background: see [`Self::connected`]).
    pub fn start(opts: SimOptions) -> anyhow::Result<Self> {
        let rt =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().thread_name("sim").build()?;
        let nodes = rt.block_on(join_all(&opts))?;
        let sim = Self { rt, nodes, opts };
        for n in &sim.nodes {
            sim.rt.spawn(run(n.clone(), sim.opts.clone()));
        }
        Ok(sim)
    }

    /// Nodes with a session open now.
    pub fn connected(&self) -> usize {
        self.nodes.iter().filter(|n| n.connected.load(Ordering::Relaxed)).count()
    }

    /// Tasks reported running, over all nodes.
    pub fn running(&self) -> usize {
        self.nodes.iter().map(|n| n.running()).sum()
    }

    /// Running tasks the cluster stopped so far, over all nodes.
    pub fn stopped(&self) -> u64 {
        self.nodes.iter().map(|n| n.stopped.load(Ordering::Relaxed)).sum()
    }

    /// Sessions opened so far, over all nodes.
    pub fn sessions(&self) -> u64 {
        self.nodes.iter().map(|n| n.sessions.load(Ordering::Relaxed)).sum()
    }

    /// Node `i` stops: its session closes and it heartbeats no more, as if
    /// its machine died (its tasks are forgotten).
    pub fn fail(&self, i: usize) {
        if let Some(n) = self.nodes.get(i) {
            n.failed.store(true, Ordering::SeqCst);
            n.wake.notify_waiters();
            lock(&n.tasks).clear();
            n.connected.store(false, Ordering::Relaxed);
        }
    }

    /// Node `i` comes back (empty, as after a reboot).
    pub fn recover(&self, i: usize) {
        if let Some(n) = self.nodes.get(i) {
            n.failed.store(false, Ordering::SeqCst);
            n.wake.notify_waiters();
        }
    }

    /// Polls `done` every 50 ms up to `timeout`; the time it took.
    pub fn wait(&self, timeout: Duration, what: &str, done: impl Fn(&Self) -> bool) -> anyhow::Result<Duration> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if done(self) {
                return Ok(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        anyhow::bail!(
            "timed out after {timeout:?} waiting for {what} ({} of {} nodes connected, {} tasks running)",
            self.connected(),
            self.nodes.len(),
            self.running()
        )
    }
}

impl SimNode {
    pub fn running(&self) -> usize {
        lock(&self.tasks).values().filter(|t| t.state == TaskState::Running).count()
    }

    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Takes a message of the session: new tasks start, tasks no longer
    /// wanted shut down, tasks no longer sent are forgotten (`delta`: only
    /// `tasks` changed, `removed` are gone; else `tasks` is the whole list).
    fn assign(&self, delta: bool, tasks: &[Task], removed: &[String]) {
        let mut mine = lock(&self.tasks);
        let now = Instant::now();
        let mut stopped = 0u64;
        let mut forget = |mine: &mut HashMap<String, SimTask>, keep: &dyn Fn(&str) -> bool| {
            mine.retain(|id, t| {
                let kept = keep(id);
                stopped += u64::from(!kept && t.state == TaskState::Running);
                kept
            });
        };
        if delta {
            let gone: std::collections::HashSet<&str> = removed.iter().map(String::as_str).collect();
            forget(&mut mine, &|id| !gone.contains(id));
        } else {
            let sent: std::collections::HashSet<&str> = tasks.iter().map(|t| t.id.as_str()).collect();
            forget(&mut mine, &|id| sent.contains(id));
        }
        for t in tasks {
            match (t.desired, mine.get_mut(&t.id)) {
                (TaskState::Running, None) => {
                    mine.insert(t.id.clone(), SimTask { state: TaskState::Starting, since: now });
                }
                (TaskState::Running, Some(_)) => {}
                (_, Some(s)) if !s.state.terminal() => {
                    stopped += u64::from(s.state == TaskState::Running);
                    *s = SimTask { state: TaskState::Shutdown, since: now };
                }
                (_, Some(_)) => {}
                (_, None) => {
                    mine.insert(t.id.clone(), SimTask { state: TaskState::Shutdown, since: now });
                }
            }
        }
        self.stopped.fetch_add(stopped, Ordering::Relaxed);
    }

    /// Starting tasks past the delay are running now; whether any changed.
    fn advance(&self, delay: Duration) -> bool {
        let mut changed = false;
        for t in lock(&self.tasks).values_mut() {
            if t.state == TaskState::Starting && t.since.elapsed() >= delay {
                *t = SimTask { state: TaskState::Running, since: Instant::now() };
                changed = true;
            }
        }
        changed
    }

    fn statuses(&self) -> Vec<TaskStatus> {
        lock(&self.tasks)
            .iter()
            .map(|(id, t)| TaskStatus {
                id: id.clone(),
                state: t.state.as_str().to_string(),
                container: if t.state == TaskState::Running { format!("sim-{id}") } else { String::new() },
                // No probes: ready once running, as a real node says.
                health: if t.state == TaskState::Running { "ready".into() } else { String::new() },
                ..Default::default()
            })
            .collect()
    }
}

async fn join_all(opts: &SimOptions) -> anyhow::Result<Vec<Arc<SimNode>>> {
    let token = JoinToken::parse(&opts.token).context("the simulator's join token")?;
    let pin = Arc::new(orc_tls::pin::client_config(orc_tls::pin::Pin::Ca(token.ca_digest.clone()))?);
    let manager = opts.managers.first().context("the simulator needs a manager address")?.clone();
    let channel = orc_agent::pki::channel::channel(&manager, pin).await.context("reaching the manager to join")?;
    let mut joins = JoinSet::new();
    let mut nodes = Vec::with_capacity(opts.nodes);
    let next = Arc::new(AtomicUsize::new(0));
    for _ in 0..opts.join_concurrency.max(1) {
        let (channel, next, opts) = (channel.clone(), next.clone(), opts.clone());
        joins.spawn(async move {
            let mut out = Vec::new();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= opts.nodes {
                    return Ok::<_, anyhow::Error>(out);
                }
                out.push(join_one(ClusterClient::new(channel.clone()), &opts, index).await?);
            }
        });
    }
    while let Some(r) = joins.join_next().await {
        nodes.extend(r??);
    }
    nodes.sort_by_key(|n| n.index);
    Ok(nodes.into_iter().map(Arc::new).collect())
}

async fn join_one(
    mut client: ClusterClient<tonic::transport::Channel>,
    opts: &SimOptions,
    index: usize,
) -> anyhow::Result<SimNode> {
    let (key_pem, csr_pem) = orc_agent::pki::ca::new_csr()?;
    let res = client
        .join(JoinRequest { token: opts.token.clone(), csr_pem, addr: "127.0.0.1:9".into() })
        .await
        .with_context(|| format!("joining simulated node {index}"))?
        .into_inner();
    let node = CertKey { cert_pem: res.cert_pem, key_pem };
    Ok(SimNode {
        index,
        hostname: format!("{}-{index}", opts.prefix),
        id: res.node_id,
        tls: client_tls(&res.ca_cert_pem, &node, Expect::Manager)?,
        tasks: Mutex::default(),
        failed: AtomicBool::new(false),
        connected: AtomicBool::new(false),
        sessions: AtomicU64::new(0),
        stopped: AtomicU64::new(0),
        wake: tokio::sync::Notify::new(),
    })
}

/// A node's sessions, for as long as the simulator runs.
async fn run(node: Arc<SimNode>, opts: SimOptions) {
    let mut next = node.index;
    let mut hint: Option<String> = None;
    // The agent's waits between sessions (`worker/backoff.rs`).
    let mut backoff = orc_agent::worker::backoff::Backoff::default();
    // The manager of the last session lost, as the agent tells the next one.
    let mut lost: Option<String> = None;
    loop {
        if node.failed.load(Ordering::SeqCst) {
            let woken = node.wake.notified();
            if node.failed.load(Ordering::SeqCst) {
                woken.await;
            }
            continue;
        }
        let addr = hint.take().unwrap_or_else(|| {
            next = (next + 1) % opts.managers.len().max(1);
            opts.managers.get(next).cloned().unwrap_or_default()
        });
        let began = Instant::now();
        let ended = session(&node, &opts, &addr, lost.as_deref()).await;
        node.connected.store(false, Ordering::Relaxed);
        if began.elapsed() >= orc_agent::worker::backoff::HAD {
            backoff.reset();
        }
        match ended {
            Ended::Leader(l) => hint = Some(l),
            Ended::Failed => {}
            Ended::Lost(why) => {
                tracing_free_log(&node, &addr, &why);
                lost = Some(addr);
                tokio::time::sleep(backoff.after_failure()).await;
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn tracing_free_log(node: &SimNode, addr: &str, why: &str) {
    if std::env::var_os("ORC_SIM_VERBOSE").is_some() {
        eprintln!("sim node {} ({addr}): {why}", node.index);
    }
}

fn ended(s: tonic::Status) -> Ended {
    match s.metadata().get("orc-leader").and_then(|v| v.to_str().ok()) {
        Some(l) => Ended::Leader(l.to_string()),
        None => Ended::Lost(format!("{}: {}", s.code(), s.message())),
    }
}

async fn session(node: &Arc<SimNode>, opts: &SimOptions, addr: &str, lost: Option<&str>) -> Ended {
    let channel = match orc_agent::pki::channel::channel(addr, node.tls.clone()).await {
        Ok(c) => c,
        Err(e) => return Ended::Lost(format!("cannot reach {addr}: {e}")),
    };
    let mut client = DispatcherClient::new(channel).max_decoding_message_size(64 << 20);
    let req = SessionRequest {
        networks: Vec::new(),
        hostname: node.hostname.clone(),
        cpus: opts.cpus,
        memory: opts.memory,
        addr: "127.0.0.1:9".into(),
        agent_version: "simulated".into(),
        deltas: true,
        lost_leader: lost.unwrap_or_default().to_string(),
        wg_key: String::new(),
        os_version: "simulated".into(),
        failed_upgrades: Vec::new(),
    };
    let mut stream = match tokio::time::timeout(Duration::from_secs(10), client.session(req)).await {
        Ok(Ok(s)) => s.into_inner(),
        Ok(Err(s)) => return ended(s),
        Err(_) => return Ended::Lost("no session in 10 s".into()),
    };
    node.connected.store(true, Ordering::Relaxed);
    node.sessions.fetch_add(1, Ordering::Relaxed);
    let mut beat = tokio::time::interval(HEARTBEAT);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reported = orc_agent::worker::reported::Reported::default();
    let mut step = tokio::time::interval(Duration::from_millis(50));
    step.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let report = tokio::select! {
            msg = stream.message() => match msg {
                Ok(Some(a)) => {
                    match serde_json::from_slice::<Vec<Task>>(&a.tasks_json) {
                        Ok(changed) => node.assign(a.delta, &changed, &a.removed),
                        Err(e) => return Ended::Lost(format!("undecodable assignments: {e}")),
                    }
                    true
                }
                Ok(None) => return Ended::Lost("the manager ended the session".into()),
                Err(s) => return ended(s),
            },
            _ = beat.tick() => true,
            _ = step.tick() => node.advance(opts.run_delay),
            _ = node.wake.notified() => false,
        };
        if node.failed.load(Ordering::SeqCst) {
            return Ended::Failed;
        }
        if report {
            let all = node.statuses();
            let beat = reported.next(&all, Instant::now());
            let mut req = tonic::Request::new(HeartbeatRequest {
                statuses: beat.statuses.clone(),
                usage: Vec::new(),
                ..Default::default()
            });
            req.set_timeout(HEARTBEAT_TIMEOUT);
            if let Err(s) = client.heartbeat(req).await {
                return ended(s);
            }
            reported.taken(beat, &all, Instant::now());
        }
    }
}
