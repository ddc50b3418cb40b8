//! Autolock: a manager's CA key at rest, sealed under a key the operator
//! holds (the unlock key, `ORC-KEY-…`).
//!
//! The CA key signs every certificate and derives the data key that seals
//! secrets ([`super::sealing`]); with autolock on, STATE holds it only
//! sealed (`ca.key.sealed`), so a manager's disk alone opens neither. A
//! restarted manager is locked until someone gives it the unlock key
//! (`orcctl cluster unlock`). Sealing is XChaCha20-Poly1305 under a key
//! derived from the unlock key, bound to the cluster id.

use zeroize::Zeroizing;

use super::sealing::{DataKey, SealError};

/// How an unlock key is written.
pub const PREFIX: &str = "ORC-KEY-";
const LEN: usize = 32;
/// What the sealing key is derived for.
const PURPOSE: &[u8] = b"orc/autolock/ca-key/v1";
/// What the unlock key is sealed as in the cluster settings (under the data key).
pub const SETTINGS_AAD: &str = "cluster/autolock";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AutolockError {
    #[error(
        "not an unlock key: {0} (it looks like ORC-KEY- and 64 hex digits, as `orcctl cluster unlock-key` shows it)"
    )]
    Malformed(&'static str),
    #[error(
        "the unlock key does not open this manager's CA key: it is not the cluster's current unlock key (after a \
         rotation, a manager that was down still takes the key before it), or ca.key.sealed was changed"
    )]
    WrongKey,
    #[error("the opened CA key is not valid text")]
    NotText,
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error("deriving the sealing key: {0}")]
    Derive(String),
}

/// The operator's unlock key (zeroed when dropped; never in a debug line).
#[derive(Clone)]
pub struct UnlockKey(Zeroizing<[u8; LEN]>);

impl std::fmt::Debug for UnlockKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UnlockKey(..)")
    }
}

impl PartialEq for UnlockKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.iter().zip(other.0.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

impl UnlockKey {
    pub fn generate() -> Self {
        Self(Zeroizing::new(rand::random()))
    }

    /// The key from its text (surrounding blanks ignored, hex in any case).
    pub fn parse(text: &str) -> Result<Self, AutolockError> {
        let text = text.trim();
        let hex_part = text.strip_prefix(PREFIX).ok_or(AutolockError::Malformed("it does not start with ORC-KEY-"))?;
        let mut key = Zeroizing::new([0u8; LEN]);
        hex::decode_to_slice(hex_part, key.as_mut())
            .map_err(|_| AutolockError::Malformed("what follows ORC-KEY- is not 64 hex digits"))?;
        Ok(Self(key))
    }

    /// Its bytes, as the data key seals them into the cluster settings.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, AutolockError> {
        let key: [u8; LEN] = bytes.try_into().map_err(|_| AutolockError::Malformed("it is not 32 bytes long"))?;
        Ok(Self(Zeroizing::new(key)))
    }

    pub fn bytes(&self) -> &[u8] {
        self.0.as_ref()
    }

    /// `ORC-KEY-` and 64 hex digits: what the operator keeps.
    pub fn text(&self) -> Zeroizing<String> {
        Zeroizing::new(format!("{PREFIX}{}", hex::encode_upper(self.0.as_ref())))
    }

    fn sealing_key(&self) -> Result<DataKey, AutolockError> {
        DataKey::derived(self.0.as_ref(), PURPOSE).map_err(AutolockError::Derive)
    }
}

fn aad(cluster_id: &str) -> String {
    format!("ca-key/{cluster_id}")
}

/// The CA key `pem` sealed under `key` for the cluster `cluster_id`.
pub fn seal_ca_key(key: &UnlockKey, cluster_id: &str, pem: &str) -> Result<Vec<u8>, AutolockError> {
    Ok(key.sealing_key()?.seal(&aad(cluster_id), pem.as_bytes())?)
}

/// The CA key `sealed` holds, if `key` is the one it was sealed under.
pub fn open_ca_key(key: &UnlockKey, cluster_id: &str, sealed: &[u8]) -> Result<Zeroizing<String>, AutolockError> {
    let plain = key.sealing_key()?.open(&aad(cluster_id), sealed).map_err(|e| match e {
        SealError::Open { .. } => AutolockError::WrongKey,
        other => AutolockError::Seal(other),
    })?;
    String::from_utf8(plain.to_vec()).map(Zeroizing::new).map_err(|_| AutolockError::NotText)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips_and_bad_text_says_what_is_wrong() {
        let k = UnlockKey::generate();
        let t = k.text();
        assert!(t.starts_with(PREFIX) && t.len() == PREFIX.len() + 64, "{}", t.as_str());
        assert_eq!(UnlockKey::parse(&format!("  {}\n", t.as_str())).unwrap(), k);
        assert_eq!(UnlockKey::parse(&t.to_lowercase().replace("orc-key-", PREFIX)).unwrap(), k);
        assert_ne!(UnlockKey::generate(), k);
        for bad in ["", "ORC-KEY-", "SWMKEY-1-abc", &t[..t.len() - 1], &format!("{}zz", &t[..t.len() - 2])] {
            let e = UnlockKey::parse(bad).unwrap_err().to_string();
            assert!(e.contains("not an unlock key") && e.contains("ORC-KEY-"), "{bad:?}: {e}");
        }
        assert!(!format!("{k:?}").contains(&t[PREFIX.len()..PREFIX.len() + 8]));
    }

    #[test]
    fn the_ca_key_opens_only_with_its_unlock_key_and_cluster() {
        let pem = crate::pki::ca::new_ca("c1", "t").unwrap().key_pem;
        let k = UnlockKey::generate();
        let sealed = seal_ca_key(&k, "c1", &pem).unwrap();
        assert!(!String::from_utf8_lossy(&sealed).contains("PRIVATE KEY"));
        assert_eq!(open_ca_key(&k, "c1", &sealed).unwrap().as_str(), pem);
        assert_eq!(open_ca_key(&UnlockKey::generate(), "c1", &sealed).unwrap_err(), AutolockError::WrongKey);
        assert_eq!(open_ca_key(&k, "c2", &sealed).unwrap_err(), AutolockError::WrongKey);
        let mut t = sealed.clone();
        let last = t.len() - 1;
        t[last] ^= 1;
        assert_eq!(open_ca_key(&k, "c1", &t).unwrap_err(), AutolockError::WrongKey);
        assert!(matches!(open_ca_key(&k, "c1", &sealed[..10]), Err(AutolockError::Seal(SealError::Short { .. }))));
    }
}
