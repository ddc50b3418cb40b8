//! Containers on this node: records, runtime specs, shims, logs.
//!
//! - [`record`]: what the agent keeps of a container on STATE.
//! - [`spec`]: the OCI runtime spec from the image and the request.
//! - [`seccomp`]: Docker's default seccomp profile.
//! - [`manager`]: the node's containers and their lifecycle.
//! - [`shim_client`]: starting shims and talking to them.
//! - [`logs`]: reading and following container logs.
//!
//! User names to ids: [`crate::shim_contract::user`], shared with the shim.

pub mod logs;
pub mod manager;
pub mod record;
pub mod seccomp;
pub mod shim_client;
pub mod spec;
