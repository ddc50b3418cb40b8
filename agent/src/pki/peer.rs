//! Who is on the other end of a served connection: worked out once at
//! handshake time from the verified chain ([`super::role::identity_of`])
//! and handed to every request as an extension.

use super::role::PeerIdentity;

/// Who is calling: the remote address and, with a client certificate, the identity.
#[derive(Debug, Clone)]
pub struct Peer {
    pub remote: String,
    pub identity: Option<PeerIdentity>,
}

/// The verified identity of the caller of `req`, if it presented a certificate.
pub fn caller<T>(req: &tonic::Request<T>) -> Option<PeerIdentity> {
    req.extensions().get::<Peer>().and_then(|p| p.identity.clone())
}
