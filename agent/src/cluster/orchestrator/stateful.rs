//! Stateful services: a stable identity per slot (the task of slot n is
//! `<service>.<n>`, its hostname too), slots started in order (slot n once
//! slot n-1 is ready), stopped in reverse on scale-down (one at a time,
//! the highest first), and never two tasks of a slot alive at once: a
//! replacement waits until the task it replaces is over ([`super::rollout::stopping`]),
//! and a task on a node that went down keeps its slot for [`GRACE`] after
//! the node was marked down — longer than a node cut off from the managers
//! takes to stop its stateful tasks itself ([`crate::worker::fence::FENCE_AFTER`]).
//! Per-slot volumes come with the volumes work: a slot's identity is what
//! they will be keyed by.

use std::time::Duration;

use super::*;

/// How long a stateful task on a down node keeps its slot.
pub const GRACE: Duration = Duration::from_secs(30);

/// Whether `t` is a stateful task on a down node still within its grace
/// (it keeps its slot: it may still be running there).
pub(super) fn held(p: &Pass, t: &Task) -> bool {
    let stateful = p.v.services.get(&t.service_id).is_some_and(|s| s.spec.stateful);
    let Some(n) = p.v.nodes.get(&t.node).filter(|_| stateful) else { return false };
    n.status == NodeStatus::Down && p.now - n.updated_ms < GRACE.as_millis() as i64
}

/// Scale-down, highest slot first, one slot at a time: a slot above the
/// count is shut down once no higher one still has a task alive.
pub(super) fn scale_down(p: &mut Pass, s: &Service) {
    let mut alive: BTreeMap<u64, Vec<(String, bool)>> = BTreeMap::new();
    for t in service_tasks(p, &s.id).filter(|t| t.slot > s.spec.replicas && !t.state.terminal()) {
        alive.entry(t.slot).or_default().push((t.id.clone(), t.desired == TaskState::Running));
    }
    let Some((_, top)) = alive.into_iter().next_back() else { return };
    for (id, wanted) in top {
        if wanted {
            p.shut(&id, "scaled down (highest slot first)", None);
        }
    }
}

/// Gives the lowest slot without a task its next one, once every slot
/// below it has a ready task; one slot at a time.
pub(super) fn fill(p: &mut Pass, s: &Service) {
    let latest = slots(p, &s.id);
    for n in 1..=s.spec.replicas {
        let k = Key::Slot(n);
        let (prev, wanted) = latest.get(&k).cloned().unwrap_or_default();
        if wanted {
            let ready = prev.and_then(|id| p.tasks.get(&id)).is_some_and(|t| t.ready());
            if ready {
                continue;
            }
            return;
        }
        let prev = prev.and_then(|id| p.tasks.get(&id).cloned());
        if let Some(t) = next_task(p, s, &k, prev.as_deref()) {
            add(p, t);
        }
        return;
    }
}

#[cfg(test)]
mod tests {
    use super::super::world::World;
    use super::*;
    use crate::model::patch::TaskPatch;

    fn live(w: &World) -> Vec<Task> {
        let mut l = w.live("db");
        l.sort_by_key(|t| t.slot);
        l
    }

    fn ready(w: &mut World, id: &str) {
        let p = TaskPatch {
            state: Some(TaskState::Running),
            health: Some(Health::Ready),
            ready_ms: Some(w.now),
            ..Default::default()
        };
        w.state.apply(&p.command(id));
    }

    #[test]
    fn slots_start_in_order_and_stop_in_reverse() {
        let mut w = World::new(&["a", "b"]);
        w.service("db", |s| {
            s.replicas = 3;
            s.stateful = true;
        });
        w.settle();
        assert_eq!(live(&w).iter().map(|t| t.slot).collect::<Vec<_>>(), [1], "slot 1 alone first");
        // Running but not ready yet: slot 2 waits.
        let one = live(&w)[0].id.clone();
        w.report(&one, "running");
        w.settle();
        assert_eq!(live(&w).len(), 1);
        ready(&mut w, &one);
        w.settle();
        assert_eq!(live(&w).iter().map(|t| t.slot).collect::<Vec<_>>(), [1, 2]);
        let two = live(&w)[1].id.clone();
        ready(&mut w, &two);
        w.settle();
        let three = live(&w)[2].id.clone();
        ready(&mut w, &three);
        w.settle();
        assert_eq!(live(&w).len(), 3);

        // Down to 1: slot 3 first; slot 2 only once slot 3 stopped.
        w.service("db", |s| s.replicas = 1);
        w.settle();
        assert_eq!(live(&w).iter().map(|t| t.slot).collect::<Vec<_>>(), [1, 2]);
        w.stop_all();
        w.settle();
        assert_eq!(live(&w).iter().map(|t| t.slot).collect::<Vec<_>>(), [1]);
    }

    #[test]
    fn a_slot_on_a_lost_node_is_replaced_only_after_its_grace() {
        let mut w = World::new(&["a"]);
        w.service("db", |s| {
            s.replicas = 1;
            s.stateful = true;
        });
        w.settle();
        let first = live(&w)[0].clone();
        ready(&mut w, &first.id);
        w.node("b", |_| {});
        let now = w.now;
        w.node("a", |n| {
            n.status = NodeStatus::Down;
            n.updated_ms = now;
        });
        w.settle();
        assert_eq!(live(&w).iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), [first.id.as_str()], "held");
        w.now += GRACE.as_millis() as i64 - 1;
        w.settle();
        assert_eq!(live(&w).len(), 1, "still within the grace");
        assert_eq!(live(&w)[0].id, first.id);
        w.now += 1;
        w.settle();
        let l = live(&w);
        assert_eq!(l.len(), 1);
        assert_ne!(l[0].id, first.id, "replaced once the grace is over");
        assert_eq!((l[0].slot, l[0].node.as_str()), (1, "b"));
        assert_eq!(w.view().tasks[&first.id].state, TaskState::Orphaned);
    }
}
