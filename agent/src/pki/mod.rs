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

pub mod ca;
pub mod identity;
pub mod maintenance;
pub mod role;

use sha2::{Digest, Sha256};

/// The DNS name every node certificate carries and every client verifies
/// against. Nodes are reached through NAT, port forwards and vsock, so their
/// addresses cannot be pinned; the CA and the server EKU can.
pub const NODE_SERVER_NAME: &str = "node.orc";

/// Hex SHA-256 of a DER certificate, as printed and pinned.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
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
}
