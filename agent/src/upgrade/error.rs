//! What can go wrong upgrading the node (status codes: `api::status`).

use std::path::PathBuf;

use orc_image::bundle::BundleError;

#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error("this node did not boot from the disk image (no A/B slots): install it to a disk first, or boot the new version's kernel")]
    NotFromDisk,
    #[error("{0}")]
    Bundle(#[from] BundleError),
    #[error("version {version} failed on this node before ({reason}): pass --force to try it again")]
    FailedBefore { version: String, reason: String },
    #[error("version {version} failed on another node of the cluster (orcctl upgrade status shows where and why): pass --force to try it here")]
    FailedElsewhere { version: String },
    #[error("an upgrade to {version} is being tried on this node: wait until it is blessed or falls back, or `orcctl rollback`")]
    InProgress { version: String },
    #[error("the bundle's root is {size} bytes but slot {slot} ({device}) holds {capacity}: this disk was laid out for smaller images; reinstall the node")]
    TooLarge { size: u64, slot: &'static str, device: PathBuf, capacity: u64 },
    #[error("no partition named {0}: this disk was not laid out by orc")]
    NoPartition(&'static str),
    #[error("the ESP: {0}")]
    Esp(#[from] crate::node::boot_slots::BootSlotsError),
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{what} {path}: {source}")]
    Mount { what: &'static str, path: PathBuf, source: nix::Error },
    #[error("the image trusts no upgrade key ({path}: {source}): it cannot take upgrades")]
    NoKeys { path: PathBuf, source: std::io::Error },
    #[error("the OS record {path} is damaged ({source}): move it away to start afresh (the slots' versions and failed upgrades are forgotten)")]
    Record { path: PathBuf, source: serde_json::Error },
    #[error("there is no other version to go back to: the other slot has no good boot entry")]
    NothingToRollBackTo,
    #[error("the other slot holds {version}, written by an upgrade and booted at the next reboot: there is nothing older to roll back to")]
    WrittenNotBooted { version: String },
    #[error("no boot entry on the ESP boots slot {0}: the ESP was changed by hand")]
    NoEntry(&'static str),
    #[error("the upgrade stream ended early or failed: {0}")]
    Stream(String),
    /// An image that holds no usable bundle (`upgrade --image`).
    #[error("{0}")]
    Image(String),
    #[error("{0}")]
    Agent(#[from] crate::error::AgentError),
}

impl UpgradeError {
    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { what, path: path.into(), source }
    }
}
