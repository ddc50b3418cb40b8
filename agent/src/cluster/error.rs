//! What the cluster's domain functions refuse, and why. The one mapping to
//! gRPC status codes is in `api::status`.

use crate::raft::RaftError;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No object by that name or id.
    #[error("{0}")]
    NotFound(String),
    /// A name already taken.
    #[error("{0}")]
    AlreadyExists(String),
    /// A malformed request or spec; the message names the field.
    #[error("{0}")]
    InvalidArgument(String),
    /// Not now: the object's state forbids it (a last manager, a node still up).
    #[error("{0}")]
    FailedPrecondition(String),
    /// Someone changed the object meanwhile (optimistic concurrency).
    #[error("{0}")]
    Conflict(String),
    /// The caller may not (a removed node, a refused token).
    #[error("{0}")]
    PermissionDenied(String),
    /// Beyond a namespace's quota; the message names the quota, its use and its limit.
    #[error("{0}")]
    QuotaExceeded(String),
    /// A service spec that does not validate.
    #[error(transparent)]
    Spec(#[from] super::spec::SpecError),
    #[error(transparent)]
    Raft(#[from] RaftError),
    #[error(transparent)]
    Agent(#[from] crate::error::AgentError),
    /// Something that should not happen (an undecodable stored object).
    #[error("{0}")]
    Internal(String),
}

impl ClusterError {
    /// A commit refused because `what` changed meanwhile.
    pub fn changed(what: &str, conflict: &str) -> Self {
        Self::Conflict(format!("{what}: changed meanwhile ({conflict}); try again"))
    }
}
