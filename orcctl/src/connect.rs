//! Connecting to a node: TLS of our own (rustls) under a tonic channel, so
//! the client can pin a maintenance-mode fingerprint or present its cluster
//! certificate, and errors can say what went wrong.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};
use tonic::transport::{Channel, Endpoint};

use crate::config::Context;
use crate::error::CliError;

/// The DNS name every node certificate carries (see the agent's `pki`).
pub const NODE_SERVER_NAME: &str = "node.orc";
pub const DEFAULT_PORT: u16 = 7443;

/// How to trust the node.
#[derive(Clone)]
pub enum Trust {
    /// Cluster member: verify against the CA, present our certificate.
    Cluster(Context),
    /// Maintenance mode: accept exactly this certificate (hex SHA-256).
    Pinned(String),
    /// Maintenance mode without pinning (`--insecure`).
    Insecure,
}

/// `host` or `host:port`.
pub fn with_port(addr: &str) -> String {
    if addr.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) && !addr.ends_with(']') {
        addr.to_string()
    } else {
        format!("{addr}:{DEFAULT_PORT}")
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

#[derive(Debug)]
struct PinnedVerifier {
    /// None accepts any certificate.
    fingerprint: Option<String>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = hex::encode(Sha256::digest(end_entity.as_ref()));
        match &self.fingerprint {
            Some(want) if !want.eq_ignore_ascii_case(&got) => Err(rustls::Error::General(format!(
                "fingerprint mismatch: the node presented sha256:{got}, expected sha256:{want}"
            ))),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.provider.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.provider.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

fn pem_certs(pem: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, CliError> {
    let v = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CliError::BadCredentials(format!("{what}: {e}")))?;
    if v.is_empty() {
        return Err(CliError::BadCredentials(format!("{what}: no certificate in it")));
    }
    Ok(v)
}

/// The client TLS configuration for `trust`.
pub fn client_config(trust: &Trust) -> Result<ClientConfig, CliError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| CliError::BadCredentials(e.to_string()))?;
    let mut cfg = match trust {
        Trust::Cluster(ctx) => {
            let mut roots = RootCertStore::empty();
            for c in pem_certs(&ctx.ca, "the context's CA")? {
                roots.add(c).map_err(|e| CliError::BadCredentials(format!("the context's CA: {e}")))?;
            }
            let certs = pem_certs(&ctx.cert, "the context's client certificate")?;
            crate::error::check_not_expired(&certs[0])?;
            let key = PrivateKeyDer::from_pem_slice(ctx.key.as_bytes())
                .map_err(|e| CliError::BadCredentials(format!("the context's client key: {e}")))?;
            builder
                .with_root_certificates(roots)
                .with_client_auth_cert(certs, key)
                .map_err(|e| CliError::BadCredentials(format!("client certificate and key do not match: {e}")))?
        }
        Trust::Pinned(fp) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedVerifier {
                fingerprint: Some(fp.trim_start_matches("sha256:").to_string()),
                provider: provider(),
            }))
            .with_no_client_auth(),
        Trust::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedVerifier { fingerprint: None, provider: provider() }))
            .with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(cfg)
}

/// Opens a channel to `addr`. The connection is made now, so errors show here.
pub async fn channel(addr: &str, trust: &Trust) -> Result<Channel, CliError> {
    let addr = with_port(addr);
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(trust)?));
    let target = addr.clone();
    let endpoint = Endpoint::from_static("http://node.orc")
        .connect_timeout(Duration::from_secs(10))
        .http2_keep_alive_interval(Duration::from_secs(30));
    endpoint
        .connect_with_connector(tower::service_fn(move |_uri| {
            let (connector, target) = (connector.clone(), target.clone());
            async move {
                let tcp = tokio::time::timeout(Duration::from_secs(10), tokio::net::TcpStream::connect(&target))
                    .await
                    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
                let _ = tcp.set_nodelay(true);
                let name = ServerName::try_from(NODE_SERVER_NAME).map_err(std::io::Error::other)?;
                let tls = connector.connect(name, tcp).await?;
                Ok::<_, std::io::Error>(TokioIo::new(tls))
            }
        }))
        .await
        .map_err(|e| CliError::from_transport(&addr, &e))
}
