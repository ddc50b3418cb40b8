//! orcctl: the orc command-line client, as a library so tests and the xtask
//! drive the same code.
//!
//! # Layout
//! - [`cli`]: the command line (clap).
//! - [`config`]: the config file and its contexts.
//! - [`connect`]: TLS channels to nodes (cluster mTLS, pinned fingerprint).
//! - [`cmd`]: the commands, one file per noun (machine, container, image,
//!   service, node, cluster, config).
//! - [`fanout`]: one call on many nodes, results in order, failures last.
//! - [`parse`]: sizes, durations, ports, `KEY=VALUE`; [`service_file`]: YAML service files;
//!   [`lifecycle`]: probes, update and rollback policies from flags and files.
//! - [`terminal`]: raw mode and window size for `exec -it`.
//! - [`output`]: tables and JSON.
//! - [`error`]: errors that say what to do.

pub mod cli;
pub mod cmd;
pub mod config;
pub mod connect;
pub mod error;
pub mod fanout;
pub mod lifecycle;
pub mod output;
pub mod parse;
pub mod service_file;
pub mod terminal;
