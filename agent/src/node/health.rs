//! `Health`: live checks, each saying what is wrong when it fails.

use std::path::Path;

use orc_proto::machine::{ClockStatus, HealthCheck, HealthResponse};

use super::services::do_services;
use crate::state::NodeState;

const TMPFS_MAGIC: i64 = 0x0102_1994;

fn check(name: &str, ok: bool, message: impl Into<String>) -> HealthCheck {
    HealthCheck { name: name.into(), ok, message: message.into() }
}

/// The root filesystem must refuse writes (it is the verified OS image).
fn root_readonly(root: &Path) -> HealthCheck {
    let probe = root.join(".orc-write-probe");
    match std::fs::write(&probe, b"x") {
        Err(e) if e.raw_os_error() == Some(libc::EROFS) => {
            check("root-readonly", true, "writes to / fail: read-only file system")
        }
        Err(e) => check("root-readonly", false, format!("unexpected error writing to /: {e}")),
        Ok(()) => {
            let _ = std::fs::remove_file(&probe);
            check("root-readonly", false, "/ is writable")
        }
    }
}

fn state_dir(dir: &Path) -> HealthCheck {
    let probe = dir.join(".health-probe");
    if let Err(e) = std::fs::write(&probe, b"ok").and_then(|_| std::fs::remove_file(&probe)) {
        return check("state", false, format!("{} is not writable: {e}", dir.display()));
    }
    match nix::sys::statfs::statfs(dir) {
        Ok(s) if s.filesystem_type().0 == TMPFS_MAGIC => {
            check("state", true, format!("{} is tmpfs: nothing persists across reboots", dir.display()))
        }
        Ok(_) => check("state", true, format!("{} is persistent", dir.display())),
        Err(e) => check("state", false, format!("statfs {}: {e}", dir.display())),
    }
}

pub fn do_health(state: &NodeState) -> HealthResponse {
    let mut checks = vec![state_dir(&state.config.state_dir)];
    if state.config.init_pid.is_some() {
        checks.push(root_readonly(Path::new("/")));
        for s in do_services(state).into_iter().filter(|s| s.name != "init") {
            let ok = s.state == "running";
            let msg = if ok {
                format!("running, {} restarts", s.restarts)
            } else {
                format!("{} (last exit: {})", s.state, s.last_exit)
            };
            checks.push(check(&format!("service/{}", s.name), ok, msg));
        }
    }
    let (maintenance, _) = state.mode();
    checks.push(match &state.identity_error {
        Some(e) => check("identity", false, e.clone()),
        None => check(
            "identity",
            true,
            if maintenance { "maintenance mode: no cluster yet" } else { "member of a cluster" },
        ),
    });
    if state.locked() {
        checks.push(check(
            "autolock",
            false,
            "locked: the CA key is sealed; run `orcctl cluster unlock` against this manager",
        ));
    } else if state.identity().is_some_and(|id| id.meta.role == crate::pki::role::Role::Manager) {
        let (ok, msg) = state.raft.health();
        checks.push(check("raft", ok, msg));
    }
    let (ok, msg) = state.time.health();
    checks.push(check("clock", ok, msg));
    let (ok, msg) = crate::sync::read(&state.network).clone();
    checks.push(check("network", ok, msg));
    HealthResponse {
        healthy: checks.iter().all(|c| c.ok),
        uptime_seconds: state.started.elapsed().as_secs(),
        checks,
        clock: Some(clock(&state.time)),
    }
}

/// The clock as the SNTP client last saw it.
fn clock(time: &crate::timesync::TimeSync) -> ClockStatus {
    let s = time.status();
    let (synchronized, _) = crate::timesync::health_of(&s, time.disciplines, crate::clock::unix_ms());
    let last = s.last.as_ref();
    ClockStatus {
        synchronized: synchronized && last.is_some(),
        offset_seconds: last.map(|l| l.offset).unwrap_or_default(),
        server: last.map(|l| l.server.clone()).unwrap_or_default(),
        last_sync_unix_ms: last.map(|l| l.at_ms).unwrap_or_default(),
        disciplined: time.disciplines,
        servers: s.servers,
    }
}
