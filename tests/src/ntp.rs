//! A real NTP server on loopback: Debian's chronyd (unpacked by
//! `cargo xtask test` under `target/orc/cache/chrony`), serving its own
//! clock, optionally shifted with faketime to play a server whose time
//! differs from ours. Killed when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct NtpServer {
    pub port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

/// chronyd, when `cargo xtask test` unpacked it.
pub fn chronyd() -> Option<PathBuf> {
    let p = crate::paths::image_dir().join("cache/chrony/usr/sbin/chronyd");
    p.exists().then_some(p)
}

/// Why the NTP tests cannot run here, if they cannot.
pub fn unavailable() -> Option<String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some("chronyd needs root".into());
    }
    if chronyd().is_none() {
        return Some("no chronyd: run `cargo xtask test` (it unpacks Debian's chrony)".into());
    }
    if Command::new("faketime").arg("--version").output().is_err() {
        return Some("no faketime: run `cargo xtask test` (it installs it)".into());
    }
    None
}

impl NtpServer {
    /// Serves on 127.0.0.1 (all addresses with `any`) a clock `shift_secs`
    /// ahead of the host's (behind when negative).
    pub fn start(shift_secs: i64, any: bool) -> anyhow::Result<Self> {
        let bin = chronyd().ok_or_else(|| anyhow::anyhow!("no chronyd"))?;
        let dir = tempfile::tempdir()?;
        let port = crate::free_port();
        let conf = dir.path().join("chrony.conf");
        let bind = if any { "0.0.0.0" } else { "127.0.0.1" };
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbindaddress {bind}\nallow all\nlocal stratum 8\ncmdport 0\npidfile {}\n",
                dir.path().join("chronyd.pid").display()
            ),
        )?;
        let log = std::fs::File::create(dir.path().join("chronyd.log"))?;
        // -x: never touch the host's clock; -d: stay in the foreground.
        let child = Command::new("faketime")
            .args(["-f", &format!("{shift_secs:+}s")])
            .arg(&bin)
            .args(["-d", "-x", "-u", "root", "-f"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        let s = Self { port, child, dir };
        s.wait_answering()?;
        Ok(s)
    }

    /// Waits until the server answers an SNTP request.
    fn wait_answering(&self) -> anyhow::Result<()> {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0")?;
        sock.set_read_timeout(Some(Duration::from_millis(200)))?;
        let mut req = [0u8; 48];
        req[0] = 0x23; // version 4, client
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            sock.send_to(&req, ("127.0.0.1", self.port))?;
            let mut buf = [0u8; 128];
            if sock.recv_from(&mut buf).is_ok() {
                return Ok(());
            }
        }
        anyhow::bail!("chronyd did not answer: {}", self.log())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("chronyd.log")).unwrap_or_default()
    }
}

impl Drop for NtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
