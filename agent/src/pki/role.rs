//! Roles, and the identity a verified peer certificate describes.

use std::fmt;
use std::str::FromStr;

use x509_parser::prelude::*;

use super::PkiError;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read anything, change nothing.
    Reader,
    /// Day-2 operations: reboot, deploy, scale; no PKI or cluster membership.
    Operator,
    /// Everything.
    Admin,
    /// A worker node (the least a node is).
    #[default]
    Worker,
    /// A manager node.
    Manager,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Operator => "operator",
            Role::Admin => "admin",
            Role::Worker => "worker",
            Role::Manager => "manager",
        }
    }

    /// The node role a manager names (`manager`; anything else is a worker).
    pub fn of_node(s: &str) -> Self {
        if s == Role::Manager.as_str() {
            Role::Manager
        } else {
            Role::Worker
        }
    }

    /// Roles held by people and tools (not nodes).
    pub fn is_person(self) -> bool {
        matches!(self, Role::Reader | Role::Operator | Role::Admin)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = PkiError;
    fn from_str(s: &str) -> Result<Self, PkiError> {
        Ok(match s {
            "reader" => Role::Reader,
            "operator" => Role::Operator,
            "admin" => Role::Admin,
            "worker" => Role::Worker,
            "manager" => Role::Manager,
            other => return Err(PkiError::BadRole(other.to_string())),
        })
    }
}

/// Who is on the other end of a verified connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerIdentity {
    pub name: String,
    pub cluster_id: String,
    pub role: Role,
    /// The certificate's serial number, lowercase hex (what revocation names).
    pub serial: String,
    /// When the certificate expires (Unix seconds).
    pub not_after: i64,
    /// A person limited to these namespaces (empty: the whole cluster).
    pub namespaces: Vec<String>,
}

/// Reads name, cluster and role from a certificate (already verified by TLS).
pub fn identity_of(der: &[u8]) -> Result<PeerIdentity, PkiError> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| PkiError::Malformed { path: "peer certificate".into(), msg: e.to_string() })?;
    let subject = cert.subject();
    let first = |it: &mut dyn Iterator<Item = &AttributeTypeAndValue>| {
        it.next().and_then(|a| a.as_str().ok()).map(str::to_string)
    };
    let name = first(&mut subject.iter_common_name()).unwrap_or_default();
    let cluster_id = first(&mut subject.iter_organization()).unwrap_or_default();
    let ou = first(&mut subject.iter_organizational_unit()).unwrap_or_default();
    let sans = cert.subject_alternative_name().ok().flatten();
    let namespaces = sans
        .iter()
        .flat_map(|s| s.value.general_names.iter())
        .filter_map(|g| match g {
            GeneralName::URI(u) => u.strip_prefix(super::ca::NAMESPACE_URI).map(str::to_string),
            _ => None,
        })
        .collect();
    Ok(PeerIdentity {
        name,
        cluster_id,
        role: ou.parse()?,
        serial: hex::encode(cert.raw_serial()),
        not_after: cert.validity().not_after.timestamp(),
        namespaces,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_joiners_pin_names_the_managers_role() {
        assert_eq!(Role::Manager.as_str(), orc_tls::pin::MANAGER_OU);
    }
}
