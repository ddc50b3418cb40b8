//! The agent's stages of a node's boot, after `orc-init`'s
//! (`init/src/timeline.rs`): written to the kernel log as
//! `boot stage stage=<name> at_ms=<ms since the kernel started>`, so
//! `orcctl dmesg` shows the whole boot and `cargo xtask bench boot` reads it.
//! Only on a node (under `orc-init`); a process on a workstation has no
//! boot to tell of.

use std::io::Write;
use std::time::Duration;

/// Time since the kernel started.
fn since_boot() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).map(Duration::from).unwrap_or_default()
}

/// The record for `stage` at `at`. The newline ends it: without one the
/// kernel holds a record back as the start of a continued line until the
/// next one comes (the last stage stayed out of `dmesg`).
fn record(stage: &str, at: Duration) -> String {
    format!("<6>orc-agent: boot stage stage={stage} at_ms={}\n", at.as_millis())
}

/// `stage` of the agent's start just ended (`on_node`: under `orc-init`).
pub fn mark(on_node: bool, stage: &str) {
    let at = since_boot();
    tracing::info!(stage, at_ms = at.as_millis() as u64, "boot stage");
    if on_node {
        // One write is one kernel log record.
        if let Ok(mut kmsg) = std::fs::OpenOptions::new().write(true).open("/dev/kmsg") {
            let _ = kmsg.write_all(record(stage, at).as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn records_name_the_stage_and_the_time() {
        let r = super::record("api", std::time::Duration::from_millis(2345));
        assert_eq!(r, "<6>orc-agent: boot stage stage=api at_ms=2345\n");
    }
}
