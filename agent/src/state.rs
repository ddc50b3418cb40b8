//! What the agent knows about its node right now: settings, identity (or
//! maintenance mode), and the TLS configuration new connections get.

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use rustls::ServerConfig;

use crate::config::Config;
use crate::error::AgentError;
use crate::pki::autolock::UnlockKey;
use crate::pki::identity::{CaKeyAtRest, Identity};
use crate::pki::role::Role;
use crate::pki::tls;
use crate::pki::PkiError;
use crate::pki::{self, maintenance};
use crate::sync::{read, write};

pub struct NodeState {
    pub config: Config,
    identity: RwLock<Option<Identity>>,
    tls: RwLock<Arc<ServerConfig>>,
    /// Fingerprint of the maintenance certificate (what `cluster init` pins).
    pub maintenance_fingerprint: String,
    pub started: Instant,
    /// This manager's Raft (when it is one).
    pub raft: Arc<crate::raft::RaftHandle>,
    /// Where the API listens, once bound (what managers advertise).
    pub api_addr: std::sync::OnceLock<std::net::SocketAddr>,
    /// The identity on STATE could not be used: what is wrong and how to
    /// recover. The node then serves `health` (and the Machine API over its
    /// maintenance certificate) but cannot be bootstrapped or joined, so a
    /// damaged member never silently becomes claimable.
    pub identity_error: Option<String>,
    /// Certificates and nodes refused on every call ([`crate::pki::deny`]).
    deny: RwLock<Arc<crate::pki::deny::DenyList>>,
    /// The node joins a cluster by itself (`orc.join=`): nobody bootstraps it.
    pub joins_at_start: bool,
    /// The node's clock as its SNTP client sees it.
    pub time: Arc<crate::timesync::TimeSync>,
    /// What the node's container networking says of itself, for `health`:
    /// whether it is well and how it is.
    pub network: RwLock<(bool, String)>,
    /// The OS this boot runs, the upgrades that failed here and the one in
    /// progress (set by the upgrade module; reported to the managers at
    /// each session and shown by `orcctl version`).
    pub os: RwLock<crate::model::os::OsReport>,
    /// What the heartbeats ask the leader about readiness elsewhere, and
    /// its answer (the upgrade module asks during a health window).
    pub ready_elsewhere: RwLock<crate::model::os::ReadyElsewhere>,
}

impl NodeState {
    /// Opens the node's state; `joins_at_start` says it was told to join
    /// (the token itself stays with the joining task).
    pub fn open(config: Config, joins_at_start: bool) -> Result<Arc<Self>, AgentError> {
        std::fs::create_dir_all(&config.state_dir)
            .map_err(|e| AgentError::Io(format!("{}: {e}", config.state_dir.display())))?;
        let m = maintenance::load_or_create(&config.state_dir)?;
        let m_der = tls::certs(&m.cert_pem, "maintenance certificate")?;
        let maintenance_fingerprint = m_der.first().map(|c| pki::fingerprint(c)).unwrap_or_default();
        let (identity, identity_error) = match Identity::load(&config.state_dir).and_then(|id| {
            if let Some(id) = &id {
                id.validate()?;
            }
            Ok(id)
        }) {
            Ok(id) if config.state_error.is_none() => (id, None),
            Ok(_) => {
                let msg = format!(
                    "STATE cannot be used ({}): the node may hold a former member's identity, so it stays \
                     unclaimable. Fix or replace the disk and reboot; to start afresh, wipe it (or boot with \
                     orc.state= naming a blank disk)",
                    config.state_error.as_deref().unwrap_or_default()
                );
                tracing::error!(error = %msg, "STATE unusable");
                println!("orc: ERROR: {msg}");
                (None, Some(msg))
            }
            Err(e) => {
                let msg = format!(
                    "the node's identity in {} cannot be used ({e}): the node was a cluster member and stays \
                     out of the cluster. Restore {} from a backup, or remove it (`orcctl node rm` this node on a \
                     manager, then wipe STATE) and join again",
                    crate::pki::identity::pki_dir(&config.state_dir).display(),
                    crate::pki::identity::pki_dir(&config.state_dir).display(),
                );
                tracing::error!(error = %msg, "identity unusable");
                println!("orc: ERROR: {msg}");
                (None, Some(msg))
            }
        };
        let tls = match &identity {
            Some(id) => tls::cluster(&id.ca_cert_pem, &id.node)?,
            None => tls::maintenance(&m)?,
        };
        Ok(Arc::new(Self {
            identity: RwLock::new(identity),
            tls: RwLock::new(tls),
            maintenance_fingerprint,
            started: Instant::now(),
            raft: Arc::default(),
            api_addr: std::sync::OnceLock::new(),
            identity_error,
            deny: RwLock::default(),
            joins_at_start,
            time: Arc::new(crate::timesync::TimeSync::new(
                config.ntp_servers.clone(),
                config.run_dir.join("ntp-servers"),
                config.init_pid.is_some(),
            )),
            network: RwLock::new((true, "off: no session with the cluster yet".into())),
            os: RwLock::new(crate::model::os::OsReport {
                version: env!("CARGO_PKG_VERSION").to_string(),
                ..Default::default()
            }),
            ready_elsewhere: RwLock::default(),
            config,
        }))
    }

    /// (in maintenance mode, cluster id).
    pub fn mode(&self) -> (bool, Option<String>) {
        match &*read(&self.identity) {
            Some(id) => (false, Some(id.meta.cluster_id.clone())),
            None => (true, None),
        }
    }

    pub fn identity(&self) -> Option<Identity> {
        read(&self.identity).clone()
    }

    pub fn tls(&self) -> Arc<ServerConfig> {
        read(&self.tls).clone()
    }

    pub fn deny(&self) -> Arc<crate::pki::deny::DenyList> {
        read(&self.deny).clone()
    }

    /// Adopts a newer deny list (from the Raft state or the leader).
    pub fn set_deny(&self, list: crate::pki::deny::DenyList) {
        let mut slot = write(&self.deny);
        if **slot != list {
            tracing::info!(
                revoked = list.serials.len(),
                removed = list.removed_nodes.len(),
                workers = list.workers.len(),
                "deny list updated"
            );
            *slot = Arc::new(list);
        }
    }

    pub fn state_dir(&self) -> &Path {
        &self.config.state_dir
    }

    /// Whether `given` is the node's maintenance token (any, when it has none).
    pub fn check_maintenance_token(&self, given: &str) -> Result<(), AgentError> {
        let Some(want) = self.config.maintenance_token.as_deref().filter(|t| !t.is_empty()) else { return Ok(()) };
        if pki::constant_time_eq(want, given) {
            Ok(())
        } else {
            Err(AgentError::PermissionDenied(
                "this node was booted with orc.maintenance_token=: pass it with --maintenance-token".into(),
            ))
        }
    }

    /// Adopts a new identity: saved first (fsynced), then served. Fails if
    /// the node already has one.
    pub fn adopt(&self, make: impl FnOnce() -> Result<Identity, AgentError>) -> Result<Identity, AgentError> {
        if let Some(e) = &self.identity_error {
            return Err(AgentError::FailedPrecondition(e.clone()));
        }
        let mut slot = write(&self.identity);
        if slot.is_some() {
            return Err(AgentError::AlreadyMember);
        }
        let id = make()?;
        id.save(self.state_dir())?;
        *write(&self.tls) = tls::cluster(&id.ca_cert_pem, &id.node)?;
        *slot = Some(id.clone());
        Ok(id)
    }
}

impl NodeState {
    /// Adopts a renewed certificate (and with it maybe a new role): saved
    /// first, then served; the Raft follows the role (see
    /// [`crate::raft::RaftHandle::on_role_change`]).
    pub async fn renew(
        &self,
        node: crate::pki::ca::CertKey,
        role: crate::pki::role::Role,
        ca_key: Option<String>,
    ) -> Result<(), AgentError> {
        let (id, was, was_locked, client) = {
            let mut slot = write(&self.identity);
            let current = slot.clone().ok_or_else(|| AgentError::Io("renewing without an identity".into()))?;
            let mut id = current.clone();
            id.node = node;
            id.meta.role = role;
            match (role, ca_key) {
                (Role::Manager, Some(k)) => id.ca_key_pem = Some(k),
                // Under autolock a manager is not handed the CA key again:
                // it keeps its own, or stays locked until the operator opens it.
                (Role::Manager, None) => {}
                (_, _) => {
                    id.ca_key_pem = None;
                    id.at_rest = CaKeyAtRest::default();
                }
            }
            // Checked before anything is saved: a certificate the node cannot dial with is refused.
            let client = id.client_tls()?;
            id.save(self.state_dir())?;
            *write(&self.tls) = tls::cluster(&id.ca_cert_pem, &id.node)?;
            *slot = Some(id.clone());
            (id, current.meta.role, current.locked(), client)
        };
        tracing::info!(role = %role, previous = %was, "node certificate renewed");
        self.raft.on_role_change(self.state_dir(), &id, was, client).await;
        if was_locked && !id.locked() {
            // Autolock was turned off while this manager was locked.
            self.start_raft(false).await;
        }
        Ok(())
    }

    /// A manager whose CA key is still sealed (autolock): it serves only
    /// `health` and `cluster unlock`, and runs no Raft.
    pub fn locked(&self) -> bool {
        read(&self.identity).as_ref().is_some_and(Identity::locked)
    }

    /// Opens the sealed CA key with the operator's `key` and starts the
    /// manager's Raft. STATE is left as it is: sealed under that key.
    pub async fn unlock(&self, key: UnlockKey) -> Result<(), AgentError> {
        {
            let mut slot = write(&self.identity);
            let current = slot
                .as_ref()
                .ok_or_else(|| AgentError::FailedPrecondition("the node has no cluster identity".into()))?;
            if !current.locked() {
                return Err(AgentError::FailedPrecondition(
                    "this manager is not locked: there is nothing to unlock (it serves the cluster API already)".into(),
                ));
            }
            let id = current.unlocked(Arc::new(key)).map_err(|e| match e {
                PkiError::Autolock(e) => AgentError::InvalidArgument(e.to_string()),
                other => AgentError::Pki(other),
            })?;
            *slot = Some(id);
        }
        tracing::info!("manager unlocked: starting Raft");
        self.start_raft(false).await;
        Ok(())
    }

    /// Keeps the CA key on STATE sealed under the cluster's unlock key
    /// (none: plain); `Ok(true)` when it saved a change.
    pub fn set_unlock_key(&self, key: Option<Arc<UnlockKey>>) -> Result<bool, AgentError> {
        // Looked at under the read lock: every call reads the identity.
        if read(&self.identity).as_ref().is_none_or(|id| id.ca_key_pem.is_none() || id.at_rest.unlock_key == key) {
            return Ok(false);
        }
        let mut slot = write(&self.identity);
        let Some(current) = slot.as_ref() else { return Ok(false) };
        if current.ca_key_pem.is_none() || current.at_rest.unlock_key == key {
            return Ok(false);
        }
        let id = Identity { at_rest: CaKeyAtRest { sealed: None, unlock_key: key }, ..current.clone() };
        id.save(self.state_dir())?;
        *slot = Some(id);
        Ok(true)
    }

    /// The address other managers reach this one at: the API's, with the
    /// first non-loopback IPv4 address when it listens on all of them.
    pub fn advertise_addr(&self) -> String {
        if let Some(a) = &self.config.advertise {
            return a.clone();
        }
        let addr = self.api_addr.get().copied().unwrap_or(self.config.listen);
        if !addr.ip().is_unspecified() {
            return addr.to_string();
        }
        let ip = nix::ifaddrs::getifaddrs()
            .ok()
            .and_then(|mut it| {
                it.find_map(|i| {
                    let a = i.address?.as_sockaddr_in()?.ip();
                    (!a.is_loopback()).then_some(a)
                })
            })
            .unwrap_or(std::net::Ipv4Addr::LOCALHOST);
        std::net::SocketAddr::new(ip.into(), addr.port()).to_string()
    }

    /// Starts this node's Raft when it is a manager (at agent start, after
    /// joining; with `init`, as a one-member quorum at `cluster init`).
    pub async fn start_raft(&self, init: bool) {
        let Some(id) = self.identity() else { return };
        if id.locked() {
            tracing::warn!("this manager is locked (autolock): its Raft starts after `orcctl cluster unlock`");
            return;
        }
        let advertise = init.then(|| self.advertise_addr());
        self.raft.start_if_manager(self.state_dir(), &id, advertise).await;
    }
}
