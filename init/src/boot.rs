//! The boot sequence and PID 1's main loop. Nothing here returns: a fatal
//! error is logged and the machine reboots after a delay (there is no shell
//! to drop into).

use std::path::Path;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};

use crate::cmdline::{self, Cmdline};
use crate::mounts::{self, EARLY, LATE};
use crate::power::{self, Action};
use crate::remembered;
use crate::supervisor::{Service, Supervisor};
use crate::timeline::Timeline;
use crate::{log, modules, net, reaper, root, state};
use orc_image::cmdline::{
    AGENT_PATH, LATE_MODULES_PENDING, LATE_MODULE_LIST_PATH, MODULE_LIST_PATH, STATE_TEMPLATE_PATH, STATE_TEMPLATE_RUN,
};

pub const STATE_DIR: &str = "/var/lib/orc";
const RUN_DIR: &str = "/run/orc";
const FATAL_REBOOT_DELAY: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error(transparent)]
    Mount(#[from] mounts::MountError),
    #[error("kernel command line: {0}")]
    Cmdline(#[from] cmdline::CmdlineError),
    #[error(transparent)]
    Modules(#[from] modules::ModuleError),
    #[error(transparent)]
    Root(#[from] root::RootError),
    #[error("cannot start the event loop: {0}")]
    Runtime(std::io::Error),
}

/// PID 1's entry point.
pub fn main() -> ! {
    log::init();
    let outcome = std::panic::catch_unwind(run);
    match outcome {
        Ok(e) => fatal(&e.to_string()),
        Err(_) => fatal("orc-init panicked"),
    }
}

fn fatal(msg: &str) -> ! {
    tracing::error!(error = msg, delay_secs = FATAL_REBOOT_DELAY.as_secs(), "fatal boot error; rebooting");
    std::thread::sleep(FATAL_REBOOT_DELAY);
    power::final_reboot(Action::Reboot)
}

/// Runs the whole life of the node; returns only the error that stopped it.
fn run() -> BootError {
    let mut timeline = Timeline::start();
    let early = match early(&mut timeline) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return BootError::Runtime(e),
    };
    rt.block_on(main_loop(early, timeline))
}

/// What the early boot leaves for the rest.
struct Early {
    cmd: Cmdline,
    /// Why STATE could not be used, if it could not.
    state_error: Option<String>,
    /// The late kernel modules, opened.
    late_modules: modules::Opened,
}

/// Mounts, the boot modules, the root and STATE.
fn early(timeline: &mut Timeline) -> Result<Early, BootError> {
    mounts::mount_table(Path::new("/"), EARLY)?;
    log::attach_kmsg(Path::new("/dev"));
    timeline.mark("mounts");
    // Userspace writes to /dev/kmsg are rate-limited by default; PID 1's must not be.
    let _ = std::fs::write("/proc/sys/kernel/printk_devkmsg", "on\n");
    let _ = log::attach_file(Path::new("/run/orc/log/init.log"));
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "orc-init starting");
    // Ctrl-Alt-Del sends SIGINT to PID 1 rather than rebooting at once.
    let _ = nix::sys::reboot::set_cad_enabled(false);

    let booted = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let mut cmd = cmdline::parse(&booted)?;
    let release = nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default();
    let modules_dir = Path::new("/lib/modules").join(&release);
    let loaded = modules::load_all(Path::new(MODULE_LIST_PATH), &modules_dir)?;
    tracing::info!(loaded, kernel = %release, "kernel modules loaded");
    // Opened now: the initramfs that holds them goes with the switch.
    let late = modules::open_all(Path::new(LATE_MODULE_LIST_PATH), &modules_dir).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "no late kernel modules");
        Vec::new()
    });
    timeline.mark("modules");

    // Read before the switch: the template lives in the initramfs.
    let template = std::fs::read(STATE_TEMPLATE_PATH).ok();
    root::mount_and_switch(&cmd)?;
    mounts::mount_table(Path::new("/"), LATE)?;
    mounts::favor_dynamic_cgroups();
    timeline.mark("root");
    if let Some(t) = template {
        let _ = std::fs::write(STATE_TEMPLATE_RUN, t);
    }
    // A partition named by its GPT name is there by now: the root's disk
    // was read; a path is taken as given (a blank disk needs no wait).
    let named_state = cmd
        .state
        .as_deref()
        .map(|s| crate::device::wait_for(s, std::time::Duration::from_secs(2)).unwrap_or_else(|| s.into()));
    let named = named_state.as_deref();
    let state_error = match state::mount_state(named, Path::new(STATE_TEMPLATE_RUN), Path::new(STATE_DIR)) {
        Ok(kind) => {
            tracing::info!(?kind, path = STATE_DIR, "STATE mounted");
            if let state::StateKind::Disk { .. } = kind {
                cmd = with_remembered(cmd, &booted);
            }
            None
        }
        Err(e) => {
            // A STATE disk is there but unusable: it may be a former
            // member's. The node stays reachable (tmpfs) so an operator can
            // see why, and the agent refuses to be claimed.
            tracing::error!(error = %e, "STATE unavailable; the node will not be claimable until it is fixed");
            let _ = mounts::mount_fs(
                Path::new("tmpfs"),
                Path::new(STATE_DIR),
                "tmpfs",
                nix::mount::MsFlags::MS_NOSUID,
                Some("mode=0700"),
            );
            Some(e.to_string())
        }
    };
    timeline.mark("state");
    Ok(Early { cmd, state_error, late_modules: late })
}

/// The command line with the node's settings kept on STATE
/// ([`remembered`]); the booted one alone if they cannot be read or parsed.
fn with_remembered(cmd: Cmdline, booted: &str) -> Cmdline {
    let effective = match remembered::apply(Path::new(STATE_DIR), booted) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, file = remembered::FILE, "cannot read the node's kept settings; booting with the command line alone");
            return cmd;
        }
    };
    match cmdline::parse(&effective) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, file = remembered::FILE, "the node's kept settings are malformed; booting with the command line alone");
            cmd
        }
    }
}

fn set_hostname(cmd: &Cmdline, dhcp: Option<String>) {
    let mac_name = net::physical_ifaces(Path::new("/sys/class/net"))
        .first()
        .and_then(|i| net::mac_of(Path::new("/sys/class/net"), i))
        .map(|m| format!("orc-{:02x}{:02x}{:02x}", m[3], m[4], m[5]));
    let name = cmd.hostname.clone().or(dhcp).or(mac_name).unwrap_or_else(|| "orc".to_string());
    match nix::unistd::sethostname(&name) {
        Ok(()) => tracing::info!(hostname = %name, "hostname set"),
        Err(e) => tracing::warn!(hostname = %name, error = %e, "cannot set hostname"),
    }
}

async fn main_loop(early: Early, mut timeline: Timeline) -> BootError {
    let Early { cmd, state_error, late_modules } = early;
    let mut sigchld = match signal(SignalKind::child()) {
        Ok(s) => s,
        Err(e) => return BootError::Runtime(e),
    };
    let (Ok(mut sigterm), Ok(mut sigint), Ok(mut sigusr2)) =
        (signal(SignalKind::terminate()), signal(SignalKind::interrupt()), signal(SignalKind::user_defined2()))
    else {
        return BootError::Runtime(std::io::Error::other("cannot install signal handlers"));
    };

    let dhcp_hostname = match net::configure(&cmd.ips).await {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "network configuration failed");
            None
        }
    };
    set_hostname(&cmd, dhcp_hostname);
    timeline.mark("network");

    let mut agent_args = vec!["--init-pid".to_string(), "1".to_string()];
    for r in &cmd.insecure_registries {
        agent_args.extend(["--insecure-registry".to_string(), r.clone()]);
    }
    if let Some(a) = &cmd.advertise {
        agent_args.extend(["--advertise".to_string(), a.clone()]);
    }
    if let Some(j) = &cmd.join {
        agent_args.extend(["--join".to_string(), j.clone()]);
    }
    if let Some(n) = cmd.max_image_size {
        agent_args.extend(["--max-image-bytes".to_string(), n.to_string()]);
    }
    for s in &cmd.ntp {
        agent_args.extend(["--ntp-server".to_string(), s.clone()]);
    }
    if let Some(d) = &cmd.install {
        agent_args.extend(["--install".to_string(), d.clone()]);
    }
    if let Some(i) = &cmd.install_image {
        agent_args.extend(["--install-image".to_string(), i.clone()]);
    }
    if let Some(t) = &cmd.maintenance_token {
        agent_args.extend(["--maintenance-token".to_string(), t.clone()]);
    }
    if let Some(e) = &state_error {
        agent_args.extend(["--state-error".to_string(), e.clone()]);
    }
    let agent_args: Vec<&str> = agent_args.iter().map(String::as_str).collect();
    let agent = Service::new("agent", Path::new(AGENT_PATH), &agent_args);
    let run = Path::new(RUN_DIR);
    let mut sup = Supervisor::new(vec![agent], &run.join("log"), &run.join("services.json"));
    // Marked pending before the agent can look; loaded while it starts.
    modules::load_late(late_modules, &run.join(LATE_MODULES_PENDING));
    sup.start_due();
    timeline.mark("agent-exec");
    tracing::info!("{}", timeline.summary());

    loop {
        let due = sup.next_due();
        let sleep = async {
            match due {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        let action = tokio::select! {
            _ = sigchld.recv() => {
                for (pid, how) in reaper::reap_all() {
                    if !sup.on_exit(pid, &how) {
                        tracing::debug!(pid, exit = %how, "reaped orphan");
                    }
                }
                None
            }
            _ = sleep => { sup.start_due(); None }
            _ = sigterm.recv() => Some(Action::Reboot),
            _ = sigint.recv() => Some(Action::Reboot),
            _ = sigusr2.recv() => Some(Action::Poweroff),
        };
        if let Some(action) = action {
            power::shutdown(&mut sup, action, Path::new(STATE_DIR));
        }
    }
}
