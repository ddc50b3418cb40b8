//! Secrets and configs in the replicated state: named files with immutable
//! versions, mounted into a service's tasks. A secret's versions are
//! sealed with the cluster's data key ([`crate::pki::sealing`]) before
//! they reach the log; a config's are kept as given.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The largest secret or config (as Docker and Kubernetes cap them).
pub const MAX_PAYLOAD_BYTES: usize = 500 * 1024;
/// The most secrets plus configs one service mounts.
pub const MAX_FILES_PER_SERVICE: usize = 64;
/// Where a secret lands when its reference names no target (relative
/// targets are taken under it).
pub const SECRETS_DIR: &str = "/run/secrets";
/// A file's mode unless its reference says otherwise.
pub const DEFAULT_MODE: u32 = 0o444;

/// A secret's or config's name: 1-64 letters, digits, '.', '_' or '-',
/// starting with a letter or digit (Docker's rule).
pub fn valid_payload_name(n: &str) -> bool {
    (1..=64).contains(&n.len())
        && n.starts_with(|c: char| c.is_ascii_alphanumeric())
        && n.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Which of the two a payload is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadKind {
    /// Encrypted at rest, never shown, delivered only to the nodes that
    /// run a task mounting it.
    #[default]
    Secret,
    /// Shown by `inspect`, delivered the same way.
    Config,
}

impl PayloadKind {
    pub const ALL: [PayloadKind; 2] = [Self::Secret, Self::Config];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Secret => "secret",
            Self::Config => "config",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Its data is sealed at rest.
    pub fn sealed(self) -> bool {
        self == Self::Secret
    }

    /// Where a reference with target `target` mounts it (absolute).
    pub fn target(self, name: &str, target: &str) -> String {
        match (self, target) {
            (_, t) if t.starts_with('/') => t.to_string(),
            (Self::Secret, "") => format!("{SECRETS_DIR}/{name}"),
            (Self::Secret, t) => format!("{SECRETS_DIR}/{t}"),
            // Docker puts a config at `/<name>` without a target.
            (Self::Config, "") => format!("/{name}"),
            (Self::Config, t) => format!("/{t}"),
        }
    }
}

impl std::fmt::Display for PayloadKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One immutable version of a payload.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PayloadVersion {
    /// A secret's: sealed (nonce and ciphertext); a config's: as given.
    /// One byte string in MessagePack (not an array of numbers).
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
    /// The size of the plaintext.
    pub size: u64,
    pub created_ms: i64,
}

/// Never the data in a debug line: a secret's is sealed, but a config's is not.
impl std::fmt::Debug for PayloadVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayloadVersion").field("size", &self.size).field("created_ms", &self.created_ms).finish()
    }
}

/// A secret or a config, at its name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Payload {
    pub id: String,
    pub name: String,
    /// Its namespace (empty: `default`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    pub kind: PayloadKind,
    /// Kept versions by number (from 1); the highest is the latest.
    pub versions: BTreeMap<u64, PayloadVersion>,
    pub labels: BTreeMap<String, String>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

impl Payload {
    /// The latest version's number (0 when there is none).
    pub fn latest(&self) -> u64 {
        self.versions.keys().next_back().copied().unwrap_or(0)
    }
}

/// A service's mount of a secret or config version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    pub name: String,
    /// Set by the managers (the latest at create or update; the new one
    /// when the payload is updated): what makes a rotation a rolling update.
    pub version: u64,
    /// Where in the container; empty: [`PayloadKind::target`]'s default.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub target: String,
    #[serde(default, skip_serializing_if = "super::is_default")]
    pub uid: u32,
    #[serde(default, skip_serializing_if = "super::is_default")]
    pub gid: u32,
    /// Permission bits; 0: [`DEFAULT_MODE`].
    #[serde(default, skip_serializing_if = "super::is_default")]
    pub mode: u32,
}

impl FileRef {
    pub fn mode(&self) -> u32 {
        match self.mode {
            0 => DEFAULT_MODE,
            m => m & 0o7777,
        }
    }
}

/// A version of a secret or config: what a node holds and a task mounts.
pub type FileKey = (PayloadKind, String, u64);

/// A version's plaintext as the leader sends it to a node that runs a
/// task mounting it (in memory there, never on STATE).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Delivered {
    pub kind: PayloadKind,
    /// Its name scoped to its namespace (`team-a/db`; bare in `default`).
    pub name: String,
    pub version: u64,
    pub data: Vec<u8>,
}

impl Delivered {
    pub fn key(&self) -> FileKey {
        (self.kind, self.name.clone(), self.version)
    }
}

/// Never the data in a debug line.
impl std::fmt::Debug for Delivered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} v{} ({} bytes)", self.kind, self.name, self.version, self.data.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_default_like_docker() {
        assert_eq!(PayloadKind::Secret.target("db", ""), "/run/secrets/db");
        assert_eq!(PayloadKind::Secret.target("db", "pw"), "/run/secrets/pw");
        assert_eq!(PayloadKind::Secret.target("db", "/etc/pw"), "/etc/pw");
        assert_eq!(PayloadKind::Config.target("nginx.conf", ""), "/nginx.conf");
        assert_eq!(PayloadKind::Config.target("c", "/etc/nginx/nginx.conf"), "/etc/nginx/nginx.conf");
    }

    #[test]
    fn versions_encode_as_bytes_and_debug_hides_data() {
        let v = PayloadVersion { data: vec![7; 100], size: 100, created_ms: 1 };
        let enc = rmp_serde::to_vec_named(&v).unwrap();
        assert!(enc.len() < 140, "bytes, not an array of numbers: {} bytes", enc.len());
        let back: PayloadVersion = rmp_serde::from_slice(&enc).unwrap();
        assert_eq!(back, v);
        let json: PayloadVersion = serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap();
        assert_eq!(json, v);
        assert!(!format!("{v:?}").contains("7, 7"));
        let d = Delivered { kind: PayloadKind::Secret, name: "db".into(), version: 2, data: b"hunter2".to_vec() };
        assert_eq!(format!("{d:?}"), "secret db v2 (7 bytes)");
    }
}
