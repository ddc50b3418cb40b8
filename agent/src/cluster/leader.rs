//! What only the leader does, in one loop: watch node liveness, run the
//! orchestrators and the scheduler (`orchestrator::reconcile`), and commit
//! what they decide as one Raft entry. It wakes on every state change and
//! at least every `TICK` (restart delays, heartbeat deadlines).

use std::sync::Arc;
use std::time::Duration;

use super::command::Command;
use super::dispatcher::Liveness;
use super::handle::ClusterHandle;
use super::objects::{now_ms, View};
use super::orchestrator;

const TICK: Duration = Duration::from_millis(500);

pub async fn run(cluster: Arc<ClusterHandle>, liveness: Arc<Liveness>) {
    let mut leading = false;
    loop {
        let Ok(s) = cluster.get() else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        let mut changed = s.sm.changed.subscribe();
        let is_leader = {
            let m = s.raft.metrics().borrow().clone();
            m.state.is_leader() && m.current_leader == Some(s.id)
        };
        if is_leader && !leading {
            // Apply everything committed before deciding anything.
            if let Err(e) = s.raft.ensure_linearizable().await {
                tracing::info!(error = %e, "elected, but not confirmed as leader yet");
                tokio::time::sleep(TICK).await;
                continue;
            }
            let nodes: Vec<String> = View::of(&s.sm.applied.read().await.state).nodes.into_keys().collect();
            liveness.reset(nodes.into_iter());
            tracing::info!("leading: orchestrating and scheduling");
        }
        leading = is_leader;
        if leading {
            let view = View::of(&s.sm.applied.read().await.state);
            let mut cmds = liveness.check(&view);
            if cmds.is_empty() {
                cmds = orchestrator::reconcile(&view, now_ms());
            }
            if !cmds.is_empty() {
                let n = cmds.len();
                match cluster.write(Command::Batch(cmds)).await {
                    Ok(r) => match r.conflict {
                        None => {
                            tracing::debug!(changes = n, version = r.version, "reconciled");
                            continue;
                        }
                        Some(c) => tracing::info!(conflict = %c, "reconcile raced another change; next pass"),
                    },
                    Err(e) => tracing::warn!(error = %e.message(), "committing the reconcile failed"),
                }
            }
        }
        let _ = tokio::time::timeout(TICK, changed.changed()).await;
    }
}
