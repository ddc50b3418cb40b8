//! What can go wrong agreeing on the log.

use super::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum RaftError {
    /// Raft runs on managers only.
    #[error("this node runs no Raft: it is not a manager (yet)")]
    NotManager,
    /// This manager's Raft stopped on a store failure and is being
    /// restarted ([`super::supervise`]).
    #[error("this manager's Raft is stopped: {0}. It restarts by itself once its store works again (see `orcctl health`); ask another manager meanwhile")]
    Stopped(String),
    /// No majority answered within the wait.
    #[error("{what}: the managers have no quorum right now (a majority must be up; see `orcctl cluster status`)")]
    NoQuorum { what: String },
    /// openraft or the leader could not do it right now (an election, a broken connection).
    #[error("{0}")]
    Unavailable(String),
    /// The leader answered a forwarded call with an error of its own.
    #[error("{message}")]
    Leader { code: tonic::Code, message: String },
    #[error("node id {0:?} is not 16 hex digits")]
    BadNodeId(String),
    #[error(transparent)]
    Store(Box<StoreError>),
    /// A message that does not decode, a configuration openraft refuses.
    #[error("{0}")]
    Internal(String),
}

impl RaftError {
    pub fn no_quorum(what: impl Into<String>) -> Self {
        Self::NoQuorum { what: what.into() }
    }
}

impl From<StoreError> for RaftError {
    fn from(e: StoreError) -> Self {
        Self::Store(Box::new(e))
    }
}
