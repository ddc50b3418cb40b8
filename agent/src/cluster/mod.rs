//! The cluster: what the managers do with its objects ([`crate::model`]).
//! The replicated log they live in is [`crate::raft`].
//!
//! # Layout
//! - [`objects`]: the objects ([`crate::model`]) and the view of them
//!   readers take, with its lookups (by name, id or prefix).
//! - [`spec`]: checking a service spec.
//! - [`services`], [`nodes`], [`settings`]: what the Cluster API does, as
//!   domain functions returning [`ClusterError`].
//! - [`orchestrator`], [`scheduler`]: services → tasks → nodes, one pure pass.
//! - [`namespaces`]: namespaces (create, list, quota, remove while empty);
//!   [`quota`]: what a namespace's objects claim, and refusing growth past it.
//! - [`volumes`]: volumes (named, a stateful slot's own), their tombstones.
//! - [`payloads`]: secrets and configs (sealed versions, rotation, delivery).
//! - [`networks`]: networks as objects (create, inspect, remove while unused).
//! - [`leases`]: each node's subnet per network, leased by the leader.
//! - [`vips`], [`endpoints`]: services' virtual IPs and tasks in rotation.
//! - [`leader`]: the leader's loop (liveness, reconcile, autoscaling,
//!   quorum membership).
//! - [`autoscale`]: the autoscaler's decision (pure); [`autoscaler`]: its
//!   syncs on the leader; [`usage`]: tasks' measurements, leader memory.
//! - [`dispatcher`]: node sessions and heartbeats on the leader;
//!   [`liveness`]: who was heard of when, who is down.
//! - [`fanout`]: the change feed read once on the leader, waking only the
//!   sessions a change concerns; the deny list derived once per change.
//! - [`token`], [`tokens`]: the join token codec; the cluster's two tokens.
//! - [`join`]: admitting nodes (manager side) and joining (node side).
//! - [`renew`]: certificate renewal, both sides.
//! - [`autolock`]: the unlock key in the settings; managers keeping their
//!   CA key sealed under it.
//! - [`managers`]: the managers a node knows, on STATE.
//! - [`watch`]: the objects, then their changes, for API watchers.
//! - [`events`]: the events a manager keeps, read and followed.
//! - [`error`]: the [`ClusterError`] type.

pub mod autolock;
pub mod autoscale;
pub mod autoscaler;
pub mod certs;
pub mod dispatcher;
pub mod endpoints;
pub mod error;
pub mod events;
pub mod fanout;
pub mod join;
pub mod leader;
pub mod leases;
pub mod liveness;
pub mod managers;
pub mod namespaces;
pub mod networks;
pub mod nodes;
pub mod objects;
pub mod orchestrator;
pub mod payloads;
pub mod published;
pub mod quota;
pub mod renew;
pub mod scheduler;
pub mod services;
pub mod settings;
pub mod spec;
pub mod token;
pub mod tokens;
pub mod usage;
pub mod vips;
pub mod volumes;
pub mod watch;

pub use error::ClusterError;
