//! The orchestrators and the scheduler pass, as one pure function of the
//! cluster state: which tasks to create (replicated: one per slot; global:
//! one per eligible node), which to shut down (node down or drained,
//! service removed, updated or scaled down), which ended tasks to replace
//! per the restart policy, where pending tasks go, and which old tasks to
//! forget. The leader applies the commands it returns in one Raft entry.
//!
//! Changes to existing tasks are merge patches of the fields that changed,
//! so a task status a node reported meanwhile is never overwritten.
//! Updates roll per the service's policy ([`rollout`]).

pub mod cron;
mod jobs;
pub mod rollout;
mod stateful;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::objects::*;
use super::scheduler::{self, Constraint, Demand, NodeInfo, PerService};
use crate::model::db::index::{holds, Usage};
use crate::model::db::{Change, Command, Kind, Object, Table};
use crate::model::patch::TaskPatch;

/// Ended tasks kept per slot (or per node for global services) for `service ps`.
pub const HISTORY: usize = 3;

/// Where a task sits in its service: a slot, or a node for global services.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Key {
    Slot(u64),
    Node(String),
}

fn key(t: &Task) -> Key {
    if t.slot == 0 {
        Key::Node(t.node.clone())
    } else {
        Key::Slot(t.slot)
    }
}

struct Pass<'a> {
    v: &'a View,
    now: i64,
    /// The tasks as this pass leaves them (shared with the view until changed).
    tasks: Table<Task>,
    created: Vec<String>,
    /// Service id → tasks this pass created for it.
    created_for: HashMap<String, Vec<String>>,
    deleted: Vec<String>,
    /// Ids of the tasks this pass created, changed or deleted: what its
    /// commands are made of, without comparing the two maps.
    touched: BTreeSet<String>,
    /// Services whose update status (or, rolling back, spec) this pass changed.
    services: BTreeMap<String, Service>,
    /// Stateful slots' volumes this pass made or moved, by name.
    volumes: BTreeMap<String, Volume>,
}

impl Pass<'_> {
    /// Task `id`, to change (its own copy from now on).
    fn task_mut(&mut self, id: &str) -> Option<&mut Task> {
        let t = self.tasks.get_mut(id)?;
        self.touched.insert(id.to_string());
        Some(Arc::make_mut(t))
    }

    /// What this pass changed: each touched task as the view has it and as
    /// the pass leaves it (None: absent), the unchanged ones left out.
    fn changes(&self) -> impl Iterator<Item = (&String, Option<&Arc<Task>>, Option<&Arc<Task>>)> + '_ {
        self.touched.iter().filter_map(|id| {
            let (old, new) = (self.v.tasks.get(id), self.tasks.get(id));
            match (old, new) {
                (Some(a), Some(b)) if Arc::ptr_eq(a, b) => None,
                (None, None) => None,
                _ => Some((id, old, new)),
            }
        })
    }

    fn shut(&mut self, id: &str, message: &str, state: Option<TaskState>) {
        let now = self.now;
        if let Some(t) = self.task_mut(id) {
            t.desired = TaskState::Shutdown;
            if let Some(s) = state {
                t.state = s;
            }
            if !message.is_empty() {
                t.message = message.to_string();
            }
            t.updated_ms = now;
        }
    }

    fn node_ok(&self, id: &str) -> Option<&Node> {
        self.v.nodes.get(id).filter(|n| n.status != NodeStatus::Down).map(|n| &**n)
    }
}

/// What a pass looks at: everything, or what changed since the last one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    Changed {
        /// Services (by id) to orchestrate: their spec changed, or one of
        /// their tasks was created, removed, ended or stopped being wanted.
        services: BTreeSet<String>,
        /// Tasks that changed in any way (a node's report among them).
        tasks: BTreeSet<String>,
        /// Nodes that changed.
        nodes: BTreeSet<String>,
    },
}

impl Scope {
    /// The scope of the changes `feed` lists, as `v` has them now.
    pub fn of(feed: &[Arc<Change>], v: &View) -> Self {
        let (mut services, mut tasks, mut nodes) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
        for c in feed {
            match c.key.kind {
                Kind::Service => {
                    services.insert(c.key.id.clone());
                }
                Kind::Task => {
                    // A node's report of a task still on its way or running
                    // asks nothing of its service.
                    let settled = v.tasks.get(&c.key.id).is_some_and(|t| {
                        t.desired == TaskState::Running && !t.state.terminal() && t.state != TaskState::Pending
                    });
                    if !settled {
                        services.insert(c.service.clone());
                    }
                    tasks.insert(c.key.id.clone());
                }
                Kind::Node => {
                    nodes.insert(c.key.id.clone());
                }
                // The replica limit (settings) applies when specs are written.
                _ => {}
            }
        }
        Self::Changed { services, tasks, nodes }
    }
}

/// The commands that bring the tasks in line with services and nodes,
/// looking at what `scope` says (pending tasks are always looked at: their
/// restart delays run out without any change).
pub fn reconcile(v: &View, now: i64, scope: &Scope) -> Vec<Command> {
    let mut p = Pass {
        v,
        now,
        tasks: v.tasks.clone(),
        created: Vec::new(),
        created_for: HashMap::new(),
        deleted: Vec::new(),
        touched: BTreeSet::new(),
        services: BTreeMap::new(),
        volumes: BTreeMap::new(),
    };
    let (tasks, services, forgettable): (Vec<String>, Vec<Arc<Service>>, Vec<String>) = match scope {
        Scope::All => (
            v.tasks.keys().cloned().collect(),
            v.services.values().cloned().collect(),
            v.services.keys().cloned().chain(v.tasks.values().map(|t| t.service_id.clone())).collect(),
        ),
        Scope::Changed { services, tasks: changed, nodes } => {
            // Updates under way move on with time (delay, monitor window).
            // So do cron schedules and stateful slots held through a
            // node's grace.
            let rolling: BTreeSet<String> = v
                .services
                .values()
                .filter(|s| {
                    s.update_status.as_ref().is_some_and(|u| u.state.moving())
                        || s.spec.cron.as_ref().is_some_and(|c| !c.suspend)
                        || s.spec.stateful
                })
                .map(|s| s.id.clone())
                .collect();
            let services: BTreeSet<String> = services.union(&rolling).cloned().collect();
            let services = &services;
            let mut tasks: BTreeSet<String> = changed.clone();
            for s in services {
                tasks.extend(v.index.tasks_of(s).iter().cloned());
            }
            for n in nodes {
                tasks.extend(v.index.tasks_on(n).iter().cloned());
            }
            let mut chosen: Vec<Arc<Service>> = services.iter().filter_map(|s| v.services.get(s).cloned()).collect();
            if !nodes.is_empty() {
                // Which nodes a global service runs on follows the nodes.
                chosen
                    .extend(v.services.values().filter(|s| s.spec.mode.global() && !services.contains(&s.id)).cloned());
            }
            (tasks.into_iter().collect(), chosen, services.iter().cloned().collect())
        }
    };
    end_tasks(&mut p, tasks);
    for s in &services {
        match s.spec.mode {
            Mode::Replicated => replicated(&mut p, s),
            Mode::Global => global(&mut p, s),
            Mode::ReplicatedJob => jobs::replicated(&mut p, s),
            Mode::GlobalJob => jobs::global(&mut p, s),
        }
    }
    schedule(&mut p);
    forget(&mut p, forgettable);
    commands(&p)
}

/// Tasks (of `ids`) that ended, lost their node, their service or their spec.
fn end_tasks(p: &mut Pass, ids: Vec<String>) {
    for id in ids {
        let Some(t) = p.tasks.get(&id) else { continue };
        let held = stateful::held(p, t);
        if t.desired != TaskState::Running {
            // Wanted gone: on a lost node it will never report; it is over
            // (a stateful task once its node's grace is over).
            if !t.state.terminal() && !t.node.is_empty() && p.node_ok(&t.node).is_none() && !held {
                let msg = format!("node {} is down", t.node);
                p.shut(&id, &msg, Some(TaskState::Orphaned));
            }
            continue;
        }
        if t.state.terminal() {
            if let Some(t) = p.task_mut(&id) {
                t.desired = TaskState::Shutdown;
                t.ended_alone = true;
            }
            continue;
        }
        let service = p.v.services.get(&t.service_id);
        if !t.node.is_empty() {
            match p.v.nodes.get(&t.node) {
                None => {
                    p.shut(&id, "its node left the cluster", Some(TaskState::Orphaned));
                    continue;
                }
                // A stateful task keeps its slot through its node's grace.
                Some(n) if n.status == NodeStatus::Down && held => continue,
                Some(n) if n.status == NodeStatus::Down => {
                    let msg = format!("node {} is down", n.hostname);
                    p.shut(&id, &msg, Some(TaskState::Orphaned));
                    continue;
                }
                Some(n) if n.availability == Availability::Drain => {
                    let msg = format!("node {} is drained", n.hostname);
                    p.shut(&id, &msg, None);
                    continue;
                }
                _ => {}
            }
        }
        // Tasks of an older spec are replaced by the rollout, at its pace.
        if service.is_none() {
            p.shut(&id, "service removed", None);
        }
    }
}

/// The task to run in a free slot (or on a node), unless the restart policy
/// says the slot is done. `prev` is the slot's latest task.
fn next_task(p: &Pass, s: &Service, k: &Key, prev: Option<&Task>) -> Option<Task> {
    let r = &s.spec.restart;
    let (mut attempt, mut window_start, mut not_before) = (0u32, p.now, 0i64);
    if let Some(prev) = prev.filter(|t| t.ended_alone) {
        match r.condition {
            RestartCondition::None => return None,
            RestartCondition::OnFailure if prev.state == TaskState::Complete => return None,
            _ => {}
        }
        (attempt, window_start) = attempt_of(prev);
        if r.window_ms > 0 && p.now - window_start > r.window_ms as i64 {
            (attempt, window_start) = (0, p.now);
        }
        attempt += 1;
        if r.max_attempts > 0 && attempt > r.max_attempts {
            return None;
        }
        not_before = prev.updated_ms + (r.delay_ms as i64).max(backoff_ms(attempt));
    } else if let Some(prev) = prev {
        // Shut down by the managers (node lost, drain, update): the
        // replacement is not a restart attempt.
        (attempt, window_start) = attempt_of(prev);
    }
    let (slot, node) = match k {
        Key::Slot(n) => (*n, String::new()),
        Key::Node(n) => (0, n.clone()),
    };
    Some(Task {
        id: new_id(),
        service_id: s.id.clone(),
        service: s.spec.name.clone(),
        slot,
        node,
        desired: TaskState::Running,
        state: TaskState::Pending,
        message: if attempt > 0 { format!("restart attempt {attempt}") } else { String::new() },
        spec: s.spec.clone(),
        spec_version: s.spec_version,
        not_before_ms: not_before,
        created_ms: p.now,
        updated_ms: p.now,
        attempt,
        window_start_ms: window_start,
        ..Default::default()
    })
}

/// A floor under the restart delay for slots that keep failing, so a task
/// that cannot start (a missing image, a crash at start) with no delay set
/// does not spin: 0 for the first restart, then 200 ms doubling to 10 s.
fn backoff_ms(attempt: u32) -> i64 {
    match attempt {
        0 | 1 => 0,
        n => (200i64 << (n - 2).min(6)).min(10_000),
    }
}

fn attempt_of(t: &Task) -> (u32, i64) {
    (t.attempt, t.window_start_ms)
}

/// The latest task of each slot/node of a service, and whether one is wanted running.
fn slots(p: &Pass, service_id: &str) -> BTreeMap<Key, (Option<String>, bool)> {
    let mut out: BTreeMap<Key, (Option<String>, bool)> = BTreeMap::new();
    // Latest: created last; at the same millisecond, the later attempt, then the one wanted running.
    let rank = |t: &Task| (t.created_ms, t.attempt, t.desired == TaskState::Running);
    for t in service_tasks(p, service_id) {
        let e = out.entry(key(t)).or_default();
        let newer = e.0.as_ref().is_none_or(|id| rank(&p.tasks[id]) <= rank(t));
        if newer {
            e.0 = Some(t.id.clone());
        }
        e.1 |= t.desired == TaskState::Running;
    }
    out
}

/// The tasks of `service` as this pass has them (from the index, and what
/// the pass created): never a scan of every task.
fn service_tasks<'a>(p: &'a Pass, service: &str) -> impl Iterator<Item = &'a Task> + 'a {
    let created = p.created_for.get(service).into_iter().flatten();
    p.v.index.tasks_of(service).iter().chain(created).filter_map(|id| p.tasks.get(id)).map(|t| &**t)
}

fn add(p: &mut Pass, t: Task) {
    p.created.push(t.id.clone());
    p.created_for.entry(t.service_id.clone()).or_default().push(t.id.clone());
    p.touched.insert(t.id.clone());
    p.tasks.insert(t.id.clone(), Arc::new(t));
}

fn replicated(p: &mut Pass, s: &Service) {
    let keys: Vec<Key> = (1..=s.spec.replicas).map(Key::Slot).collect();
    if rollout::step(p, s, &keys) == rollout::Next::Stop {
        return;
    }
    // Per slot, the tasks wanted running of the current spec and of older ones.
    let mut running: BTreeMap<u64, [Vec<String>; 2]> = BTreeMap::new();
    for t in service_tasks(p, &s.id).filter(|t| t.desired == TaskState::Running) {
        let current = usize::from(rollout::current(t, s));
        running.entry(t.slot).or_default()[current].push(t.id.clone());
    }
    if s.spec.stateful {
        stateful::scale_down(p, s);
        stateful::fill(p, s);
        return;
    }
    for (slot, lists) in &running {
        for ids in lists {
            if *slot > s.spec.replicas {
                for id in ids {
                    p.shut(id, "scaled down", None);
                }
            } else if ids.len() > 1 {
                // Never expected (an old and a new task may share a slot
                // during a start-first update); keep the oldest.
                let mut ids = ids.clone();
                ids.sort_by_key(|id| p.tasks[id].created_ms);
                for id in &ids[1..] {
                    p.shut(id, "duplicate in its slot", None);
                }
            }
        }
    }
    fill(p, s, keys);
}

/// Gives every slot (or node) in `keys` without a task wanted running its
/// next task, unless the restart policy says it is done.
fn fill(p: &mut Pass, s: &Service, keys: Vec<Key>) {
    let latest = slots(p, &s.id);
    for k in keys {
        let (prev, wanted) = latest.get(&k).cloned().unwrap_or_default();
        if wanted {
            continue;
        }
        let prev = prev.and_then(|id| p.tasks.get(&id).cloned());
        if let Some(t) = next_task(p, s, &k, prev.as_deref()) {
            add(p, t);
        }
    }
}

fn node_info(n: &Node) -> NodeInfo {
    NodeInfo {
        id: n.id.clone(),
        hostname: n.hostname.clone(),
        role: n.role,
        availability: n.availability,
        ready: n.status == NodeStatus::Ready,
        labels: n.labels.clone(),
        cpus: n.cpus,
        memory: n.memory,
        reserved_cpus: 0.0,
        reserved_memory: 0,
        ports: Default::default(),
        tasks: 0,
    }
}

fn constraints(spec: &ServiceSpec) -> Vec<Constraint> {
    spec.constraints.iter().filter_map(|c| Constraint::parse(c).ok()).collect()
}

fn global(p: &mut Pass, s: &Service) {
    let nodes = eligible(p, s);
    if rollout::step(p, s, &nodes) == rollout::Next::Stop {
        return;
    }
    fill(p, s, nodes);
}

/// The nodes a global service (or job) runs on, after stopping its tasks
/// on nodes that no longer match.
fn eligible(p: &mut Pass, s: &Service) -> Vec<Key> {
    let cs = constraints(&s.spec);
    let eligible = |n: &Arc<Node>| {
        n.status == NodeStatus::Ready
            && n.availability == Availability::Active
            && cs.iter().all(|c| c.matches(&node_info(n)))
    };
    // Tasks on nodes that no longer match (labels changed) stop.
    let off: Vec<String> = service_tasks(p, &s.id)
        .filter(|t| t.live())
        .filter(|t| {
            p.v.nodes
                .get(&t.node)
                .is_some_and(|n| n.status == NodeStatus::Ready && !cs.iter().all(|c| c.matches(&node_info(n))))
        })
        .map(|t| t.id.clone())
        .collect();
    for id in off {
        p.shut(&id, "its node no longer matches the constraints", None);
    }
    p.v.nodes.values().filter(|n| eligible(n)).map(|n| Key::Node(n.id.clone())).collect()
}

fn demand(t: &Task) -> Demand {
    Demand {
        service: t.service_id.clone(),
        cpus: t.spec.reserve_cpus,
        memory: t.spec.reserve_memory,
        constraints: constraints(&t.spec),
        // Only host-mode ports are held per node (the mesh's are the cluster's).
        ports: t.spec.ports.iter().filter(|p| p.mode == PublishMode::Host).map(|p| p.published).collect(),
        prefer: None,
    }
}

/// Pending tasks onto nodes: replicated ones by filter and spread, global
/// ones onto their own node if it fits. What nodes hold comes from the
/// index, corrected for what this pass changed; the tasks to place from the
/// index of pending tasks and what the pass created: nothing here visits
/// every task.
fn schedule(p: &mut Pass) {
    let waiting = |t: &Task| {
        t.live() && t.state == TaskState::Pending && t.not_before_ms <= p.now && (t.slot == 0 || t.node.is_empty())
    };
    let mut pending: Vec<String> =
        p.v.index
            .pending()
            .iter()
            .chain(p.created.iter())
            .filter(|id| p.tasks.get(*id).is_some_and(|t| waiting(t)))
            .cloned()
            .collect();
    // Most passes (a node's report, a scale-down) have nothing to place:
    // they cost nothing per node.
    if pending.is_empty() {
        return;
    }
    let mut nodes: Vec<NodeInfo> = Vec::with_capacity(p.v.nodes.len());
    let mut usage: Vec<Usage> = Vec::with_capacity(p.v.nodes.len());
    let mut at: HashMap<String, usize> = HashMap::with_capacity(p.v.nodes.len());
    for n in p.v.nodes.values() {
        at.insert(n.id.clone(), nodes.len());
        nodes.push(node_info(n));
        usage.push(p.v.index.usage(&n.id));
    }
    let mut per_service = PerService::new();
    let load = |ps: &mut PerService, service: &str| {
        if !ps.contains_key(service) {
            let counts = p.v.index.per_service().get(service);
            let m = counts.map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect()).unwrap_or_default();
            ps.insert(service.to_string(), m);
        }
    };
    for (_, old, new) in p.changes() {
        for (t, sign) in [(old, -1i64), (new, 1)] {
            let Some(t) = t.filter(|t| holds(t)) else { continue };
            if let Some(&i) = at.get(&t.node) {
                usage[i].count(t, sign);
            }
            load(&mut per_service, &t.service_id);
            if let Some(m) = per_service.get_mut(&t.service_id) {
                let n = m.entry(t.node.clone()).or_default();
                *n = if sign > 0 { *n + 1 } else { n.saturating_sub(1) };
            }
        }
    }
    for (n, u) in nodes.iter_mut().zip(&usage) {
        n.reserved_cpus = u.milli_cpus as f64 / 1000.0;
        n.reserved_memory = u.memory;
        n.ports = u.ports.keys().copied().collect();
        n.tasks = u.tasks;
    }
    pending.sort();
    pending.dedup();
    let services: BTreeSet<String> =
        pending.iter().filter_map(|id| p.tasks.get(id)).map(|t| t.service_id.clone()).collect();
    let stopping = rollout::stopping(p, &services);
    // Oldest first, then by slot, so a scale-out fills slots in order.
    pending.sort_by_key(|id| p.tasks.get(id).map(|t| (t.created_ms, t.slot)).unwrap_or_default());
    for id in pending {
        let Some(t) = p.tasks.get(&id) else { continue };
        if stopping.contains(&(t.service_id.clone(), key(t))) {
            let why = "waiting for the task it replaces to stop (stop-first)";
            let now = p.now;
            if let Some(t) = p.task_mut(&id).filter(|t| t.message != why) {
                t.message = why.into();
                t.updated_ms = now;
            }
            continue;
        }
        let mut d = demand(t);
        d.prefer = super::volumes::preferred_node(p.v, t);
        load(&mut per_service, &d.service);
        let placed = if t.slot == 0 {
            let Some(&i) = at.get(&t.node) else { continue };
            scheduler::place(&mut nodes[i..=i], &mut per_service, &d)
        } else {
            scheduler::place(&mut nodes, &mut per_service, &d)
        };
        let now = p.now;
        let volumes = match &placed {
            Ok(node) => super::volumes::at_placement(p.v, t, node, now),
            Err(_) => Default::default(),
        };
        let writes = volumes.writes.into_iter();
        p.volumes.extend(writes.map(|x| (crate::model::namespace::scoped(&x.namespace, &x.name), x)));
        if let Some(t) = p.task_mut(&id) {
            match placed {
                Ok(node) => {
                    t.volumes = volumes.ids;
                    t.volume_sizes = volumes.sizes;
                    t.nfs = volumes.nfs;
                    t.node = node;
                    t.state = TaskState::Assigned;
                    t.message = String::new();
                    t.updated_ms = now;
                }
                Err(why) => {
                    let why = why.to_string();
                    if t.message != why {
                        t.message = why;
                        t.updated_ms = now;
                    }
                }
            }
        }
    }
}

/// Drops tasks nobody needs to see any more: those of removed services once
/// over, and all but the latest `HISTORY` ended tasks of each slot.
fn forget(p: &mut Pass, services: Vec<String>) {
    let mut services = services;
    services.sort();
    services.dedup();
    // Per slot of each run (cron jobs run slots again; their runs' own
    // history limits apply in `jobs`).
    let mut ended: BTreeMap<(String, u64, Key), Vec<(i64, String)>> = BTreeMap::new();
    let mut gone = Vec::new();
    for t in services.iter().flat_map(|s| service_tasks(p, s)) {
        if t.desired == TaskState::Running || !t.state.terminal() {
            continue;
        }
        if !p.v.services.contains_key(&t.service_id) {
            gone.push(t.id.clone());
            continue;
        }
        ended.entry((t.service_id.clone(), t.run, key(t))).or_default().push((t.created_ms, t.id.clone()));
    }
    p.deleted.extend(gone);
    for (_, mut list) in ended {
        list.sort();
        let extra = list.len().saturating_sub(HISTORY);
        p.deleted.extend(list.into_iter().take(extra).map(|(_, id)| id));
    }
    for id in &p.deleted {
        p.tasks.remove(id);
        p.touched.insert(id.clone());
    }
}

/// Puts for new tasks, deletes, and patches of the changed fields of the
/// others (only what changed is visited: the pass shares every untouched
/// part of the map with the view).
fn commands(p: &Pass) -> Vec<Command> {
    let mut out = Vec::new();
    for (id, s) in &p.services {
        let version = p.v.version_of(&crate::model::db::Key::new(Kind::Service, id.as_str()));
        out.push(Command::put_if(id.clone(), Object::Service(Arc::new(s.clone())), version));
    }
    // Not conditional: a refused put would refuse the whole pass.
    for (key, x) in &p.volumes {
        out.push(Command::put(key.clone(), Object::Volume(Arc::new(x.clone()))));
    }
    for (id, old, new) in p.changes() {
        match (old, new) {
            (None, Some(t)) => out.push(Command::put_if(id.clone(), Object::Task(t.clone()), 0)),
            (Some(_), None) => out.push(Command::delete(Kind::Task, id.clone())),
            (Some(old), Some(new)) => {
                if let Some(patch) = TaskPatch::between(old, new) {
                    out.push(patch.command(id));
                }
            }
            (None, None) => {}
        }
    }
    out
}

#[cfg(test)]
mod rollout_tests;
#[cfg(test)]
mod world;

#[cfg(test)]
mod tests {
    use super::world::World;
    use super::*;

    #[test]
    fn replicas_spread_scale_and_settle() {
        let mut w = World::new(&["a", "b"]);
        w.service("web", |s| s.replicas = 3);
        assert_eq!(w.settle(), 1, "one pass creates and places everything");
        let live = w.live("web");
        assert_eq!(live.len(), 3);
        assert!(live.iter().all(|t| t.state == TaskState::Assigned));
        let mut slots: Vec<u64> = live.iter().map(|t| t.slot).collect();
        slots.sort();
        assert_eq!(slots, [1, 2, 3]);
        assert_eq!(w.on("web", "a") + w.on("web", "b"), 3);
        assert!(w.on("web", "a").abs_diff(w.on("web", "b")) == 1);
        w.run_all();
        assert_eq!(w.settle(), 0, "a settled state yields no commands");

        w.service("web", |s| s.replicas = 10);
        w.settle();
        assert_eq!(w.live("web").len(), 10);
        assert_eq!((w.on("web", "a"), w.on("web", "b")), (5, 5));
        w.service("web", |s| s.replicas = 2);
        w.settle();
        let live = w.live("web");
        // Scaling keeps the tasks of slots 1 and 2.
        assert_eq!(live.len(), 2);
        assert!(live.iter().all(|t| t.slot <= 2 && t.spec_version == 1));
    }

    #[test]
    fn restart_policy_attempts_and_delay() {
        let mut w = World::new(&["a"]);
        w.service("job", |s| {
            s.restart = RestartPolicy {
                condition: RestartCondition::OnFailure,
                delay_ms: 5_000,
                max_attempts: 2,
                window_ms: 0,
            };
        });
        w.settle();
        w.run_all();
        let mut runs = 1;
        loop {
            let t = w.live("job").pop().expect("a live task");
            w.report(&t.id, "failed");
            w.settle();
            match w.live("job").pop() {
                None => break,
                Some(next) => {
                    runs += 1;
                    assert_eq!(next.state, TaskState::Pending, "waits for its restart delay");
                    assert_eq!(next.attempt, runs - 1);
                    w.now += 5_000;
                    w.settle();
                    assert_eq!(w.live("job")[0].state, TaskState::Assigned);
                    w.run_all();
                }
            }
        }
        assert_eq!(runs, 3, "first run + max_attempts 2");
        // History keeps the latest tasks of the slot.
        assert_eq!(w.view().tasks.len(), HISTORY);

        // on-failure: a clean exit is the end; any: replaced.
        w.service("ok", |s| s.restart.condition = RestartCondition::OnFailure);
        w.settle();
        let t = w.live("ok").pop().unwrap();
        w.report(&t.id, "complete");
        w.settle();
        assert!(w.live("ok").is_empty());
        w.service("always", |_| {});
        w.settle();
        let t = w.live("always").pop().unwrap();
        w.report(&t.id, "complete");
        w.settle();
        assert_eq!(w.live("always").len(), 1);
    }

    #[test]
    fn failing_slots_back_off() {
        assert_eq!([1, 2, 3, 8, 20].map(backoff_ms), [0, 200, 400, 10_000, 10_000]);
        let mut w = World::new(&["a"]);
        w.service("crash", |_| {});
        w.settle();
        for attempt in 1..=3u32 {
            let t = w.live("crash").pop().unwrap();
            w.report(&t.id, "rejected");
            w.settle();
            let next = w.live("crash").pop().unwrap();
            assert_eq!(next.attempt, attempt);
            assert_eq!(next.not_before_ms - w.now, backoff_ms(attempt), "attempt {attempt}");
            w.now += 10_000;
            w.settle();
        }
    }

    #[test]
    fn down_and_drained_nodes_lose_their_tasks_once() {
        let mut w = World::new(&["a", "b", "c"]);
        w.service("web", |s| s.replicas = 6);
        w.settle();
        w.run_all();
        w.node("a", |n| n.status = NodeStatus::Down);
        w.settle();
        assert_eq!(w.live("web").len(), 6);
        assert_eq!(w.on("web", "a"), 0);
        let orphaned = w.view().tasks.values().filter(|t| t.state == TaskState::Orphaned).count();
        assert_eq!(orphaned, 2);
        // The node comes back: its old tasks stay shut down, nothing doubles.
        w.node("a", |n| n.status = NodeStatus::Ready);
        w.settle();
        assert_eq!(w.live("web").len(), 6);
        w.node("b", |n| n.availability = Availability::Drain);
        w.settle();
        assert_eq!(w.on("web", "b"), 0);
        assert_eq!(w.live("web").len(), 6);
        let mut slots: Vec<u64> = w.live("web").iter().map(|t| t.slot).collect();
        slots.sort();
        assert_eq!(slots, [1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn global_services_follow_nodes_and_constraints() {
        let mut w = World::new(&["a", "b"]);
        w.node("b", |n| {
            n.labels.insert("zone".into(), "eu".into());
        });
        w.service("agent", |s| s.mode = Mode::Global);
        w.service("eu", |s| {
            s.mode = Mode::Global;
            s.constraints = vec!["node.labels.zone==eu".into()];
        });
        w.settle();
        assert_eq!((w.on("agent", "a"), w.on("agent", "b")), (1, 1));
        assert_eq!((w.on("eu", "a"), w.on("eu", "b")), (0, 1));
        w.node("c", |n| {
            n.labels.insert("zone".into(), "eu".into());
        });
        w.settle();
        assert_eq!((w.on("agent", "c"), w.on("eu", "c")), (1, 1));
        w.node("b", |n| {
            n.labels.clear();
        });
        w.settle();
        assert_eq!(w.on("eu", "b"), 0);
        w.node("c", |n| n.status = NodeStatus::Down);
        w.settle();
        assert_eq!(w.live("agent").len(), 2);
        assert_eq!(w.live("eu").len(), 0);
    }

    #[test]
    fn unplaceable_tasks_wait_with_a_reason() {
        let mut w = World::new(&["a"]);
        w.service("big", |s| {
            s.replicas = 2;
            s.reserve_memory = 3 << 30;
        });
        w.settle();
        let pending: Vec<Task> = w.live("big").into_iter().filter(|t| t.state == TaskState::Pending).collect();
        assert_eq!(pending.len(), 1);
        assert!(pending[0].message.contains("free memory"), "{}", pending[0].message);
        w.node("b", |_| {});
        w.settle();
        assert_eq!((w.on("big", "a"), w.on("big", "b")), (1, 1));
    }

    #[test]
    fn removed_services_leave_nothing_behind() {
        let mut w = World::new(&["a"]);
        w.service("web", |s| s.replicas = 2);
        w.settle();
        w.run_all();
        w.state.apply(&Command::delete(Kind::Service, "svc-web"));
        w.settle();
        assert!(w.live("web").is_empty());
        assert_eq!(w.view().tasks.len(), 2, "shut down, not forgotten while the node still runs them");
        for t in w.view().tasks.values() {
            w.report(&t.id, "shutdown");
        }
        w.settle();
        assert!(w.view().tasks.is_empty());
    }
}
