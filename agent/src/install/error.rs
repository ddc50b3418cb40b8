//! What can go wrong installing the node to a disk (status codes:
//! `api::status`).

use std::path::PathBuf;

use orc_image::bundle::BundleError;
use orc_image::disk::DiskError;
use orc_image::state_fs::StateFsError;

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("this machine booted with BIOS: the installed disk boots only with UEFI (systemd-boot); switch the firmware to UEFI and boot the ISO again")]
    NotUefi,
    #[error("this node is a member of a cluster: install from maintenance mode (a node booted from the ISO or over PXE, before it joins)")]
    NotMaintenance,
    #[error("an install is already running on this node")]
    Busy,
    #[error("no disk {spec} on this node; its disks: {disks}")]
    NoSuchDisk { spec: String, disks: String },
    #[error("{spec} is a partition of /dev/{disk}: name the whole disk")]
    Partition { spec: String, disk: String },
    #[error("{0} is read-only")]
    ReadOnly(String),
    #[error("{disk} is in use ({why}): it cannot be the install target")]
    InUse { disk: String, why: String },
    #[error("{disk} is too small: orc needs at least {need} MiB")]
    TooSmall { disk: String, need: u64 },
    #[error("{disk} holds {holds}: pass --wipe to erase it and install (everything on it is lost)")]
    NotBlank { disk: String, holds: String },
    #[error("the bundle's root image is {size} bytes, more than a slot's {room}")]
    TooLarge { size: u64, room: u64 },
    #[error("the image trusts no upgrade key ({path}: {source}): it cannot verify what it would install")]
    NoKeys { path: PathBuf, source: std::io::Error },
    #[error("{what} is missing on this node ({path}): the live image is incomplete")]
    Missing { what: &'static str, path: PathBuf },
    #[error("{0}")]
    Bundle(#[from] BundleError),
    #[error("laying out the disk: {0}")]
    Disk(#[from] DiskError),
    #[error("formatting STATE: {0}")]
    StateFs(#[from] StateFsError),
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{what} {path}: {source}")]
    Sys { what: &'static str, path: PathBuf, source: nix::Error },
    #[error("the kernel did not show partition {n} of {disk} after the new table was written")]
    NoPartition { disk: String, n: u32 },
    #[error("the install stream ended early or failed: {0}")]
    Stream(String),
    #[error("{0}")]
    Upgrade(#[from] crate::upgrade::UpgradeError),
}

impl InstallError {
    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { what, path: path.into(), source }
    }
}
