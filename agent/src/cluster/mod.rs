//! The cluster: its objects and what the managers do with them. The
//! replicated log they live in is [`crate::raft`].
//!
//! # Layout
//! - [`objects`]: nodes, services, tasks, settings; table names; the view
//!   and its lookups (by name, id or prefix).
//! - [`patch`]: typed changes to existing objects (merge patches).
//! - [`spec`]: checking a service spec.
//! - [`services`], [`nodes`], [`settings`]: what the Cluster API does, as
//!   domain functions returning [`ClusterError`].
//! - [`orchestrator`], [`scheduler`]: services → tasks → nodes, one pure pass.
//! - [`leader`]: the leader's loop (liveness, reconcile, quorum membership).
//! - [`dispatcher`]: node sessions and heartbeats on the leader.
//! - [`token`], [`tokens`]: the join token codec; the cluster's two tokens.
//! - [`join`]: admitting nodes (manager side) and joining (node side).
//! - [`renew`]: certificate renewal, both sides.
//! - [`managers`]: the managers a node knows, on STATE.
//! - [`error`]: the [`ClusterError`] type.

pub mod certs;
pub mod dispatcher;
pub mod error;
pub mod join;
pub mod leader;
pub mod managers;
pub mod nodes;
pub mod objects;
pub mod orchestrator;
pub mod patch;
pub mod renew;
pub mod scheduler;
pub mod services;
pub mod settings;
pub mod spec;
pub mod token;
pub mod tokens;

pub use error::ClusterError;
