//! Docker's daemon as a benchmark peer (Debian's docker.io): one `dockerd`
//! with its own data, exec root and socket under a work directory,
//! optionally in a network namespace, in its own process group so that a
//! kill takes its containerd and containers with it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

pub fn run_cmd(cmd: &mut Command) -> anyhow::Result<String> {
    let o = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !o.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&o.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&o.stdout).to_string())
}

/// Detaches every mount below `dir` (dockerd's overlays and shm of an earlier run).
pub fn unmount_under(dir: &Path) {
    let prefix = dir.display().to_string();
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut points: Vec<&str> =
        mounts.lines().filter_map(|l| l.split_whitespace().nth(1)).filter(|m| m.starts_with(&prefix)).collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// SIGKILLs every process whose command line mentions `needle`.
pub fn kill_matching(needle: &str) {
    let Ok(procs) = std::fs::read_dir("/proc") else { return };
    for p in procs.flatten() {
        let Ok(pid) = p.file_name().to_string_lossy().parse::<i32>() else { continue };
        let cmdline = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(needle) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

pub struct Dockerd {
    dir: PathBuf,
    child: Option<Child>,
}

impl Dockerd {
    /// Starts dockerd with everything under `dir`, in network namespace
    /// `netns` (with `hostname` in its own UTS namespace) or in this one;
    /// returns once it answers.
    pub fn start(dir: &Path, netns: Option<&str>, hostname: &str) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("dockerd.log"))?;
        // nsenter, not `ip netns exec`: that remounts /sys and hides the
        // cgroup mounts. Each its own hostname (Swarm shows node names).
        let mut cmd = Command::new("nsenter");
        if let Some(ns) = netns {
            cmd.arg(format!("--net=/run/netns/{ns}"));
        }
        cmd.args(["unshare", "--uts", "sh", "-c", "hostname \"$0\" && exec \"$@\"", hostname, "dockerd"])
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", dir.join("docker.sock").display()))
            .args(["--iptables=false", "--ip-forward=false", "--bridge=none", "--storage-driver=overlay2"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().context("starting dockerd (cargo xtask installs docker.io)")?;
        let d = Dockerd { dir: dir.to_path_buf(), child: Some(child) };
        let start = Instant::now();
        while d.docker(&["info", "--format", "{{.ServerVersion}}"]).is_err() {
            if start.elapsed() > Duration::from_secs(60) {
                bail!("dockerd did not start; see {}", dir.join("dockerd.log").display());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(d)
    }

    /// `docker` with `args` against this daemon.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("docker");
        c.arg("-H").arg(format!("unix://{}", self.dir.join("docker.sock").display())).args(args);
        c
    }

    pub fn docker(&self, args: &[&str]) -> anyhow::Result<String> {
        run_cmd(&mut self.command(args))
    }

    /// Kills the daemon and everything it started (its containers too).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ =
                nix::sys::signal::killpg(nix::unistd::Pid::from_raw(c.id() as i32), nix::sys::signal::Signal::SIGKILL);
            let _ = c.wait();
        }
        kill_matching(&self.dir.display().to_string());
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        self.kill();
    }
}
