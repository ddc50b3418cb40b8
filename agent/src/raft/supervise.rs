//! Keeps a manager's Raft running through store failures.
//!
//! openraft stops its core for good when the store fails (a redb commit
//! that hits a full STATE disk, an I/O error): the node would stay out of
//! the quorum until someone restarted the agent. Instead the agent keeps
//! serving everything else, says what happened in `health` and on the
//! cluster API (`Unavailable`, so clients fail over to another manager),
//! and reopens the store and starts a new Raft on it until that works.
//! Nothing committed is lost: a redb commit is all or nothing, an append
//! that failed was never acknowledged, and the new Raft rebuilds its state
//! from the snapshot and log on disk.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::Fatal;
use openraft::Raft;

use super::handle::RaftHandle;
use super::store;
use super::types::{NodeId, TypeConfig};
use super::RaftError;
use crate::pki::channel::ClientTls;

/// The first wait before reopening the store; doubled up to [`MAX_WAIT`].
const FIRST_WAIT: Duration = Duration::from_secs(1);
const MAX_WAIT: Duration = Duration::from_secs(8);
/// The free space a restart waits for: a Raft started on a disk that is
/// still full would fail its first append and stop again.
const MIN_FREE: u64 = 4 << 20;

/// Why this manager's Raft is not running, and since when.
#[derive(Debug, Clone)]
pub struct Fault {
    /// What stopped it, with the free space of the store's filesystem.
    pub error: String,
    /// Why the last restart did not work.
    pub last_attempt: Option<String>,
    /// Unix milliseconds of the first failure.
    pub since_ms: i64,
    /// Restarts tried so far.
    pub attempts: u32,
}

/// The bytes free for the store at `path`.
fn free_bytes(path: &Path) -> Result<u64, String> {
    let dir = path.parent().unwrap_or(path);
    nix::sys::statvfs::statvfs(dir)
        .map(|s| s.blocks_available().saturating_mul(s.fragment_size()))
        .map_err(|e| format!("statvfs {}: {e}", dir.display()))
}

/// The free space of the filesystem holding `path`, for messages.
fn free_space(path: &Path) -> String {
    let dir = path.parent().unwrap_or(path);
    match free_bytes(path) {
        Ok(free) => format!("{} KiB free on {}", free / 1024, dir.display()),
        Err(e) => e,
    }
}

impl RaftHandle {
    /// Waits until the Raft of `epoch` stops; when it stopped on its own
    /// (not shut down), takes it out of service and restarts it.
    pub(super) async fn watch(self: Arc<Self>, epoch: u64, raft: Raft<TypeConfig>) {
        let mut rx = raft.metrics();
        let mut seen = (0, None);
        let fatal = loop {
            {
                let m = rx.borrow();
                if let Err(f) = &m.running_state {
                    break Some(f.clone());
                }
                // Elections, in the log: what a lost quorum is read from.
                if (m.current_term, m.current_leader) != seen {
                    seen = (m.current_term, m.current_leader);
                    tracing::info!(term = m.current_term, leader = ?m.current_leader, state = ?m.state, "raft term or leader changed");
                }
            }
            if rx.changed().await.is_err() {
                break None;
            }
        };
        if matches!(fatal, Some(Fatal::Stopped)) || self.epoch() != epoch {
            return;
        }
        let Some(old) = self.take() else { return };
        let reason = match &fatal {
            Some(f) => f.to_string(),
            None => "its core task ended".to_string(),
        };
        let error = format!("the Raft store failed ({reason}); {}", free_space(&old.store));
        tracing::error!(raft_id = old.id, error = %error, "Raft stopped: restarting it once the store works again");
        if let Err(e) = old.raft.shutdown().await {
            tracing::warn!(error = %e, "stopping the failed Raft");
        }
        let (id, tls, path) = (old.id, old.tls.clone(), old.store.clone());
        drop(old);
        self.restart_later(id, tls, path, error);
    }

    /// Records `error` and tries to start a Raft on the store at `path`
    /// until it runs, or until the node stops being a manager.
    pub(super) fn restart_later(self: &Arc<Self>, id: NodeId, tls: ClientTls, path: PathBuf, error: String) {
        *crate::sync::write(&self.fault) =
            Some(Fault { error, last_attempt: None, since_ms: crate::clock::unix_ms(), attempts: 0 });
        let epoch = self.epoch();
        let handle = self.clone();
        tokio::spawn(async move {
            let mut wait = FIRST_WAIT;
            loop {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(MAX_WAIT);
                if handle.epoch() != epoch || crate::sync::read(&handle.fault).is_none() {
                    return;
                }
                // Other tasks may still hold the old store for a moment
                // (redb then says it is open): that is one more attempt.
                let tried = async {
                    if free_bytes(&path).is_ok_and(|free| free < MIN_FREE) {
                        return Err(RaftError::Unavailable(format!(
                            "waiting for {} MiB free on STATE (remove unused images and containers, or give the \
                             node a bigger disk)",
                            MIN_FREE >> 20
                        )));
                    }
                    let stores = store::open(&path).await?;
                    handle.launch(id, tls.clone(), path.clone(), stores, None).await
                };
                match tried.await {
                    Ok(_) => {
                        tracing::info!(raft_id = id, "Raft restarted on its store: this manager is back");
                        return;
                    }
                    Err(e) => {
                        let error = format!("{e}; {}", free_space(&path));
                        let mut slot = crate::sync::write(&handle.fault);
                        if let Some(f) = slot.as_mut() {
                            f.attempts += 1;
                            tracing::warn!(raft_id = id, attempt = f.attempts, error = %error, "Raft still stopped");
                            f.last_attempt = Some(error);
                        }
                    }
                }
            }
        });
    }

    /// The `raft` line of `health`: (ok, what it says).
    pub fn health(&self) -> (bool, String) {
        if let Some(f) = &*crate::sync::read(&self.fault) {
            let secs = (crate::clock::unix_ms() - f.since_ms).max(0) / 1000;
            let last = f.last_attempt.as_deref().map(|a| format!("; last attempt: {a}")).unwrap_or_default();
            return (
                false,
                format!(
                    "stopped {secs}s ago: {}; restarting by itself ({} attempts so far{last})",
                    f.error, f.attempts
                ),
            );
        }
        match self.get() {
            Ok(s) => {
                let m = s.raft.metrics().borrow().clone();
                let applied = m.last_applied.map(|l| l.index).unwrap_or(0);
                (true, format!("{:?}, term {}, applied {applied}", m.state, m.current_term))
            }
            Err(_) => (false, "not running on this manager".to_string()),
        }
    }
}
