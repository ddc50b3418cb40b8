//! The Raft log on redb.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, Entry, LogId, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote};
use redb::ReadableTable;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{LOGS, META};
use crate::raft::codec;
use crate::raft::types::{NodeId, TypeConfig};

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
pub(crate) const LAST_PURGED: &str = "last_purged";

#[derive(Clone)]
pub struct LogStore {
    db: Arc<redb::Database>,
}

type SErr = StorageError<NodeId>;

fn rerr(e: impl std::error::Error + 'static) -> SErr {
    StorageIOError::read_logs(AnyError::new(&e)).into()
}

fn werr(e: impl std::error::Error + 'static) -> SErr {
    StorageIOError::write_logs(AnyError::new(&e)).into()
}

impl LogStore {
    pub fn new(db: Arc<redb::Database>) -> Self {
        Self { db }
    }

    fn get_meta<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SErr> {
        let tx = self.db.begin_read().map_err(rerr)?;
        let t = tx.open_table(META).map_err(rerr)?;
        match t.get(key).map_err(rerr)? {
            Some(v) => Ok(Some(codec::decode(v.value()).map_err(rerr)?)),
            None => Ok(None),
        }
    }

    /// Writes `key`; `durable`: on disk when this returns (else with the
    /// next durable write, e.g. the next append).
    fn put_meta<T: Serialize>(&self, key: &str, value: &T, durable: bool) -> Result<(), SErr> {
        let data = codec::encode(value).map_err(werr)?;
        let mut tx = self.db.begin_write().map_err(werr)?;
        if !durable {
            tx.set_durability(redb::Durability::None);
        }
        tx.open_table(META).map_err(werr)?.insert(key, data.as_slice()).map_err(werr)?;
        tx.commit().map_err(werr)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, SErr> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let tx = self.db.begin_read().map_err(rerr)?;
        let t = tx.open_table(LOGS).map_err(rerr)?;
        let mut out = Vec::new();
        for item in t.range(start..).map_err(rerr)? {
            let (k, v) = item.map_err(rerr)?;
            if !range.contains(&k.value()) {
                break;
            }
            out.push(codec::decode(v.value()).map_err(rerr)?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, SErr> {
        let last_purged: Option<LogId<NodeId>> = self.get_meta(LAST_PURGED)?;
        let tx = self.db.begin_read().map_err(rerr)?;
        let t = tx.open_table(LOGS).map_err(rerr)?;
        let last = match t.last().map_err(rerr)? {
            Some((_, v)) => {
                let e: Entry<TypeConfig> = codec::decode(v.value()).map_err(rerr)?;
                Some(e.log_id)
            }
            None => last_purged,
        };
        Ok(LogState { last_purged_log_id: last_purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), SErr> {
        self.put_meta(VOTE, vote, true)
            .map_err(|_| StorageIOError::write_vote(AnyError::error("writing the vote")).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, SErr> {
        self.get_meta(VOTE)
    }

    /// Not flushed on its own: a committed index on disk only lets a
    /// restarted manager apply its log before it hears from the leader, and
    /// an older one (lost in a crash) is merely less of that. Flushing it
    /// put a second fsync on every write's path.
    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), SErr> {
        self.put_meta(COMMITTED, &committed, false)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, SErr> {
        Ok(self.get_meta::<Option<LogId<NodeId>>>(COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), SErr>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let tx = self.db.begin_write().map_err(werr)?;
        {
            let mut t = tx.open_table(LOGS).map_err(werr)?;
            for e in entries {
                let data = codec::encode(&e).map_err(werr)?;
                t.insert(e.log_id.index, data.as_slice()).map_err(werr)?;
            }
        }
        // Durable once commit returns: only then is the append flushed.
        let result = tx.commit().map_err(std::io::Error::other);
        let failed = result.as_ref().err().map(|e| e.to_string());
        callback.log_io_completed(result);
        match failed {
            Some(e) => Err(StorageIOError::write_logs(AnyError::error(e)).into()),
            None => Ok(()),
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), SErr> {
        let tx = self.db.begin_write().map_err(werr)?;
        {
            let mut t = tx.open_table(LOGS).map_err(werr)?;
            t.retain_in(log_id.index.., |_, _| false).map_err(werr)?;
        }
        tx.commit().map_err(werr)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), SErr> {
        let data = codec::encode(&log_id).map_err(werr)?;
        let tx = self.db.begin_write().map_err(werr)?;
        {
            tx.open_table(META).map_err(werr)?.insert(LAST_PURGED, data.as_slice()).map_err(werr)?;
            let mut t = tx.open_table(LOGS).map_err(werr)?;
            t.retain_in(..=log_id.index, |_, _| false).map_err(werr)?;
        }
        tx.commit().map_err(werr)
    }
}
