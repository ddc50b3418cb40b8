//! The worker side of every node (managers included): a session with the
//! leader that brings the node's tasks down, and an executor that runs
//! them as containers and reports their states back.
//!
//! - [`backoff`]: how long to wait before looking for a session again.
//! - [`reported`]: which task statuses a heartbeat carries.
//! - [`session`]: finding the leader, the session stream, heartbeats.
//! - [`executor`]: tasks ↔ containers.
//! - [`files`]: the secrets and configs the leader sent, in memory, and
//!   each task's tmpfs holding its own.
//! - [`volumes`]: named, slot and anonymous volumes on STATE;
//!   [`volume_size`]: their size limits (project quotas); [`nfs_mount`]:
//!   those on NFS.
//! - [`health`]: a task's probes as a state machine; [`prober`]: running them.
//! - [`usage`]: what running tasks use, for the heartbeat (autoscaling).
//! - [`fence`]: a node cut off from the managers stops its stateful tasks.
//! - [`runtime`]: the executor's view of the container runtime (a trait, faked in tests).

pub mod backoff;
pub mod executor;
pub mod fence;
pub mod files;
pub mod health;
pub mod nfs_mount;
pub mod prober;
pub mod reported;
pub mod runtime;
pub mod session;
pub mod usage;
pub mod volume_size;
pub mod volumes;
