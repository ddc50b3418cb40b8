//! Jobs: tasks that run to completion. A replicated job has `replicas`
//! slots, each done once a task of the current run completed, with at
//! most `max_concurrent` tasks wanted running at once; a global job runs
//! once on each eligible node. A completed task is never restarted; a
//! failed one is retried per the restart policy (`any` and `on-failure`
//! both retry, `none` leaves the slot failed). A new spec version runs a
//! job again: its tasks of older versions still running are stopped and
//! their completions no longer count. Ended tasks stay (the latest few per
//! slot) until the service is removed.
//!
//! A cron job runs again on its schedule ([`super::cron`]): each run is
//! numbered in the service's `cron_status` (in Raft, written in the same
//! entry as the run's first tasks, so a leader change neither skips nor
//! doubles one) and its tasks carry the number. The concurrency policy
//! decides about a run still going when the next is due; finished runs
//! beyond the history limits are forgotten.

use super::cron::{self, Due};
use super::*;

/// Per slot (or node): done, or a task of the current run wanted running,
/// and its latest task of the current run.
#[derive(Default)]
struct Slot {
    done: bool,
    live: bool,
    latest: Option<Arc<Task>>,
}

/// Which tasks make up the current run.
#[derive(Clone, Copy)]
enum Run {
    /// A plain job: the tasks of the current spec version.
    Spec(u64),
    /// A cron job: the tasks of this run.
    Cron(u64),
}

impl Run {
    fn has(self, t: &Task) -> bool {
        match self {
            Run::Spec(v) => t.spec_version == v,
            Run::Cron(r) => t.run == r,
        }
    }
}

/// The job's slots in the current run, stopping a plain job's tasks of
/// older spec versions.
fn slots_of(p: &mut Pass, s: &Service, run: Run) -> BTreeMap<Key, Slot> {
    let mut out: BTreeMap<Key, Slot> = BTreeMap::new();
    let mut outdated = Vec::new();
    let rank = |t: &Task| (t.created_ms, t.attempt);
    for t in service_tasks(p, &s.id) {
        if !run.has(t) {
            if t.live() && matches!(run, Run::Spec(_)) {
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
fn next(p: &Pass, s: &Service, k: &Key, latest: Option<&Task>, run: Run) -> Option<Task> {
    // A job's tasks are never restarted after success: `any` means on failure.
    let mut job = s.clone();
    if job.spec.restart.condition == RestartCondition::Any {
        job.spec.restart.condition = RestartCondition::OnFailure;
    }
    let mut t = next_task(p, &job, k, latest)?;
    if let Run::Cron(r) = run {
        t.run = r;
    }
    Some(t)
}

/// The run to work on: the spec version of a plain job; for a cron job,
/// its latest run after acting on its schedule (None before the first).
fn current_run(p: &mut Pass, s: &Service) -> Option<Run> {
    let Some(c) = &s.spec.cron else { return Some(Run::Spec(s.spec_version)) };
    let mut st = s.cron_status.clone().unwrap_or(CronStatus { last_schedule_ms: s.created_ms, ..Default::default() });
    let parsed = cron::parse(c).ok()?;
    let due = if c.suspend { None } else { cron::due(c, &parsed, st.last_schedule_ms, p.now) };
    match due {
        None => {}
        Some(Due::Missed(t)) => {
            st.last_schedule_ms = t;
            st.message = format!("missed the run of {}: more than the starting deadline late", cron::show(&parsed, t));
        }
        Some(Due::Run(t)) => {
            let going: Vec<String> = service_tasks(p, &s.id)
                .filter(|x| st.run > 0 && x.run == st.run && x.desired == TaskState::Running && !x.state.terminal())
                .map(|x| x.id.clone())
                .collect();
            st.last_schedule_ms = t;
            if going.is_empty() || c.concurrency != Concurrency::Forbid {
                if c.concurrency == Concurrency::Replace {
                    for id in &going {
                        p.shut(id, "replaced by the next scheduled run", None);
                    }
                }
                st.run += 1;
                st.message = format!("run {} started for {}", st.run, cron::show(&parsed, t));
                tracing::info!(service = %s.spec.name, run = st.run, "cron job run");
            } else {
                st.message = format!(
                    "skipped the run of {}: run {} is still going (concurrency forbid)",
                    cron::show(&parsed, t),
                    st.run
                );
            }
        }
    }
    if s.cron_status.as_ref() != Some(&st) {
        p.services.insert(s.id.clone(), Service { cron_status: Some(st.clone()), ..s.clone() });
    }
    history(p, s, c, st.run);
    (st.run > 0).then_some(Run::Cron(st.run))
}

/// Forgets the tasks of finished runs beyond the history limits (the
/// current run always stays): a run failed when a slot's latest task did.
fn history(p: &mut Pass, s: &Service, c: &CronSchedule, current: u64) {
    /// One run's tasks: whether any is still going, each slot's latest
    /// (creation, state), and their ids.
    #[derive(Default)]
    struct RunTasks {
        going: bool,
        latest: BTreeMap<Key, (i64, TaskState)>,
        ids: Vec<String>,
    }
    let mut runs: BTreeMap<u64, RunTasks> = BTreeMap::new();
    for t in service_tasks(p, &s.id) {
        let e = runs.entry(t.run).or_default();
        e.going |= !t.state.terminal() || t.desired == TaskState::Running;
        let last = e.latest.entry(key(t)).or_insert((t.created_ms, t.state));
        if t.created_ms >= last.0 {
            *last = (t.created_ms, t.state);
        }
        e.ids.push(t.id.clone());
    }
    let (mut ok, mut failed) = (0u32, 0u32);
    for (run, RunTasks { going, latest, ids }) in runs.into_iter().rev() {
        if going || run == current {
            continue;
        }
        let succeeded = latest.values().all(|(_, state)| *state == TaskState::Complete);
        let kept = if succeeded { &mut ok } else { &mut failed };
        *kept += 1;
        if *kept > if succeeded { c.success_history } else { c.failed_history } {
            p.deleted.extend(ids);
        }
    }
}

pub(super) fn replicated(p: &mut Pass, s: &Service) {
    let Some(run) = current_run(p, s) else { return };
    let slots = slots_of(p, s, run);
    for (k, slot) in &slots {
        if matches!(k, Key::Slot(n) if *n > s.spec.replicas) && slot.live {
            let extra: Vec<String> = service_tasks(p, &s.id)
                .filter(|t| key(t) == *k && t.live() && run.has(t))
                .map(|t| t.id.clone())
                .collect();
            for id in extra {
                p.shut(&id, "scaled down", None);
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
        if let Some(t) = next(p, s, &k, slot.and_then(|v| v.latest.as_deref()), run) {
            add(p, t);
            running += 1;
        }
    }
}

pub(super) fn global(p: &mut Pass, s: &Service) {
    let nodes = eligible(p, s);
    let Some(run) = current_run(p, s) else { return };
    let slots = slots_of(p, s, run);
    for k in nodes {
        let slot = slots.get(&k);
        if slot.is_some_and(|v| v.done || v.live) {
            continue;
        }
        if let Some(t) = next(p, s, &k, slot.and_then(|v| v.latest.as_deref()), run) {
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

    fn cron(w: &mut World, name: &str, concurrency: Concurrency, success_history: u32) {
        w.service(name, |s| {
            s.mode = Mode::ReplicatedJob;
            s.replicas = 1;
            s.cron = Some(CronSchedule {
                schedule: "* * * * *".into(),
                time_zone: String::new(),
                concurrency,
                starting_deadline_ms: 0,
                success_history,
                failed_history: 1,
                suspend: false,
            });
        });
    }

    fn runs(w: &World, name: &str) -> Vec<u64> {
        let mut r: Vec<u64> = w.view().tasks.values().filter(|t| t.service == name).map(|t| t.run).collect();
        r.sort();
        r.dedup();
        r
    }

    fn status(w: &World, name: &str) -> CronStatus {
        w.view().service_by_name(name).and_then(|s| s.cron_status.clone()).unwrap_or_default()
    }

    #[test]
    fn a_cron_job_runs_on_schedule_once_per_time_whatever_the_passes() {
        let mut w = World::new(&["a"]);
        w.now = 1_800_000_000_000; // on a minute
        cron(&mut w, "tick", Concurrency::Forbid, 3);
        w.settle();
        assert!(live(&w, "tick").is_empty(), "nothing before the first scheduled time");
        w.now += 60_000;
        w.settle();
        assert_eq!(runs(&w, "tick"), [1]);
        // More passes at the same time (a new leader reading the same
        // state) start nothing more.
        w.seen = 0;
        w.settle();
        assert_eq!(live(&w, "tick").len(), 1);
        // Forbid: the next time comes while run 1 is going: skipped.
        w.run_all();
        w.now += 60_000;
        w.settle();
        assert_eq!(runs(&w, "tick"), [1]);
        assert!(status(&w, "tick").message.contains("still going (concurrency forbid)"), "{:?}", status(&w, "tick"));
        finish(&mut w, "tick", "complete");
        // Ten minutes without a leader: one catch-up run, not ten.
        w.now += 10 * 60_000;
        w.settle();
        assert_eq!(runs(&w, "tick"), [1, 2]);
        assert_eq!(live(&w, "tick").len(), 1);
    }

    #[test]
    fn replace_stops_the_run_going_and_allow_runs_beside_it() {
        let mut w = World::new(&["a"]);
        w.now = 1_800_000_000_000;
        cron(&mut w, "r", Concurrency::Replace, 3);
        cron(&mut w, "a", Concurrency::Allow, 3);
        for _ in 0..2 {
            w.now += 60_000;
            w.settle();
            w.run_all();
        }
        let r = live(&w, "r");
        assert_eq!((r.len(), r[0].run), (1, 2), "replace: only run 2 goes on");
        let mut a: Vec<u64> = live(&w, "a").iter().map(|t| t.run).collect();
        a.sort();
        assert_eq!(a, [1, 2], "allow: both runs go on");
    }

    #[test]
    fn finished_runs_beyond_the_history_limits_are_forgotten() {
        let mut w = World::new(&["a"]);
        w.now = 1_800_000_000_000;
        cron(&mut w, "h", Concurrency::Allow, 2);
        for _ in 0..5 {
            w.now += 60_000;
            w.settle();
            w.run_all();
            finish(&mut w, "h", "complete");
            w.settle();
        }
        assert_eq!(runs(&w, "h"), [3, 4, 5], "two finished runs kept besides the latest");
        assert_eq!(status(&w, "h").run, 5);
    }
}
