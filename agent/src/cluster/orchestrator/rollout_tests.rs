//! The rollout on a hand-driven cluster state: each order and failure
//! action, the pace (parallelism, delay, monitor), and what a rollback
//! leaves running.
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::world::World;
use super::*;

const REPLICAS: u64 = 6;

/// A settled service of 6 replicas of image v1 on 3 nodes, with `policy`.
fn world(policy: UpdatePolicy) -> World {
    let mut w = World::new(&["a", "b", "c"]);
    w.service("web", |s| {
        s.replicas = REPLICAS;
        s.image = "web:1".into();
        s.update = policy;
    });
    w.settle();
    w.run_all();
    w.settle();
    w
}

/// Live tasks of `image`, and of those running and ready.
fn count(w: &World, image: &str) -> (usize, usize) {
    let live: Vec<Task> = w.live("web").into_iter().filter(|t| t.spec.image == image).collect();
    let ready = live.iter().filter(|t| t.ready()).count();
    (live.len(), ready)
}

/// Drives nodes until the update is over (or `rounds` run out); after each
/// round, `check` sees the world. Returns the rounds taken.
fn drive(w: &mut World, rounds: usize, mut check: impl FnMut(&World)) -> usize {
    for round in 0..rounds {
        w.settle();
        check(w);
        w.stop_all();
        w.settle();
        w.run_all();
        w.settle();
        check(w);
        w.now += 1_000;
        if w.status("web").is_some_and(|u| !u.state.open()) {
            return round;
        }
    }
    panic!("no end after {rounds} rounds: {:?}", w.status("web"));
}

#[test]
fn stop_first_replaces_in_batches_and_never_runs_two_of_a_slot() {
    let policy = UpdatePolicy { parallelism: 2, monitor_ms: 2_000, ..Default::default() };
    let mut w = world(policy);
    w.service("web", |s| s.image = "web:2".into());
    w.settle();
    assert_eq!(count(&w, "web:1").0, 4, "two old tasks shut down at a time");
    // The new ones wait for the old ones of their slots to stop.
    let waiting: Vec<Task> = w.live("web").into_iter().filter(|t| t.spec.image == "web:2").collect();
    assert_eq!(waiting.len(), 2);
    assert!(waiting.iter().all(|t| t.state == TaskState::Pending && t.message.contains("stop-first")), "{waiting:?}");
    let rounds = drive(&mut w, 20, |w| {
        let running = w.view().tasks.values().filter(|t| t.state == TaskState::Running).count();
        assert!(running >= REPLICAS as usize - 2, "{running} running with parallelism 2");
        let mut per_slot = std::collections::BTreeMap::new();
        for t in w.view().tasks.values().filter(|t| !t.state.terminal() && !t.node.is_empty()) {
            if t.state != TaskState::Pending && t.state != TaskState::Assigned {
                *per_slot.entry(t.slot).or_insert(0) += 1;
            }
        }
        assert!(per_slot.values().all(|n| *n <= 1), "two tasks of a slot at once: {per_slot:?}");
    });
    assert!(rounds >= 3, "3 batches of 2, then the monitor window: {rounds}");
    assert_eq!(count(&w, "web:2"), (6, 6));
    let u = w.status("web").unwrap();
    assert_eq!((u.state, u.message.as_str()), (UpdateState::Completed, "update completed"));
}

#[test]
fn start_first_keeps_the_count_and_retires_old_tasks_once_new_ones_are_ready() {
    let policy = UpdatePolicy { parallelism: 3, order: UpdateOrder::StartFirst, monitor_ms: 0, ..Default::default() };
    let mut w = world(policy);
    w.service("web", |s| s.image = "web:2".into());
    w.settle();
    assert_eq!(count(&w, "web:1"), (6, 6), "nothing stops before its replacement is ready");
    assert_eq!(count(&w, "web:2").0, 3);
    drive(&mut w, 10, |w| {
        let ready = count(w, "web:1").1 + count(w, "web:2").1;
        assert!(ready >= REPLICAS as usize, "{ready} ready during a start-first update");
    });
    assert_eq!(count(&w, "web:2"), (6, 6));
    assert_eq!(count(&w, "web:1").0, 0);
}

#[test]
fn a_failed_update_rolls_back_by_itself_and_the_old_tasks_keep_serving() {
    let policy =
        UpdatePolicy { parallelism: 1, failure_action: FailureAction::Rollback, monitor_ms: 0, ..Default::default() };
    let mut w = world(policy);
    let before: Vec<String> = w.live("web").iter().map(|t| t.id.clone()).collect();
    w.service("web", |s| s.image = "broken:1".into());
    w.settle();
    w.stop_all();
    w.settle();
    let bad = w.live("web").into_iter().find(|t| t.spec.image == "broken:1").unwrap();
    w.report(&bad.id, "rejected");
    w.settle();
    let u = w.status("web").unwrap();
    assert_eq!(u.state, UpdateState::RollingBack, "{u:?}");
    assert!(
        u.message.contains("update rolled back: 1 of 6 new tasks failed") && u.message.contains("rejected"),
        "{u:?}"
    );
    let s = w.view().service_by_name("web").cloned().unwrap();
    assert_eq!(s.spec.image, "web:1");
    assert_eq!(s.previous_spec.unwrap().image, "broken:1");
    drive(&mut w, 10, |_| {});
    assert_eq!(w.status("web").unwrap().state, UpdateState::RolledBack);
    let after: Vec<String> = w.live("web").iter().map(|t| t.id.clone()).collect();
    let kept = after.iter().filter(|id| before.contains(id)).count();
    assert_eq!(kept, 5, "only the replaced slot got a new task");
    assert_eq!(count(&w, "web:1"), (6, 6));
}

#[test]
fn pause_stops_the_update_and_continue_goes_on() {
    for (action, want) in
        [(FailureAction::Pause, UpdateState::Paused), (FailureAction::Continue, UpdateState::Completed)]
    {
        let policy = UpdatePolicy { parallelism: 2, failure_action: action, monitor_ms: 0, ..Default::default() };
        let mut w = world(policy);
        w.service("web", |s| s.image = "web:2".into());
        w.settle();
        w.stop_all();
        w.settle();
        let new = w.live("web").into_iter().find(|t| t.spec.image == "web:2").unwrap();
        w.report(&new.id, "failed");
        w.settle();
        if want == UpdateState::Paused {
            let u = w.status("web").unwrap();
            assert_eq!(u.state, UpdateState::Paused, "{u:?}");
            assert!(u.message.starts_with("update paused: 1 of 6 new tasks failed"), "{u:?}");
            let old_before = count(&w, "web:1").0;
            for _ in 0..3 {
                w.run_all();
                w.stop_all();
                w.now += 10_000;
                w.settle();
            }
            assert_eq!(count(&w, "web:1").0, old_before, "paused: no more old tasks replaced");
        } else {
            w.now += 10_000;
            drive(&mut w, 20, |_| {});
            assert_eq!(w.status("web").unwrap().state, want);
            assert_eq!(count(&w, "web:2").1, 6);
        }
    }
}

#[test]
fn parallelism_zero_replaces_all_at_once_and_delay_spaces_batches() {
    let mut w = world(UpdatePolicy { parallelism: 0, monitor_ms: 0, ..Default::default() });
    w.service("web", |s| s.image = "web:2".into());
    w.settle();
    assert_eq!(count(&w, "web:1").0, 0, "every old task shut at once");

    let mut w = world(UpdatePolicy { parallelism: 1, delay_ms: 5_000, monitor_ms: 0, ..Default::default() });
    w.service("web", |s| s.image = "web:2".into());
    w.settle();
    w.stop_all();
    w.settle();
    w.run_all();
    w.now += 1_000;
    w.settle();
    assert_eq!(count(&w, "web:1").0, 5, "the next batch waits for the delay");
    w.now += 5_000;
    w.settle();
    assert_eq!(count(&w, "web:1").0, 4);
}

#[test]
fn policy_changes_alone_replace_nothing() {
    let mut w = world(UpdatePolicy::default());
    let before: Vec<String> = w.live("web").iter().map(|t| t.id.clone()).collect();
    w.service("web", |s| s.update.parallelism = 5);
    w.settle();
    let after: Vec<String> = w.live("web").iter().map(|t| t.id.clone()).collect();
    assert_eq!(before.len(), 6);
    assert_eq!(before.iter().filter(|id| after.contains(id)).count(), 6);
    assert_eq!(w.status("web"), None);
}
