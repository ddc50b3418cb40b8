//! Group commit on the leader: writes that arrive while one is being
//! committed wait together and go into the next Raft entry as one
//! [`Command::Group`] — one append, one fsync on each manager, one apply —
//! and each caller gets its own command's result. A write alone goes as it
//! is; nobody waits for company.

use openraft::error::{ClientWriteError, RaftError as OpenRaftError};
use openraft::Raft;
use tokio::sync::{mpsc, oneshot};

use super::consistency::Proposed;
use super::types::TypeConfig;
use super::RaftError;
use crate::model::db::Command;

/// Commands in one group at most (the entry stays small enough to
/// replicate quickly; the rest go in the next).
const MAX_GROUP: usize = 256;

type Reply = oneshot::Sender<Result<Proposed, RaftError>>;

/// The queue of writes to the leader's Raft.
#[derive(Clone)]
pub struct Committer(mpsc::Sender<(Command, Reply)>);

impl Committer {
    /// Starts the committing task for `raft` (it ends with the last sender).
    pub fn start(raft: Raft<TypeConfig>) -> Self {
        let (tx, rx) = mpsc::channel(4 * MAX_GROUP);
        tokio::spawn(run(raft, rx));
        Self(tx)
    }

    /// Commits `cmd`, with whatever else is waiting.
    pub async fn write(&self, cmd: Command) -> Result<Proposed, RaftError> {
        let (tx, rx) = oneshot::channel();
        self.0.send((cmd, tx)).await.map_err(|_| RaftError::Unavailable("the Raft is stopping".into()))?;
        rx.await.map_err(|_| RaftError::Unavailable("the Raft stopped while writing".into()))?
    }
}

async fn run(raft: Raft<TypeConfig>, mut rx: mpsc::Receiver<(Command, Reply)>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
        let (cmds, replies): (Vec<Command>, Vec<Reply>) = batch.into_iter().unzip();
        let grouped = cmds.len() > 1;
        let cmd =
            if grouped { Command::Group(cmds) } else { cmds.into_iter().next().unwrap_or(Command::Group(vec![])) };
        let out = commit(&raft, cmd).await;
        let n = replies.len();
        match out {
            Ok(Ok(r)) if grouped => {
                let mut each = r.each.into_iter();
                for reply in replies {
                    let mine =
                        each.next().ok_or_else(|| RaftError::Internal(format!("a group of {n} got fewer results")));
                    let _ = reply.send(mine.map(Ok));
                }
            }
            Ok(other) => {
                for reply in replies {
                    let _ = reply.send(Ok(other.clone()));
                }
            }
            Err(e) => {
                // Every caller hears the same failure.
                for reply in replies {
                    let _ = reply.send(Err(same(&e)));
                }
            }
        }
    }
}

async fn commit(raft: &Raft<TypeConfig>, cmd: Command) -> Result<Proposed, RaftError> {
    match tokio::time::timeout(super::consistency::QUORUM_WAIT, raft.client_write(cmd)).await {
        Err(_) => Err(RaftError::no_quorum("writing")),
        Ok(Ok(r)) => Ok(Ok(r.data)),
        Ok(Err(OpenRaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
            Ok(Err(f.leader_node.map(|n| n.addr)))
        }
        Ok(Err(e)) => Err(RaftError::Unavailable(format!("writing: {e}"))),
    }
}

/// The failure `e`, once more (for each caller of a failed group).
fn same(e: &RaftError) -> RaftError {
    match e {
        RaftError::NoQuorum { what } => RaftError::NoQuorum { what: what.clone() },
        RaftError::Unavailable(m) => RaftError::Unavailable(m.clone()),
        other => RaftError::Unavailable(other.to_string()),
    }
}
