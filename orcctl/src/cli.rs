//! The command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(name = "orcctl", version, about = "Manage orc nodes and clusters")]
pub struct Cli {
    /// Config file (default: $ORCCONFIG, then ~/.config/orc/config.toml).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Context to use instead of the current one.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Nodes to talk to (host[:port], comma-separated); default: the context's first endpoint.
    #[arg(long, short = 'n', global = true, value_delimiter = ',')]
    pub nodes: Vec<String>,
    /// Output format.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create and manage clusters.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Manage orcctl's config file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Build and identity of nodes.
    Version,
    /// Live health checks of nodes.
    Health,
    /// Kernel log of nodes.
    Dmesg {
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// Logs of orc-init and the services it supervises.
    Logs {
        /// init, agent, ...
        #[arg(default_value = "init")]
        service: String,
        #[arg(long, short = 'f')]
        follow: bool,
        /// Only the last N lines.
        #[arg(long, default_value_t = 0)]
        tail: u32,
    },
    /// What PID 1 supervises on nodes.
    Services,
    /// Reboot nodes.
    Reboot,
    /// Power nodes off.
    Shutdown,
}

#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Bootstrap a new cluster on a node in maintenance mode.
    Init {
        /// host[:port] of the node.
        addr: String,
        /// The fingerprint the node prints on its console (sha256:...).
        #[arg(long, conflicts_with = "insecure")]
        fingerprint: Option<String>,
        /// Trust whatever certificate the node presents (only on a network you trust).
        #[arg(long)]
        insecure: bool,
        /// Name of the context to write (default: the cluster name).
        #[arg(long = "context-name")]
        context_name: Option<String>,
        #[arg(long, default_value = "orc")]
        cluster_name: String,
        #[arg(long, default_value = "admin")]
        admin_name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// List contexts.
    Contexts,
    /// Make a context the current one.
    UseContext { name: String },
}
