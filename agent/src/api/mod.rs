//! The agent's gRPC API.
//!
//! # Layout
//! - [`server`]: listeners (TCP, vsock), TLS handshakes, serving; `run(listeners, shutdown)`.
//! - [`tls`]: the rustls server configurations (maintenance, cluster).
//! - [`peer`]: the connection type that carries who the client is.
//! - [`authz`]: the one authorization table and the tower layer enforcing it.
//! - [`machine`]: `orc.machine.v1.Machine` handlers (trace, call `do_*`).
//! - [`images`], [`containers`]: `orc.container.v1`, on [`crate::runtime`].
//! - [`cluster`]: `orc.cluster.v1.Cluster` (and `orc.raft.v1` from [`crate::cluster::rpc`]).
//! - [`services`], [`nodes`]: `orc.cluster.v1.Services` and `Nodes` on any manager.
//! - [`error`]: the one error → gRPC status mapping.

pub mod authz;
pub mod cluster;
pub mod containers;
pub mod images;
pub mod machine;
pub mod nodes;
pub mod peer;
pub mod server;
pub mod services;
pub mod tls;
