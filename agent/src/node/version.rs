//! `Version`: build and identity of the node.

use orc_image::boot_entry::{Counter, ENTRY_DIR};
use orc_proto::machine::{BootEntry, FailedUpgrade, UpgradeStatus, VersionResponse};

use super::boot_slots::{Slot, SlotEntry};
use crate::pki;
use crate::pki::tls;
use crate::state::NodeState;

/// `booted`: the slot this boot came from ([`super::boot_slots::booted`]).
/// Blocks: with a slot, the first call mounts the ESP to read its entries.
pub fn do_version(state: &NodeState, booted: Option<Slot>) -> VersionResponse {
    let uts = nix::sys::utsname::uname().ok();
    let field = |f: fn(&nix::sys::utsname::UtsName) -> &std::ffi::OsStr| {
        uts.as_ref().map(|u| f(u).to_string_lossy().into_owned()).unwrap_or_default()
    };
    let mut v = VersionResponse {
        version: env!("CARGO_PKG_VERSION").to_string(),
        git_revision: option_env!("ORC_GIT_REVISION").unwrap_or("unknown").to_string(),
        kernel: field(|u| u.release()),
        arch: field(|u| u.machine()),
        hostname: field(|u| u.nodename()),
        maintenance: true,
        ..Default::default()
    };
    if let Some(booted) = booted {
        v.boot_slot = booted.as_str().into();
        match super::boot_slots::read(&state.config.run_dir) {
            Ok(mut e) => {
                e.sort_by(|a, b| orc_image::boot_entry::compare_versions(&b.entry.version, &a.entry.version));
                v.boot_entries = e.iter().map(entry_to_proto).collect();
            }
            Err(e) => v.boot_error = e.to_string(),
        }
    }
    {
        let os = crate::sync::read(&state.os);
        v.os_version = os.version.clone();
        v.upgrade = os.upgrade.as_ref().map(|u| UpgradeStatus {
            version: u.version.clone(),
            slot: u.slot.clone(),
            stage: u.stage.as_str().into(),
            message: u.message.clone(),
            health_window_secs: u.health_window_secs,
        });
        v.failed_upgrades = os
            .failed
            .iter()
            .map(|f| FailedUpgrade { version: f.version.clone(), reason: f.reason.clone(), at_ms: f.at_ms })
            .collect();
    }
    v.boot_id = boot_id();
    if let Some(id) = state.identity() {
        v.maintenance = false;
        v.node_id = id.meta.node_id;
        v.cluster_id = id.meta.cluster_id;
        v.role = id.meta.role.to_string();
        v.ca_fingerprint = tls::certs(&id.ca_cert_pem, "cluster CA")
            .ok()
            .and_then(|c| c.first().map(|c| pki::fingerprint(c)))
            .unwrap_or_default();
    }
    v
}

/// This boot's id (the kernel's; changes with every boot).
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").map(|s| s.trim().to_string()).unwrap_or_default()
}

fn entry_to_proto(e: &SlotEntry) -> BootEntry {
    let state = if e.entry.bad() {
        "bad"
    } else if e.entry.trying() {
        "trying"
    } else {
        "blessed"
    };
    let c = e.entry.counter.unwrap_or(Counter { left: 0, done: 0 });
    BootEntry {
        version: e.entry.version.clone(),
        slot: e.slot.map(|s| s.as_str().to_string()).unwrap_or_default(),
        state: state.into(),
        tries_left: c.left,
        tries_done: c.done,
        file: format!("{ENTRY_DIR}/{}", e.entry.file_name()),
    }
}
