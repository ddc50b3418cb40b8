//! TLS that the agent and `orcctl` share.
//!
//! # Layout
//! - [`NODE_SERVER_NAME`], [`fingerprint`]: what every node certificate
//!   carries and how certificates are named by digest.
//! - [`pin`]: server verifiers that trust by a pinned digest instead of a
//!   CA store: the leaf's fingerprint (a node in maintenance mode), the CA
//!   digest in a join token (a node joining), or nothing (`--insecure`).
//! - [`channel`]: a tonic channel to a node over a rustls configuration.
//! - [`image_sig`]: image signatures (Ed25519, cosign-style), made by
//!   `orcctl image sign` and checked by nodes against the image policy.
//!
//! Threat model of [`pin`]: before a node has a cluster identity there is no
//! CA to trust; the operator (or the join token) carries a digest obtained
//! out of band. A verifier that matches the digest and nothing else would let
//! any certificate with that CA *in its chain* pass, so the CA-digest pin
//! also checks that the pinned CA signed the leaf.

pub mod channel;
pub mod image_sig;
pub mod pin;

use sha2::{Digest, Sha256};

/// The DNS name every node certificate carries and every client verifies
/// against. Nodes are reached through NAT, port forwards and vsock, so their
/// addresses cannot be pinned; the CA and the server EKU can.
pub const NODE_SERVER_NAME: &str = "node.orc";

/// Hex SHA-256 of a DER certificate, as printed and pinned.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// The crypto provider of every orc TLS configuration.
pub fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}
