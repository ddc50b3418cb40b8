//! The managers this node knows, in `<state>/cluster/managers.json`: the one
//! joined through first, then every list the leader sends. A worker finds
//! the leader through them after restarts.

use std::path::Path;

const MANAGERS: &str = "cluster/managers.json";

/// Saves `addrs` as the known managers (atomically; a failure is logged).
pub fn remember(state_dir: &Path, addrs: &[String]) {
    let data = serde_json::to_vec(addrs).unwrap_or_default();
    let path = state_dir.join(MANAGERS);
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Err(e) = crate::fsutil::write_atomic(&path, &data) {
        tracing::warn!(error = %e, "saving the managers' addresses");
    }
}

/// The managers saved by [`remember`] (none when nothing was saved).
pub fn remembered(state_dir: &Path) -> Vec<String> {
    std::fs::read(state_dir.join(MANAGERS)).ok().and_then(|d| serde_json::from_slice(&d).ok()).unwrap_or_default()
}
