//! orc-init, PID 1 of an orc node.
//!
//! # Layout
//! - [`boot`]: the boot sequence and the main loop (signals, reaping, supervision).
//! - [`cmdline`]: the `orc.*` kernel command line keys.
//! - [`mounts`]: the mount tables and the one helper that walks them.
//! - [`modules`]: kernel module loading (`finit_module`), in the order the build computed.
//! - [`verity`]: dm-verity over the root device through device-mapper ioctls.
//! - [`device`]: block devices named by path or GPT partition name.
//! - [`loopdev`]: the live image's root file as a read-only loop device.
//! - [`root`]: mounting the read-only root and switching to it.
//! - [`state`]: the STATE filesystem (find, format when blank and named, grow, mount).
//! - [`remembered`]: the node's own settings from its first boot, kept on STATE.
//! - [`net`]: loopback, static addresses, the DHCP client.
//! - [`supervisor`]: the agent's life: start, logs, backoff, status.
//! - [`console`]: service output to the console, never waiting for it.
//! - [`reaper`]: zombie reaping.
//! - [`power`]: orderly reboot and poweroff.
//! - [`log`]: PID 1's log to /dev/kmsg and /run/orc/log/init.log.
//!
//! Signals: SIGTERM and SIGINT (Ctrl-Alt-Del) reboot, SIGUSR2 powers off.

pub mod boot;
pub mod cmdline;
pub mod console;
pub mod device;
pub mod log;
pub mod loopdev;
pub mod modules;
pub mod mounts;
pub mod net;
pub mod power;
pub mod reaper;
pub mod remembered;
pub mod root;
pub mod state;
pub mod supervisor;
pub mod timeline;
pub mod verity;
