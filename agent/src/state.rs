//! What the agent knows about its node right now: settings, identity (or
//! maintenance mode), and the TLS configuration new connections get.

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use rustls::ServerConfig;

use crate::api::tls;
use crate::config::Config;
use crate::error::AgentError;
use crate::pki::identity::Identity;
use crate::pki::{self, maintenance};

pub struct NodeState {
    pub config: Config,
    identity: RwLock<Option<Identity>>,
    tls: RwLock<Arc<ServerConfig>>,
    /// Fingerprint of the maintenance certificate (what `cluster init` pins).
    pub maintenance_fingerprint: String,
    pub started: Instant,
    /// This manager's Raft (when it is one).
    pub cluster: Arc<crate::cluster::handle::ClusterHandle>,
    /// Where the API listens, once bound (what managers advertise).
    pub api_addr: std::sync::OnceLock<std::net::SocketAddr>,
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

impl NodeState {
    pub fn open(config: Config) -> Result<Arc<Self>, AgentError> {
        std::fs::create_dir_all(&config.state_dir)
            .map_err(|e| AgentError::Io(format!("{}: {e}", config.state_dir.display())))?;
        let m = maintenance::load_or_create(&config.state_dir)?;
        let m_der = tls::certs(&m.cert_pem, "maintenance certificate")?;
        let maintenance_fingerprint = m_der.first().map(|c| pki::fingerprint(c)).unwrap_or_default();
        let identity = Identity::load(&config.state_dir)?;
        let tls = match &identity {
            Some(id) => tls::cluster(&id.ca_cert_pem, &id.node)?,
            None => tls::maintenance(&m)?,
        };
        Ok(Arc::new(Self {
            config,
            identity: RwLock::new(identity),
            tls: RwLock::new(tls),
            maintenance_fingerprint,
            started: Instant::now(),
            cluster: Arc::default(),
            api_addr: std::sync::OnceLock::new(),
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

    pub fn state_dir(&self) -> &Path {
        &self.config.state_dir
    }

    /// Adopts a new identity: saved first (fsynced), then served. Fails if
    /// the node already has one.
    pub fn adopt(&self, make: impl FnOnce() -> Result<Identity, AgentError>) -> Result<Identity, AgentError> {
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
    /// first, then served; a promoted node starts its Raft, a demoted one
    /// stops it and forgets its Raft store.
    pub async fn renew(
        &self,
        node: crate::pki::ca::CertKey,
        role: crate::pki::role::Role,
        ca_key: Option<String>,
    ) -> Result<(), AgentError> {
        use crate::pki::role::Role;
        let (id, was) = {
            let mut slot = write(&self.identity);
            let current = slot.clone().ok_or_else(|| AgentError::Io("renewing without an identity".into()))?;
            let mut id = current.clone();
            id.node = node;
            id.meta.role = role;
            id.ca_key_pem = ca_key;
            id.save(self.state_dir())?;
            *write(&self.tls) = tls::cluster(&id.ca_cert_pem, &id.node)?;
            *slot = Some(id.clone());
            (id, current.meta.role)
        };
        if let Ok(s) = self.cluster.get() {
            let c = crate::cluster::network::client_tls(&id.ca_cert_pem, &id.node.cert_pem, &id.node.key_pem)
                .map_err(AgentError::Io)?;
            s.tls.replace(c);
        }
        tracing::info!(role = %role, previous = %was, "node certificate renewed");
        match (was, role) {
            (Role::Worker, Role::Manager) => self.start_cluster(false).await,
            (Role::Manager, Role::Worker) => {
                self.cluster.stop().await;
                let dir = self.state_dir().join("raft");
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    tracing::warn!(dir = %dir.display(), error = %e, "removing the Raft store of a demoted manager");
                }
            }
            _ => {}
        }
        Ok(())
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

    /// Starts this node's Raft when it is a manager (at agent start).
    pub async fn start_cluster(&self, init: bool) {
        let Some(id) = self.identity() else { return };
        if id.meta.role != crate::pki::role::Role::Manager {
            return;
        }
        let advertise = init.then(|| self.advertise_addr());
        if let Err(e) = self.cluster.start(self.state_dir(), &id, advertise).await {
            tracing::error!(error = %e, "Raft did not start; the cluster API is unavailable on this node");
        }
    }
}
