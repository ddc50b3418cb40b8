//! Sealing secrets at rest: the cluster's data key and XChaCha20-Poly1305.
//!
//! The data key is derived (HKDF-SHA256) from the CA's private key, which
//! every manager holds already and no worker ever does: a new manager has
//! it from its join or its promotion, with nothing more to hand over, and
//! protecting the CA key (autolock) protects the data key with it.
//!
//! A sealed value is `version byte | 24-byte random nonce | ciphertext and
//! tag`, bound by its associated data to the object it belongs to (kind,
//! name, version): a sealed value moved to another secret does not open.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

/// The format of a sealed value.
const FORMAT: u8 = 1;
const NONCE: usize = 24;
/// What the data key is derived for (a new purpose gets a new label).
const INFO: &[u8] = b"orc/secrets/data-key/v1";

/// Why a value could not be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("the CA key cannot be read: {0}")]
    CaKey(String),
    #[error("sealed value of {what}: format {found} is not one this agent reads ({FORMAT}): upgrade the agent")]
    Format { what: String, found: u8 },
    #[error("sealed value of {what} is {len} bytes: too short to be one")]
    Short { what: String, len: usize },
    /// A wrong key, or a value changed since it was sealed.
    #[error(
        "sealed value of {what} does not open with this cluster's data key (a different cluster's, or tampered with)"
    )]
    Open { what: String },
    #[error("sealing {what} failed")]
    Seal { what: String },
}

/// The cluster's data key (zeroed when dropped).
pub struct DataKey(zeroize::Zeroizing<[u8; 32]>);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl DataKey {
    /// The key derived from the CA's private key (PEM).
    pub fn from_ca_key(ca_key_pem: &str) -> Result<Self, SealError> {
        let der = rcgen::KeyPair::from_pem(ca_key_pem).map_err(|e| SealError::CaKey(e.to_string()))?.serialize_der();
        Self::derived(&zeroize::Zeroizing::new(der), INFO).map_err(SealError::CaKey)
    }

    /// A key derived (HKDF-SHA256) from the secret `ikm` for `purpose`:
    /// one secret, a different key per purpose.
    pub fn derived(ikm: &[u8], purpose: &[u8]) -> Result<Self, String> {
        let mut key = zeroize::Zeroizing::new([0u8; 32]);
        hkdf::Hkdf::<sha2::Sha256>::new(Some(b"orc"), ikm).expand(purpose, key.as_mut()).map_err(|e| e.to_string())?;
        Ok(Self(key))
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(self.0.as_ref().into())
    }

    /// `plain` sealed for `what` (the associated data naming its object).
    pub fn seal(&self, what: &str, plain: &[u8]) -> Result<Vec<u8>, SealError> {
        let nonce: [u8; NONCE] = rand::random();
        let sealed = self
            .cipher()
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: plain, aad: what.as_bytes() })
            .map_err(|_| SealError::Seal { what: what.into() })?;
        let mut out = Vec::with_capacity(1 + NONCE + sealed.len());
        out.push(FORMAT);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// The plaintext `sealed` holds, if it was sealed for `what` with this key.
    pub fn open(&self, what: &str, sealed: &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>, SealError> {
        let (&format, rest) = sealed.split_first().ok_or(SealError::Short { what: what.into(), len: 0 })?;
        if format != FORMAT {
            return Err(SealError::Format { what: what.into(), found: format });
        }
        if rest.len() < NONCE + 16 {
            return Err(SealError::Short { what: what.into(), len: sealed.len() });
        }
        let (nonce, body) = rest.split_at(NONCE);
        self.cipher()
            .decrypt(XNonce::from_slice(nonce), Payload { msg: body, aad: what.as_bytes() })
            .map(zeroize::Zeroizing::new)
            .map_err(|_| SealError::Open { what: what.into() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> DataKey {
        DataKey::from_ca_key(&crate::pki::ca::new_ca("c", "test").unwrap().key_pem).unwrap()
    }

    #[test]
    fn round_trip_and_the_same_ca_key_gives_the_same_data_key() {
        let ca = crate::pki::ca::new_ca("c", "test").unwrap();
        let (a, b) = (DataKey::from_ca_key(&ca.key_pem).unwrap(), DataKey::from_ca_key(&ca.key_pem).unwrap());
        let sealed = a.seal("secret/db/1", b"hunter2").unwrap();
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"), "no plaintext in the sealed value");
        assert_eq!(b.open("secret/db/1", &sealed).unwrap().as_slice(), b"hunter2");
        // A fresh nonce each time.
        assert_ne!(a.seal("secret/db/1", b"hunter2").unwrap(), sealed);
        assert_eq!(a.open("secret/db/1", &a.seal("secret/db/1", b"").unwrap()).unwrap().len(), 0);
    }

    #[test]
    fn a_wrong_key_a_tampered_value_or_another_object_does_not_open() {
        let (k, other) = (key(), key());
        let sealed = k.seal("secret/db/1", b"hunter2").unwrap();
        assert!(matches!(other.open("secret/db/1", &sealed), Err(SealError::Open { .. })));
        assert!(matches!(k.open("secret/db/2", &sealed), Err(SealError::Open { .. })));
        for i in 1..sealed.len() {
            let mut t = sealed.clone();
            t[i] ^= 1;
            assert!(matches!(k.open("secret/db/1", &t), Err(SealError::Open { .. })), "byte {i} flipped");
        }
        let mut t = sealed.clone();
        t[0] = 9;
        assert!(matches!(k.open("secret/db/1", &t), Err(SealError::Format { found: 9, .. })));
        assert!(matches!(k.open("secret/db/1", &sealed[..20]), Err(SealError::Short { .. })));
        assert!(matches!(k.open("secret/db/1", &[]), Err(SealError::Short { .. })));
        let e = other.open("secret/db/1", &sealed).unwrap_err().to_string();
        assert!(e.contains("secret/db/1") && e.contains("data key"), "{e}");
    }
}
