//! The node-to-node channel: a node dials another node's API (Raft, the
//! dispatcher, joining, renewal, gathering logs) over TLS with its own
//! certificate, trusting only the cluster CA and the node server name.

use std::sync::Arc;

use tonic::transport::Channel;

use super::ca::CertKey;
use super::tls::{certs, key, provider, TlsError};

/// The client TLS configuration of a node: the cluster CA as the only root,
/// its node certificate as client certificate.
pub fn client_tls(ca_pem: &str, node: &CertKey) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(ca_pem, "cluster CA")? {
        roots.add(c)?;
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs(&node.cert_pem, "node certificate")?, key(&node.key_pem, "node key")?)?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
}

/// The node's client TLS, replaced when its certificate renews; new
/// connections take the current one.
#[derive(Clone)]
pub struct ClientTls(Arc<std::sync::RwLock<Arc<rustls::ClientConfig>>>);

impl ClientTls {
    pub fn new(c: Arc<rustls::ClientConfig>) -> Self {
        Self(Arc::new(std::sync::RwLock::new(c)))
    }
    pub fn current(&self) -> Arc<rustls::ClientConfig> {
        crate::sync::read(&self.0).clone()
    }
    pub fn replace(&self, c: Arc<rustls::ClientConfig>) {
        *crate::sync::write(&self.0) = c;
    }
}

/// A channel to another node's API at `addr` with the TLS configuration `tls`.
pub async fn channel(addr: &str, tls: Arc<rustls::ClientConfig>) -> Result<Channel, tonic::transport::Error> {
    orc_tls::channel::connect(addr, tls, orc_tls::channel::NODE).await
}
