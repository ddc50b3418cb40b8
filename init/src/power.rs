//! Orderly shutdown: stop services, then every process, sync, unmount STATE,
//! and reboot(2). Never returns.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::mount::{umount2, MntFlags};
use nix::sys::reboot::{reboot, RebootMode};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::reaper;
use crate::supervisor::Supervisor;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Reboot,
    Poweroff,
}

const SERVICE_GRACE: Duration = Duration::from_secs(10);
const PROCESS_GRACE: Duration = Duration::from_secs(3);

fn wait_until(deadline: Instant, mut done: impl FnMut() -> bool) {
    while Instant::now() < deadline && !done() {
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn shutdown(sup: &mut Supervisor, action: Action, state_mount: &Path) -> ! {
    tracing::info!(?action, "shutting down: stopping services");
    let pids = sup.stop_all();
    wait_until(Instant::now() + SERVICE_GRACE, || {
        for (pid, how) in reaper::reap_all() {
            sup.on_exit(pid, &how);
        }
        pids.iter().all(|p| kill(Pid::from_raw(*p), None).is_err())
    });
    tracing::info!("stopping every other process");
    let _ = kill(Pid::from_raw(-1), Signal::SIGTERM);
    wait_until(Instant::now() + PROCESS_GRACE, || {
        reaper::reap_all();
        // ESRCH: no process left to signal.
        kill(Pid::from_raw(-1), None).is_err()
    });
    let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
    reaper::reap_all();
    nix::unistd::sync();
    if let Err(e) = umount2(state_mount, MntFlags::empty()) {
        tracing::warn!(error = %e, "cannot unmount STATE cleanly; detaching it");
        let _ = umount2(state_mount, MntFlags::MNT_DETACH);
    }
    nix::unistd::sync();
    tracing::info!(?action, "bye");
    final_reboot(action)
}

/// The last call: reboot(2), and if even that fails, wait forever (PID 1 must not exit).
pub fn final_reboot(action: Action) -> ! {
    let mode = match action {
        Action::Reboot => RebootMode::RB_AUTOBOOT,
        Action::Poweroff => RebootMode::RB_POWER_OFF,
    };
    let Err(e) = reboot(mode);
    tracing::error!(error = %e, "reboot(2) failed");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
