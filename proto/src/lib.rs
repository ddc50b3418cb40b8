//! orc's gRPC API.
//!
//! # Layout
//! - [`machine`]: `orc.machine.v1`, the per-node Machine service.
//! - [`container`]: `orc.container.v1`, images and containers on one node.
//! - [`shim`]: `orc.shim.v1`, between the agent and one container's shim.
//! - [`raft`]: `orc.raft.v1`, openraft's RPCs between managers.
//! - [`cluster`]: `orc.cluster.v1`, the cluster API on managers.
//! - [`dispatcher`]: `orc.dispatcher.v1`, nodes' sessions with the leader.
#![allow(clippy::all)]

/// The packages nested as in the .proto files, so cross-package references
/// in the generated code resolve.
pub mod orc {
    pub mod machine {
        pub mod v1 {
            tonic::include_proto!("orc.machine.v1");
        }
    }
    pub mod container {
        pub mod v1 {
            tonic::include_proto!("orc.container.v1");
        }
    }
    pub mod shim {
        pub mod v1 {
            tonic::include_proto!("orc.shim.v1");
        }
    }
    pub mod cluster {
        pub mod v1 {
            tonic::include_proto!("orc.cluster.v1");
        }
    }
    pub mod dispatcher {
        pub mod v1 {
            tonic::include_proto!("orc.dispatcher.v1");
        }
    }
    pub mod raft {
        pub mod v1 {
            tonic::include_proto!("orc.raft.v1");
        }
    }
}

pub use orc::cluster::v1 as cluster;
pub use orc::container::v1 as container;
pub use orc::dispatcher::v1 as dispatcher;
pub use orc::machine::v1 as machine;
pub use orc::raft::v1 as raft;
pub use orc::shim::v1 as shim;

/// The request header naming the namespace a Cluster API call works in
/// (absent: `default`). One header rather than a field in every request:
/// the authorization layer checks a person's namespaces against it before
/// any handler runs.
pub const NAMESPACE_HEADER: &str = "orc-namespace";

/// How the message of a task the scheduler could place on no node begins
/// (`orcctl upgrade --all` does not wait for such a task to move).
pub const NO_SUITABLE_NODE: &str = "no suitable node";

/// The namespace of calls without [`NAMESPACE_HEADER`]: always there,
/// never removed.
pub const DEFAULT_NAMESPACE: &str = "default";
