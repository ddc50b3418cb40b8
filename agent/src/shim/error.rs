//! What the shim refuses or fails at (its status codes: `api::status`).

use crate::error::AgentError;

#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    /// A malformed exec request; the message says what to pass.
    #[error("{0}")]
    InvalidArgument(String),
    /// The process could not be started in the container.
    #[error("{0}")]
    FailedPrecondition(String),
    /// Pipes, sockets, files the shim needs.
    #[error("{0}")]
    Internal(String),
    /// User resolution and the like, shared with the agent.
    #[error(transparent)]
    Agent(#[from] AgentError),
}
