//! Connecting to a node: TLS of our own (rustls) under a tonic channel, so
//! the client can pin a maintenance-mode fingerprint or present its cluster
//! certificate, and errors can say what went wrong.

use std::sync::Arc;
use std::time::Duration;

use orc_tls::channel::Timeouts;
use orc_tls::pin::Pin;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};
use tonic::transport::Channel;

use crate::config::Context;
use crate::error::CliError;

pub use orc_tls::NODE_SERVER_NAME;
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

impl Trust {
    /// How to trust a node in maintenance mode: the fingerprint it printed,
    /// or nothing with `--insecure`; one of the two is required.
    pub fn maintenance(fingerprint: Option<String>, insecure: bool) -> Result<Self, CliError> {
        match (fingerprint, insecure) {
            (Some(fp), _) => Ok(Trust::Pinned(fp)),
            (None, true) => Ok(Trust::Insecure),
            (None, false) => Err(CliError::Usage(
                "pass --fingerprint sha256:... (printed on the node's console) or --insecure".into(),
            )),
        }
    }
}

/// Puts the context's namespace on every call it intercepts (none: the
/// managers take `default`).
#[derive(Clone)]
pub struct InNamespace(Option<tonic::metadata::AsciiMetadataValue>);

impl tonic::service::Interceptor for InNamespace {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(ns) = &self.0 {
            req.metadata_mut().insert(orc_proto::NAMESPACE_HEADER, ns.clone());
        }
        Ok(req)
    }
}

/// A channel whose calls work in the context's namespace.
pub type Scoped = tonic::service::interceptor::InterceptedService<Channel, InNamespace>;

/// `channel`, its calls in the namespace `trust`'s context names.
pub fn scoped(channel: Channel, trust: &Trust) -> Result<Scoped, CliError> {
    let ns = match trust {
        Trust::Cluster(ctx) => ctx.namespace.as_deref(),
        Trust::Pinned(_) | Trust::Insecure => None,
    };
    let value = ns
        .map(|n| {
            n.parse().map_err(|_| {
                CliError::Usage(format!(
                    "namespace {n:?}: use lowercase letters, digits and '-' (see `orcctl namespace ls`)"
                ))
            })
        })
        .transpose()?;
    Ok(tonic::service::interceptor::InterceptedService::new(channel, InNamespace(value)))
}

/// `channel`, its calls in namespace `ns` (whatever the context says).
pub fn in_namespace(channel: Channel, ns: &str) -> Result<Scoped, CliError> {
    let value = ns.parse().map_err(|_| CliError::Usage(format!("namespace {ns:?} is not a valid header value")))?;
    Ok(tonic::service::interceptor::InterceptedService::new(channel, InNamespace(Some(value))))
}

/// `host` or `host:port`.
pub fn with_port(addr: &str) -> String {
    if addr.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) && !addr.ends_with(']') {
        addr.to_string()
    } else {
        format!("{addr}:{DEFAULT_PORT}")
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

fn pinned(pin: Pin) -> Result<ClientConfig, CliError> {
    orc_tls::pin::client_config(pin).map_err(|e| CliError::BadCredentials(e.to_string()))
}

/// The client TLS configuration for `trust`.
pub fn client_config(trust: &Trust) -> Result<ClientConfig, CliError> {
    let builder = ClientConfig::builder_with_provider(orc_tls::provider())
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
        Trust::Pinned(fp) => return pinned(Pin::Leaf(fp.clone())),
        Trust::Insecure => return pinned(Pin::Any),
    };
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(cfg)
}

/// Opens a channel to `addr`. The connection is made now, so errors show here.
pub async fn channel(addr: &str, trust: &Trust) -> Result<Channel, CliError> {
    let addr = with_port(addr);
    let timeouts = Timeouts { connect: Duration::from_secs(10), keep_alive: Some(Duration::from_secs(30)) };
    orc_tls::channel::connect(&addr, Arc::new(client_config(trust)?), timeouts)
        .await
        .map_err(|e| CliError::from_transport(&addr, &e))
}

/// A channel to the first manager that accepts a connection.
pub async fn manager(candidates: &[String], trust: &Trust) -> Result<(String, Channel), CliError> {
    let mut last = None;
    for addr in candidates {
        match channel(addr, trust).await {
            Ok(c) => return Ok((addr.clone(), c)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| CliError::Usage("no manager to talk to: pass --nodes".into())))
}
