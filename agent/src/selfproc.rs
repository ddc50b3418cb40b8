//! The agent's own process settings, applied at start: an open-file limit
//! that many connections and containers do not exhaust, and an OOM score
//! that makes the kernel kill containers before the agent (PID 1 is never
//! chosen). Containers are reset to a score of 0 in their spec.

/// The agent's OOM score adjustment (-1000 would make it unkillable).
pub const AGENT_OOM_SCORE_ADJ: i32 = -900;

/// Raises the soft open-file limit to the hard one (at most 1 Mi) and lowers
/// the agent's OOM score. Failures (an unprivileged test run) are logged.
pub fn apply() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let hard = crate::runtime::spec::max_open_files();
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, h)) if soft < hard.min(h) => {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard.min(h), h) {
                tracing::warn!(error = %e, "cannot raise the open-file limit");
            }
        }
        _ => {}
    }
    if let Err(e) = std::fs::write("/proc/self/oom_score_adj", AGENT_OOM_SCORE_ADJ.to_string()) {
        tracing::warn!(error = %e, "cannot lower the agent's OOM score (no CAP_SYS_RESOURCE?)");
    }
    let nofile = getrlimit(Resource::RLIMIT_NOFILE).map(|l| l.0).unwrap_or(0);
    let score = std::fs::read_to_string("/proc/self/oom_score_adj").unwrap_or_default();
    tracing::info!(open_files = nofile, oom_score_adj = score.trim(), "process limits set");
}
