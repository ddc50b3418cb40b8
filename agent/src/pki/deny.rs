//! The deny list every node checks on every call: revoked certificates (by
//! serial), removed nodes (by node id: every certificate they ever had) and
//! nodes that are no longer managers (their manager certificate opens no
//! manager-only call while it lives). Managers derive it from the Raft
//! state as it is applied; workers receive it in their dispatcher session.
//! Checked per call, so an open HTTP/2 connection loses its powers with the
//! next call after the list changes, not when it reconnects.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::role::{PeerIdentity, Role};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DenyList {
    /// Serials (lowercase hex) of revoked certificates.
    pub serials: BTreeSet<String>,
    /// Ids of nodes removed from the cluster.
    pub removed_nodes: BTreeSet<String>,
    /// Ids of nodes whose Node object says worker (demoted managers among them).
    pub workers: BTreeSet<String>,
}

/// Why a caller is refused outright.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Its certificate was revoked (the credential is no good).
    Revoked(String),
    /// It is a node removed from the cluster (known, and not allowed).
    Removed(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Revoked(m) | Refusal::Removed(m) => f.write_str(m),
        }
    }
}

impl DenyList {
    /// Why `who` is refused outright, if it is.
    pub fn refused(&self, who: &PeerIdentity) -> Option<Refusal> {
        if self.serials.contains(&who.serial) {
            return Some(Refusal::Revoked(format!(
                "the certificate of {} {:?} (serial {}) has been revoked: get a new one from an admin",
                who.role, who.name, who.serial
            )));
        }
        if !who.role.is_person() && self.removed_nodes.contains(&who.name) {
            return Some(Refusal::Removed(format!("node {:?} has been removed from the cluster", who.name)));
        }
        None
    }

    /// Whether `who` may act as a manager: its certificate says so and its
    /// Node object has not been demoted since.
    pub fn is_manager(&self, who: &PeerIdentity) -> bool {
        who.role == Role::Manager && !self.workers.contains(&who.name) && self.refused(who).is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoked_removed_and_demoted() {
        let who = |name: &str, role, serial: &str| PeerIdentity {
            name: name.into(),
            role,
            serial: serial.into(),
            ..Default::default()
        };
        let mut d = DenyList::default();
        let m = who("m1", Role::Manager, "01");
        assert!(d.refused(&m).is_none() && d.is_manager(&m));
        d.workers.insert("m1".into());
        assert!(d.refused(&m).is_none() && !d.is_manager(&m), "demoted: a node, not a manager");
        d.removed_nodes.insert("m1".into());
        assert!(matches!(d.refused(&m), Some(Refusal::Removed(m)) if m.contains("removed")));
        // A person named like a removed node is not that node.
        assert!(d.refused(&who("m1", Role::Admin, "02")).is_none());
        d.serials.insert("02".into());
        assert!(d.refused(&who("alice", Role::Admin, "02")).unwrap().to_string().contains("revoked"));
    }
}
