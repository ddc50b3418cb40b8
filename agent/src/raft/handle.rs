//! This manager's Raft, once it has one (see [`super::lifecycle`]). The Raft
//! RPCs and the cluster services reach it through here; before it exists
//! they answer `Unavailable`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use openraft::{Config, Raft};

use super::store::{self, StateMachineStore};
use super::types::{NodeId, TypeConfig};
use super::RaftError;
use crate::pki::channel::ClientTls;

#[derive(Clone)]
pub struct Started {
    pub id: NodeId,
    pub raft: Raft<TypeConfig>,
    pub sm: StateMachineStore,
    /// The node's client TLS (to other managers).
    pub tls: ClientTls,
    /// The store's file (`<state>/raft/raft.redb`).
    pub store: PathBuf,
    /// Writes on this manager as the leader, grouped ([`super::group`]).
    pub writes: super::group::Committer,
    /// The connection forwarded calls to the leader reuse.
    pub leader_link: super::consistency::LeaderLink,
    /// Leadership confirmations shared by concurrent reads ([`super::reads`]).
    pub reads: std::sync::Arc<super::reads::ReadRounds<super::consistency::Confirmed>>,
}

#[derive(Default)]
pub struct RaftHandle {
    inner: RwLock<Option<Started>>,
    /// Why the Raft is stopped while this manager brings it back
    /// ([`super::supervise`]).
    pub(super) fault: RwLock<Option<super::supervise::Fault>>,
    /// Bumped whenever a Raft starts or is stopped on purpose: a watcher or
    /// a restart loop of an older one then stands down.
    pub(super) epoch: AtomicU64,
}

/// The Raft id of a node: its node id (16 hex digits) as a number.
pub fn raft_id(node_id: &str) -> Result<NodeId, RaftError> {
    u64::from_str_radix(node_id, 16).map_err(|_| RaftError::BadNodeId(node_id.to_string()))
}

pub fn raft_config() -> Result<Arc<Config>, RaftError> {
    let c = Config {
        cluster_name: "orc".into(),
        heartbeat_interval: 250,
        election_timeout_min: 1000,
        election_timeout_max: 2000,
        // Chunked snapshots over a slow link: the default 200 ms loops.
        install_snapshot_timeout: 10_000,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(10_000),
        max_in_snapshot_log_to_keep: 1_000,
        ..Default::default()
    };
    c.validate().map(Arc::new).map_err(|e| RaftError::Internal(format!("Raft config: {e}")))
}

/// A member of the quorum, as `cluster status` lists it.
pub struct Member {
    pub id: NodeId,
    pub addr: String,
    pub voter: bool,
}

/// What `orcctl cluster status` shows.
pub struct Status {
    pub id: NodeId,
    pub state: String,
    pub leader: NodeId,
    pub term: u64,
    pub last_log_index: u64,
    pub last_applied: u64,
    pub members: Vec<Member>,
    pub store_version: u64,
}

impl RaftHandle {
    /// Serves `s` from now on; returns its epoch.
    pub(super) fn set(&self, s: Started) -> u64 {
        let mut slot = crate::sync::write(&self.inner);
        *slot = Some(s);
        *crate::sync::write(&self.fault) = None;
        self.epoch.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Takes the running Raft out of service (a new epoch begins).
    pub(super) fn take(&self) -> Option<Started> {
        let mut slot = crate::sync::write(&self.inner);
        self.epoch.fetch_add(1, Ordering::SeqCst);
        slot.take()
    }

    pub(super) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    pub fn running(&self) -> bool {
        crate::sync::read(&self.inner).is_some()
    }

    pub fn get(&self) -> Result<Started, RaftError> {
        if let Some(s) = crate::sync::read(&self.inner).clone() {
            return Ok(s);
        }
        match &*crate::sync::read(&self.fault) {
            Some(f) => Err(RaftError::Stopped(f.error.clone())),
            None => Err(RaftError::NotManager),
        }
    }

    /// `cluster recover --force-new-cluster`: stops the Raft, makes this
    /// manager the only voter (log and state kept), starts it again.
    pub async fn force_new_cluster(self: &Arc<Self>, addr: &str) -> Result<u64, RaftError> {
        let old = self.get()?;
        let old = self.take().unwrap_or(old);
        old.raft.shutdown().await.map_err(|e| RaftError::Internal(format!("stopping Raft: {e}")))?;
        let db = old.sm.db();
        let (id, tls, path) = (old.id, old.tls.clone(), old.store.clone());
        drop(old);
        let index = store::force_single_member(&db, id, addr)?;
        let stores = store::from_db(db, &path)?;
        let raft = self.launch(id, tls, path, stores, None).await?;
        // A single voter elects itself; wait for it so the caller sees a working cluster.
        let _ = raft.wait(Some(Duration::from_secs(10))).current_leader(id, "recovered leader").await;
        tracing::warn!(
            raft_id = id,
            membership_index = index,
            "forced a new single-manager cluster from this node's state"
        );
        Ok(index)
    }

    pub async fn status(&self) -> Result<Status, RaftError> {
        let s = self.get()?;
        // Give a fresh quorum a moment to elect before answering.
        let _ = tokio::time::timeout(Duration::from_secs(3), s.raft.wait(None).current_leader(s.id, "")).await;
        let m = s.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: std::collections::BTreeSet<NodeId> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, node)| Member { id: *id, addr: node.addr.clone(), voter: voters.contains(id) })
            .collect();
        let store_version = s.sm.applied.read().await.state.version;
        Ok(Status {
            id: s.id,
            state: format!("{:?}", m.state),
            leader: m.current_leader.unwrap_or(0),
            term: m.current_term,
            last_log_index: m.last_log_index.unwrap_or(0),
            last_applied: m.last_applied.map(|l| l.index).unwrap_or(0),
            members,
            store_version,
        })
    }

    /// Where this manager stands in the quorum as it sees it: "leader",
    /// "reachable" (voter), "learner" or "not in the quorum"; empty when it
    /// runs no Raft.
    pub fn manager_status(&self, id: NodeId) -> &'static str {
        let Ok(s) = self.get() else { return "" };
        let m = s.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        if m.current_leader == Some(id) {
            "leader"
        } else if membership.voter_ids().any(|x| x == id) {
            "reachable"
        } else if membership.get_node(&id).is_some() {
            "learner"
        } else {
            "not in the quorum"
        }
    }
}
