//! The agent's settings. On a node they are the defaults; tests and
//! development runs point them at temporary directories and loopback ports.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Unpacked bytes one image may take unless `--max-image-bytes` says
/// otherwise: 32 GiB (the largest images people run, ML runtimes, are 10-20).
pub const DEFAULT_MAX_IMAGE_BYTES: u64 = 32 << 30;

/// The one API port, on TCP and vsock.
pub const API_PORT: u16 = 7443;

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address of the API on TCP.
    #[arg(long, default_value = "0.0.0.0:7443")]
    pub listen: SocketAddr,
    /// vsock port of the API (0 turns vsock off). Skipped when the kernel has no vsock.
    #[arg(long, default_value_t = API_PORT as u32)]
    pub vsock_port: u32,
    /// Persistent state (identity, and later images, Raft, volumes).
    #[arg(long, default_value = "/var/lib/orc")]
    pub state_dir: PathBuf,
    /// Runtime directory shared with orc-init (logs, service status).
    #[arg(long, default_value = "/run/orc")]
    pub run_dir: PathBuf,
    /// PID of orc-init, which reboots (SIGTERM) and powers off (SIGUSR2) the
    /// machine. Without it the agent cannot reboot its host.
    #[arg(long)]
    pub init_pid: Option<i32>,
    /// Registries reached over plain HTTP (`host:port`), repeatable. On a
    /// node: the kernel argument `orc.insecure_registries=a:5000,b:5000`.
    #[arg(long = "insecure-registry", value_delimiter = ',')]
    pub insecure_registries: Vec<String>,
    /// The address other managers reach this node's API at (ip:port);
    /// default: the first non-loopback IPv4 address and the API port. On a
    /// node: `orc.advertise=`.
    #[arg(long)]
    pub advertise: Option<String>,
    /// Join a cluster at start while in maintenance mode: `TOKEN@manager:port`
    /// (retried until it works). On a node: `orc.join=`.
    #[arg(long)]
    pub join: Option<String>,
    /// The most bytes one image may unpack to on this node (each layer
    /// counted by its files' logical sizes). On a node: `orc.max_image_size=`.
    #[arg(long, default_value_t = DEFAULT_MAX_IMAGE_BYTES)]
    pub max_image_bytes: u64,
    /// What whoever bootstraps or joins this node by hand must present. On
    /// a node: `orc.maintenance_token=`.
    #[arg(long)]
    pub maintenance_token: Option<String>,
    /// NTP servers (`host[:port]`), repeatable; without them the agent
    /// asks those DHCP offered (`<run-dir>/ntp-servers`, written by
    /// orc-init). On a node: `orc.ntp=a,b`.
    #[arg(long = "ntp-server", value_delimiter = ',')]
    pub ntp_servers: Vec<String>,
    /// Install to this disk at start while in maintenance mode (a blank
    /// one only), from the bundle in `--install-image`, and reboot into it;
    /// `--join` then happens from the disk. On a node: `orc.install=`.
    #[arg(long, requires = "install_image")]
    pub install: Option<String>,
    /// The image holding the bundle `--install` installs. On a node:
    /// `orc.install_image=`.
    #[arg(long)]
    pub install_image: Option<String>,
    /// Why STATE could not be used (set by orc-init): the node then serves
    /// `health` and cannot be claimed.
    #[arg(long)]
    pub state_error: Option<String>,
}
