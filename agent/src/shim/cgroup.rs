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

/// `key value` lines (memory.events, cpu.stat).
fn keyed(text: &str, key: &str) -> u64 {
    text.lines().find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix(' '))).map(read_u64).unwrap_or(0)
}

impl Cgroup {
    pub fn of(id: &str) -> Self {
        Self { dir: PathBuf::from(ROOT).join(crate::runtime::spec::cgroup_path(id).trim_start_matches('/')) }
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

    /// Signals every process in the cgroup (exec'd ones too).
    pub fn signal_all(&self, sig: nix::sys::signal::Signal) -> std::io::Result<()> {
        if sig == nix::sys::signal::Signal::SIGKILL && std::fs::write(self.dir.join("cgroup.kill"), "1").is_ok() {
            return Ok(());
        }
        for pid in std::fs::read_to_string(self.dir.join("cgroup.procs"))?.lines().filter_map(|l| l.parse::<i32>().ok()) {
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
