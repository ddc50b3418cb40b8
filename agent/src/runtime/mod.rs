//! Containers on this node: records, runtime specs, shims, logs.
//!
//! - [`record`]: what the agent keeps of a container on STATE.
//! - [`spec`]: the OCI runtime spec from the image and the request.
//! - [`seccomp`]: Docker's default seccomp profile.
//! - [`user`]: user names to ids from the image's files.
//! - [`manager`]: the node's containers and their lifecycle.
//! - [`shim_client`]: starting shims and talking to them.
//! - [`logs`]: reading and following container logs.

pub mod logs;
pub mod manager;
pub mod record;
pub mod seccomp;
pub mod shim_client;
pub mod spec;
pub mod user;
