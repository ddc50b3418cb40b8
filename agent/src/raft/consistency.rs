//! Consistency on any manager: writes go to the leader (forwarded over
//! `orc.raft.v1.Propose` when this manager is not it), and reads that decide
//! something are linearizable (the leader confirms its leadership and names
//! a read index; this manager answers once it applied that far).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{CheckIsLeaderError, RaftError as OpenRaftError};
use orc_proto::raft::raft_client::RaftClient;
use orc_proto::raft::Payload;
use tonic::transport::Channel;

use super::handle::{RaftHandle, Started};
use super::types::NodeId;
use super::RaftError;
use crate::model::db::{Command, CommandResult};

/// How long a write or read waits for a quorum before giving up.
pub(super) const QUORUM_WAIT: Duration = Duration::from_secs(10);

/// The leader answered a forwarded call with an error.
fn leader_said(s: tonic::Status) -> RaftError {
    RaftError::Leader { code: s.code(), message: s.message().to_string() }
}

/// The connection to the leader that forwarded writes and read indexes
/// reuse: one TLS handshake per leader, not one per call. A call that fails
/// over it drops it; a new leader gets a new one.
#[derive(Clone, Default)]
pub struct LeaderLink(Arc<Mutex<Option<Link>>>);

/// The leader's address and a client over one connection to it.
type Link = (String, RaftClient<Channel>);

impl LeaderLink {
    fn to(&self, addr: &str) -> Option<RaftClient<Channel>> {
        crate::sync::lock(&self.0).as_ref().filter(|(a, _)| a == addr).map(|(_, c)| c.clone())
    }

    fn keep(&self, addr: &str, client: &RaftClient<Channel>) {
        *crate::sync::lock(&self.0) = Some((addr.to_string(), client.clone()));
    }

    fn forget(&self) {
        *crate::sync::lock(&self.0) = None;
    }
}

/// A forwarded call failed: the link goes (it may be what broke).
fn forgotten(s: &Started, e: tonic::Status) -> RaftError {
    s.leader_link.forget();
    leader_said(e)
}

/// What a leadership confirmation answers: the log id to read at.
pub type Confirmed =
    Result<Option<openraft::LogId<NodeId>>, OpenRaftError<NodeId, CheckIsLeaderError<NodeId, openraft::BasicNode>>>;

/// What `Propose` answers: the result, or (not the leader) where the leader is.
pub type Proposed = Result<CommandResult, Option<String>>;

/// On the leader: commits `cmd` (with the writes that arrive with it,
/// [`super::group`]) and returns what applying it did.
pub async fn write_here(s: &Started, cmd: Command) -> Result<Proposed, RaftError> {
    s.writes.write(cmd).await
}

/// On the leader: confirms leadership, returns the index to read at.
/// A follower slow to answer (a rebooting peer, a loaded VM) is retried
/// until `QUORUM_WAIT` is spent.
pub async fn read_index_here(s: &Started) -> Result<Result<u64, Option<String>>, RaftError> {
    let deadline = tokio::time::Instant::now() + QUORUM_WAIT;
    loop {
        let round = s.reads.confirm(|| s.raft.ensure_linearizable());
        match tokio::time::timeout_at(deadline, round).await {
            Err(_) => return Err(RaftError::no_quorum("reading")),
            Ok(Ok(log_id)) => return Ok(Ok(log_id.map(|l| l.index).unwrap_or(0))),
            Ok(Err(OpenRaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)))) => {
                return Ok(Err(f.leader_node.map(|n| n.addr)))
            }
            Ok(Err(OpenRaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q)))) => {
                if tokio::time::Instant::now() + Duration::from_millis(250) >= deadline {
                    return Err(RaftError::no_quorum(format!("reading ({} manager(s) answered)", q.got.len())));
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Ok(Err(e)) => return Err(RaftError::Unavailable(format!("reading: {e}"))),
        }
    }
}

impl RaftHandle {
    async fn leader_client(&self, s: &Started, addr: Option<String>) -> Result<RaftClient<Channel>, RaftError> {
        let addr = match addr {
            Some(a) => a,
            None => {
                // An election is going on: wait for it.
                let leader: Option<NodeId> = tokio::time::timeout(
                    QUORUM_WAIT,
                    s.raft.wait(None).metrics(|m| m.current_leader.is_some(), "a leader"),
                )
                .await
                .ok()
                .and_then(|r| r.ok())
                .and_then(|m| m.current_leader);
                let leader = leader.ok_or_else(|| RaftError::no_quorum("finding the leader"))?;
                let m = s.raft.metrics().borrow().clone();
                let node = m.membership_config.membership().get_node(&leader).cloned();
                node.map(|n| n.addr).ok_or_else(|| RaftError::no_quorum("finding the leader"))?
            }
        };
        if let Some(c) = s.leader_link.to(&addr) {
            return Ok(c);
        }
        let channel = crate::pki::channel::channel(&addr, s.tls.current())
            .await
            .map_err(|e| RaftError::Unavailable(format!("reaching the leader at {addr}: {e}")))?;
        let c = RaftClient::new(channel).max_decoding_message_size(64 << 20);
        s.leader_link.keep(&addr, &c);
        Ok(c)
    }

    /// Commits `cmd` through the leader, wherever it is.
    pub async fn write(&self, cmd: Command) -> Result<CommandResult, RaftError> {
        let s = self.get()?;
        let mut leader = match write_here(&s, cmd.clone()).await? {
            Ok(r) => return Ok(r),
            Err(addr) => addr,
        };
        // The leader may change under us: a few hops at most.
        for _ in 0..3 {
            let mut c = self.leader_client(&s, leader.take()).await?;
            let data = super::codec::encode(&cmd).map_err(|e| RaftError::Internal(e.to_string()))?;
            let reply = c.propose(Payload { data }).await.map_err(|e| forgotten(&s, e))?.into_inner();
            let out: Proposed = super::codec::decode(&reply.data)
                .map_err(|e| RaftError::Internal(format!("the leader's answer: {e}")))?;
            match out {
                Ok(r) => return Ok(r),
                Err(addr) => leader = addr,
            }
        }
        Err(RaftError::no_quorum("writing (the leader keeps changing)"))
    }

    /// This manager's state, once it is at least as fresh as the leader's
    /// was when the call started.
    pub async fn linearizable(&self) -> Result<Started, RaftError> {
        let s = self.get()?;
        let mut leader = match read_index_here(&s).await? {
            Ok(_) => return Ok(s),
            Err(addr) => addr,
        };
        for _ in 0..3 {
            let mut c = self.leader_client(&s, leader.take()).await?;
            let reply =
                c.read_index(Payload { data: b"null".to_vec() }).await.map_err(|e| forgotten(&s, e))?.into_inner();
            let out: Result<u64, Option<String>> = super::codec::decode(&reply.data)
                .map_err(|e| RaftError::Internal(format!("the leader's answer: {e}")))?;
            match out {
                Ok(index) => {
                    s.raft
                        .wait(Some(QUORUM_WAIT))
                        .applied_index_at_least(Some(index), "the read index")
                        .await
                        .map_err(|e| RaftError::Unavailable(format!("catching up with the leader: {e}")))?;
                    return Ok(s);
                }
                Err(addr) => leader = addr,
            }
        }
        Err(RaftError::no_quorum("reading (the leader keeps changing)"))
    }
}
