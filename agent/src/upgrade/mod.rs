//! Upgrades of the node's OS, A/B with boot counting: a signed bundle is
//! written into the slot the node did not boot from, with a boot entry
//! that has 3 tries (`orc-<version>+3.efi`); systemd-boot counts the
//! tries down, so a version that never reaches userspace (a kernel panic,
//! PID 1 exiting) falls back by itself; one that boots but is not back in
//! the cluster with its tasks running within its health window is marked
//! bad by the agent, which reboots into the old version. Versions that
//! fell back are recorded on STATE and reported to the managers, so no
//! upgrade applies them again unforced.
//!
//! - [`record`]: what STATE remembers across boots (slots, the pending
//!   upgrade, failures) and what a boot means for a pending upgrade.
//! - [`esp`]: writing the ESP (remounted read-write for the moment).
//! - [`stage`]: a bundle into the inactive slot.
//! - [`pull`]: a bundle published as a container image, pulled by the node.
//! - [`bless`]: proving a new version after its boot, or giving up on it.
//! - [`rollback`]: back to the other slot's version by hand.

pub mod bless;
pub mod error;
pub mod esp;
pub mod pull;
pub mod record;
pub mod rollback;
pub mod stage;

pub use error::UpgradeError;
