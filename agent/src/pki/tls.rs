//! rustls server configurations: maintenance mode (self-signed, no client
//! certificate) and cluster mode (client certificate from the cluster CA required).

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use crate::pki::ca::CertKey;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("bad PEM in {what}: {msg}")]
    Pem { what: &'static str, msg: String },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client verifier: {0}")]
    Verifier(String),
}

pub use orc_tls::provider;

pub fn certs(pem: &str, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem { what, msg: e.to_string() })
}

pub fn key(pem: &str, what: &'static str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| TlsError::Pem { what, msg: e.to_string() })
}

fn finish(mut cfg: ServerConfig) -> Arc<ServerConfig> {
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(cfg)
}

/// Maintenance mode: anyone may connect; the client pins our fingerprint.
pub fn maintenance(cert: &CertKey) -> Result<Arc<ServerConfig>, TlsError> {
    let cfg = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs(&cert.cert_pem, "maintenance certificate")?, key(&cert.key_pem, "maintenance key")?)?;
    Ok(finish(cfg))
}

/// Cluster mode: mutual TLS against the cluster CA.
pub fn cluster(ca_pem: &str, node: &CertKey) -> Result<Arc<ServerConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in certs(ca_pem, "cluster CA")? {
        roots.add(c)?;
    }
    // A client without a certificate gets through TLS and is then refused by
    // the authorization layer with a status that says why; a certificate that
    // does not verify is refused here.
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let mut chain = certs(&node.cert_pem, "node certificate")?;
    chain.extend(certs(ca_pem, "cluster CA")?);
    let cfg = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key(&node.key_pem, "node key")?)?;
    Ok(finish(cfg))
}
