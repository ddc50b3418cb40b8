//! After the reboot into a new version: what this boot means for the
//! pending upgrade ([`at_start`], before the node's session opens, so the
//! managers hear of a fall back in its first message), and proving the new
//! version ([`prove`]): it is blessed (its entry renamed without its
//! counter) once the node is back in the cluster — a session delivered its
//! tasks, and on a manager the Raft answers linearizable reads — and every
//! task the managers want running here runs. Not so within the health
//! window (counted from the boot), the agent says why, marks the entry bad
//! and reboots into the old version. Once blessed, until the window ends, a
//! task that was ready before the upgrade (same service spec) failing
//! readiness here while its service has ready tasks on other nodes (the
//! leader says, asked in the heartbeats) rolls the upgrade back too.

use std::sync::Arc;
use std::time::Duration;

use super::esp;
use super::record::{self, Assessment, OsRecord, Pending};
use super::UpgradeError;
use crate::cluster::objects::Health;
use crate::model::os::{UpgradeProgress, UpgradeStage};
use crate::node::boot_slots::{self, Slot};
use crate::pki::role::Role;
use crate::state::NodeState;
use crate::worker::executor::{Executor, TaskReadiness};

const CHECK_EVERY: Duration = Duration::from_secs(2);
/// The managers must have answered this recently for the node to count as
/// back in the cluster.
const CONTACT: Duration = Duration::from_secs(15);

fn progress(p: &Pending, stage: UpgradeStage, message: impl Into<String>) -> UpgradeProgress {
    UpgradeProgress {
        version: p.version.clone(),
        slot: p.slot.as_str().into(),
        stage,
        message: message.into(),
        health_window_secs: p.health_window_secs,
    }
}

/// Reads the OS record and what this boot means for it; sets the node's
/// OS report. Returns the upgrade this boot has to prove, if any.
pub fn at_start(state: &NodeState) -> Option<Pending> {
    let booted = boot_slots::booted()?;
    let dir = state.state_dir().to_path_buf();
    let mut rec = match OsRecord::load(&dir) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "the OS record cannot be read: upgrades are not judged this boot");
            return None;
        }
    };
    let assessment = rec.assess(booted, &crate::node::version::boot_id(), crate::clock::unix_ms());
    let mut trying = None;
    let upgrade = match &assessment {
        Assessment::Nothing => None,
        Assessment::Waiting(p) => Some(progress(p, UpgradeStage::Written, "written: boots at the next reboot")),
        Assessment::Trying(p) => {
            tracing::info!(version = %p.version, slot = p.slot.as_str(), window_secs = p.health_window_secs, "booted a new version: proving it");
            trying = Some(p.clone());
            Some(progress(p, UpgradeStage::Trying, "booted; waiting to rejoin the cluster"))
        }
        Assessment::FellBack(f) => {
            tracing::error!(version = %f.version, reason = %f.reason, "the upgrade fell back to the old version");
            println!("orc: the upgrade to {} fell back: {}", f.version, f.reason);
            if let Err(e) = rec.save(&dir) {
                tracing::error!(error = %e, "recording the failed upgrade");
            }
            None
        }
    };
    // The installed version: recorded once, so later boots of it know it.
    if let std::collections::btree_map::Entry::Vacant(slot) = rec.slots.entry(booted) {
        slot.insert(env!("CARGO_PKG_VERSION").to_string());
        if let Err(e) = rec.save(&dir) {
            tracing::warn!(error = %e, "recording the installed version");
        }
    }
    let mut os = crate::sync::write(&state.os);
    os.version = rec.version_of(Some(booted), env!("CARGO_PKG_VERSION"));
    os.failed = rec.failed.clone();
    os.upgrade = upgrade;
    trying
}

/// Why the node is not proven yet; None: it is.
async fn unproven(state: &NodeState, executor: &Executor) -> Option<String> {
    // In maintenance mode (no identity): no cluster to be back in, no tasks.
    state.identity()?;
    let Some(tasks) = executor.readiness() else {
        return Some("waiting for the session with the cluster to deliver this node's tasks".into());
    };
    let (running, wanted) = (tasks.iter().filter(|t| t.running).count(), tasks.len());
    let silent = executor.contact.silent_for();
    if silent > CONTACT {
        return Some(format!("the managers have not answered for {} s", silent.as_secs()));
    }
    if state.identity().is_some_and(|i| i.meta.role == Role::Manager) {
        match tokio::time::timeout(Duration::from_secs(10), state.raft.linearizable()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Some(format!("this manager's Raft has not caught up: {e}")),
            Err(_) => return Some("this manager's Raft has not caught up (no read index in 10 s)".into()),
        }
    }
    if running < wanted {
        return Some(format!("{running} of {wanted} tasks running"));
    }
    None
}

/// Proves `p`, the version this boot runs: blesses it, or gives up on it;
/// once blessed, watches its workloads until the health window ends.
pub async fn prove(state: Arc<NodeState>, executor: Arc<Executor>, mut p: Pending) {
    let window = Duration::from_secs(p.health_window_secs.into());
    if !p.blessed {
        let mut said = String::new();
        loop {
            let why = match unproven(&state, &executor).await {
                Some(why) => why,
                None => {
                    esp_ready(&state).await;
                    let (s, p2) = (state.clone(), p.clone());
                    // A failure is retried until the window ends, then given up on.
                    match tokio::task::spawn_blocking(move || bless(&s, &p2)).await {
                        Ok(Ok(())) => {
                            tracing::info!(version = %p.version, slot = p.slot.as_str(), "the new version is blessed");
                            println!("orc: version {} is blessed", p.version);
                            p.blessed = true;
                            break;
                        }
                        Ok(Err(e)) => format!("proven, but blessing it failed: {e}"),
                        Err(e) => format!("proven, but the blessing task failed: {e}"),
                    }
                }
            };
            if Duration::from_secs_f64(record::uptime_secs()) >= window {
                let verdict = format!("not proven within its health window of {} s: {why}", window.as_secs());
                give_up(&state, &p, verdict).await;
                return;
            }
            if why != said {
                tracing::info!(version = %p.version, waiting_for = %why, "proving the new version");
                crate::sync::write(&state.os).upgrade = Some(progress(&p, UpgradeStage::Trying, why.clone()));
                said = why;
            }
            tokio::time::sleep(CHECK_EVERY).await;
        }
    }
    let watched = workloads_failing(&state, &executor, &p).await;
    crate::sync::write(&state.ready_elsewhere).asked.clear();
    match watched {
        Watched::Failing(verdict) => {
            give_up(&state, &p, verdict).await;
            return;
        }
        Watched::Replaced => {
            tracing::info!(version = %p.version, "another upgrade was written: no longer watching this one");
            return;
        }
        Watched::WindowOver => {}
    }
    let (dir, mine) = (state.state_dir().to_path_buf(), p.clone());
    let done = tokio::task::spawn_blocking(move || -> Result<(), UpgradeError> {
        let mut rec = OsRecord::load(&dir)?;
        if rec.pending.as_ref().is_some_and(|q| q.version == mine.version && q.slot == mine.slot) {
            rec.pending = None;
            rec.save(&dir)?;
        }
        Ok(())
    })
    .await;
    if !matches!(done, Ok(Ok(()))) {
        tracing::error!(result = ?done, "forgetting the proven upgrade");
    }
    tracing::info!(version = %p.version, "the health window ended: the upgrade is done");
    crate::sync::write(&state.os).upgrade = None;
}

/// The services of `p.ready_before` (same spec) whose task here is not
/// ready: a task of theirs fails its readiness probe and none is ready.
fn failing_here(p: &Pending, here: &[TaskReadiness]) -> Vec<String> {
    p.ready_before
        .iter()
        .filter(|rb| {
            let mine: Vec<&TaskReadiness> =
                here.iter().filter(|t| t.service_id == rb.service_id && t.spec_version == rb.spec_version).collect();
            !mine.iter().any(|t| t.running && t.health == Health::Ready)
                && mine.iter().any(|t| t.health == Health::NotReady)
        })
        .map(|rb| rb.service_id.clone())
        .collect()
}

/// Checks in a row a service must fail here before the leader is asked.
const FAILING_CHECKS: u32 = 3;

/// How watching a blessed version's workloads ended.
enum Watched {
    /// Why it must go back.
    Failing(String),
    WindowOver,
    /// Another upgrade was written meanwhile (it falls back to this one).
    Replaced,
}

/// Whether `p` is still the pending upgrade on STATE.
fn still_pending(state: &NodeState, p: &Pending) -> bool {
    match OsRecord::load(state.state_dir()) {
        Ok(rec) => rec.pending.is_some_and(|q| q.version == p.version && q.slot == p.slot),
        Err(_) => true,
    }
}

/// Until the health window ends: why the upgrade must go back, when a
/// task that was ready before fails readiness here (3 checks in a row)
/// while the same service has ready tasks on other nodes.
async fn workloads_failing(state: &NodeState, executor: &Executor, p: &Pending) -> Watched {
    let window = Duration::from_secs(p.health_window_secs.into());
    let mut counts: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
    let mut asked_at: Option<std::time::Instant> = None;
    loop {
        let up = Duration::from_secs_f64(record::uptime_secs());
        if up >= window {
            return Watched::WindowOver;
        }
        if !still_pending(state, p) {
            return Watched::Replaced;
        }
        let failing = failing_here(p, &executor.readiness().unwrap_or_default());
        counts.retain(|id, _| failing.contains(id));
        for id in &failing {
            *counts.entry(id.clone()).or_default() += 1;
        }
        let mut long: Vec<String> =
            counts.iter().filter(|(_, n)| **n >= FAILING_CHECKS).map(|(id, _)| id.clone()).collect();
        long.sort();
        {
            let mut r = crate::sync::write(&state.ready_elsewhere);
            if r.asked != long {
                r.asked = long.clone();
                asked_at = Some(std::time::Instant::now());
            }
        }
        let name = |id: &str| {
            p.ready_before.iter().find(|rb| rb.service_id == id).map(|rb| rb.service.clone()).unwrap_or_default()
        };
        if !long.is_empty() {
            let r = crate::sync::read(&state.ready_elsewhere).clone();
            let fresh = matches!((r.at, asked_at), (Some(at), Some(asked)) if at > asked);
            if fresh {
                if let Some((id, n)) = long.iter().find_map(|id| r.answer.get(id).filter(|n| **n > 0).map(|n| (id, n)))
                {
                    return Watched::Failing(format!(
                        "workloads failed after the upgrade: service {}'s task is not ready on this node (it was \
                         before, with the same spec) while {n} of its tasks are ready on other nodes",
                        name(id)
                    ));
                }
            }
        }
        let message = match long.first() {
            Some(id) => format!("blessed; service {}'s task is not ready here: is it ready elsewhere?", name(id)),
            None => {
                format!("blessed; its workloads are watched for {} s more (the health window)", (window - up).as_secs())
            }
        };
        crate::sync::write(&state.os).upgrade = Some(progress(p, UpgradeStage::Watching, message));
        tokio::time::sleep(CHECK_EVERY).await;
    }
}

/// The ESP is vfat, a late module: wait for those.
async fn esp_ready(state: &NodeState) {
    crate::late_modules::loaded(&state.config.run_dir.join(orc_image::cmdline::LATE_MODULES_PENDING)).await;
}

/// Renames the booted entry to its blessed name and records the pending
/// upgrade as blessed (its workloads are still watched).
fn bless(state: &NodeState, p: &Pending) -> Result<(), UpgradeError> {
    esp::writable(&state.config.run_dir, |root| {
        let e = esp::entry_of(root, p.slot)?.ok_or(UpgradeError::NoEntry(p.slot.as_str()))?;
        esp::rename(root, &e, &orc_image::boot_entry::BootEntry::blessed(&e.version))
    })?;
    let dir = state.state_dir();
    let mut rec = OsRecord::load(dir)?;
    if let Some(pending) = rec.pending.as_mut() {
        pending.blessed = true;
    }
    rec.save(dir)
}

/// Records why, marks the booted entry bad and reboots into the old version.
async fn give_up(state: &Arc<NodeState>, p: &Pending, verdict: String) {
    tracing::error!(version = %p.version, %verdict, "giving up on the new version: back to the old one");
    println!("orc: giving up on version {}: {verdict}", p.version);
    crate::sync::write(&state.os).upgrade = Some(progress(p, UpgradeStage::GivingUp, verdict.clone()));
    esp_ready(state).await;
    let (s, slot) = (state.clone(), p.slot);
    let marked = tokio::task::spawn_blocking(move || mark_bad(&s, slot, verdict)).await;
    match marked {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::error!(error = %e, "marking the new version bad failed; its boot counter still runs out")
        }
        Err(e) => tracing::error!(error = %e, "the marking task failed"),
    }
    if let Err(e) = crate::node::power::do_power(state, crate::node::power::PowerAction::Reboot) {
        tracing::error!(error = %e, "cannot reboot into the old version");
    }
}

/// The verdict on STATE (read after the fall back), the slot's entry bad.
pub fn mark_bad(state: &NodeState, slot: Slot, verdict: String) -> Result<(), UpgradeError> {
    let dir = state.state_dir();
    let mut rec = OsRecord::load(dir)?;
    if let Some(p) = rec.pending.as_mut() {
        p.verdict = Some(verdict);
    }
    rec.save(dir)?;
    esp::writable(&state.config.run_dir, |root| {
        let e = esp::entry_of(root, slot)?.ok_or(UpgradeError::NoEntry(slot.as_str()))?;
        esp::rename(root, &e, &esp::bad(&e))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::os::ReadyBefore;

    fn task(service: &str, spec_version: u64, running: bool, health: Health) -> TaskReadiness {
        TaskReadiness { service_id: service.into(), service: service.into(), spec_version, running, health }
    }

    #[test]
    fn a_task_ready_before_that_fails_readiness_now_is_failing_unless_its_spec_changed() {
        let rb = |id: &str, v: u64| ReadyBefore { service_id: id.into(), service: id.into(), spec_version: v };
        let p = Pending {
            version: "0.3.0".into(),
            from_version: "0.2.0".into(),
            slot: Slot::B,
            health_window_secs: 60,
            written_boot_id: "b".into(),
            verdict: None,
            ready_before: vec![rb("web", 4), rb("db", 2), rb("gone", 1), rb("updated", 1)],
            blessed: true,
        };
        let here = [
            task("web", 4, true, Health::NotReady),
            task("db", 2, true, Health::Starting),
            task("db", 2, true, Health::Ready),
            // A new spec since the upgrade: its failure is not the OS's.
            task("updated", 2, true, Health::NotReady),
            // Never ready before: not watched.
            task("other", 1, true, Health::NotReady),
        ];
        assert_eq!(failing_here(&p, &here), vec!["web".to_string()]);
    }
}
