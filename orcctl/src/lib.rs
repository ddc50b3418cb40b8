//! orcctl: the orc command-line client, as a library so tests and the xtask
//! drive the same code.
//!
//! # Layout
//! - [`cli`]: the command line (clap).
//! - [`config`]: the config file and its contexts.
//! - [`connect`]: TLS channels to nodes (cluster mTLS, pinned fingerprint).
//! - [`commands`]: one function per command.
//! - [`fanout`]: one call on many nodes, results in order, failures last.
//! - [`runtime`]: `image …` and `container …` commands.
//! - [`services`]: `service …` and cluster-wide `node …` commands; [`service_file`]: YAML service files.
//! - [`terminal`]: raw mode and window size for `exec -it`.
//! - [`output`]: tables and JSON.
//! - [`error`]: errors that say what to do.

pub mod cli;
pub mod commands;
pub mod config;
pub mod connect;
pub mod error;
pub mod fanout;
pub mod output;
pub mod runtime;
pub mod service_file;
pub mod services;
pub mod terminal;
