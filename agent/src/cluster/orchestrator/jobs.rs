//! Jobs: tasks that run to completion. A replicated job has `replicas`
//! slots, each done once a task of the current spec completed, with at
//! most `max_concurrent` tasks wanted running at once; a global job runs
//! once on each eligible node. A completed task is never restarted; a
//! failed one is retried per the restart policy (`any` and `on-failure`
//! both retry, `none` leaves the slot failed). A new spec version runs the
//! job again: tasks of older versions still running are stopped and their
//! completions no longer count. Ended tasks stay (the latest few per slot)
//! until the service is removed.

use super::*;

/// Per slot (or node): done, or a task of the current spec wanted running,
/// and its latest task of the current spec.
#[derive(Default)]
struct Slot {
    done: bool,
    live: bool,
    latest: Option<Arc<Task>>,
}

/// The job's slots as the pass has them, stopping tasks of older versions.
fn slots_of(p: &mut Pass, s: &Service) -> BTreeMap<Key, Slot> {
    let mut out: BTreeMap<Key, Slot> = BTreeMap::new();
    let mut outdated = Vec::new();
    let rank = |t: &Task| (t.created_ms, t.attempt);
    for t in service_tasks(p, &s.id) {
        if t.spec_version != s.spec_version {
            if t.live() {
                outdated.push(t.id.clone());
            }
            continue;
        }
        let e = out.entry(key(t)).or_default();
        e.done |= t.state == TaskState::Complete;
        e.live |= t.desired == TaskState::Running && !t.state.terminal();
        if e.latest.as_ref().is_none_or(|l| rank(l) <= rank(t)) {
            e.latest = p.tasks.get(&t.id).cloned();
        }
    }
    for id in outdated {
        p.shut(&id, "the job runs again with a new spec", None);
    }
    out
}

/// The next try of a slot not done, unless the restart policy gives up.
fn next(p: &Pass, s: &Service, k: &Key, latest: Option<&Task>) -> Option<Task> {
    // A job's tasks are never restarted after success: `any` means on failure.
    let mut job = s.clone();
    if job.spec.restart.condition == RestartCondition::Any {
        job.spec.restart.condition = RestartCondition::OnFailure;
    }
    next_task(p, &job, k, latest)
}

pub(super) fn replicated(p: &mut Pass, s: &Service) {
    let slots = slots_of(p, s);
    for (k, slot) in &slots {
        if matches!(k, Key::Slot(n) if *n > s.spec.replicas) && slot.live {
            for t in
                service_tasks(p, &s.id).filter(|t| key(t) == *k && t.live()).map(|t| t.id.clone()).collect::<Vec<_>>()
            {
                p.shut(&t, "scaled down", None);
            }
        }
    }
    let limit = match s.spec.max_concurrent {
        0 => s.spec.replicas,
        n => n.min(s.spec.replicas),
    } as usize;
    let mut running =
        slots.iter().filter(|(k, v)| v.live && matches!(k, Key::Slot(n) if *n <= s.spec.replicas)).count();
    for n in 1..=s.spec.replicas {
        if running >= limit {
            break;
        }
        let k = Key::Slot(n);
        let slot = slots.get(&k);
        if slot.is_some_and(|v| v.done || v.live) {
            continue;
        }
        if let Some(t) = next(p, s, &k, slot.and_then(|v| v.latest.as_deref())) {
            add(p, t);
            running += 1;
        }
    }
}

pub(super) fn global(p: &mut Pass, s: &Service) {
    let nodes = eligible(p, s);
    let slots = slots_of(p, s);
    for k in nodes {
        let slot = slots.get(&k);
        if slot.is_some_and(|v| v.done || v.live) {
            continue;
        }
        if let Some(t) = next(p, s, &k, slot.and_then(|v| v.latest.as_deref())) {
            add(p, t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::world::World;
    use super::*;

    fn live(w: &World, service: &str) -> Vec<Task> {
        w.live(service)
    }

    fn finish(w: &mut World, service: &str, state: &str) {
        for t in live(w, service).into_iter().filter(|t| t.state == TaskState::Running) {
            w.report(&t.id, state);
        }
    }

    fn completed(w: &World, service: &str) -> usize {
        w.view().tasks.values().filter(|t| t.service == service && t.state == TaskState::Complete).count()
    }

    #[test]
    fn a_replicated_job_runs_its_completions_at_most_max_concurrent_at_once() {
        let mut w = World::new(&["a", "b"]);
        w.service("batch", |s| {
            s.mode = Mode::ReplicatedJob;
            s.replicas = 5;
            s.max_concurrent = 2;
            s.restart.delay_ms = 1_000;
        });
        w.settle();
        assert_eq!(live(&w, "batch").len(), 2);
        w.run_all();
        finish(&mut w, "batch", "complete");
        w.settle();
        assert_eq!((completed(&w, "batch"), live(&w, "batch").len()), (2, 2), "done slots stay done");
        w.run_all();
        // One fails: retried after its delay; the other completes.
        let [a, b] = <[Task; 2]>::try_from(live(&w, "batch")).unwrap();
        w.report(&a.id, "failed");
        w.report(&b.id, "complete");
        w.settle();
        let retry = live(&w, "batch").into_iter().find(|t| t.slot == a.slot).unwrap();
        assert_eq!((retry.state, retry.attempt), (TaskState::Pending, 1), "waits for its delay");
        w.now += 1_000;
        for _ in 0..4 {
            w.settle();
            w.run_all();
            finish(&mut w, "batch", "complete");
            w.settle();
        }
        assert_eq!((completed(&w, "batch"), live(&w, "batch").len()), (5, 0), "five completions, nothing more");
        w.now += 60_000;
        assert_eq!(w.settle(), 0, "a finished job stays finished");
        assert!(w.view().tasks.len() >= 5, "its history stays until it is removed");

        // A new spec runs it again.
        w.service("batch", |s| s.image = "batch:2".into());
        w.settle();
        assert_eq!(live(&w, "batch").len(), 2);
        assert!(live(&w, "batch").iter().all(|t| t.spec.image == "batch:2"));
    }

    #[test]
    fn a_global_job_runs_once_per_node_and_on_nodes_that_join() {
        let mut w = World::new(&["a", "b"]);
        w.service("setup", |s| {
            s.mode = Mode::GlobalJob;
            s.restart.condition = RestartCondition::None;
        });
        w.settle();
        assert_eq!((w.on("setup", "a"), w.on("setup", "b")), (1, 1));
        w.run_all();
        let on_b = live(&w, "setup").into_iter().find(|t| t.node == "b").unwrap();
        finish(&mut w, "setup", "complete");
        w.report(&on_b.id, "failed");
        w.settle();
        assert!(live(&w, "setup").is_empty(), "done on a; failed on b with restart none: not retried");
        w.node("c", |_| {});
        w.settle();
        assert_eq!(w.on("setup", "c"), 1);
    }
}
