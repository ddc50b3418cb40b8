//! The store of earlier versions: named tables of JSON values, changed by
//! JSON commands (puts, RFC 7386 merge patches, batches). Read once, when
//! a manager first starts on such a store, and rewritten typed
//! ([`crate::raft::store::migrate`]). The table names live only here now.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::{ClusterState, Image, Stored};
use crate::model::db::{Command, Key, Kind, Object};

#[derive(Debug, thiserror::Error)]
pub enum LegacyError {
    #[error("table {table:?} (id {id:?}) is not one orc ever wrote")]
    UnknownTable { table: String, id: String },
    #[error("{key} cannot be read: {source}")]
    Object { key: Key, source: serde_json::Error },
    #[error("a merge patch of {0}, which orc never patched")]
    Patch(Key),
}

/// A command as earlier versions logged it.
#[derive(Debug, Clone, Deserialize)]
pub enum LegacyCommand {
    Put { table: String, id: String, value: serde_json::Value, expect_version: Option<u64> },
    Delete { table: String, id: String },
    Patch { table: String, id: String, patch: serde_json::Value },
    Batch(Vec<LegacyCommand>),
}

#[derive(Debug, Clone, Deserialize)]
struct LegacyObject {
    version: u64,
    value: serde_json::Value,
}

/// The state as earlier versions' snapshots held it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct LegacyState {
    pub version: u64,
    #[serde(default)]
    tables: BTreeMap<String, BTreeMap<String, LegacyObject>>,
}

/// The kind and id an old table row is now.
fn key(table: &str, id: &str) -> Result<Key, LegacyError> {
    let kind = match (table, id) {
        ("nodes", _) => Kind::Node,
        ("services", _) => Kind::Service,
        ("tasks", _) => Kind::Task,
        ("service-names", _) => Kind::ServiceName,
        ("removed-nodes", _) => Kind::RemovedNode,
        ("person-certs", _) => Kind::PersonCert,
        ("revoked-certs", _) => Kind::RevokedCert,
        ("cluster", "settings") => return Ok(Key::new(Kind::Settings, "")),
        ("cluster", "join-tokens") => return Ok(Key::new(Kind::JoinTokens, "")),
        _ => return Err(LegacyError::UnknownTable { table: table.into(), id: id.into() }),
    };
    Ok(Key::new(kind, id))
}

fn parse<T: DeserializeOwned>(key: &Key, v: serde_json::Value) -> Result<T, LegacyError> {
    serde_json::from_value(v).map_err(|source| LegacyError::Object { key: key.clone(), source })
}

fn object(key: &Key, v: serde_json::Value) -> Result<Object, LegacyError> {
    Ok(match key.kind {
        Kind::Node => {
            let mut n: crate::model::objects::Node = parse(key, v)?;
            // Older stores did not record it: any node may have held a
            // manager certificate, so every worker stays refused manager
            // calls, as it was.
            n.was_manager = true;
            Object::Node(Arc::new(n))
        }
        Kind::Service => Object::Service(Arc::new(parse(key, v)?)),
        Kind::Task => Object::Task(Arc::new(parse(key, v)?)),
        Kind::ServiceName => Object::ServiceName(parse(key, v)?),
        Kind::RemovedNode => Object::RemovedNode(Arc::new(parse(key, v)?)),
        Kind::PersonCert => Object::PersonCert(Arc::new(parse(key, v)?)),
        Kind::RevokedCert => Object::RevokedCert(Arc::new(parse(key, v)?)),
        Kind::Settings => Object::Settings(parse(key, v)?),
        Kind::JoinTokens => Object::JoinTokens(parse(key, v)?),
        // Leases came after the JSON store: no old table holds them.
        Kind::Lease => return Err(LegacyError::UnknownTable { table: "leases".into(), id: key.id.clone() }),
        Kind::Vip => return Err(LegacyError::UnknownTable { table: "vips".into(), id: key.id.clone() }),
        Kind::Network | Kind::Vni => {
            return Err(LegacyError::UnknownTable { table: "networks".into(), id: key.id.clone() })
        }
        Kind::Published => return Err(LegacyError::UnknownTable { table: "published".into(), id: key.id.clone() }),
        Kind::Secret | Kind::Config | Kind::Volume | Kind::RemovedVolume | Kind::Namespace => {
            return Err(LegacyError::UnknownTable { table: key.kind.as_str().into(), id: key.id.clone() })
        }
    })
}

impl LegacyCommand {
    /// The same change, typed. Merge patches of nodes and tasks become
    /// typed patches of the same fields (a `null` clears, as it did).
    pub fn convert(self) -> Result<Command, LegacyError> {
        Ok(match self {
            Self::Put { table, id, value, expect_version } => {
                let key = key(&table, &id)?;
                Command::Put { object: object(&key, value)?, id: key.id, expect_version }
            }
            Self::Delete { table, id } => Command::Delete { key: key(&table, &id)? },
            Self::Patch { table, id, patch } => {
                let key = key(&table, &id)?;
                match key.kind {
                    Kind::Node => Command::PatchNode { patch: parse(&key, patch)?, id: key.id },
                    Kind::Task => Command::PatchTask { patch: parse(&key, patch)?, id: key.id },
                    _ => return Err(LegacyError::Patch(key)),
                }
            }
            Self::Batch(cmds) => Command::Batch(cmds.into_iter().map(Self::convert).collect::<Result<_, _>>()?),
        })
    }
}

impl LegacyState {
    /// The same objects at the same versions, typed.
    pub fn convert(self) -> Result<ClusterState, LegacyError> {
        let mut objects = Vec::new();
        for (table, rows) in self.tables {
            for (id, o) in rows {
                let key = key(&table, &id)?;
                objects.push(Stored { object: object(&key, o.value)?, id: key.id, version: o.version });
            }
        }
        Ok(ClusterState::from_image(Image { version: self.version, objects }))
    }
}
