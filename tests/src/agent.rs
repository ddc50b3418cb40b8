//! An `orc-agent` process on loopback, with its own state and run
//! directories, killed when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::paths::debug_bin;

pub struct AgentProcess {
    pub child: Child,
    pub addr: String,
    pub dir: tempfile::TempDir,
}

impl AgentProcess {
    /// Starts an agent on 127.0.0.1 with a free port and waits until it listens.
    pub fn start() -> anyhow::Result<Self> {
        let bin = debug_bin("orc-agent");
        anyhow::ensure!(bin.exists(), "{} is missing: run `cargo build --bins` first", bin.display());
        let dir = tempfile::tempdir()?;
        let run = dir.path().join("run");
        let child = Command::new(bin)
            .args(["--listen", "127.0.0.1:0", "--vsock-port", "0", "--state-dir"])
            .arg(dir.path().join("state"))
            .arg("--run-dir")
            .arg(&run)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("agent.log"))?)
            .spawn()?;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if let Ok(addr) = std::fs::read_to_string(run.join("api.addr")) {
                if std::net::TcpStream::connect(&addr).is_ok() {
                    return Ok(Self { child, addr, dir });
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        anyhow::bail!("agent did not start listening; see {}", dir.path().join("agent.log").display())
    }

    pub fn run_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    pub fn fingerprint(&self) -> anyhow::Result<String> {
        Ok(std::fs::read_to_string(self.run_dir().join("maintenance.fingerprint"))?)
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
