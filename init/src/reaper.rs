//! Zombie reaping: PID 1 adopts every orphan and must wait for each.

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// How a child ended, for logs and `orcctl services`.
pub fn describe(status: &WaitStatus) -> Option<(i32, String)> {
    match status {
        WaitStatus::Exited(pid, code) => Some((pid.as_raw(), format!("exited {code}"))),
        WaitStatus::Signaled(pid, sig, core) => {
            Some((pid.as_raw(), format!("killed by {}{}", sig.as_str(), if *core { " (core dumped)" } else { "" })))
        }
        _ => None,
    }
}

/// Reaps every child that has ended, without blocking.
pub fn reap_all() -> Vec<(i32, String)> {
    let mut ended = vec![];
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return ended,
            Ok(status) => ended.extend(describe(&status)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::Signal;

    #[test]
    fn describe_table() {
        let p = Pid::from_raw(42);
        let cases = [
            (WaitStatus::Exited(p, 0), Some((42, "exited 0".to_string()))),
            (WaitStatus::Exited(p, 3), Some((42, "exited 3".to_string()))),
            (WaitStatus::Signaled(p, Signal::SIGKILL, false), Some((42, "killed by SIGKILL".to_string()))),
            (WaitStatus::Signaled(p, Signal::SIGSEGV, true), Some((42, "killed by SIGSEGV (core dumped)".to_string()))),
            (WaitStatus::StillAlive, None),
        ];
        for (i, (st, want)) in cases.into_iter().enumerate() {
            assert_eq!(describe(&st), want, "case {i}");
        }
    }
}
