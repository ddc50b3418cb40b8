//! The cluster's public key infrastructure.
//!
//! One cluster CA. Every certificate carries its holder's role in the
//! subject's OU, the cluster id in O and the holder's name (node id or
//! person) in CN, as Swarm does. Node certificates are valid as TLS servers
//! (DNS name [`NODE_SERVER_NAME`]) and clients; people's certificates only as
//! clients.
//!
//! # Layout
//! - [`role`]: the roles and what a certificate says about its holder.
//! - [`ca`]: making the CA and issuing certificates.
//! - [`identity`]: the node's identity on STATE (load, save atomically).
//! - [`maintenance`]: the self-signed certificate of a node without identity.
//! - [`tls`]: the rustls server configurations (maintenance, cluster).
//! - [`channel`]: the node-to-node client TLS and channel.
//! - [`sealing`]: the cluster's data key; secrets sealed at rest.
//! - [`autolock`]: the CA key at rest sealed under the operator's unlock key.
//! - [`role::identity_of`]: who a verified peer certificate names.
//!
//! The pinning verifiers (maintenance fingerprint, join-token CA digest)
//! live in the `orc-tls` crate, shared with `orcctl`.

pub mod autolock;
pub mod ca;
pub mod channel;
pub mod deny;
pub mod identity;
pub mod maintenance;
pub mod peer;
pub mod role;
pub mod sealing;
pub mod tls;

pub use orc_tls::{fingerprint, NODE_SERVER_NAME};

/// Whether two secrets are equal, in time that does not depend on where
/// they differ (join tokens, maintenance tokens).
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: malformed: {msg}")]
    Malformed { path: String, msg: String },
    #[error("certificate has no orc role (OU) or an unknown one: {0:?}")]
    BadRole(String),
    #[error(transparent)]
    Autolock(#[from] autolock::AutolockError),
    #[error("a certificate lifetime of {secs} s is longer than the CA's ({max_secs} s)")]
    TtlTooLong { secs: u64, max_secs: u64 },
}
