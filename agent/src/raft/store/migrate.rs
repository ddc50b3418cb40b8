//! Stores written before the binary encoding hold JSON: log entries whose
//! commands change named tables of JSON values, and a JSON snapshot of
//! those tables. A manager opening such a store rewrites it once, in one
//! redb transaction (all or nothing), typed and [`codec`]-encoded; the
//! vote and other metadata keep their shape and are read as they are.
//!
//! Migrating, not refusing: a manager's log is the cluster's memory, and
//! an upgrade that asked people to start afresh would lose every service.

use openraft::{BasicNode, Entry, EntryPayload, LogId, Membership};
use redb::ReadableTable;
use serde::Deserialize;

use super::state_machine::Applied;
use super::{StoreError, LOGS, SNAPSHOT};
use crate::model::db::legacy::LegacyCommand;
use crate::raft::codec;
use crate::raft::types::{NodeId, TypeConfig};

/// An entry as older stores wrote it.
#[derive(Deserialize)]
struct LegacyEntry {
    log_id: LogId<NodeId>,
    payload: LegacyPayload,
}

#[derive(Deserialize)]
enum LegacyPayload {
    Blank,
    Normal(LegacyCommand),
    Membership(Membership<NodeId, BasicNode>),
}

/// What a migration rewrote.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Migrated {
    pub entries: usize,
    pub snapshot: bool,
}

fn is_json(v: &[u8]) -> bool {
    v.first().is_some_and(|c| codec::is_json(*c))
}

fn entry(raw: &[u8]) -> Result<Entry<TypeConfig>, String> {
    let old: LegacyEntry = serde_json::from_slice(raw).map_err(|e| e.to_string())?;
    let payload = match old.payload {
        LegacyPayload::Blank => EntryPayload::Blank,
        LegacyPayload::Normal(c) => EntryPayload::Normal(c.convert().map_err(|e| e.to_string())?),
        LegacyPayload::Membership(m) => EntryPayload::Membership(m),
    };
    Ok(Entry { log_id: old.log_id, payload })
}

/// Rewrites the JSON parts of the store at `path` (open as `db`); nothing
/// when there are none.
pub fn run(db: &redb::Database, path: &std::path::Path) -> Result<Migrated, StoreError> {
    let fail = |reason: String| StoreError::Migrate { path: path.display().to_string(), reason };
    // A store is JSON throughout or not at all (a migration is one
    // transaction, and everything after it is written binary): its first
    // entry and its snapshot tell, without reading the rest at every start.
    {
        let tx = db.begin_read().map_err(|e| fail(e.to_string()))?;
        let logs = tx.open_table(LOGS).map_err(|e| fail(e.to_string()))?;
        let first = logs.first().map_err(|e| fail(e.to_string()))?;
        let snap = tx.open_table(SNAPSHOT).map_err(|e| fail(e.to_string()))?;
        let current = snap.get(super::state_machine::CURRENT).map_err(|e| fail(e.to_string()))?;
        if !first.is_some_and(|(_, v)| is_json(v.value())) && !current.is_some_and(|v| is_json(v.value())) {
            return Ok(Migrated::default());
        }
    }
    let tx = db.begin_write().map_err(|e| fail(e.to_string()))?;
    let mut done = Migrated::default();
    {
        let mut logs = tx.open_table(LOGS).map_err(|e| fail(e.to_string()))?;
        let mut old = Vec::new();
        for row in logs.iter().map_err(|e| fail(e.to_string()))? {
            let (k, v) = row.map_err(|e| fail(e.to_string()))?;
            if is_json(v.value()) {
                old.push((k.value(), v.value().to_vec()));
            }
        }
        for (index, raw) in old {
            let e = entry(&raw).map_err(|e| fail(format!("log entry {index}: {e}")))?;
            let data = codec::encode(&e).map_err(|e| fail(e.to_string()))?;
            logs.insert(index, data.as_slice()).map_err(|e| fail(e.to_string()))?;
            done.entries += 1;
        }
        let mut snap = tx.open_table(SNAPSHOT).map_err(|e| fail(e.to_string()))?;
        let current =
            snap.get(super::state_machine::CURRENT).map_err(|e| fail(e.to_string()))?.map(|v| v.value().to_vec());
        if let Some(raw) = current {
            let mut s: super::state_machine::StoredSnapshot =
                codec::decode(&raw).map_err(|e| fail(format!("the snapshot: {e}")))?;
            if is_json(&raw) || is_json(&s.data) {
                let applied = Applied::decode(&s.data).map_err(|e| fail(format!("the snapshot: {e}")))?;
                s.data = applied.encode().map_err(|e| fail(e.to_string()))?;
                let data = codec::encode(&s).map_err(|e| fail(e.to_string()))?;
                snap.insert(super::state_machine::CURRENT, data.as_slice()).map_err(|e| fail(e.to_string()))?;
                done.snapshot = true;
            }
        }
    }
    if done == Migrated::default() {
        tx.abort().map_err(|e| fail(e.to_string()))?;
        return Ok(done);
    }
    tx.commit().map_err(|e| fail(e.to_string()))?;
    tracing::warn!(path = %path.display(), entries = done.entries, snapshot = done.snapshot,
        "migrated the Raft store from JSON to the binary encoding");
    Ok(done)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use openraft::{CommittedLeaderId, RaftLogReader};
    use serde_json::json;

    use super::*;
    use crate::model::db::{Command, Key, Kind};

    fn log_id(index: u64) -> serde_json::Value {
        serde_json::to_value(LogId::<NodeId>::new(CommittedLeaderId::new(1, 1), index)).unwrap()
    }

    /// A store as the JSON versions wrote it: a snapshot of the tables at
    /// index 2 and two entries after it.
    fn write_old_store(path: &std::path::Path) {
        let db = redb::Database::create(path).unwrap();
        let membership = Membership::<NodeId, BasicNode>::new(
            vec![[1].into()],
            BTreeMap::from([(1, BasicNode { addr: "127.0.0.1:1".into() })]),
        );
        // Objects were whole in the old tables, as they were serialized.
        let task = serde_json::to_value(crate::model::objects::Task {
            id: "t1".into(),
            service_id: "s1".into(),
            node: "n1".into(),
            desired: crate::model::objects::TaskState::Running,
            state: crate::model::objects::TaskState::Running,
            exit_code: Some(3),
            ..Default::default()
        })
        .unwrap();
        let state = json!({
            "last_applied": log_id(2),
            "membership": {"log_id": log_id(1), "membership": membership},
            "state": {"version": 1, "tables": {
                "service-names": {"web": {"version": 1, "value": "s1"}},
                "tasks": {"t1": {"version": 1, "value": task}}
            }}
        });
        let data = serde_json::to_vec(&state).unwrap();
        let meta = json!({"last_log_id": log_id(2), "last_membership": {"log_id": log_id(1), "membership": membership},
            "snapshot_id": "1-1-2-0"});
        let snapshot = serde_json::to_vec(&json!({"meta": meta, "data": data})).unwrap();
        let entries = [
            (
                3,
                json!({"log_id": log_id(3), "payload": {"Normal": {"Patch": {"table": "tasks", "id": "t1",
                "patch": {"state": "failed", "exit_code": null}}}}}),
            ),
            (
                4,
                json!({"log_id": log_id(4), "payload": {"Normal": {"Batch": [
                {"Delete": {"table": "service-names", "id": "web"}},
                {"Put": {"table": "cluster", "id": "settings", "value": {"node_cert_ttl_secs": 60},
                    "expect_version": null}}]}}}),
            ),
            (5, json!({"log_id": log_id(5), "payload": "Blank"})),
        ];
        let tx = db.begin_write().unwrap();
        {
            let mut logs = tx.open_table(LOGS).unwrap();
            for (i, e) in entries {
                logs.insert(i, serde_json::to_vec(&e).unwrap().as_slice()).unwrap();
            }
            tx.open_table(SNAPSHOT).unwrap().insert(super::super::state_machine::CURRENT, snapshot.as_slice()).unwrap();
            tx.open_table(super::super::META).unwrap();
        }
        tx.commit().unwrap();
    }

    #[tokio::test]
    async fn an_old_json_store_is_migrated_once_and_keeps_everything() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft.redb");
        write_old_store(&path);
        let (mut log, sm) = super::super::open(&path).await.unwrap();
        // The snapshot's state, typed.
        let mut state = sm.applied.read().await.state.clone();
        assert_eq!(state.service_names.get("web").map(String::as_str), Some("s1"));
        assert_eq!(state.tasks["t1"].exit_code, Some(3));
        assert_eq!(state.index.tasks_on("n1").len(), 1);
        // The entries after it, typed, and what they do.
        let entries = log.try_get_log_entries(3..6).await.unwrap();
        assert_eq!(entries.len(), 3);
        for e in &entries {
            if let EntryPayload::Normal(c) = &e.payload {
                assert_eq!(state.apply(c).conflict, None, "{c:?}");
            }
        }
        assert!(matches!(&entries[1].payload, EntryPayload::Normal(Command::Batch(c))
            if c[0] == Command::delete(Kind::ServiceName, "web")));
        assert_eq!(state.tasks["t1"].exit_code, None, "a null in a merge patch cleared it");
        assert_eq!(state.tasks["t1"].state, crate::model::objects::TaskState::Failed);
        assert!(!state.exists(&Key::new(Kind::ServiceName, "web")));
        assert_eq!(state.settings.node_cert_ttl_secs, 60);
        // Written back in the binary encoding: a second open migrates nothing.
        drop((log, sm));
        let db = redb::Database::open(&path).unwrap();
        assert_eq!(run(&db, &path).unwrap(), Migrated::default());
        let tx = db.begin_read().unwrap();
        for row in tx.open_table(LOGS).unwrap().iter().unwrap() {
            assert_eq!(row.unwrap().1.value()[0], codec::V1);
        }
    }

    #[tokio::test]
    async fn a_store_that_cannot_be_migrated_is_left_alone_and_says_how_to_recover() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft.redb");
        write_old_store(&path);
        {
            let db = redb::Database::open(&path).unwrap();
            let tx = db.begin_write().unwrap();
            let bad = json!({"log_id": log_id(6), "payload": {"Normal": {"Delete": {"table": "mystery", "id": "x"}}}});
            tx.open_table(LOGS).unwrap().insert(6, serde_json::to_vec(&bad).unwrap().as_slice()).unwrap();
            tx.commit().unwrap();
        }
        let err = super::super::open(&path).await.err().unwrap().to_string();
        assert!(err.contains("log entry 6") && err.contains("mystery") && err.contains("wipe"), "{err}");
        // Nothing was rewritten.
        let db = redb::Database::open(&path).unwrap();
        let tx = db.begin_read().unwrap();
        let first = tx.open_table(LOGS).unwrap().get(3).unwrap().unwrap().value().to_vec();
        assert_eq!(first[0], b'{');
    }
}
