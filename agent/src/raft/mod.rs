//! The managers' replicated log and state machine (openraft).
//!
//! Everything here is about agreeing on a sequence of commands
//! ([`crate::model::db::Command`]) and keeping them; what they do to the
//! cluster's state is [`crate::model::db`].
//!
//! # Layout
//! - [`types`]: openraft's type configuration for orc.
//! - [`codec`]: how entries, snapshots and RPCs are written (a version byte,
//!   then MessagePack; JSON of older stores still read).
//! - [`store`]: the durable log and state machine on redb (STATE).
//! - [`transport`]: openraft's RPCs as `orc.raft.v1` over mutual TLS (client
//!   and server), plus `Propose`/`ReadIndex` for followers.
//! - [`handle`]: this manager's Raft once started; status; recovery.
//! - [`lifecycle`]: start at agent start or `cluster init`, stop on demotion.
//! - [`supervise`]: a Raft stopped by a store failure (a full disk) is
//!   reported in `health` and restarted once the store works again.
//! - [`consistency`]: writes forwarded to the leader, linearizable reads;
//!   [`reads`]: the leader's read confirmations shared by concurrent readers.
//! - [`group`]: group commit: concurrent writes in one entry, each answered.
//! - [`error`]: the [`RaftError`] type.

pub mod codec;
pub mod consistency;
pub mod error;
pub mod group;
pub mod handle;
pub mod lifecycle;
pub mod reads;
pub mod store;
pub mod supervise;
pub mod transport;
pub mod types;

#[cfg(test)]
mod tests;

pub use error::RaftError;
pub use handle::{raft_id, RaftHandle, Started};
