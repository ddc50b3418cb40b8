//! The agent's errors (their status codes: `api::status`).

use crate::pki::tls::TlsError;
use crate::pki::PkiError;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("the node is already part of a cluster")]
    AlreadyMember,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    FailedPrecondition(String),
    /// The caller may not (a wrong maintenance token).
    #[error("{0}")]
    PermissionDenied(String),
    #[error("i/o: {0}")]
    Io(String),
    /// Something that should not happen, said as it is.
    #[error("{0}")]
    Internal(String),
    /// Something the node depends on (a registry, a shim) cannot be reached.
    #[error("{0}")]
    Unavailable(String),
    /// Disk full and the like.
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("pki: {0}")]
    Pki(#[from] PkiError),
    #[error("tls: {0}")]
    Tls(#[from] TlsError),
}

impl AgentError {
    /// An I/O error on `path`; a full disk becomes `ResourceExhausted` with
    /// the fix in the message.
    pub fn io(path: impl AsRef<std::path::Path>, e: std::io::Error) -> Self {
        let path = path.as_ref().display();
        if e.raw_os_error() == Some(libc::ENOSPC) || e.raw_os_error() == Some(libc::EDQUOT) {
            AgentError::ResourceExhausted(format!(
                "{path}: no space left on the node's STATE disk: remove unused images and containers \
                 (`orcctl image rm`, `orcctl container rm`) or give the node a bigger disk"
            ))
        } else {
            AgentError::Io(format!("{path}: {e}"))
        }
    }
}
