//! The Raft state machine: [`ClusterState`] in memory, snapshots in redb
//! ([`codec`]-encoded; a JSON snapshot of an older store is read and
//! converted, [`crate::model::db::legacy`]).

use std::io::Cursor;
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use tokio::sync::RwLock;

use super::SNAPSHOT;
use crate::model::db::legacy::LegacyState;
use crate::model::db::{ClusterState, CommandResult, Image};
use crate::raft::codec;
use crate::raft::types::{NodeId, TypeConfig};

type SErr = StorageError<NodeId>;
type Membership = StoredMembership<NodeId, openraft::BasicNode>;
type Meta = SnapshotMeta<NodeId, openraft::BasicNode>;

pub(super) const CURRENT: &str = "current";

/// What the state machine has applied.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    pub last_applied: Option<LogId<NodeId>>,
    pub membership: Membership,
    pub state: ClusterState,
}

/// [`Applied`] as a snapshot holds it.
#[derive(Serialize, Deserialize)]
struct AppliedImage {
    last_applied: Option<LogId<NodeId>>,
    membership: Membership,
    state: Image,
}

/// [`Applied`] as snapshots of older (JSON) stores held it.
#[derive(Deserialize)]
struct LegacyApplied {
    last_applied: Option<LogId<NodeId>>,
    membership: Membership,
    state: LegacyState,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Codec(#[from] codec::CodecError),
    #[error("an older store's snapshot: {0}")]
    Legacy(#[from] crate::model::db::legacy::LegacyError),
}

impl Applied {
    pub fn encode(&self) -> Result<Vec<u8>, codec::CodecError> {
        codec::encode(&AppliedImage {
            last_applied: self.last_applied,
            membership: self.membership.clone(),
            state: self.state.image(),
        })
    }

    /// A snapshot's data, in this encoding or an older store's JSON.
    pub fn decode(data: &[u8]) -> Result<Self, SnapshotError> {
        if data.first().is_some_and(|c| codec::is_json(*c)) {
            let old: LegacyApplied = codec::decode(data)?;
            return Ok(Self {
                last_applied: old.last_applied,
                membership: old.membership,
                state: old.state.convert()?,
            });
        }
        let a: AppliedImage = codec::decode(data)?;
        Ok(Self { last_applied: a.last_applied, membership: a.membership, state: ClusterState::from_image(a.state) })
    }
}

#[derive(Serialize, Deserialize)]
pub(super) struct StoredSnapshot {
    pub meta: Meta,
    #[serde(with = "codec::bytes")]
    pub data: Vec<u8>,
}

#[derive(Clone)]
pub struct StateMachineStore {
    db: Arc<redb::Database>,
    /// Shared with readers (the API answers from it).
    pub applied: Arc<RwLock<Applied>>,
    snapshot_seq: Arc<std::sync::atomic::AtomicU64>,
    /// The store version after every apply (the leader loop and node
    /// sessions wait on it).
    pub changed: Arc<tokio::sync::watch::Sender<u64>>,
}

fn snap_err(meta: Option<&Meta>, e: impl std::error::Error + 'static) -> SErr {
    StorageIOError::write_snapshot(meta.map(|m| m.signature()), AnyError::new(&e)).into()
}

impl StateMachineStore {
    pub(super) fn open(db: Arc<redb::Database>) -> Result<Self, SErr> {
        let store = Self {
            db,
            applied: Arc::default(),
            snapshot_seq: Arc::default(),
            changed: Arc::new(tokio::sync::watch::channel(0).0),
        };
        if let Some(s) = store.read_snapshot()? {
            let applied = Applied::decode(&s.data).map_err(|e| snap_err(Some(&s.meta), e))?;
            if let Ok(mut a) = store.applied.try_write() {
                *a = applied;
            }
        }
        Ok(store)
    }

    fn read_snapshot(&self) -> Result<Option<StoredSnapshot>, SErr> {
        let tx = self.db.begin_read().map_err(|e| snap_err(None, e))?;
        let t = tx.open_table(SNAPSHOT).map_err(|e| snap_err(None, e))?;
        match t.get(CURRENT).map_err(|e| snap_err(None, e))? {
            Some(v) => Ok(Some(codec::decode(v.value()).map_err(|e| snap_err(None, e))?)),
            None => Ok(None),
        }
    }

    fn write_snapshot(&self, s: &StoredSnapshot) -> Result<(), SErr> {
        let data = codec::encode(s).map_err(|e| snap_err(Some(&s.meta), e))?;
        let tx = self.db.begin_write().map_err(|e| snap_err(Some(&s.meta), e))?;
        tx.open_table(SNAPSHOT)
            .map_err(|e| snap_err(Some(&s.meta), e))?
            .insert(CURRENT, data.as_slice())
            .map_err(|e| snap_err(Some(&s.meta), e))?;
        tx.commit().map_err(|e| snap_err(Some(&s.meta), e))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, SErr> {
        let applied = self.applied.read().await.clone();
        let data = applied.encode().map_err(|e| snap_err(None, e))?;
        let seq = self.snapshot_seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let snapshot_id = match applied.last_applied {
            Some(l) => format!("{}-{}-{seq}", l.leader_id, l.index),
            None => format!("--{seq}"),
        };
        let meta = Meta { last_log_id: applied.last_applied, last_membership: applied.membership.clone(), snapshot_id };
        self.write_snapshot(&StoredSnapshot { meta: meta.clone(), data: data.clone() })?;
        tracing::info!(snapshot = %meta.snapshot_id, bytes = data.len(), "Raft snapshot built");
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

impl StateMachineStore {
    /// The database (a recovery rewrites the log in it).
    pub fn db(&self) -> Arc<redb::Database> {
        self.db.clone()
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId<NodeId>>, Membership), SErr> {
        let a = self.applied.read().await;
        Ok((a.last_applied, a.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, SErr>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut a = self.applied.write().await;
        let mut out = Vec::new();
        for e in entries {
            a.last_applied = Some(e.log_id);
            out.push(match e.payload {
                EntryPayload::Blank => CommandResult { version: a.state.version, ..Default::default() },
                EntryPayload::Normal(cmd) => a.state.apply(&cmd),
                EntryPayload::Membership(m) => {
                    a.membership = StoredMembership::new(Some(e.log_id), m);
                    CommandResult { version: a.state.version, ..Default::default() }
                }
            });
        }
        self.changed.send_replace(a.state.version);
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, SErr> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(&mut self, meta: &Meta, snapshot: Box<Cursor<Vec<u8>>>) -> Result<(), SErr> {
        let data = snapshot.into_inner();
        let applied = Applied::decode(&data).map_err(|e| {
            StorageError::from(StorageIOError::read_snapshot(Some(meta.signature()), AnyError::new(&e)))
        })?;
        self.write_snapshot(&StoredSnapshot { meta: meta.clone(), data })?;
        let version = applied.state.version;
        *self.applied.write().await = applied;
        self.changed.send_replace(version);
        tracing::info!(snapshot = %meta.snapshot_id, "Raft snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, SErr> {
        Ok(self.read_snapshot()?.map(|s| Snapshot { meta: s.meta, snapshot: Box::new(Cursor::new(s.data)) }))
    }
}
