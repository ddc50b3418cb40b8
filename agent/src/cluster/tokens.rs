//! The cluster's two join tokens, kept in the replicated state so every
//! manager admits with the same ones; made on first use, rotated per role.

use super::error::ClusterError;
use super::token::JoinToken;
use crate::model::db::{Command, Key, Kind, Object};
use crate::pki::role::Role;
use crate::raft::RaftHandle;

pub use crate::model::objects::Tokens;

/// Both join tokens, made on first use; with `rotate`, that role's is
/// replaced. Changes go through the Raft log so every manager knows them.
pub async fn tokens(raft: &RaftHandle, ca_der: &[u8], rotate: Option<Role>) -> Result<Tokens, ClusterError> {
    let s = raft.linearizable().await?;
    let (current, version) = {
        let a = s.sm.applied.read().await;
        (a.state.join_tokens.clone(), a.state.version_of(&Key::new(Kind::JoinTokens, "")))
    };
    let mut tokens = current.unwrap_or_else(|| Tokens {
        manager: JoinToken::generate(ca_der).to_string(),
        worker: JoinToken::generate(ca_der).to_string(),
    });
    match rotate {
        Some(Role::Manager) => tokens.manager = JoinToken::generate(ca_der).to_string(),
        Some(_) => tokens.worker = JoinToken::generate(ca_der).to_string(),
        None => {}
    }
    if version == 0 || rotate.is_some() {
        let r = raft.write(Command::put_if("", Object::JoinTokens(tokens.clone()), version)).await?;
        if let Some(conflict) = r.conflict {
            return Err(ClusterError::Conflict(format!("tokens changed meanwhile ({conflict}); try again")));
        }
        tracing::info!(rotate = ?rotate, "join tokens written");
    }
    Ok(tokens)
}

/// The join token for `role` ("manager" or "worker").
pub async fn join_token(raft: &RaftHandle, ca_der: &[u8], role: &str, rotate: bool) -> Result<String, ClusterError> {
    let role = match role.parse() {
        Ok(r @ (Role::Manager | Role::Worker)) => r,
        _ => {
            return Err(ClusterError::InvalidArgument(format!(
                "role {role:?}: a join token is for a manager or a worker"
            )))
        }
    };
    let tokens = tokens(raft, ca_der, rotate.then_some(role)).await?;
    Ok(if role == Role::Manager { tokens.manager } else { tokens.worker })
}
