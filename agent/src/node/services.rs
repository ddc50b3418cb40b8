//! `Services`: what orc-init supervises, read from the status file it keeps,
//! with each process's resident memory.

use std::path::Path;

use orc_proto::machine::Service;
use serde::Deserialize;

use crate::state::NodeState;

#[derive(Deserialize)]
struct InitService {
    name: String,
    state: String,
    pid: Option<u32>,
    restarts: u32,
    started_at: u64,
    last_exit: String,
}

/// VmRSS of a process in bytes, from `/proc/<pid>/status`.
pub fn rss_bytes(proc_dir: &Path, pid: u32) -> u64 {
    let Ok(s) = std::fs::read_to_string(proc_dir.join(pid.to_string()).join("status")) else { return 0 };
    parse_rss(&s)
}

fn parse_rss(status: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

pub fn do_services(state: &NodeState) -> Vec<Service> {
    let proc_dir = Path::new("/proc");
    let status = state.config.run_dir.join("services.json");
    let mut out = vec![];
    if let Some(pid) = state.config.init_pid {
        out.push(Service {
            name: "init".into(),
            state: "running".into(),
            pid: pid as u32,
            rss_bytes: rss_bytes(proc_dir, pid as u32),
            ..Default::default()
        });
    }
    match std::fs::read(&status).ok().and_then(|b| serde_json::from_slice::<Vec<InitService>>(&b).ok()) {
        Some(list) => out.extend(list.into_iter().map(|s| Service {
            rss_bytes: s.pid.map(|p| rss_bytes(proc_dir, p)).unwrap_or(0),
            name: s.name,
            state: s.state,
            pid: s.pid.unwrap_or(0),
            restarts: s.restarts,
            started_at: s.started_at,
            last_exit: s.last_exit,
        })),
        // Not under orc-init (a development or test run): the agent is all there is.
        None => out.push(Service {
            name: "agent".into(),
            state: "running".into(),
            pid: std::process::id(),
            rss_bytes: rss_bytes(proc_dir, std::process::id()),
            ..Default::default()
        }),
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn rss_parsing() {
        assert_eq!(super::parse_rss("Name:\tx\nVmRSS:\t  1234 kB\n"), 1234 * 1024);
        assert_eq!(super::parse_rss("Name:\tx\n"), 0);
    }
}
