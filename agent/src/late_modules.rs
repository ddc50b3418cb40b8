//! The kernel modules orc-init loads after it started the agent (overlay,
//! bridge, vxlan, nf_tables' NAT, the NFS client…; `kernel-config/modules.late`):
//! what needs one waits while they load, a fraction of a second after boot
//! and never again. A node has no `modprobe`, so a module not loaded yet is
//! a module missing to the kernel.

use std::path::Path;
use std::time::Duration;

/// The longest wait: past it, what needs a module goes on and fails, if it
/// must, naming what is missing.
const MOST: Duration = Duration::from_secs(30);

/// Waits while `pending` (orc-init's marker, `<run>/late-modules-pending`)
/// exists, up to [`MOST`].
pub async fn loaded(pending: &Path) {
    if !pending.exists() {
        return;
    }
    let start = std::time::Instant::now();
    while pending.exists() && start.elapsed() < MOST {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tracing::info!(waited_ms = start.elapsed().as_millis() as u64, "waited for the late kernel modules");
}
