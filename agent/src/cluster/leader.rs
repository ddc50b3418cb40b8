//! What only the leader does, in one loop: watch node liveness, run the
//! orchestrators and the scheduler (`orchestrator::reconcile`), and commit
//! what they decide as one Raft entry. It wakes on every state change and
//! at least every `TICK` (restart delays, heartbeat deadlines).

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use super::autoscaler::Autoscaler;
use super::dispatcher::Liveness;
use super::objects::{now_ms, NodeStatus, View};
use super::orchestrator::{self, Scope};
use super::usage::Measurements;
use crate::model::db::Command;
use crate::pki::role::Role;
use crate::raft::types::NodeId;
use crate::raft::{raft_id, RaftError, RaftHandle, Started};

const TICK: Duration = Duration::from_millis(500);
/// Passes start at least this far apart: an idle leader answers a change at
/// once, a busy one gathers what arrives meanwhile into its next pass (a
/// storm of node reports makes tens of passes a second, not one per entry).
const MIN_GAP: Duration = Duration::from_millis(20);
/// The most a reconcile puts into one Raft entry (encoded).
pub const MAX_ENTRY_BYTES: usize = 1 << 20;

/// Splits `cmds` into batches of at most `max` encoded bytes each (a single
/// larger command goes alone).
pub fn chunks(cmds: Vec<Command>, max: usize) -> Vec<Vec<Command>> {
    // The batch's own framing.
    const FRAME: usize = 64;
    let max = max.saturating_sub(FRAME);
    let mut out: Vec<Vec<Command>> = Vec::new();
    let mut size = 0;
    for c in cmds {
        // Its encoding and a byte of framing.
        let n = crate::raft::codec::encode(&c).map(|v| v.len() + 1).unwrap_or(max);
        if out.is_empty() || size + n > max {
            out.push(Vec::new());
            size = 0;
        }
        size += n;
        if let Some(last) = out.last_mut() {
            last.push(c);
        }
    }
    out
}

/// A pass over everything at least this often (a safety net: passes in
/// between look only at what changed).
const FULL_EVERY: Duration = Duration::from_secs(30);

pub async fn run(cluster: Arc<RaftHandle>, liveness: Arc<Liveness>, measurements: Arc<Measurements>) {
    tokio::spawn(super::liveness::watch_stalls(liveness.clone()));
    let mut leading = false;
    let changing: Changing = Arc::default();
    // The version the last completed pass saw; None: look at everything.
    let mut seen: Option<u64> = None;
    let mut last_full = std::time::Instant::now();
    let mut last_pass = std::time::Instant::now() - MIN_GAP;
    let mut autoscaler = Autoscaler::default();
    loop {
        let since = last_pass.elapsed();
        if since < MIN_GAP {
            tokio::time::sleep(MIN_GAP - since).await;
        }
        last_pass = std::time::Instant::now();
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
            let nodes: Vec<String> = s.sm.applied.read().await.state.nodes.keys().cloned().collect();
            let me = nodes.iter().find(|n| crate::raft::raft_id(n).is_ok_and(|id| id == s.id)).cloned();
            liveness.reset(nodes.into_iter(), me);
            autoscaler.reset();
            seen = None;
            tracing::info!("leading: orchestrating and scheduling");
        }
        leading = is_leader;
        if leading {
            let view = s.sm.applied.read().await.state.clone();
            membership(&cluster, &s, &view, &changing);
            autoscale(&cluster, autoscaler.pass(&view, &measurements, now_ms())).await;
            let mut cmds = liveness.check(&view);
            let mut passed = None;
            if cmds.is_empty() {
                let scope = match seen {
                    Some(v) if last_full.elapsed() < FULL_EVERY => {
                        view.feed.since(v).map(|c| Scope::of(&c, &view)).unwrap_or(Scope::All)
                    }
                    _ => Scope::All,
                };
                if scope == Scope::All {
                    last_full = std::time::Instant::now();
                }
                cmds = orchestrator::reconcile(&view, now_ms(), &scope);
                cmds.extend(super::leases::reconcile(&view));
                passed = Some(view.version);
            }
            if cmds.is_empty() && passed.is_some() {
                seen = passed;
            }
            if !cmds.is_empty() {
                let n = cmds.len();
                // Entries of bounded size: each chunk commits whole or not at
                // all; a crash between chunks leaves a state the next pass
                // continues from (new tasks are conditional puts per slot).
                let mut all_done = true;
                for chunk in chunks(cmds, MAX_ENTRY_BYTES) {
                    match cluster.write(Command::Batch(chunk)).await {
                        Ok(r) => match r.conflict {
                            None => tracing::debug!(version = r.version, "reconcile chunk committed"),
                            Some(c) => {
                                tracing::info!(conflict = %c, "reconcile raced another change; next pass");
                                all_done = false;
                                break;
                            }
                        },
                        Err(e) => {
                            tracing::warn!(error = %e, "committing the reconcile failed");
                            all_done = false;
                            break;
                        }
                    }
                }
                if all_done {
                    // What it wrote comes back through the feed: the next
                    // pass looks at those services again and finds them settled.
                    if passed.is_some() {
                        seen = passed;
                    }
                    tracing::debug!(changes = n, "reconciled");
                    continue;
                }
            }
        }
        let _ = tokio::time::timeout(TICK, changed.changed()).await;
    }
}

/// Writes the autoscaler's decisions, each on its own (one that raced a
/// change of its service is decided again at the next sync).
async fn autoscale(cluster: &RaftHandle, cmds: Vec<Command>) {
    for c in cmds {
        match cluster.write(c).await {
            Ok(r) if r.conflict.is_some() => tracing::debug!("autoscaling raced a change of the service; next sync"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "writing an autoscaling decision failed"),
        }
    }
}

/// Nodes whose quorum membership is being changed.
type Changing = Arc<std::sync::Mutex<HashSet<String>>>;

/// The quorum follows the Node objects: a promoted node (manager role, and
/// by now a manager certificate) becomes a learner then a voter; a demoted
/// one leaves the quorum.
fn membership(cluster: &Arc<RaftHandle>, s: &Started, view: &View, changing: &Changing) {
    let m = s.raft.metrics().borrow().clone();
    let membership = m.membership_config.membership();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    for n in view.nodes.values() {
        let Ok(rid) = raft_id(&n.id) else { continue };
        let add = n.role == Role::Manager
            && n.cert_role == Some(Role::Manager)
            && n.status == NodeStatus::Ready
            && !voters.contains(&rid);
        let remove = n.role != Role::Manager && membership.get_node(&rid).is_some();
        if !(add || remove) || !crate::sync::lock(changing).insert(n.id.clone()) {
            continue;
        }
        let (cluster, changing, node) = (cluster.clone(), changing.clone(), n.clone());
        tokio::spawn(async move {
            let result = if add {
                super::join::add_manager(&cluster, &node.id, &node.addr).await
            } else {
                remove_manager(&cluster, rid).await
            };
            match result {
                Ok(()) => tracing::info!(node = %node.id, promoted = add, "quorum membership changed"),
                Err(e) => {
                    tracing::warn!(node = %node.id, error = %e, "changing the quorum membership failed; will retry")
                }
            }
            crate::sync::lock(&changing).remove(&node.id);
        });
    }
}

async fn remove_manager(cluster: &RaftHandle, rid: NodeId) -> Result<(), RaftError> {
    let s = cluster.get()?;
    let voters: BTreeSet<NodeId> =
        s.raft.metrics().borrow().membership_config.membership().voter_ids().filter(|v| *v != rid).collect();
    if voters.is_empty() {
        return Err(RaftError::Unavailable("it is the last manager".into()));
    }
    s.raft.change_membership(voters, false).await.map_err(|e| RaftError::Unavailable(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::objects::{Service, ServiceSpec, View};

    #[test]
    fn a_big_reconcile_is_split_into_bounded_entries() {
        // 10 000 replicas on one node: every new task in the decision.
        let mut v = View::default();
        let node = crate::cluster::objects::Node {
            id: "n1".into(),
            status: NodeStatus::Ready,
            role: Role::Worker,
            ..Default::default()
        };
        v.nodes.insert("n1".into(), std::sync::Arc::new(node));
        let spec = ServiceSpec { name: "big".into(), image: "busybox".into(), replicas: 10_000, ..Default::default() };
        let service = Service { id: "s1".into(), spec, spec_version: 1, ..Default::default() };
        v.services.insert("s1".into(), std::sync::Arc::new(service));
        let cmds = orchestrator::reconcile(&v, now_ms(), &orchestrator::Scope::All);
        let n = cmds.len();
        assert!(n >= 10_000, "{n}");
        let parts = chunks(cmds, MAX_ENTRY_BYTES);
        assert!(parts.len() > 1, "one entry for {n} commands");
        assert_eq!(parts.iter().map(Vec::len).sum::<usize>(), n, "nothing lost");
        for p in &parts {
            let bytes = crate::raft::codec::encode(&Command::Batch(p.clone())).unwrap().len();
            assert!(bytes <= MAX_ENTRY_BYTES, "{bytes} bytes in one entry");
        }
    }
}
