//! Fixtures for orc's process-level and VM end-to-end tests, shared with
//! `cargo xtask qemu`.
//!
//! # Layout
//! - [`paths`]: where the workspace, its binaries and the built image are.
//! - [`agent`]: an `orc-agent` process on loopback with its own state.
//! - [`qemu`]: a QEMU node booting the image (KVM when it works, TCG otherwise).
//! - [`hub`]: the user-space L2 frame hub joining QEMU nodes without root.
//! - [`oci`]: a busybox-based test image (OCI layout or registry push).
//! - [`registry`]: Debian's docker-registry on loopback.

pub mod agent;
pub mod hub;
pub mod oci;
pub mod paths;
pub mod qemu;
pub mod registry;
