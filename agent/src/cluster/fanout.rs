//! On the leader: one reader of the change feed tells each node's session
//! which of its tasks changed (its inbox), wakes it when something of that
//! node changed (its tasks, its Node object, the cluster settings), and
//! derives the deny list once per change. A write then costs the sessions
//! it concerns, and each of them the tasks that changed, not the node's
//! whole list: the work is proportional to the change, not to nodes × state.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::model::db::Kind;
use crate::model::db::Table;
use crate::model::objects::{Network, Pool, ServiceEndpoints, SubnetLease};
use crate::pki::deny::DenyList;
use crate::raft::RaftHandle;

/// What changed for one session since it last looked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pending {
    /// Anything may have: read the node's whole list (a new session, the
    /// settings changed, or the feed no longer reaches back far enough).
    All,
    /// These tasks (on the node before or after the change).
    Tasks(HashSet<String>),
}

impl Pending {
    fn add(&mut self, task: &str) {
        if let Pending::Tasks(ids) = self {
            ids.insert(task.to_string());
        }
    }
}

struct Mailbox {
    tx: watch::Sender<u64>,
    pending: Pending,
}

#[derive(Default)]
pub struct Fanout {
    /// Node id → session id → that session's mailbox.
    nodes: Mutex<HashMap<String, HashMap<u64, Mailbox>>>,
    next_session: AtomicU64,
    deny: watch::Sender<Arc<DenyList>>,
    network: watch::Sender<Arc<Networks>>,
}

/// What nodes are told of the networks (each session sends its node what
/// changed since its last message).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Networks {
    pub pool: Option<Pool>,
    pub leases: Table<SubnetLease>,
    /// Networks made with `network create`, by name.
    pub networks: Table<Network>,
    /// Services on the overlay by id: their VIPs and tasks in rotation.
    pub services: Table<ServiceEndpoints>,
}

impl Networks {
    /// Whether task `task` of service `service` changed in a way its
    /// service's entry shows: it came into or left the rotation, or its
    /// address changed. Most task changes (placements, reports of tasks
    /// not yet ready) do not, and cost one lookup rather than a pass over
    /// the service's tasks.
    fn moves_rotation(&self, state: &crate::model::db::ClusterState, service: &str, task: &str) -> bool {
        let now = state.tasks.get(task).filter(|t| super::endpoints::in_rotation(t)).map(|t| &t.addresses);
        let was =
            self.services.get(service).and_then(|s| s.endpoints.iter().find(|e| e.task == task)).map(|e| &e.addresses);
        now != was
    }

    /// `self` with the entries of `dirty` services (all with None) made
    /// anew from `state`; an entry that did not change keeps its `Arc`,
    /// which sessions compare to tell what to send.
    fn renewed(&self, state: &crate::model::db::ClusterState, dirty: Option<&HashSet<&str>>) -> Networks {
        let mut services = self.services.clone();
        let gone: Vec<String> = match dirty {
            Some(_) => Vec::new(),
            None => services.keys().filter(|id| !state.services.contains_key(*id)).cloned().collect(),
        };
        let mut renew = |id: &str| match super::endpoints::of(state, id) {
            Some(e) if services.get(id).is_some_and(|old| **old == e) => {}
            Some(e) => {
                services.insert(id.to_string(), Arc::new(e));
            }
            None => {
                services.remove(id);
            }
        };
        match dirty {
            Some(ids) => ids.iter().for_each(|id| renew(id)),
            None => {
                gone.iter().for_each(|id| renew(id));
                state.services.keys().for_each(|id| renew(id));
            }
        }
        Networks {
            pool: state.settings.network,
            leases: state.leases.clone(),
            networks: state.networks.clone(),
            services,
        }
    }
}

/// One session's view of the fanout: woken when something of its node
/// changed, and told which tasks.
pub struct Inbox {
    fanout: Arc<Fanout>,
    node: String,
    session: u64,
    rx: watch::Receiver<u64>,
}

impl Inbox {
    /// Waits for the next change of the node.
    pub async fn changed(&mut self) {
        if self.rx.changed().await.is_err() {
            // The fanout forgot this session: look again now and then.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// What changed since the last call (the first: everything).
    pub fn take(&self) -> Pending {
        let mut nodes = crate::sync::lock(&self.fanout.nodes);
        match nodes.get_mut(&self.node).and_then(|s| s.get_mut(&self.session)) {
            Some(m) => std::mem::replace(&mut m.pending, Pending::Tasks(HashSet::new())),
            None => Pending::All,
        }
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        let mut nodes = crate::sync::lock(&self.fanout.nodes);
        if let Some(sessions) = nodes.get_mut(&self.node) {
            sessions.remove(&self.session);
            if sessions.is_empty() {
                nodes.remove(&self.node);
            }
        }
    }
}

impl Fanout {
    /// Starts following the Raft's applied changes.
    pub fn start(raft: Arc<RaftHandle>) -> Arc<Self> {
        let f = Arc::new(Self::default());
        tokio::spawn(f.clone().run(raft));
        f
    }

    /// A new session of `node`: its first [`Inbox::take`] says everything.
    pub fn inbox(self: &Arc<Self>, node: &str) -> Inbox {
        let session = self.next_session.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(0);
        let mut nodes = crate::sync::lock(&self.nodes);
        nodes.entry(node.to_string()).or_default().insert(session, Mailbox { tx, pending: Pending::All });
        Inbox { fanout: self.clone(), node: node.to_string(), session, rx }
    }

    /// The deny list, and a receiver woken when it changes.
    pub fn deny(&self) -> watch::Receiver<Arc<DenyList>> {
        self.deny.subscribe()
    }

    /// The network map, and a receiver woken when it changes.
    pub fn network(&self) -> watch::Receiver<Arc<Networks>> {
        self.network.subscribe()
    }

    /// Records what changed at `version` and wakes the sessions concerned:
    /// `tasks` (task id → the nodes it concerns), `nodes` (whose Node
    /// changed); every session with `all`.
    fn deliver(&self, version: u64, all: bool, tasks: &[(&str, &[String; 2])], nodes: &HashSet<&str>) {
        let mut map = crate::sync::lock(&self.nodes);
        let mut woken: HashSet<&str> = HashSet::new();
        if all {
            for sessions in map.values_mut() {
                for m in sessions.values_mut() {
                    m.pending = Pending::All;
                    m.tx.send_replace(version);
                }
            }
            return;
        }
        for (task, on) in tasks {
            for n in on.iter().filter(|n| !n.is_empty()) {
                if let Some(sessions) = map.get_mut(n.as_str()) {
                    sessions.values_mut().for_each(|m| m.pending.add(task));
                    woken.insert(n.as_str());
                }
            }
        }
        woken.extend(nodes.iter().copied());
        for n in woken {
            if let Some(sessions) = map.get(n) {
                sessions.values().for_each(|m| {
                    m.tx.send_replace(version);
                });
            }
        }
    }

    async fn run(self: Arc<Self>, raft: Arc<RaftHandle>) {
        let mut last = 0u64;
        loop {
            let Ok(s) = raft.get() else {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            };
            let mut changed = s.sm.changed.subscribe();
            let state = s.sm.applied.read().await.state.clone();
            if state.version != last {
                let feed = if state.version > last { state.feed.since(last) } else { None };
                let (mut all, mut deny_dirty) = (feed.is_none(), feed.is_none());
                let mut net_dirty = feed.is_none();
                let (mut tasks, mut nodes, mut services) = (Vec::new(), HashSet::new(), HashSet::new());
                let sent = self.network.borrow().clone();
                for c in feed.iter().flatten() {
                    match c.key.kind {
                        Kind::Task => {
                            tasks.push((c.key.id.as_str(), &c.nodes));
                            if sent.moves_rotation(&state, &c.service, &c.key.id) {
                                services.insert(c.service.as_str());
                            }
                        }
                        Kind::Service => {
                            services.insert(c.key.id.as_str());
                        }
                        Kind::Node => {
                            nodes.insert(c.key.id.as_str());
                            deny_dirty = true;
                        }
                        Kind::RemovedNode | Kind::RevokedCert => deny_dirty = true,
                        Kind::Lease | Kind::Network => net_dirty = true,
                        Kind::Settings => {
                            all = true;
                            net_dirty = true;
                        }
                        _ => {}
                    }
                }
                if deny_dirty {
                    let d = super::certs::deny_list(&state);
                    if **self.deny.borrow() != d {
                        self.deny.send_replace(Arc::new(d));
                    }
                }
                if net_dirty || !services.is_empty() {
                    let n = self.network.borrow().renewed(&state, (!net_dirty).then_some(&services));
                    if **self.network.borrow() != n {
                        self.network.send_replace(Arc::new(n));
                    }
                }
                self.deliver(state.version, all, &tasks, &nodes);
                last = state.version;
            }
            // A change, or a look now and then (the Raft may have been replaced).
            let _ = tokio::time::timeout(Duration::from_secs(2), changed.changed()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(p: Pending) -> Vec<String> {
        match p {
            Pending::All => vec!["*".into()],
            Pending::Tasks(t) => {
                let mut v: Vec<String> = t.into_iter().collect();
                v.sort();
                v
            }
        }
    }

    #[tokio::test]
    async fn each_session_hears_of_its_own_tasks_only() {
        let f = Arc::new(Fanout::default());
        let (a, b, b2) = (f.inbox("a"), f.inbox("b"), f.inbox("b"));
        // A new session reads everything first.
        assert_eq!(ids(a.take()), ["*"]);
        assert_eq!(ids(b.take()), ["*"]);
        assert_eq!(ids(a.take()), Vec::<String>::new());
        let moved = ["a".to_string(), "b".to_string()];
        let on_b = ["b".to_string(), String::new()];
        f.deliver(5, false, &[("t1", &moved), ("t2", &on_b)], &HashSet::new());
        assert_eq!(ids(a.take()), ["t1"], "a task moving away concerns the node it leaves");
        assert_eq!(ids(b.take()), ["t1", "t2"]);
        // A second session of the same node keeps its own inbox.
        assert_eq!(ids(b2.take()), ["*"]);
        f.deliver(6, true, &[], &HashSet::new());
        assert_eq!(ids(a.take()), ["*"], "settings changed: everything");
        drop(b2);
        drop(b);
        assert!(!crate::sync::lock(&f.nodes).contains_key("b"), "ended sessions are forgotten");
    }
}
