//! Volumes in the replicated state: named storage that outlives tasks, and
//! how a service's tasks mount storage.
//!
//! A volume is a cluster object (its name, labels, and for a stateful
//! service's slot, the node that holds it); its data is local to each node
//! that ran a task mounting it, on that node's STATE (as Docker's local
//! driver keeps it), created on first use, or on an NFS server, mounted by
//! each node's kernel NFS client where a task needs it.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// A volume's name: 1-64 letters, digits, '.', '_' or '-', starting with
/// a letter or digit (Docker's rule).
pub fn valid_volume_name(n: &str) -> bool {
    super::payload::valid_payload_name(n)
}

/// A volume, at its name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Volume {
    /// Changes when a volume of the same name is made again: a node's copy
    /// of an older one is not taken for it.
    pub id: String,
    pub name: String,
    /// Its namespace (empty: `default`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub created_ms: i64,
    /// A stateful service's slot volume (`<source>-<service>.<slot>`): the
    /// service id and slot it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<SlotOwner>,
    /// The node holding its data (slot volumes: where the slot ran; the
    /// scheduler prefers it).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    /// Its size limit, bytes (0: none): a project quota on each node's
    /// copy (see `worker::volume_size`).
    #[serde(default, skip_serializing_if = "super::is_default")]
    pub size: u64,
    /// Where its data is when not on the nodes: an NFS export.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nfs: Option<Nfs>,
}

/// A volume on an NFS server: the export every node mounts, and the
/// directory in it that holds this volume's data (a stateful slot's own,
/// in the export of its template volume).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nfs {
    /// The server's address (a node's kernel resolves no names).
    pub server: IpAddr,
    /// The exported path (`/srv/data`; `/` for an NFSv4 pseudo-root).
    pub path: String,
    /// Mount options passed through to the kernel (`soft`, `timeo=50`…),
    /// `vers=4.2` unless a version is given; `addr=` is the server's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
    /// The directory in the export that is this volume (empty: all of it).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub dir: String,
}

/// Why NFS options were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NfsError {
    #[error("volume option {0:?} is not known: give type=nfs, o=addr=IP[,OPTION…] and device=[IP]:/PATH")]
    UnknownOption(String),
    #[error("volume type {0:?}: the only other type than local is nfs (type=nfs)")]
    Type(String),
    #[error("type=nfs needs device=:/PATH (or IP:/PATH), the exported path")]
    NoDevice,
    #[error("device {0:?}: give [IP]:/PATH, the export's absolute path without '..'")]
    Device(String),
    #[error(
        "{0:?} is not an IP address: a node's kernel resolves no names, so give the server's address (addr=10.0.0.5)"
    )]
    Address(String),
    #[error("type=nfs needs the server: o=addr=IP, or device=IP:/PATH")]
    NoServer,
    #[error(
        "mount option {0:?}: options are comma-separated words or KEY=VALUE of letters, digits and '_', '.', '-', ':'"
    )]
    Option(String),
    #[error("options o=… and device=… are for type=nfs: add type=nfs")]
    NotNfs,
}

impl Nfs {
    /// The NFS source Docker's local driver takes (`type=nfs`,
    /// `o=addr=10.0.0.5,soft`, `device=:/srv/data`); None for a local
    /// volume (no options).
    pub fn from_options(opts: &BTreeMap<String, String>) -> Result<Option<Nfs>, NfsError> {
        if let Some(k) = opts.keys().find(|k| !["type", "o", "device"].contains(&k.as_str())) {
            return Err(NfsError::UnknownOption(k.clone()));
        }
        match opts.get("type").map(String::as_str) {
            None | Some("" | "local") if opts.keys().all(|k| k == "type") => return Ok(None),
            None | Some("" | "local") => return Err(NfsError::NotNfs),
            Some("nfs" | "nfs4") => {}
            Some(t) => return Err(NfsError::Type(t.to_string())),
        }
        let device = opts.get("device").filter(|d| !d.is_empty()).ok_or(NfsError::NoDevice)?;
        let (host, path) = device.split_once(':').ok_or_else(|| NfsError::Device(device.clone()))?;
        if !path.starts_with('/') || path.split('/').any(|p| p == "..") || path.contains(',') {
            return Err(NfsError::Device(device.clone()));
        }
        let mut server = None;
        let mut options = Vec::new();
        for o in opts.get("o").map(|o| o.split(',')).into_iter().flatten().map(str::trim).filter(|o| !o.is_empty()) {
            let fine = |c: char| c.is_ascii_alphanumeric() || "_.-:=".contains(c);
            if !o.chars().all(fine) || o.matches('=').count() > 1 {
                return Err(NfsError::Option(o.to_string()));
            }
            match o.split_once('=') {
                Some(("addr", a)) => server = Some(a.parse().map_err(|_| NfsError::Address(a.to_string()))?),
                _ => options.push(o.to_string()),
            }
        }
        if !host.is_empty() {
            server = Some(host.parse().map_err(|_| NfsError::Address(host.to_string()))?);
        }
        let server = server.ok_or(NfsError::NoServer)?;
        Ok(Some(Nfs { server, path: path.to_string(), options, dir: String::new() }))
    }

    /// The mount's source (`10.0.0.5:/srv/data`).
    pub fn source(&self) -> String {
        match self.server {
            IpAddr::V4(a) => format!("{a}:{}", self.path),
            IpAddr::V6(a) => format!("[{a}]:{}", self.path),
        }
    }

    /// The version its options ask for (`vers=`/`nfsvers=`), if any.
    fn version_given(&self) -> Option<&str> {
        self.options.iter().find_map(|o| o.strip_prefix("vers=").or_else(|| o.strip_prefix("nfsvers=")))
    }

    /// The filesystem type to mount: `nfs4` for NFSv4, `nfs` for v2/v3.
    pub fn fs_type(&self) -> &'static str {
        if self.version_given().unwrap_or("4").starts_with('4') {
            "nfs4"
        } else {
            "nfs"
        }
    }

    /// The kernel's mount data: the options, the version, the address.
    pub fn mount_data(&self) -> String {
        let mut o = self.options.clone();
        if self.version_given().is_none() {
            o.push("vers=4.2".into());
        }
        o.push(format!("addr={}", self.server));
        o.join(",")
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotOwner {
    pub service: String,
    pub slot: u64,
}

/// A removed volume, at its id: every node deletes its copy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemovedVolume {
    pub name: String,
    pub removed_ms: i64,
}

/// What a service mount is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountKind {
    /// A volume: named (it must exist), or anonymous (no source: made for
    /// the task, removed with it). On a stateful service, a named one is a
    /// template: each slot gets its own, `<source>-<service>.<slot>`.
    #[default]
    Volume,
    /// A tmpfs of the task's own.
    Tmpfs,
}

impl MountKind {
    pub const ALL: [MountKind; 2] = [Self::Volume, Self::Tmpfs];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Volume => "volume",
            Self::Tmpfs => "tmpfs",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Storage a service's tasks mount.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceMount {
    pub kind: MountKind,
    /// The volume's name; empty: anonymous.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    pub target: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    /// The size limit, bytes (0: none), of an anonymous volume or of each
    /// slot's own volume of a stateful service (a named volume has its own).
    #[serde(default, skip_serializing_if = "super::is_default")]
    pub size: u64,
}

impl ServiceMount {
    /// The volume a task of a service named `service` in slot `slot`
    /// mounts: the source, or for a stateful service the slot's own.
    pub fn volume_for(&self, stateful: bool, service: &str, slot: u64) -> Option<String> {
        if self.kind != MountKind::Volume || self.source.is_empty() {
            return None;
        }
        Some(match stateful {
            true => slot_volume(&self.source, service, slot),
            false => self.source.clone(),
        })
    }
}

/// A stateful service's slot volume: `web.1` with `data` gets `data-web.1`.
pub fn slot_volume(source: &str, service: &str, slot: u64) -> String {
    format!("{source}-{service}.{slot}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nfs_options_as_dockers_local_driver_takes_them() {
        let opts = |kv: &[(&str, &str)]| kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert_eq!(Nfs::from_options(&opts(&[])), Ok(None));
        let n =
            Nfs::from_options(&opts(&[("type", "nfs"), ("o", "addr=10.0.0.5,soft,timeo=50"), ("device", ":/srv/d")]))
                .unwrap()
                .unwrap();
        assert_eq!(n.source(), "10.0.0.5:/srv/d");
        assert_eq!((n.fs_type(), n.mount_data().as_str()), ("nfs4", "soft,timeo=50,vers=4.2,addr=10.0.0.5"));
        let v3 = Nfs::from_options(&opts(&[("type", "nfs"), ("o", "nfsvers=3,nolock"), ("device", "10.0.0.6:/x")]))
            .unwrap()
            .unwrap();
        assert_eq!((v3.fs_type(), v3.mount_data().as_str()), ("nfs", "nfsvers=3,nolock,addr=10.0.0.6"));
        let err = |kv: &[(&str, &str)]| Nfs::from_options(&opts(kv)).unwrap_err();
        assert_eq!(err(&[("type", "nfs"), ("o", "addr=10.0.0.5")]), NfsError::NoDevice);
        assert_eq!(err(&[("type", "nfs"), ("device", ":/x")]), NfsError::NoServer);
        assert!(matches!(err(&[("type", "nfs"), ("device", "nas.local:/x")]), NfsError::Address(_)));
        assert!(matches!(err(&[("type", "nfs"), ("device", "10.0.0.5:x/../y")]), NfsError::Device(_)));
        assert!(matches!(err(&[("type", "nfs"), ("device", ":/x"), ("o", "addr=1.2.3.4,a b")]), NfsError::Option(_)));
        assert!(matches!(err(&[("type", "ceph")]), NfsError::Type(_)));
        assert!(matches!(err(&[("size", "1")]), NfsError::UnknownOption(_)));
        assert_eq!(err(&[("device", ":/x")]), NfsError::NotNfs);
    }

    #[test]
    fn slots_get_volumes_of_their_own() {
        let m = ServiceMount { source: "data".into(), target: "/d".into(), ..Default::default() };
        assert_eq!(m.volume_for(true, "web", 1).as_deref(), Some("data-web.1"));
        assert_eq!(m.volume_for(false, "web", 1).as_deref(), Some("data"));
        let anon = ServiceMount { target: "/d".into(), ..Default::default() };
        assert_eq!(anon.volume_for(true, "web", 1), None);
        let tmp = ServiceMount { kind: MountKind::Tmpfs, target: "/t".into(), ..Default::default() };
        assert_eq!(tmp.volume_for(false, "web", 1), None);
    }
}
