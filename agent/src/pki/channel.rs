//! The node-to-node channel: a node dials another node's API (Raft, the
//! dispatcher, joining, renewal, gathering logs) over TLS with its own
//! certificate, trusting only the cluster CA and the node server name.

use std::sync::Arc;

use tonic::transport::Channel;

use super::ca::CertKey;
use super::role::Role;
use super::tls::{certs, key, provider, TlsError};

/// Whom a node expects at the other end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// A manager: the Raft transport, forwarding to the leader, the
    /// dispatcher session, renewal. A worker's certificate is refused.
    Manager,
    /// Any member node (gathering a task's logs from the node running it).
    Node,
}

/// The client TLS configuration of a node: the cluster CA as the only root,
/// its node certificate as client certificate, and the peer's role checked
/// against `expect` after the chain.
pub fn client_tls(ca_pem: &str, node: &CertKey, expect: Expect) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(ca_pem, "cluster CA")? {
        roots.add(c)?;
    }
    let chain = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(RoleVerifier { chain, expect }))
        .with_client_auth_cert(certs(&node.cert_pem, "node certificate")?, key(&node.key_pem, "node key")?)?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
}

/// The cluster CA's chain check (webpki), then the role the peer's
/// certificate carries: a worker's certificate holds the same server name
/// as a manager's, so only its role tells them apart.
#[derive(Debug)]
struct RoleVerifier {
    chain: Arc<rustls::client::WebPkiServerVerifier>,
    expect: Expect,
}

impl rustls::client::danger::ServerCertVerifier for RoleVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let ok = self.chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)?;
        let role = super::role::identity_of(end_entity)
            .map_err(|e| rustls::Error::General(format!("the peer's certificate: {e}")))?
            .role;
        match (self.expect, role) {
            (Expect::Manager, Role::Manager) | (Expect::Node, Role::Manager | Role::Worker) => Ok(ok),
            (expect, role) => Err(rustls::Error::General(format!(
                "the peer's certificate is a {role}'s; this call needs a {}",
                if expect == Expect::Manager { "manager" } else { "node" }
            ))),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.chain.supported_verify_schemes()
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::ca;

    /// A TLS handshake from a node expecting `expect` to a server holding `server`.
    async fn handshake(ca: &CertKey, server: &CertKey, expect: Expect) -> Result<(), String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(crate::pki::tls::cluster(&ca.cert_pem, server).unwrap());
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let _ = acceptor.accept(tcp).await;
        });
        let me = ca::issue(ca, "c", "me", Role::Worker, ca::NODE_TTL).unwrap();
        let connector = tokio_rustls::TlsConnector::from(client_tls(&ca.cert_pem, &me, expect).unwrap());
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from(orc_tls::NODE_SERVER_NAME).unwrap();
        connector.connect(name, tcp).await.map(|_| ()).map_err(|e| e.to_string())
    }

    #[tokio::test]
    async fn a_workers_certificate_cannot_pose_as_a_manager() {
        let ca = ca::new_ca("c", "n").unwrap();
        let worker = ca::issue(&ca, "c", "w1", Role::Worker, ca::NODE_TTL).unwrap();
        let manager = ca::issue(&ca, "c", "m1", Role::Manager, ca::NODE_TTL).unwrap();
        let e = handshake(&ca, &worker, Expect::Manager).await.unwrap_err();
        assert!(e.contains("is a worker's; this call needs a manager"), "{e}");
        handshake(&ca, &manager, Expect::Manager).await.unwrap();
        handshake(&ca, &worker, Expect::Node).await.unwrap();
        // A person's certificate is no node at all.
        let admin = ca::issue(&ca, "c", "alice", Role::Admin, ca::PERSON_TTL).unwrap();
        let server_ok = crate::pki::tls::cluster(&ca.cert_pem, &admin).is_ok();
        if server_ok {
            assert!(handshake(&ca, &admin, Expect::Node).await.is_err());
        }
    }
}
