//! The cluster: the managers' Raft quorum and the state it holds.
//!
//! - [`types`]: openraft's type configuration for orc.
//! - [`command`]: what the Raft log carries and the state machine applies.
//! - [`store`]: the durable Raft log and state machine on redb (STATE).
//! - [`token`]: join tokens (`ORC1-<CA digest>-<secret>`).
//! - [`scheduler`]: filters and spread for placing tasks, with reasons.
//! - [`rpc`], [`network`]: openraft's RPCs as `orc.raft.v1` over mutual TLS.
//! - [`handle`]: this manager's Raft, started at agent start or `cluster init`.
//! - [`join`]: admitting nodes (token, CSR) and joining (CA pinned to the token).
//!
//! Built so far: the storage layer, checked with openraft's own storage test
//! suite. The network (internal gRPC over mTLS), joining, the dispatcher and
//! the scheduler build on it.

pub mod command;
pub mod consistency;
pub mod dispatcher;
pub mod handle;
pub mod join;
pub mod leader;
pub mod network;
pub mod objects;
pub mod orchestrator;
pub mod renew;
pub mod rpc;
pub mod scheduler;
pub mod spec;
pub mod store;
pub mod token;
pub mod types;

#[cfg(test)]
mod tests;
