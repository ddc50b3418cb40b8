//! On the leader: one reader of the change feed wakes each node's session
//! when something of that node changed (its tasks, its Node object, the
//! cluster settings), and derives the deny list once per change. A write
//! then costs the sessions it concerns, not every session: the work is
//! proportional to the change, not to nodes × state.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::model::db::Kind;
use crate::pki::deny::DenyList;
use crate::raft::RaftHandle;

#[derive(Default)]
pub struct Fanout {
    /// Node id → the store version at which something of it last changed.
    nodes: Mutex<HashMap<String, watch::Sender<u64>>>,
    deny: watch::Sender<Arc<DenyList>>,
}

impl Fanout {
    /// Starts following the Raft's applied changes.
    pub fn start(raft: Arc<RaftHandle>) -> Arc<Self> {
        let f = Arc::new(Self::default());
        tokio::spawn(f.clone().run(raft));
        f
    }

    /// Wakes when something of `node` changes (its first value is now).
    pub fn watch(&self, node: &str) -> watch::Receiver<u64> {
        let mut nodes = crate::sync::lock(&self.nodes);
        nodes.entry(node.to_string()).or_insert_with(|| watch::channel(0).0).subscribe()
    }

    /// The deny list, and a receiver woken when it changes.
    pub fn deny(&self) -> watch::Receiver<Arc<DenyList>> {
        self.deny.subscribe()
    }

    fn wake(&self, version: u64, which: Option<&HashSet<String>>) {
        let mut nodes = crate::sync::lock(&self.nodes);
        // Nodes whose sessions all ended are forgotten.
        nodes.retain(|_, tx| tx.receiver_count() > 0);
        match which {
            None => nodes.values().for_each(|tx| {
                tx.send_replace(version);
            }),
            Some(ids) => {
                for id in ids {
                    if let Some(tx) = nodes.get(id) {
                        tx.send_replace(version);
                    }
                }
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
                let (mut all, mut deny_dirty, mut touched) = (feed.is_none(), feed.is_none(), HashSet::new());
                for c in feed.iter().flatten() {
                    match c.key.kind {
                        Kind::Task => touched.extend(c.nodes.iter().filter(|n| !n.is_empty()).cloned()),
                        Kind::Node => {
                            touched.insert(c.key.id.clone());
                            deny_dirty = true;
                        }
                        Kind::RemovedNode | Kind::RevokedCert => deny_dirty = true,
                        Kind::Settings => all = true,
                        _ => {}
                    }
                }
                if deny_dirty {
                    let d = super::certs::deny_list(&state);
                    if **self.deny.borrow() != d {
                        self.deny.send_replace(Arc::new(d));
                    }
                }
                self.wake(state.version, (!all).then_some(&touched));
                last = state.version;
            }
            // A change, or a look now and then (the Raft may have been replaced).
            let _ = tokio::time::timeout(Duration::from_secs(2), changed.changed()).await;
        }
    }
}
