//! The Raft log and state machine on one redb database
//! (`<state>/raft/raft.redb`). redb commits are durable (fsync) before they
//! return, so an append is reported flushed only after its commit.
//!
//! Tables: `logs` (index → entry), `meta` (vote, committed, last purged),
//! `snapshot` (the latest snapshot: meta + state), every value written by
//! [`crate::raft::codec`]; a store of an older version (JSON) is migrated
//! once at open ([`migrate`]). The state
//! machine lives in memory, restored from the snapshot at open; openraft
//! re-applies the committed log after it (we save `committed`).

// openraft's StorageError is large by design; every store function returns it.
#![allow(clippy::result_large_err)]

pub mod log;
pub mod migrate;
pub mod state_machine;

use std::path::Path;
use std::sync::Arc;

use redb::{ReadableTable, TableDefinition};

use crate::raft::types::{NodeId, TypeConfig};

pub use log::LogStore;
pub use state_machine::StateMachineStore;

pub(crate) const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("logs");
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
pub(crate) const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshot");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("opening the Raft store {path}: {source}")]
    Open { path: String, source: redb::Error },
    #[error("the Raft store {path} is corrupt: {reason}")]
    Corrupt { path: String, reason: String },
    #[error("rewriting the Raft store: {0}")]
    Rewrite(String),
    #[error(
        "the Raft store {path} was written by an older orc (JSON) and could not be migrated: {reason}. The store \
         is unchanged; start this manager with the older agent, or remove the node (`orcctl node rm`), wipe \
         its STATE and join it again"
    )]
    Migrate { path: String, reason: String },
}

/// Opens (or creates) the store at `path`.
pub async fn open(path: &Path) -> Result<(LogStore, StateMachineStore), StoreError> {
    let open_err = |e: redb::Error| StoreError::Open { path: path.display().to_string(), source: e };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| open_err(redb::Error::Io(e)))?;
    }
    let db = redb::Database::create(path).map_err(|e| open_err(e.into()))?;
    // Create the tables once so readers never meet a missing one.
    let tx = db.begin_write().map_err(|e| open_err(e.into()))?;
    for t in [META, SNAPSHOT] {
        tx.open_table(t).map_err(|e| open_err(e.into()))?;
    }
    tx.open_table(LOGS).map_err(|e| open_err(e.into()))?;
    tx.commit().map_err(|e| open_err(e.into()))?;
    migrate::run(&db, path)?;
    from_db(Arc::new(db), path)
}

/// The stores on an open database (after a recovery rewrote it).
pub fn from_db(db: Arc<redb::Database>, path: &Path) -> Result<(LogStore, StateMachineStore), StoreError> {
    let sm = StateMachineStore::open(db.clone())
        .map_err(|e| StoreError::Corrupt { path: path.display().to_string(), reason: e.to_string() })?;
    Ok((LogStore::new(db), sm))
}

/// `cluster recover --force-new-cluster`: appends a membership entry that
/// makes `id` (at `addr`) the only voter, after everything the log holds.
/// With the Raft stopped. On the next start the node elects itself and
/// commits the whole log: the state is kept, the lost managers are out.
pub fn force_single_member(db: &redb::Database, id: NodeId, addr: &str) -> Result<u64, StoreError> {
    use openraft::{BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, Membership};
    let e = |e: &dyn std::fmt::Display| StoreError::Rewrite(e.to_string());
    let tx = db.begin_write().map_err(|x| e(&x))?;
    let index;
    {
        let mut logs = tx.open_table(LOGS).map_err(|x| e(&x))?;
        let meta = tx.open_table(META).map_err(|x| e(&x))?;
        let last: Option<LogId<NodeId>> = match logs.last().map_err(|x| e(&x))? {
            Some((_, v)) => Some(crate::raft::codec::decode::<Entry<TypeConfig>>(v.value()).map_err(|x| e(&x))?.log_id),
            None => match meta.get(log::LAST_PURGED).map_err(|x| e(&x))? {
                Some(v) => crate::raft::codec::decode(v.value()).map_err(|x| e(&x))?,
                None => None,
            },
        };
        let term = last.map(|l| l.leader_id.term).unwrap_or(0);
        index = last.map(|l| l.index + 1).unwrap_or(1);
        let membership = Membership::new(
            vec![[id].into()],
            std::collections::BTreeMap::from([(id, BasicNode { addr: addr.to_string() })]),
        );
        let entry: Entry<TypeConfig> = Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, id), index),
            payload: EntryPayload::Membership(membership),
        };
        let data = crate::raft::codec::encode(&entry).map_err(|x| e(&x))?;
        logs.insert(index, data.as_slice()).map_err(|x| e(&x))?;
    }
    tx.commit().map_err(|x| e(&x))?;
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::testing::{StoreBuilder, Suite};
    use openraft::StorageError;

    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for Builder {
        async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError<NodeId>> {
            let dir = tempfile::tempdir().map_err(|e| openraft::StorageIOError::write(&e))?;
            let (log, sm) =
                open(&dir.path().join("raft.redb")).await.map_err(|e| openraft::StorageIOError::write(&e))?;
            Ok((dir, log, sm))
        }
    }

    /// openraft's own storage test suite against our redb store.
    #[test]
    fn openraft_storage_suite() -> Result<(), StorageError<NodeId>> {
        Suite::test_all(Builder)
    }
}
