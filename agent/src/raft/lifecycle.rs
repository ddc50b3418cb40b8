//! When this node runs a Raft: from agent start or `cluster init` while it
//! is a manager, until it is demoted. Promotion and demotion arrive as a
//! renewed certificate with another role ([`on_role_change`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::{BasicNode, Raft};

use super::handle::{raft_config, raft_id, RaftHandle, Started};
use super::store::{self, LogStore, StateMachineStore};
use super::transport::client::Network;
use super::types::{NodeId, TypeConfig};
use super::RaftError;
use crate::pki::channel::ClientTls;
use crate::pki::identity::Identity;
use crate::pki::role::Role;

/// Where a manager keeps its Raft store under STATE.
pub fn store_dir(state_dir: &Path) -> std::path::PathBuf {
    state_dir.join("raft")
}

impl RaftHandle {
    /// Starts this manager's Raft on `<state>/raft/raft.redb`. With
    /// `advertise` (at `cluster init`), makes it a one-member quorum.
    pub async fn start(
        self: &Arc<Self>,
        state_dir: &Path,
        id: &Identity,
        advertise: Option<String>,
    ) -> Result<(), RaftError> {
        let raft_id = raft_id(&id.meta.node_id)?;
        let tls = ClientTls::new(id.client_tls().map_err(|e| RaftError::Internal(e.to_string()))?);
        let path = store_dir(state_dir).join("raft.redb");
        let stores = match store::open(&path).await {
            Ok(s) => s,
            Err(e) => {
                // A full or failing STATE: try again until it works.
                self.restart_later(raft_id, tls, path, e.to_string());
                return Err(e.into());
            }
        };
        self.launch(raft_id, tls, path, stores, advertise).await?;
        Ok(())
    }

    /// Runs a Raft on `stores` and watches it: a store failure stops
    /// openraft's core for good, and [`super::supervise`] brings it back.
    pub(super) async fn launch(
        self: &Arc<Self>,
        id: NodeId,
        tls: ClientTls,
        path: PathBuf,
        (log, sm): (LogStore, StateMachineStore),
        advertise: Option<String>,
    ) -> Result<Raft<TypeConfig>, RaftError> {
        let raft = Raft::new(id, raft_config()?, Network { tls: tls.clone() }, log, sm.clone())
            .await
            .map_err(|e| RaftError::Internal(format!("starting Raft: {e}")))?;
        if let Some(addr) = advertise {
            let members = BTreeMap::from([(id, BasicNode { addr })]);
            raft.initialize(members).await.map_err(|e| RaftError::Internal(format!("initializing the quorum: {e}")))?;
        }
        tracing::info!(raft_id = id, "Raft started");
        let writes = super::group::Committer::start(raft.clone());
        let epoch = self.set(Started {
            id,
            raft: raft.clone(),
            sm,
            tls,
            store: path,
            writes,
            leader_link: Default::default(),
            reads: Default::default(),
        });
        tokio::spawn(self.clone().watch(epoch, raft.clone()));
        Ok(raft)
    }

    /// Starts the Raft when `id` is a manager's; logs when it cannot.
    pub async fn start_if_manager(self: &Arc<Self>, state_dir: &Path, id: &Identity, advertise: Option<String>) {
        if id.meta.role != Role::Manager {
            return;
        }
        if let Err(e) = self.start(state_dir, id, advertise).await {
            tracing::error!(error = %e, "Raft did not start; the cluster API is unavailable on this node");
        }
    }

    /// Stops this node's Raft (it was demoted to worker), and any attempt
    /// to bring back one that failed.
    pub async fn stop(&self) {
        *crate::sync::write(&self.fault) = None;
        if let Some(s) = self.take() {
            if let Err(e) = s.raft.shutdown().await {
                tracing::warn!(error = %e, "stopping Raft");
            }
            tracing::info!("Raft stopped: this node is no longer a manager");
        }
    }

    /// The node adopted a renewed certificate `id` (its role was `was`),
    /// dialling with `client`: new connections use it; a promoted node
    /// starts its Raft, a demoted one stops it and forgets its store.
    pub async fn on_role_change(
        self: &Arc<Self>,
        state_dir: &Path,
        id: &Identity,
        was: Role,
        client: std::sync::Arc<rustls::ClientConfig>,
    ) {
        if let Ok(s) = self.get() {
            s.tls.replace(client);
        }
        match (was, id.meta.role) {
            (Role::Worker, Role::Manager) => self.start_if_manager(state_dir, id, None).await,
            (Role::Manager, Role::Worker) => {
                self.stop().await;
                let dir = store_dir(state_dir);
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    tracing::warn!(dir = %dir.display(), error = %e, "removing the Raft store of a demoted manager");
                }
            }
            _ => {}
        }
    }
}
