//! This manager's Raft, once it has one: started at agent start when the
//! node is a manager, or by `cluster init` (then as a one-member quorum).
//! The Raft RPC and cluster services reach it through here; before it
//! exists they answer `Unavailable`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use openraft::{BasicNode, Config, Raft};

use super::network::{client_tls, ClientTls, Network};
use super::store::{self, StateMachineStore};
use super::types::{NodeId, TypeConfig};
use crate::error::AgentError;
use crate::pki::identity::Identity;
use orc_proto::cluster as pb;

#[derive(Clone)]
pub struct Started {
    pub id: NodeId,
    pub raft: Raft<TypeConfig>,
    pub sm: StateMachineStore,
    /// The node's client TLS (to other managers).
    pub tls: ClientTls,
}

#[derive(Default)]
pub struct ClusterHandle {
    inner: RwLock<Option<Started>>,
}

/// The Raft id of a node: its node id (16 hex digits) as a number.
pub fn raft_id(node_id: &str) -> Result<NodeId, AgentError> {
    u64::from_str_radix(node_id, 16).map_err(|_| AgentError::Io(format!("node id {node_id:?} is not 16 hex digits")))
}

pub fn raft_config() -> Result<Arc<Config>, AgentError> {
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
    c.validate().map(Arc::new).map_err(|e| AgentError::Io(format!("Raft config: {e}")))
}

impl ClusterHandle {
    pub fn set(&self, s: Started) {
        *self.inner.write().unwrap_or_else(|p| p.into_inner()) = Some(s);
    }

    /// Stops this node's Raft (it was demoted to worker).
    pub async fn stop(&self) {
        let started = self.inner.write().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(s) = started {
            if let Err(e) = s.raft.shutdown().await {
                tracing::warn!(error = %e, "stopping Raft");
            }
            tracing::info!("Raft stopped: this node is no longer a manager");
        }
    }

    /// `cluster recover --force-new-cluster`: stops the Raft, makes this
    /// manager the only voter (log and state kept), starts it again.
    pub async fn force_new_cluster(&self, addr: &str) -> Result<u64, tonic::Status> {
        let old = self.get()?;
        old.raft.shutdown().await.map_err(|e| tonic::Status::internal(format!("stopping Raft: {e}")))?;
        let db = old.sm.db();
        let (id, tls) = (old.id, old.tls.clone());
        drop(old);
        let index = store::force_single_member(&db, id, addr).map_err(tonic::Status::internal)?;
        let path = std::path::PathBuf::from("raft.redb");
        let (log, sm) = store::from_db(db, &path).map_err(|e| tonic::Status::internal(e.to_string()))?;
        let raft = Raft::new(
            id,
            raft_config().map_err(|e| tonic::Status::internal(e.to_string()))?,
            Network { tls: tls.clone() },
            log,
            sm.clone(),
        )
        .await
        .map_err(|e| tonic::Status::internal(format!("restarting Raft: {e}")))?;
        self.set(Started { id, raft: raft.clone(), sm, tls });
        // A single voter elects itself; wait for it so the caller sees a working cluster.
        let _ = raft.wait(Some(Duration::from_secs(10))).current_leader(id, "recovered leader").await;
        tracing::warn!(
            raft_id = id,
            membership_index = index,
            "forced a new single-manager cluster from this node's state"
        );
        Ok(index)
    }

    pub fn running(&self) -> bool {
        self.inner.read().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    pub fn get(&self) -> Result<Started, tonic::Status> {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| tonic::Status::unavailable("this node runs no Raft: it is not a manager (yet)"))
    }

    /// Starts this manager's Raft on `<state>/raft/raft.redb`. With
    /// `advertise` (at `cluster init`), makes it a one-member quorum.
    pub async fn start(&self, state_dir: &Path, id: &Identity, advertise: Option<String>) -> Result<(), AgentError> {
        let raft_id = raft_id(&id.meta.node_id)?;
        let (log, sm) =
            store::open(&state_dir.join("raft/raft.redb")).await.map_err(|e| AgentError::Io(e.to_string()))?;
        let tls =
            ClientTls::new(client_tls(&id.ca_cert_pem, &id.node.cert_pem, &id.node.key_pem).map_err(AgentError::Io)?);
        let raft = Raft::new(raft_id, raft_config()?, Network { tls: tls.clone() }, log, sm.clone())
            .await
            .map_err(|e| AgentError::Io(format!("starting Raft: {e}")))?;
        if let Some(addr) = advertise {
            let members = BTreeMap::from([(raft_id, BasicNode { addr })]);
            raft.initialize(members).await.map_err(|e| AgentError::Io(format!("initializing the quorum: {e}")))?;
        }
        tracing::info!(raft_id, "Raft started");
        self.set(Started { id: raft_id, raft, sm, tls });
        Ok(())
    }

    pub async fn status(&self) -> Result<pb::StatusResponse, tonic::Status> {
        let s = self.get()?;
        // Give a fresh quorum a moment to elect before answering.
        let _ = tokio::time::timeout(Duration::from_secs(3), s.raft.wait(None).current_leader(s.id, "")).await;
        let m = s.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: std::collections::BTreeSet<NodeId> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, node)| pb::Member {
                id: *id,
                node_id: format!("{id:016x}"),
                addr: node.addr.clone(),
                voter: voters.contains(id),
            })
            .collect();
        let store_version = s.sm.applied.read().await.state.version;
        Ok(pb::StatusResponse {
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
}

/// Where the join tokens live in the replicated state.
const TOKENS: (&str, &str) = ("cluster", "join-tokens");

#[derive(serde::Serialize, serde::Deserialize)]
pub struct Tokens {
    pub manager: String,
    pub worker: String,
}

impl ClusterHandle {
    /// Both join tokens, made on first use; with `rotate`, that role's is
    /// replaced. Changes go through the Raft log so every manager knows them.
    pub async fn tokens(&self, ca_der: &[u8], rotate: Option<&str>) -> Result<Tokens, tonic::Status> {
        use super::command::Command;
        use super::token::JoinToken;
        let s = self.linearizable().await?;
        let (current, version) = {
            let a = s.sm.applied.read().await;
            match a.state.get(TOKENS.0, TOKENS.1) {
                Some(o) => (serde_json::from_value::<Tokens>(o.value.clone()).ok(), o.version),
                None => (None, 0),
            }
        };
        let mut tokens = current.unwrap_or_else(|| Tokens {
            manager: JoinToken::generate(ca_der).to_string(),
            worker: JoinToken::generate(ca_der).to_string(),
        });
        match rotate {
            Some("manager") => tokens.manager = JoinToken::generate(ca_der).to_string(),
            Some(_) => tokens.worker = JoinToken::generate(ca_der).to_string(),
            None => {}
        }
        if version == 0 || rotate.is_some() {
            let value = serde_json::to_value(&tokens).map_err(|e| tonic::Status::internal(e.to_string()))?;
            let cmd =
                Command::Put { table: TOKENS.0.into(), id: TOKENS.1.into(), value, expect_version: Some(version) };
            let r = self.write(cmd).await?;
            if let Some(conflict) = r.conflict {
                return Err(tonic::Status::aborted(format!("tokens changed meanwhile ({conflict}); try again")));
            }
            tracing::info!(rotate = ?rotate, "join tokens written");
        }
        Ok(tokens)
    }

    /// The join token for `role` ("manager" or "worker").
    pub async fn join_token(&self, ca_der: &[u8], role: &str, rotate: bool) -> Result<String, tonic::Status> {
        if role != "manager" && role != "worker" {
            return Err(tonic::Status::invalid_argument(format!(
                "role {role:?}: a join token is for a manager or a worker"
            )));
        }
        let tokens = self.tokens(ca_der, rotate.then_some(role)).await?;
        Ok(if role == "manager" { tokens.manager } else { tokens.worker })
    }
}
