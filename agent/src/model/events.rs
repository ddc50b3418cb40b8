//! Events: every state change of services, tasks and nodes, with its time,
//! object and reason — derived from each object as it was and is whenever
//! the state machine applies a change, so every manager has them without
//! a write of their own. The latest [`KEEP`] live in memory on each
//! manager (a restarted manager has those applied since its snapshot), in
//! one ring the state's clones share.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use super::objects::{
    now_ms, Availability, Health, Node, NodeStatus, ScaleDecision, Service, Task, TaskState, UpdateState,
};

/// Events kept per manager.
pub const KEEP: usize = 10_000;

/// What an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    Service,
    Task,
    Node,
}

impl Subject {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Service => "service",
            Self::Task => "task",
            Self::Node => "node",
        }
    }
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Created,
    Removed,
    /// A new spec version.
    Updated,
    /// The replica count changed by request.
    Scaled,
    /// The replica count changed by the autoscaler.
    Autoscaled,
    /// An update or rollback moved on.
    Update(UpdateState),
    /// A cron job's schedule started a run.
    Run,
    /// A task was placed on a node.
    Assigned,
    /// A task's state as its node reports it.
    State(TaskState),
    /// A task is no longer wanted running.
    Stopping,
    /// A task's probes.
    Health(Health),
    Node(NodeStatus),
    Availability(Availability),
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Removed => "removed",
            Self::Updated => "updated",
            Self::Scaled => "scaled",
            Self::Autoscaled => "autoscaled",
            Self::Update(s) => s.as_str(),
            Self::Run => "run",
            Self::Assigned => "assigned",
            Self::State(s) => s.as_str(),
            Self::Stopping => "stopping",
            Self::Health(h) => h.as_str(),
            Self::Node(s) => s.as_str(),
            Self::Availability(a) => a.as_str(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The state version of the change.
    pub version: u64,
    pub time_ms: i64,
    pub subject: Subject,
    /// The object's id.
    pub id: String,
    /// Its name: the service's, `web.2` (or `web.<node>`) for a task, the
    /// hostname; a service's or task's outside `default` with its namespace
    /// (`team-a/web.2`).
    pub name: String,
    /// The service (id) of a service or task event.
    pub service: String,
    pub action: Action,
    /// Why, or what it came to.
    pub message: String,
}

/// The latest events, oldest first: one ring shared by every clone of
/// the state (a view is cloned for every read, and a persistent vector
/// would copy its end chunks on each push after one). Readers that hold
/// the applied state's lock see the events up to its version exactly.
#[derive(Debug, Clone, Default)]
pub struct Events {
    ring: Arc<Mutex<VecDeque<Arc<Event>>>>,
}

/// What one change of an object tells: `(time, action, message)` each.
type News = Vec<(i64, Action, String)>;

/// Which object a change is of: its subject, id, name (made only when
/// there is news) and service.
struct Of<'a> {
    subject: Subject,
    id: &'a str,
    name: &'a dyn Fn() -> String,
    service: &'a str,
}

impl Events {
    /// Pushes `news` of one object (nothing is allocated when there is none).
    fn record(&mut self, version: u64, of: Of<'_>, news: News) {
        if news.is_empty() {
            return;
        }
        let name = (of.name)();
        let mut ring = crate::sync::lock(&self.ring);
        for (time_ms, action, message) in news {
            ring.push_back(Arc::new(Event {
                version,
                time_ms,
                subject: of.subject,
                id: of.id.to_string(),
                name: name.clone(),
                service: of.service.to_string(),
                action,
                message,
            }));
        }
        while ring.len() > KEEP {
            ring.pop_front();
        }
    }

    /// The events after state version `version`, oldest first.
    pub fn after(&self, version: u64) -> Vec<Arc<Event>> {
        let ring = crate::sync::lock(&self.ring);
        let start = ring.partition_point(|e| e.version <= version);
        ring.range(start..).cloned().collect()
    }

    /// The latest `n` events `wanted` picks, oldest first.
    pub fn latest(&self, n: usize, wanted: impl Fn(&Event) -> bool) -> Vec<Arc<Event>> {
        let ring = crate::sync::lock(&self.ring);
        let mut out: Vec<Arc<Event>> = ring.iter().rev().filter(|e| wanted(e)).take(n).cloned().collect();
        out.reverse();
        out
    }

    /// Records what changed between `old` and `new` of service `id`.
    pub fn service(&mut self, version: u64, id: &str, old: Option<&Service>, new: Option<&Service>) {
        let Some(s) = new.or(old) else { return };
        let mut news = News::new();
        match (old, new) {
            (None, Some(s)) => {
                let what = format!("{} of {}, version {}", s.spec.mode.as_str(), s.spec.image, s.spec_version);
                news.push((s.created_ms, Action::Created, what));
            }
            (Some(_), None) => news.push((now_ms(), Action::Removed, String::new())),
            (Some(old), Some(new)) => {
                let changed_at = if new.updated_ms != old.updated_ms { new.updated_ms } else { now_ms() };
                if new.spec_version != old.spec_version {
                    news.push((changed_at, Action::Updated, format!("version {}", new.spec_version)));
                }
                if new.spec.replicas != old.spec.replicas {
                    let decided = |s: &Service| s.autoscale_status.as_ref().and_then(|a| a.decisions.last().cloned());
                    news.push(match decided(new).filter(|d| Some(d) != decided(old).as_ref()) {
                        Some(ScaleDecision { at_ms, from, to, reason }) => {
                            (at_ms, Action::Autoscaled, format!("{from} → {to}: {reason}"))
                        }
                        None => {
                            let what = format!("{} → {}", old.spec.replicas, new.spec.replicas);
                            (changed_at, Action::Scaled, what)
                        }
                    });
                }
                let update = |s: &Service| s.update_status.as_ref().map(|u| (u.state, u.started_ms));
                if let Some(u) = new.update_status.as_ref().filter(|_| update(new) != update(old)) {
                    let at = if u.completed_ms != 0 { u.completed_ms } else { changed_at.max(u.started_ms) };
                    news.push((at, Action::Update(u.state), u.message.clone()));
                }
                let run = |s: &Service| s.cron_status.as_ref().map(|c| c.run);
                if let Some(c) = new.cron_status.as_ref().filter(|_| run(new) != run(old)) {
                    news.push((changed_at, Action::Run, format!("run {}", c.run)));
                }
            }
            (None, None) => {}
        }
        let name = || super::namespace::scoped(&s.spec.namespace, &s.spec.name);
        self.record(version, Of { subject: Subject::Service, id, name: &name, service: id }, news);
    }

    /// Records what changed between `old` and `new` of task `id`;
    /// `hostname` names a node.
    pub fn task(
        &mut self,
        version: u64,
        id: &str,
        old: Option<&Task>,
        new: Option<&Task>,
        hostname: impl Fn(&str) -> String,
    ) {
        // A task forgotten (history kept short) is no news.
        let Some(t) = new else { return };
        let at = match old {
            Some(o) if o.updated_ms == t.updated_ms => now_ms(),
            _ => t.updated_ms,
        };
        let mut news = News::new();
        // (A task may be placed as it is created, in the same pass.)
        if old.is_none() {
            news.push((at, Action::Created, t.message.clone()));
        }
        // What it was (a new task: only its node is news).
        let (node, state, desired, health) = match old {
            Some(o) => (o.node.as_str(), o.state, o.desired, o.health),
            None => ("", t.state, t.desired, t.health),
        };
        if node.is_empty() && !t.node.is_empty() {
            news.push((at, Action::Assigned, format!("to {}", hostname(&t.node))));
        }
        // (Assigned is told with its node, above.)
        if state != t.state && t.state != TaskState::Assigned {
            let message = match (t.message.as_str(), t.error.as_str()) {
                (m, "") => m.to_string(),
                ("", e) => e.to_string(),
                (m, e) => format!("{m}: {e}"),
            };
            news.push((at, Action::State(t.state), message));
        }
        if desired == TaskState::Running && t.desired != TaskState::Running && !t.state.terminal() {
            news.push((at, Action::Stopping, t.message.clone()));
        }
        if health != t.health && t.health != Health::Unknown {
            news.push((at, Action::Health(t.health), t.probe.clone()));
        }
        let name = || {
            let place = if t.slot > 0 { t.slot.to_string() } else { hostname(&t.node) };
            super::namespace::scoped(&t.spec.namespace, &format!("{}.{place}", t.service))
        };
        self.record(version, Of { subject: Subject::Task, id, name: &name, service: &t.service_id }, news);
    }

    /// Records what changed between `old` and `new` of node `id`.
    pub fn node(&mut self, version: u64, id: &str, old: Option<&Node>, new: Option<&Node>) {
        let Some(n) = new.or(old) else { return };
        let mut news = News::new();
        match (old, new) {
            (None, Some(n)) => news.push((n.updated_ms, Action::Created, format!("{} at {}", n.role.as_str(), n.addr))),
            (Some(_), None) => news.push((now_ms(), Action::Removed, String::new())),
            (Some(o), Some(n)) => {
                let at = if o.updated_ms != n.updated_ms { n.updated_ms } else { now_ms() };
                if o.status != n.status {
                    news.push((at, Action::Node(n.status), n.message.clone()));
                }
                if o.availability != n.availability {
                    news.push((at, Action::Availability(n.availability), String::new()));
                }
            }
            (None, None) => {}
        }
        let name = || n.hostname.clone();
        self.record(version, Of { subject: Subject::Node, id, name: &name, service: "" }, news);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::objects::{AutoscaleStatus, ServiceSpec, UpdateStatus};

    fn task(state: TaskState) -> Task {
        Task {
            id: "t1".into(),
            service_id: "s1".into(),
            service: "web".into(),
            slot: 2,
            desired: TaskState::Running,
            state,
            updated_ms: 5,
            ..Default::default()
        }
    }

    fn actions(e: &Events) -> Vec<(&'static str, String)> {
        e.after(0).iter().map(|e| (e.action.as_str(), e.message.clone())).collect()
    }

    #[test]
    fn a_task_tells_each_change_once() {
        let mut e = Events::default();
        let host = |_: &str| "node-1".to_string();
        let t0 = task(TaskState::Pending);
        e.task(1, "t1", None, Some(&t0), host);
        let t1 = Task { node: "n1".into(), state: TaskState::Assigned, updated_ms: 6, ..t0.clone() };
        e.task(2, "t1", Some(&t0), Some(&t1), host);
        let t2 = Task { state: TaskState::Running, health: Health::Ready, ..t1.clone() };
        e.task(3, "t1", Some(&t1), Some(&t2), host);
        // Unchanged: nothing.
        e.task(4, "t1", Some(&t2), Some(&t2), host);
        let t3 = Task { health: Health::NotReady, probe: "HTTP 503".into(), ..t2.clone() };
        e.task(5, "t1", Some(&t2), Some(&t3), host);
        let t4 = Task { desired: TaskState::Shutdown, message: "scaled down".into(), ..t3.clone() };
        e.task(6, "t1", Some(&t3), Some(&t4), host);
        assert_eq!(
            actions(&e),
            vec![
                ("created", String::new()),
                ("assigned", "to node-1".into()),
                ("running", String::new()),
                ("ready", String::new()),
                ("not-ready", "HTTP 503".into()),
                ("stopping", "scaled down".into()),
            ]
        );
        let all = e.after(0);
        assert_eq!((all[0].name.as_str(), all[0].subject, all[0].time_ms), ("web.2", Subject::Task, 5));
        assert_eq!(e.after(3).len(), 2, "after a version: only the later ones");
    }

    #[test]
    fn a_service_tells_updates_scaling_and_autoscaling_apart() {
        let mut e = Events::default();
        let s0 = Service {
            id: "s1".into(),
            spec: ServiceSpec { name: "web".into(), image: "web:1".into(), replicas: 1, ..Default::default() },
            spec_version: 1,
            ..Default::default()
        };
        e.service(1, "s1", None, Some(&s0));
        let mut s1 = s0.clone();
        s1.spec.replicas = 3;
        e.service(2, "s1", Some(&s0), Some(&s1));
        let mut s2 = s1.clone();
        s2.spec.replicas = 5;
        s2.autoscale_status = Some(AutoscaleStatus {
            decisions: vec![ScaleDecision { at_ms: 9, from: 3, to: 5, reason: "cpu at 200%".into() }],
            ..Default::default()
        });
        e.service(3, "s1", Some(&s1), Some(&s2));
        let mut s3 = s2.clone();
        s3.spec_version = 2;
        s3.update_status = Some(UpdateStatus::start(UpdateState::Updating, Default::default(), 10, ""));
        e.service(4, "s1", Some(&s2), Some(&s3));
        e.service(5, "s1", Some(&s3), None);
        assert_eq!(
            actions(&e),
            vec![
                ("created", "replicated of web:1, version 1".into()),
                ("scaled", "1 → 3".into()),
                ("autoscaled", "3 → 5: cpu at 200%".into()),
                ("updated", "version 2".into()),
                ("updating", String::new()),
                ("removed", String::new()),
            ]
        );
    }

    #[test]
    fn only_the_latest_are_kept() {
        let mut e = Events::default();
        let n = Node { id: "n1".into(), hostname: "h".into(), ..Default::default() };
        for v in 0..(KEEP as u64 + 5) {
            e.node(v, "n1", None, Some(&n));
        }
        assert_eq!(e.after(0).len(), KEEP);
        assert_eq!(e.latest(1, |_| true)[0].version, KEEP as u64 + 4);
        assert_eq!(
            e.latest(3, |x| x.version % 2 == 0).iter().map(|x| x.version).collect::<Vec<_>>(),
            [KEEP as u64, KEEP as u64 + 2, KEEP as u64 + 4]
        );
    }
}
