//! What the Machine API reads from and does to the node, one file per concern.
//!
//! # Layout
//! - [`bootstrap`]: creating the cluster on this node.
//! - [`version`], [`health`], [`services`]: what the node is and how it is.
//! - [`boot_slots`]: the root slot this boot came from and the versions on the ESP.
//! - [`dmesg`]: the kernel ring buffer (`/dev/kmsg`), with follow.
//! - [`logs`]: the logs orc-init keeps under `/run/orc/log`, with follow.
//! - [`power`]: asking orc-init to reboot or power off.
//! - [`timeline`]: the agent's stages of the boot, in the kernel log.
//! - [`audit`]: the calls people made that changed something, on STATE.

pub mod audit;
pub mod boot_slots;
pub mod bootstrap;
pub mod dmesg;
pub mod health;
pub mod logs;
pub mod power;
pub mod services;
pub mod timeline;
pub mod version;
