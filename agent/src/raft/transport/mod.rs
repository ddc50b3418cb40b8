//! openraft's network as `orc.raft.v1` over mutual TLS between managers:
//! [`client`] (openraft's `RaftNetwork`, one per peer) and [`server`] (the
//! gRPC service, including `Propose` and `ReadIndex` for followers).
//! Messages are serde-encoded openraft requests in protobuf `bytes`.

pub mod client;
pub mod server;
