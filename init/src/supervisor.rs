//! The services PID 1 supervises (today: `orc-agent`): start, log capture,
//! restart with exponential backoff, and a status file the agent reads
//! (`/run/orc/services.json`) to answer `orcctl services`.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A service that stayed up this long is healthy again: its backoff resets.
const STABLE_AFTER: Duration = Duration::from_secs(60);
/// Log files rotate to `<name>.log.1` past this size.
const LOG_MAX_BYTES: u64 = 4 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Running,
    Backoff,
    Stopped,
}

#[derive(Debug, Serialize)]
pub struct Service {
    pub name: String,
    #[serde(skip)]
    pub program: PathBuf,
    #[serde(skip)]
    pub args: Vec<String>,
    pub state: State,
    pub pid: Option<i32>,
    pub restarts: u32,
    /// Unix seconds of the last start.
    pub started_at: u64,
    pub last_exit: String,
    #[serde(skip)]
    started: Option<Instant>,
    #[serde(skip)]
    next_start: Option<Instant>,
    #[serde(skip)]
    backoff: Duration,
}

impl Service {
    pub fn new(name: &str, program: &Path, args: &[&str]) -> Self {
        Self {
            name: name.to_string(),
            program: program.to_path_buf(),
            args: args.iter().map(|s| s.to_string()).collect(),
            state: State::Backoff,
            pid: None,
            restarts: 0,
            started_at: 0,
            last_exit: String::new(),
            started: None,
            next_start: Some(Instant::now()),
            backoff: BACKOFF_MIN,
        }
    }
}

/// Next backoff after a service ran for `ran`, given the current one.
pub fn next_backoff(current: Duration, ran: Duration) -> Duration {
    if ran >= STABLE_AFTER {
        BACKOFF_MIN
    } else {
        (current * 2).min(BACKOFF_MAX)
    }
}

pub struct Supervisor {
    pub services: Vec<Service>,
    log_dir: PathBuf,
    status_path: PathBuf,
    stopping: bool,
    console: Option<crate::console::Console>,
}

impl Supervisor {
    pub fn new(services: Vec<Service>, log_dir: &Path, status_path: &Path) -> Self {
        Self {
            services,
            log_dir: log_dir.to_path_buf(),
            status_path: status_path.to_path_buf(),
            stopping: false,
            console: crate::console::Console::open(),
        }
    }

    /// When the next delayed start is due, if any.
    pub fn next_due(&self) -> Option<Instant> {
        self.services.iter().filter_map(|s| s.next_start).min()
    }

    /// Starts every service whose time has come.
    pub fn start_due(&mut self) {
        if self.stopping {
            return;
        }
        let now = Instant::now();
        for i in 0..self.services.len() {
            if self.services[i].next_start.is_some_and(|t| t <= now) {
                self.start(i);
            }
        }
        self.write_status();
    }

    fn start(&mut self, i: usize) {
        let log_dir = self.log_dir.clone();
        let s = &mut self.services[i];
        s.next_start = None;
        let spawned = std::io::pipe().and_then(|(rd, wr)| {
            let child = Command::new(&s.program)
                .args(&s.args)
                .env_clear()
                .env("PATH", "/usr/bin:/usr/sbin:/bin:/sbin")
                .env("ORC_LOG", "info")
                .stdin(std::process::Stdio::null())
                .stdout(wr.try_clone()?)
                .stderr(wr)
                .spawn()?;
            Ok((child, rd))
        });
        match spawned {
            Ok((child, rd)) => {
                let pid = child.id() as i32;
                tracing::info!(service = %s.name, pid, "service started");
                s.pid = Some(pid);
                s.state = State::Running;
                s.started = Some(Instant::now());
                s.started_at = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
                let name = s.name.clone();
                let console = self.console.clone();
                std::thread::spawn(move || pump_log(rd, &log_dir, &name, console));
            }
            Err(e) => {
                tracing::error!(service = %s.name, program = %s.program.display(), error = %e, "cannot start service");
                s.last_exit = format!("cannot start: {e}");
                s.state = State::Backoff;
                s.backoff = next_backoff(s.backoff, Duration::ZERO);
                s.next_start = Some(Instant::now() + s.backoff);
            }
        }
    }

    /// Records the exit of `pid`; returns false when it is not one of ours.
    pub fn on_exit(&mut self, pid: i32, how: &str) -> bool {
        let stopping = self.stopping;
        let Some(s) = self.services.iter_mut().find(|s| s.pid == Some(pid)) else { return false };
        let ran = s.started.map(|t| t.elapsed()).unwrap_or_default();
        s.pid = None;
        s.last_exit = how.to_string();
        if stopping {
            s.state = State::Stopped;
        } else {
            s.restarts += 1;
            s.backoff = next_backoff(s.backoff, ran);
            s.state = State::Backoff;
            s.next_start = Some(Instant::now() + s.backoff);
            tracing::warn!(service = %s.name, pid, exit = how, ran_secs = ran.as_secs(), restart_in_secs = s.backoff.as_secs(), "service exited; restarting");
        }
        self.write_status();
        true
    }

    /// Stops restarting and sends SIGTERM to every running service.
    pub fn stop_all(&mut self) -> Vec<i32> {
        self.stopping = true;
        let mut pids = vec![];
        for s in &mut self.services {
            s.next_start = None;
            if let Some(pid) = s.pid {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
                pids.push(pid);
            } else {
                s.state = State::Stopped;
            }
        }
        self.write_status();
        pids
    }

    pub fn write_status(&self) {
        let Ok(json) = serde_json::to_vec_pretty(&self.services) else { return };
        let tmp = self.status_path.with_extension("tmp");
        if std::fs::write(&tmp, json).and_then(|_| std::fs::rename(&tmp, &self.status_path)).is_err() {
            tracing::warn!(path = %self.status_path.display(), "cannot write service status");
        }
    }
}

fn open_log(path: &Path) -> Option<File> {
    OpenOptions::new().create(true).append(true).open(path).ok()
}

/// Copies a service's output, line by line, to its log file (rotated) and
/// the console (never waiting for it: [`crate::console`]).
fn pump_log(rd: std::io::PipeReader, dir: &Path, name: &str, console: Option<crate::console::Console>) {
    let path = dir.join(format!("{name}.log"));
    let mut file = open_log(&path);
    for line in BufReader::new(rd).lines() {
        let Ok(line) = line else { break };
        if let Some(f) = file.as_mut() {
            let _ = writeln!(f, "{line}");
            if f.metadata().map(|m| m.len() > LOG_MAX_BYTES).unwrap_or(false) {
                let _ = std::fs::rename(&path, path.with_extension("log.1"));
                file = open_log(&path);
            }
        }
        if let Some(c) = &console {
            c.line(format!("{name}: {line}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_resets() {
        let cases = [
            (BACKOFF_MIN, Duration::from_secs(1), Duration::from_secs(2)),
            (Duration::from_secs(16), Duration::ZERO, Duration::from_secs(30)),
            (BACKOFF_MAX, Duration::ZERO, BACKOFF_MAX),
            (BACKOFF_MAX, STABLE_AFTER, BACKOFF_MIN),
        ];
        for (i, (cur, ran, want)) in cases.into_iter().enumerate() {
            assert_eq!(next_backoff(cur, ran), want, "case {i}");
        }
    }

    #[test]
    fn restarts_a_service_that_exits_and_logs_it() {
        let dir = tempfile::tempdir().unwrap();
        let svc = Service::new("echo", Path::new("/bin/sh"), &["-c", "echo hello"]);
        let mut sup = Supervisor::new(vec![svc], dir.path(), &dir.path().join("services.json"));
        sup.start_due();
        let pid = sup.services[0].pid.unwrap();
        let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).unwrap();
        assert!(matches!(status, nix::sys::wait::WaitStatus::Exited(_, 0)));
        assert!(sup.on_exit(pid, "exited 0"));
        assert!(!sup.on_exit(pid, "exited 0"), "a pid is only ours once");
        assert_eq!(sup.services[0].restarts, 1);
        assert_eq!(sup.services[0].state, State::Backoff);
        assert!(sup.next_due().is_some());
        let status: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("services.json")).unwrap()).unwrap();
        assert_eq!(status[0]["name"], "echo");
        assert_eq!(status[0]["restarts"], 1);
        for _ in 0..100 {
            if std::fs::read_to_string(dir.path().join("echo.log")).unwrap_or_default() == "hello\n" {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("log not written");
    }
}
