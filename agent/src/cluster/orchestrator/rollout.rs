//! Rolling updates and rollbacks, as part of the orchestrator's pass.
//!
//! A service whose spec changed has tasks of the old spec ("old") and of
//! the current one ("new"). Each pass, per slot (or node of a global
//! service), under the policy the update started with (Swarm's fields):
//! - a slot whose new task is not ready yet is *in flight*; at most
//!   `parallelism` slots are in flight, and a new batch waits `delay` after
//!   the last new task became ready;
//! - stop-first: the old task is shut down, the slot's new task is placed
//!   only once the old one has stopped ([`stopping`]); start-first: the new
//!   task starts beside the old one, which is shut down once the new one
//!   is ready;
//! - a new task that ends while the update is open counts as failed; more
//!   failures than `max_failure_ratio` of the slots trigger the failure
//!   action (pause, continue, or roll back to the previous spec under the
//!   rollback policy);
//! - the update completes when every slot runs a ready new task and the
//!   last of them has stayed so for the `monitor` window.
//!
//! Everything is derived from the tasks and the service's `update_status`
//! in the replicated state, so a new leader carries on where the old one
//! stopped.

use super::*;

/// Whether task `t` runs what service `s` asks for now.
pub(super) fn current(t: &Task, s: &Service) -> bool {
    t.spec_version == s.spec_version || t.spec.runs_like(&s.spec)
}

/// Why a task ended, for an update's message.
fn ending(t: &Task) -> String {
    let place = if t.slot > 0 { format!("{}.{}", t.service, t.slot) } else { format!("{} on {}", t.service, t.node) };
    let why = [t.message.as_str(), t.error.as_str()].iter().filter(|m| !m.is_empty()).cloned().collect::<Vec<_>>();
    format!("task {place} ({}) {}: {}", t.id, t.state.as_str(), why.join(": "))
}

/// `s` going back to its previous spec (its replica count kept), under the
/// rollback policy of the spec it leaves; None without a previous spec.
pub fn rollback(s: &Service, now: i64, why: impl Into<String>) -> Option<Service> {
    let prev = s.previous_spec.clone()?;
    let mut n = s.clone();
    n.spec = ServiceSpec { replicas: s.spec.replicas, ..prev };
    n.previous_spec = Some(s.spec.clone());
    n.spec_version += 1;
    n.updated_ms = now;
    n.update_status = Some(UpdateStatus::start(UpdateState::RollingBack, s.spec.rollback.clone(), now, why));
    Some(n)
}

/// One slot's tasks wanted running.
#[derive(Default)]
struct Lane {
    old: Vec<String>,
    /// Its task of the current spec, and whether that is ready.
    new: Option<(String, bool)>,
}

/// What the pass does with the service after the rollout looked at it.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Next {
    /// Go on (scale, fill the slots).
    Go,
    /// It rolls back: nothing more this pass (the next works on the new spec).
    Stop,
}

/// Moves the update of `s` on over its slots or nodes `keys`.
pub(super) fn step(p: &mut Pass, s: &Service, keys: &[Key]) -> Next {
    let mut lanes: BTreeMap<Key, Lane> = keys.iter().map(|k| (k.clone(), Lane::default())).collect();
    let started = s.update_status.as_ref().map_or(i64::MIN, |u| u.started_ms);
    let mut failed: Vec<(i64, String)> = Vec::new();
    let mut last_ready = 0i64;
    let mut pending_old = Vec::new();
    for t in service_tasks(p, &s.id) {
        let cur = current(t, s);
        if cur && t.created_ms >= started {
            if t.ended_alone || (t.desired == TaskState::Running && t.state.terminal()) {
                failed.push((t.updated_ms, ending(t)));
            }
            if t.live() && t.ready() {
                last_ready = last_ready.max(t.ready_ms);
            }
        }
        if !t.live() {
            continue;
        }
        if !cur && t.state == TaskState::Pending {
            // Not placed yet: nothing runs it, nothing to roll.
            pending_old.push(t.id.clone());
            continue;
        }
        let Some(l) = lanes.get_mut(&key(t)) else { continue };
        if cur {
            l.new = Some((t.id.clone(), t.ready()));
        } else {
            l.old.push(t.id.clone());
        }
    }
    for id in pending_old {
        p.shut(&id, "replaced by a service update", Some(TaskState::Shutdown));
    }
    let any_old = lanes.values().any(|l| !l.old.is_empty());
    let mut status = match &s.update_status {
        Some(u) => u.clone(),
        // Tasks of another spec and no update on record (a store from
        // before updates rolled): roll them under the update policy.
        None if any_old => UpdateStatus::start(UpdateState::Updating, s.spec.update.clone(), p.now, ""),
        None => return Next::Go,
    };
    if !status.state.open() {
        // Nothing left to roll; old tasks seen now (a node back with them) go.
        for id in lanes.values().flat_map(|l| l.old.clone()).collect::<Vec<_>>() {
            p.shut(&id, "replaced by a service update", None);
        }
        return Next::Go;
    }
    let policy = status.policy.clone();
    let slots = lanes.len().max(1) as f64;
    if status.state.moving() && !failed.is_empty() && failed.len() as f64 / slots > policy.max_failure_ratio {
        failed.sort();
        let last = failed.last().map(|(_, m)| m.clone()).unwrap_or_default();
        let what = if status.state.rollback() { "rollback" } else { "update" };
        let why = format!("{} of {} new tasks failed, last {last}", failed.len(), lanes.len());
        match policy.failure_action {
            FailureAction::Rollback if !status.state.rollback() => {
                if let Some(n) = rollback(s, p.now, format!("update rolled back: {why}")) {
                    tracing::warn!(service = %s.spec.name, reason = %why, "update failed: rolling back");
                    p.services.insert(s.id.clone(), n);
                    return Next::Stop;
                }
                status.state = UpdateState::Paused;
                status.message = format!("update paused: {why} (no previous spec to roll back to)");
            }
            FailureAction::Continue => {}
            _ => {
                status.state = if status.state.rollback() { UpdateState::RollbackPaused } else { UpdateState::Paused };
                status.message = format!("{what} paused: {why}");
                tracing::warn!(service = %s.spec.name, reason = %why, "{what} paused");
            }
        }
    }
    let mut in_flight = 0usize;
    let mut todo: Vec<Key> = Vec::new();
    let mut retire: Vec<String> = Vec::new();
    for (k, l) in &lanes {
        match (&l.new, l.old.is_empty()) {
            (Some((_, true)), false) => retire.extend(l.old.iter().cloned()),
            (Some((_, false)), _) => in_flight += 1,
            (Some((_, true)), true) => {}
            (None, false) => todo.push(k.clone()),
            (None, true) => in_flight += 1,
        }
    }
    // Start-first: the new task is ready, the old one goes.
    for id in retire {
        p.shut(&id, "replaced by a service update", None);
    }
    if status.state.moving() {
        let budget = match policy.parallelism {
            0 => todo.len(),
            n => (n as usize).saturating_sub(in_flight),
        };
        let waiting = policy.delay_ms > 0 && last_ready > 0 && p.now < last_ready + policy.delay_ms as i64;
        let batch: Vec<Key> = if waiting { Vec::new() } else { todo.iter().take(budget).cloned().collect() };
        for k in &batch {
            let Some(l) = lanes.get(k) else { continue };
            match policy.order {
                UpdateOrder::StopFirst => {
                    for id in l.old.clone() {
                        p.shut(&id, "replaced by a service update", None);
                    }
                }
                UpdateOrder::StartFirst => {
                    let prev = l.old.first().and_then(|id| p.tasks.get(id).cloned());
                    if let Some(t) = next_task(p, s, k, prev.as_deref()) {
                        add(p, t);
                    }
                }
            }
        }
        let settled = todo.is_empty() && in_flight == 0;
        if settled && p.now >= last_ready + policy.monitor_ms as i64 {
            let rollback = status.state.rollback();
            status.state = if rollback { UpdateState::RolledBack } else { UpdateState::Completed };
            status.completed_ms = p.now;
            if !rollback || status.message.is_empty() {
                status.message = if rollback { "rollback completed".into() } else { "update completed".into() };
            }
            tracing::info!(service = %s.spec.name, state = status.state.as_str(), "update over");
        }
    }
    if s.update_status.as_ref() != Some(&status) {
        let mut n = s.clone();
        n.update_status = Some(status);
        p.services.insert(s.id.clone(), n);
    }
    Next::Go
}

/// Slots (or nodes) whose new task must wait because the task it replaces
/// is still stopping: under a stop-first update or rollback, on a live
/// node; in a stateful service, wherever it is until it is known over (its
/// node's grace, [`super::stateful`]). So the two never run at once.
pub(super) fn stopping(p: &Pass, services: &BTreeSet<String>) -> BTreeSet<(String, Key)> {
    let mut out = BTreeSet::new();
    for id in services {
        let Some(s) = p.v.services.get(id) else { continue };
        let stop_first =
            s.update_status.as_ref().is_some_and(|u| u.state.open() && u.policy.order == UpdateOrder::StopFirst);
        if !stop_first && !s.spec.stateful {
            continue;
        }
        for t in service_tasks(p, id) {
            let going = t.desired != TaskState::Running && !t.state.terminal() && !t.node.is_empty();
            if going && (s.spec.stateful || p.node_ok(&t.node).is_some()) {
                out.insert((id.clone(), key(t)));
            }
        }
    }
    out
}
