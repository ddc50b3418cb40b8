//! An `orc-agent` process on loopback, with its own state and run
//! directories, killed when dropped.
//!
//! With [`Options::runtime`] the agent runs containers: as root, in a
//! private mount namespace with cgroup2 mounted at /sys/fs/cgroup (the
//! development and CI hosts are cgroup v1 hybrid; our nodes are v2 only).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::paths::debug_bin;

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub runtime: bool,
    pub insecure_registries: Vec<String>,
    /// Another agent binary (e.g. the static release one for benchmarks).
    pub binary: Option<PathBuf>,
    /// More agent arguments (e.g. `--join TOKEN@addr`).
    pub args: Vec<String>,
    /// STATE somewhere else than `<dir>/state` (e.g. a small filesystem).
    pub state_dir: Option<PathBuf>,
    /// A host of its own on the test LAN ([`crate::lan`]): its own network
    /// namespace, as a node has (container networking needs one).
    pub lan: bool,
}

pub struct AgentProcess {
    pub child: Child,
    pub addr: String,
    pub dir: tempfile::TempDir,
    opts: Options,
    /// Its namespace on the test LAN (dropped after the agent).
    pub host: Option<crate::lan::Host>,
}

/// Whether this process may run containers (root).
pub fn can_run_containers() -> bool {
    nix::unistd::Uid::effective().is_root()
}

fn spawn(
    dir: &std::path::Path,
    opts: &Options,
    listen: &str,
    host: Option<&crate::lan::Host>,
) -> anyhow::Result<Child> {
    let bin = opts.binary.clone().unwrap_or_else(|| debug_bin("orc-agent"));
    anyhow::ensure!(bin.exists(), "{} is missing: run `cargo build --bins` first", bin.display());
    let run = dir.join("run");
    let _ = std::fs::remove_file(run.join("api.addr"));
    let mut cmd = if opts.runtime {
        let mut c = match host {
            Some(h) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net={}", h.path())).arg("unshare");
                c
            }
            None => Command::new("unshare"),
        };
        c.args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            // favordynmods as a node mounts it (kernels before 6.0 lack it).
            "{ mount -t cgroup2 -o favordynmods none /sys/fs/cgroup || mount -t cgroup2 none /sys/fs/cgroup; } && exec \"$@\"",
            "agent",
        ]);
        c.arg(&bin);
        c
    } else {
        Command::new(&bin)
    };
    cmd.args(["--listen", listen, "--vsock-port", "0", "--state-dir"])
        .arg(opts.state_dir.clone().unwrap_or_else(|| dir.join("state")))
        .arg("--run-dir")
        .arg(&run);
    for r in &opts.insecure_registries {
        cmd.arg("--insecure-registry").arg(r);
    }
    cmd.args(&opts.args);
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("agent.log"))?;
    Ok(cmd.stdout(Stdio::null()).stderr(log).spawn()?)
}

fn wait_listening(dir: &std::path::Path, child: &mut Child) -> anyhow::Result<String> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if let Ok(addr) = std::fs::read_to_string(dir.join("run/api.addr")) {
            if std::net::TcpStream::connect(&addr).is_ok() {
                return Ok(addr);
            }
        }
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("agent exited with {status}; see {}", dir.join("agent.log").display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    anyhow::bail!("agent did not start listening; see {}", dir.join("agent.log").display())
}

impl AgentProcess {
    /// Starts an agent on 127.0.0.1 with a free port and waits until it listens.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(Options::default())
    }

    pub fn start_with(opts: Options) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let host = if opts.lan {
            anyhow::ensure!(opts.runtime, "a LAN host is for agents that run containers");
            Some(crate::lan::Lan::get()?.host()?)
        } else {
            None
        };
        let listen = host.as_ref().map_or_else(|| "127.0.0.1:0".to_string(), |h| format!("{}:0", h.addr));
        let mut child = spawn(dir.path(), &opts, &listen, host.as_ref())?;
        let addr = wait_listening(dir.path(), &mut child)?;
        Ok(Self { child, addr, dir, opts, host })
    }

    /// Kills the agent (SIGKILL, like a crash) and starts it again on the
    /// same state and run directories and address. Containers and shims
    /// are not touched.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(self.dir.path(), &self.opts, &self.addr.clone(), self.host.as_ref())?;
        self.addr = wait_listening(self.dir.path(), &mut self.child)?;
        Ok(())
    }

    pub fn run_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.opts.state_dir.clone().unwrap_or_else(|| self.dir.path().join("state"))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    pub fn fingerprint(&self) -> anyhow::Result<String> {
        Ok(std::fs::read_to_string(self.run_dir().join("maintenance.fingerprint"))?)
    }

    /// Kills containers and shims this agent started (they outlive it on purpose).
    fn kill_containers(&self) {
        let Ok(entries) = std::fs::read_dir(self.state_dir().join("containers")) else { return };
        for e in entries.flatten() {
            let id = e.file_name().to_string_lossy().to_string();
            // The host's view of the cgroup2 hierarchy the agent mounted.
            let _ = std::fs::write(format!("/sys/fs/cgroup/unified/orc/{id}/cgroup.kill"), "1");
        }
        let needle = self.dir.path().to_string_lossy().to_string();
        if let Ok(procs) = std::fs::read_dir("/proc") {
            for p in procs.flatten() {
                let Ok(pid) = p.file_name().to_string_lossy().parse::<i32>() else { continue };
                let cmdline = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
                let cmdline = String::from_utf8_lossy(&cmdline);
                if cmdline.contains("shim") && cmdline.contains(&needle) {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
                }
            }
        }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- agent log ({}) ---\n{}", self.dir.path().display(), self.log());
            for shim_log in glob_shim_logs(&self.state_dir()) {
                eprintln!("--- {} ---\n{}", shim_log.display(), std::fs::read_to_string(&shim_log).unwrap_or_default());
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.opts.runtime {
            self.kill_containers();
        }
    }
}

fn glob_shim_logs(state: &std::path::Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(state.join("containers")) else { return vec![] };
    entries.flatten().map(|e| e.path().join("shim.log")).filter(|p| p.exists()).collect()
}
