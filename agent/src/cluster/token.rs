//! Join tokens: `ORC1-<sha256 of the CA certificate, hex>-<secret>`, one
//! secret for managers and one for workers (Swarm's scheme). The joiner
//! checks the CA digest before it sends anything; the leader tells the role
//! from which secret matches.

use std::fmt;

use sha2::{Digest, Sha256};

pub const PREFIX: &str = "ORC1";
/// Random bytes in a secret (hex in the token).
const SECRET_BYTES: usize = 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// SHA-256 of the cluster CA certificate (DER), lowercase hex.
    pub ca_digest: String,
    pub secret: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRole {
    Manager,
    Worker,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("a join token looks like ORC1-<64 hex digits>-<40 hex digits>; got {0:?} (get one with `orcctl cluster join-token worker`)")]
    Malformed(String),
    #[error(
        "the cluster's CA has digest {actual}, the token expects {expected}: wrong cluster, or someone in between"
    )]
    WrongCa { expected: String, actual: String },
    #[error("the join token is not valid for this cluster (rotated?): get a new one with `orcctl cluster join-token`")]
    Unknown,
}

pub fn ca_digest(ca_der: &[u8]) -> String {
    hex::encode(Sha256::digest(ca_der))
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl JoinToken {
    /// A new token for the CA `ca_der` with a fresh secret.
    pub fn generate(ca_der: &[u8]) -> Self {
        Self { ca_digest: ca_digest(ca_der), secret: hex::encode(rand::random::<[u8; SECRET_BYTES]>()) }
    }

    pub fn parse(s: &str) -> Result<Self, TokenError> {
        let s = s.trim();
        let mut parts = s.split('-');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(PREFIX), Some(d), Some(secret), None) if is_hex(d, 64) && is_hex(secret, SECRET_BYTES * 2) => {
                Ok(Self { ca_digest: d.to_string(), secret: secret.to_string() })
            }
            // At most 20 characters of what was given (never the secret,
            // which starts after 70), cut on a character boundary.
            _ => Err(TokenError::Malformed(match s.char_indices().nth(20) {
                Some((cut, _)) => format!("{}…", &s[..cut]),
                None => s.to_string(),
            })),
        }
    }

    /// The joiner's check of the CA it was shown, before it sends its CSR.
    pub fn check_ca(&self, ca_der: &[u8]) -> Result<(), TokenError> {
        let actual = ca_digest(ca_der);
        if actual == self.ca_digest {
            Ok(())
        } else {
            Err(TokenError::WrongCa { expected: self.ca_digest.clone(), actual })
        }
    }

    /// The leader's check: which role the secret grants (constant time).
    pub fn role(&self, manager: &JoinToken, worker: &JoinToken) -> Result<TokenRole, TokenError> {
        let eq = crate::pki::constant_time_eq;
        let ca_ok = eq(&self.ca_digest, &manager.ca_digest);
        let is_manager = eq(&self.secret, &manager.secret);
        let is_worker = eq(&self.secret, &worker.secret);
        match (ca_ok, is_manager, is_worker) {
            (true, true, _) => Ok(TokenRole::Manager),
            (true, false, true) => Ok(TokenRole::Worker),
            _ => Err(TokenError::Unknown),
        }
    }
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}-{}-{}", self.ca_digest, self.secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_ca_check_and_roles() {
        let ca = b"ca certificate der";
        let manager = JoinToken::generate(ca);
        let worker = JoinToken::generate(ca);
        assert_ne!(manager.secret, worker.secret);
        let text = manager.to_string();
        assert!(text.starts_with("ORC1-") && text.len() == 5 + 64 + 1 + 40, "{text}");
        let parsed = JoinToken::parse(&format!("  {text}\n")).unwrap();
        assert_eq!(parsed, manager);
        parsed.check_ca(ca).unwrap();
        assert!(matches!(parsed.check_ca(b"another ca"), Err(TokenError::WrongCa { .. })));
        assert_eq!(parsed.role(&manager, &worker).unwrap(), TokenRole::Manager);
        assert_eq!(JoinToken::parse(&worker.to_string()).unwrap().role(&manager, &worker).unwrap(), TokenRole::Worker);
        // Rotated: the old secret is refused.
        let rotated = JoinToken::generate(ca);
        assert_eq!(parsed.role(&rotated, &worker).unwrap_err(), TokenError::Unknown);
        // A token of another cluster with a matching secret is refused too.
        let foreign = JoinToken { ca_digest: ca_digest(b"x"), secret: manager.secret.clone() };
        assert_eq!(foreign.role(&manager, &worker).unwrap_err(), TokenError::Unknown);
    }

    #[test]
    fn malformed_tokens_are_errors_never_panics() {
        let cases = [
            "",
            "ORC1",
            "ORC1--",
            "ééééééééééééééééééééééé",
            "ORC1-ééééééééééééééééééééé-x",
            "aaaaaaaaaaaaaaaaaaaé",
            "aaaaaaaaaaaaaaaaaaaaé",
            "\u{0}\u{ffff}ORC1-\u{10ffff}",
        ];
        for c in cases {
            let e = JoinToken::parse(c).unwrap_err();
            assert!(matches!(e, TokenError::Malformed(_)), "{c:?}: {e}");
            assert!(e.to_string().contains("orcctl cluster join-token"), "{e}");
        }
        // Upper-case hex is refused, not mangled.
        let t = JoinToken::generate(b"ca").to_string().to_uppercase().replace("ORC1", PREFIX);
        assert!(JoinToken::parse(&t).is_err());
    }

    #[test]
    fn malformed_tokens_say_what_a_token_looks_like() {
        for bad in [
            "",
            "ORC1",
            "SWMTKN-1-abc-def",
            &format!("ORC1-{}-xyz", "a".repeat(64)),
            &format!("ORC2-{}-{}", "a".repeat(64), "b".repeat(40)),
            &format!("ORC1-{}-{}", "A".repeat(64), "b".repeat(40)),
            &format!("ORC1-{}-{}-x", "a".repeat(64), "b".repeat(40)),
        ] {
            let e = JoinToken::parse(bad).unwrap_err();
            assert!(e.to_string().contains("ORC1-<64 hex digits>"), "{bad}: {e}");
        }
    }
}
