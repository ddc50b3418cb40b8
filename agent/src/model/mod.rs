//! The data model the managers replicate: the objects ([`objects`]), the
//! typed changes to them ([`patch`]) and the database that holds them as
//! the Raft state machine applies commands ([`db`]). Below `raft` (which
//! replicates and stores it) and `cluster` (which decides what to write).
//!
//! # Layout
//! - [`objects`]: nodes, services, tasks, settings, join tokens, people's
//!   and revoked certificates, removed nodes.
//! - [`lifecycle`]: probes, update and rollback policies, update status,
//!   stop policy.
//! - [`autoscale`]: autoscaling bounds and targets, measurements and decisions.
//! - [`events`]: state changes as events, derived as they are applied.
//! - [`network`]: the container address pool, subnet leases, network modes.
//! - [`payload`]: secrets and configs: named files with immutable versions.
//! - [`volume`]: volumes (named, a stateful slot's own) and service mounts.
//! - [`namespace`]: namespaces, the keys of the objects in them, quotas.
//! - [`image_policy`]: the trusted keys images must be signed with.
//! - [`patch`]: `NodePatch`, `TaskPatch`: the fields a change sets.
//! - [`db`]: the state typed and indexed, its commands, its change feed,
//!   and the migration of older JSON stores.

pub mod autoscale;
pub mod db;
pub mod events;
pub mod image_policy;
pub mod lifecycle;
pub mod namespace;
pub mod network;
pub mod objects;
pub mod os;
pub mod patch;
pub mod payload;
pub mod volume;

/// Fields added after the first stores are left out of the encoding while
/// they hold their default (read back by `#[serde(default)]`): every task
/// carries its service's spec, and a few hundred bytes of defaults per
/// task cost the log, replication and snapshots a third more work.
fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}
