//! The boot timeline: each stage of PID 1 as it ends, with the time since
//! the kernel started (`CLOCK_BOOTTIME`), in the kernel log (so `orcctl
//! dmesg` shows it) as `boot stage stage=<name> at_ms=<ms> took_ms=<ms>`;
//! the agent adds its own stages the same way. `cargo xtask bench boot`
//! reads them back to say where a boot's time goes.

use std::time::Duration;

/// Time since the kernel started.
pub fn since_boot() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).map(Duration::from).unwrap_or_default()
}

pub struct Timeline {
    last: Duration,
    marks: Vec<(&'static str, Duration)>,
}

impl Timeline {
    /// Starts at PID 1's first instant: what came before is the kernel's.
    pub fn start() -> Self {
        let mut t = Self { last: Duration::ZERO, marks: Vec::new() };
        t.mark("kernel");
        t
    }

    /// `stage` just ended.
    pub fn mark(&mut self, stage: &'static str) {
        let now = since_boot();
        let took = now.saturating_sub(self.last);
        tracing::info!(stage = %stage, at_ms = now.as_millis() as u64, took_ms = took.as_millis() as u64, "boot stage");
        self.marks.push((stage, took));
        self.last = now;
    }

    /// One line: every stage and what it took.
    pub fn summary(&self) -> String {
        let stages: Vec<String> = self.marks.iter().map(|(s, d)| format!("{s} {} ms", d.as_millis())).collect();
        format!("boot timeline: {} (total {} ms)", stages.join(", "), self.last.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_add_up_to_the_total() {
        let mut t = Timeline::start();
        std::thread::sleep(Duration::from_millis(2));
        t.mark("mounts");
        let total: Duration = t.marks.iter().map(|(_, d)| *d).sum();
        assert_eq!(total, t.last);
        assert!(t.summary().starts_with("boot timeline: kernel "), "{}", t.summary());
        assert!(t.summary().contains("mounts "));
    }
}
