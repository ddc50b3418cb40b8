//! orcctl's errors, each telling the user what to do next.

use std::error::Error as _;

use rustls::pki_types::CertificateDer;
use tonic::Code;

use crate::config::ConfigError;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("bad credentials in the orcctl config: {0}")]
    BadCredentials(String),
    #[error("your client certificate expired on {0}; ask a cluster admin for a new one")]
    Expired(String),
    #[error("{addr}: unreachable: {why}; is the node up and the address right?")]
    Unreachable { addr: String, why: String },
    #[error("{addr}: {why}")]
    Tls { addr: String, why: String },
    #[error("{node}: {msg}")]
    Rpc { node: String, code: Code, msg: String },
    #[error("{0}")]
    Usage(String),
    /// An update or rollback that did not converge (paused, rolled back).
    #[error("{0}")]
    Update(String),
    /// An OS upgrade or rollback that did not end on the version asked for.
    #[error("{0}")]
    Upgrade(String),
    /// A process run through `container exec` ended with this code; orcctl
    /// exits with it and prints nothing.
    #[error("exit status {0}")]
    Exit(u8),
}

impl CliError {
    /// Names the likely cause of a failed connection.
    pub fn from_transport(addr: &str, e: &tonic::transport::Error) -> CliError {
        let chain = chain_text(e);
        classify(addr, &chain)
    }

    /// Turns a gRPC status into an error naming the node, with advice for the usual cases.
    pub fn from_status(node: &str, s: tonic::Status) -> CliError {
        let source = s.source().map(chain_text).unwrap_or_default();
        let chain = format!("{}: {source}", s.message());
        match s.code() {
            // The connection broke under the call: say why if the error chain knows.
            Code::Unavailable | Code::Unknown | Code::Cancelled if !source.is_empty() || s.code() == Code::Cancelled => {
                match classify(node, &chain) {
                    CliError::Unreachable { .. } if s.code() == Code::Cancelled => CliError::Tls {
                        addr: node.to_string(),
                        why: "the node closed the connection: it refused our client certificate (not from its cluster CA, or expired), or it is going down".into(),
                    },
                    other => other,
                }
            }
            code => CliError::Rpc { node: node.to_string(), code, msg: s.message().to_string() },
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Exit(code) => *code,
            CliError::Usage(_) | CliError::Config(_) | CliError::BadCredentials(_) => 2,
            CliError::Rpc { code: Code::PermissionDenied | Code::Unauthenticated, .. } => 3,
            _ => 1,
        }
    }
}

fn chain_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        parts.push(s.to_string());
        cur = s.source();
    }
    parts.join(": ")
}

fn classify(addr: &str, chain: &str) -> CliError {
    let tls = |why: &str| CliError::Tls { addr: addr.to_string(), why: why.to_string() };
    if chain.contains("fingerprint mismatch") {
        let detail = chain.split("fingerprint mismatch: ").nth(1).unwrap_or(chain).split(": ").next().unwrap_or("");
        return tls(&format!("fingerprint mismatch ({detail}); compare with the fingerprint on the node's console"));
    }
    if chain.contains("UnknownIssuer") || chain.contains("BadSignature") {
        return tls("the node's certificate is not signed by this context's CA: wrong cluster or wrong --context?");
    }
    if chain.contains("CertificateRequired") {
        return tls(
            "the node requires a client certificate from its cluster CA (it is part of a cluster; use its context)",
        );
    }
    if chain.contains("UnknownCA") || chain.contains("BadCertificate") || chain.contains("DecryptError") {
        return tls("the node refused our client certificate: it is not from this node's cluster CA");
    }
    if chain.contains("CertificateExpired") || chain.contains("Expired") {
        return tls("a certificate has expired (ours or the node's); check clocks, or get a new client certificate");
    }
    if chain.contains("broken pipe") || chain.contains("Connection reset") || chain.contains("stream closed") {
        return tls("the node closed the connection after the TLS handshake: it refused our client certificate (not from its cluster CA, or expired)");
    }
    if chain.contains("NotValidForName") {
        return tls("the node's certificate is not an orc node certificate");
    }
    let why = if chain.contains("Connection refused") {
        "connection refused".to_string()
    } else if chain.contains("timed out") {
        "timed out".to_string()
    } else {
        chain.to_string()
    };
    CliError::Unreachable { addr: addr.to_string(), why }
}

/// Refuses to use an expired client certificate, saying so plainly.
pub fn check_not_expired(cert: &CertificateDer<'_>) -> Result<(), CliError> {
    use x509_parser::prelude::*;
    let (_, c) = X509Certificate::from_der(cert.as_ref())
        .map_err(|e| CliError::BadCredentials(format!("client certificate: {e}")))?;
    if !c.validity().is_valid() {
        return Err(CliError::Expired(c.validity().not_after.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_table() {
        let cases = [
            ("tcp connect error: Connection refused (os error 111)", "unreachable: connection refused"),
            ("invalid peer certificate: UnknownIssuer", "not signed by this context's CA"),
            ("received fatal alert: CertificateRequired", "requires a client certificate"),
            ("received fatal alert: UnknownCA", "refused our client certificate"),
            ("connection error: stream closed because of a broken pipe", "refused our client certificate"),
            ("received fatal alert: CertificateExpired", "expired"),
            ("fingerprint mismatch: the node presented sha256:aa, expected sha256:bb", "fingerprint mismatch"),
        ];
        for (i, (chain, want)) in cases.iter().enumerate() {
            let got = classify("n1", chain).to_string();
            assert!(got.contains(want), "case {i}: {got}");
        }
    }
}
