//! The container's cgroup v2 directory: figures, OOM kills, signalling all.

use std::path::PathBuf;

use orc_proto::container as pb;

pub const ROOT: &str = "/sys/fs/cgroup";

pub struct Cgroup {
    dir: PathBuf,
}

fn read_u64(text: &str) -> u64 {
    text.trim().parse().unwrap_or(0)
}

/// `key value` lines (memory.events, cpu.stat); 0 when the key is absent.
pub fn keyed(text: &str, key: &str) -> u64 {
    text.lines().find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix(' '))).map(read_u64).unwrap_or(0)
}

impl Cgroup {
    /// The cgroup the bundle's spec names (`linux.cgroupsPath`), or the
    /// agent's default for `id`.
    pub fn of_bundle(bundle: &std::path::Path, id: &str) -> Self {
        let path = oci_spec::runtime::Spec::load(bundle.join("config.json"))
            .ok()
            .and_then(|s| s.linux().as_ref().and_then(|l| l.cgroups_path().clone()))
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| crate::shim_contract::cgroup_path(id));
        Self { dir: PathBuf::from(ROOT).join(path.trim_start_matches('/')) }
    }

    fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.dir.join(file)).unwrap_or_default()
    }

    pub fn oom_kills(&self) -> u64 {
        keyed(&self.read("memory.events"), "oom_kill")
    }

    pub fn stats(&self) -> pb::Stats {
        let max = self.read("memory.max");
        pb::Stats {
            memory_current: read_u64(&self.read("memory.current")),
            memory_max: if max.trim() == "max" { 0 } else { read_u64(&max) },
            cpu_usage_usec: keyed(&self.read("cpu.stat"), "usage_usec"),
            pids_current: read_u64(&self.read("pids.current")),
        }
    }

    /// Waits (briefly) until the kernel reports the cgroup empty. Right after
    /// the last process is reaped it may still count as populated, and
    /// libcontainer's removal then sleeps 10 ms before retrying.
    /// Blocking on purpose: the container is gone, nothing else is due, and
    /// tokio's timer would round each wait up to a millisecond.
    pub fn wait_empty(&self, limit: std::time::Duration) {
        let start = std::time::Instant::now();
        while keyed(&self.read("cgroup.events"), "populated") != 0 && start.elapsed() < limit {
            std::thread::sleep(std::time::Duration::from_micros(100));
        }
    }

    /// Signals every process in the cgroup (exec'd ones too).
    pub fn signal_all(&self, sig: nix::sys::signal::Signal) -> std::io::Result<()> {
        if sig == nix::sys::signal::Signal::SIGKILL && std::fs::write(self.dir.join("cgroup.kill"), "1").is_ok() {
            return Ok(());
        }
        for pid in std::fs::read_to_string(self.dir.join("cgroup.procs"))?.lines().filter_map(|l| l.parse::<i32>().ok())
        {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_files_parse() {
        assert_eq!(keyed("low 0\nhigh 0\nmax 3\noom 1\noom_kill 2\n", "oom_kill"), 2);
        assert_eq!(keyed("oom 1\n", "oom_kill"), 0);
        assert_eq!(keyed("usage_usec 12345\nuser_usec 1\n", "usage_usec"), 12345);
    }
}
