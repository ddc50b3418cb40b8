//! The agent's gRPC API.
//!
//! # Layout
//! - [`server`]: listeners (TCP, vsock), TLS handshakes, serving; `run(listeners, shutdown)`.
//! - [`peer`]: the connection type that carries who the client is (identity: [`crate::pki::peer`]).
//! - [`authz`]: the one authorization table and the tower layer enforcing it;
//!   [`audit`]: which calls it records in the node's audit log, and how they ended.
//! - [`machine`]: `orc.machine.v1.Machine` handlers (trace, call `do_*`).
//! - [`images`], [`containers`]: `orc.container.v1`, on [`crate::runtime`].
//! - [`cluster`], [`services`], [`nodes`], [`networks`]: `orc.cluster.v1` on any manager,
//!   each handler calling a domain function of [`crate::cluster`].
//! - [`namespaces`]: `orc.cluster.v1.Namespaces`, and the namespace a call works in (its header).
//! - [`volumes`]: `orc.cluster.v1.Volumes`, named storage.
//! - [`payloads`]: `orc.cluster.v1.Secrets` and `Configs`, one service for both.
//! - [`watch`]: `orc.cluster.v1.Watch`, streaming [`crate::cluster::watch`].
//! - [`convert`]: cluster objects ↔ `orc.cluster.v1` messages
//!   (`convert_lifecycle`: probes, update policies, update status).
//! - [`status`]: the one error → gRPC status mapping.
//!
//! - [`dispatcher`]: `orc.dispatcher.v1`, node sessions and heartbeats on the leader.
//!
//! The Raft peer service `orc.raft.v1` lives with Raft, in [`crate::raft::transport`].

pub mod audit;
pub mod authz;
pub mod cluster;
pub mod containers;
pub mod convert;
mod convert_lifecycle;
pub mod dispatcher;
pub mod images;
pub mod machine;
pub mod namespaces;
pub mod networks;
pub mod nodes;
pub mod payloads;
pub mod peer;
pub mod server;
pub mod services;
pub mod status;
pub mod volumes;
pub mod watch;
