//! The agent's errors and the one place they become gRPC statuses.

use tonic::Status;

use crate::api::tls::TlsError;
use crate::pki::PkiError;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("the node is already part of a cluster")]
    AlreadyMember,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("i/o: {0}")]
    Io(String),
    #[error("pki: {0}")]
    Pki(#[from] PkiError),
    #[error("tls: {0}")]
    Tls(#[from] TlsError),
}

impl From<AgentError> for Status {
    fn from(e: AgentError) -> Status {
        let msg = e.to_string();
        match e {
            AgentError::AlreadyMember => Status::already_exists(msg),
            AgentError::NotFound(_) => Status::not_found(msg),
            AgentError::InvalidArgument(_) => Status::invalid_argument(msg),
            AgentError::FailedPrecondition(_) => Status::failed_precondition(msg),
            AgentError::Io(_) | AgentError::Pki(_) | AgentError::Tls(_) => {
                tracing::error!(error = %msg, "internal error");
                Status::internal(msg)
            }
        }
    }
}
