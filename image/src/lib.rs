//! The orc OS image format, shared by the build (`cargo xtask image`) and, later,
//! by the agent when it installs an upgrade.
//!
//! # Layout
//! - [`manifest`]: what an image is made of (versions, artifacts and their digests).
//! - [`initramfs`]: a reproducible gzip'd cpio (newc) writer.
//! - [`kconfig`]: a kernel `.config` checked against orc's required options.
//! - [`modules`]: the kernel modules a node loads, in dependency order.
//! - [`rootfs`]: the erofs root filesystem and its dm-verity hash tree.
//! - [`cmdline`]: the `orc.*` kernel command line keys the image and PID 1 share.
//! - [`uki`]: unified kernel images (systemd's EFI stub + kernel, initramfs, command line).
//! - [`boot_entry`]: their names on the ESP and systemd-boot's boot counting.
//! - [`disk`]: the raw GPT disk image (ESP, slots A and B, STATE).
//! - [`bundle`]: the signed upgrade bundle (manifest, ed25519 signature, images).
//! - [`live`]: the live system of the ISO and of PXE (the root inside the initramfs).
//! - [`node_settings`]: the node's own settings on its command line, kept on STATE.
//! - [`state_fs`]: the STATE filesystem: probing a device, formatting from the template.

pub mod boot_entry;
pub mod bundle;
pub mod cmdline;
pub mod disk;
pub mod initramfs;
pub mod kconfig;
pub mod live;
pub mod manifest;
pub mod modules;
pub mod node_settings;
pub mod rootfs;
pub mod state_fs;
pub mod uki;
