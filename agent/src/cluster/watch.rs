//! Watching the cluster's objects: the current ones first, then every
//! change as it is applied, read from the change feed ([`crate::model::db`])
//! on this manager.
//!
//! A watcher holds the state it last told of (an O(1) clone of persistent
//! maps), so each change is told with the object as it was before and is
//! now: a delete carries the object's last state, and a task that moved
//! off a watched node is told as a delete there. A watcher that falls
//! behind sees changes merged: each object as of the version it is told
//! at. A watcher further behind than the feed keeps ([`KEEP`]) compares
//! the two states table by table instead; nothing is lost either way.
//!
//! Services and nodes are also told as modified when what is derived from
//! their tasks changes (running/wanted counts, a node's task count), so a
//! `service ls --watch` sees replicas come up.
//!
//! [`KEEP`]: crate::model::db::feed::KEEP

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use super::error::ClusterError;
use super::objects::{Node, Service, Task, View};
use crate::model::db::{Key, Kind, Table};
use crate::raft::RaftHandle;

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Added,
    Modified,
    Deleted,
}

/// A watched object, as of the event.
#[derive(Debug, Clone)]
pub enum Watched {
    Service(Arc<Service>),
    Task(Arc<Task>),
    Node(Arc<Node>),
}

#[derive(Debug, Clone)]
pub struct Event {
    pub change: Change,
    pub object: Watched,
}

/// What one watcher wants told.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub services: bool,
    pub tasks: bool,
    pub nodes: bool,
    /// Only this service (id) and its tasks.
    pub service: Option<String>,
    /// Only this node (id) and the tasks on it.
    pub node: Option<String>,
    /// Services and tasks of this namespace only (as stored: empty for
    /// `default`; None: every namespace's); nodes are everyone's.
    pub namespace: Option<String>,
}

impl Filter {
    fn wants_service(&self, s: &Service) -> bool {
        self.services
            && self.node.is_none()
            && self.namespace.as_ref().is_none_or(|ns| &s.spec.namespace == ns)
            && self.service.as_ref().is_none_or(|id| &s.id == id)
    }

    fn wants_task(&self, t: &Task) -> bool {
        self.tasks
            && self.namespace.as_ref().is_none_or(|ns| &t.spec.namespace == ns)
            && self.service.as_ref().is_none_or(|id| &t.service_id == id)
            && self.node.as_ref().is_none_or(|id| &t.node == id)
    }

    fn wants_node(&self, n: &Node) -> bool {
        self.nodes && self.service.is_none() && self.node.as_ref().is_none_or(|id| &n.id == id)
    }
}

/// Events and the state they were read in (for what a reader derives,
/// such as a service's counts or a task's node's hostname).
pub struct Batch {
    pub view: View,
    /// The first batch lists what exists (all added); later ones, changes.
    pub listing: bool,
    pub events: Vec<Event>,
}

/// One watcher's position in the state.
pub struct Watcher {
    raft: Arc<RaftHandle>,
    filter: Filter,
    /// The state last told of.
    told: View,
    /// Whether the first batch (the listing) went out.
    listed: bool,
}

/// How long a watcher waits for a change before looking at the Raft again
/// (it may have been replaced: the node was demoted).
const LOOK_AGAIN: Duration = Duration::from_secs(2);

impl Watcher {
    /// A watcher of `filter`, whose service and node (by name, id or
    /// prefix) are resolved against a linearizable read: a watch that
    /// starts after a write sees it.
    pub async fn start(
        raft: Arc<RaftHandle>,
        mut filter: Filter,
        ns: &str,
        service: Option<&str>,
        node: Option<&str>,
    ) -> Result<Self, ClusterError> {
        let told = super::objects::view(&raft).await?;
        // A node's tasks are every namespace's unless the caller said
        // otherwise (a person limited to namespaces: the handler did).
        if filter.namespace.is_none() && node.is_none() {
            filter.namespace = Some(crate::model::namespace::stored(ns));
        }
        filter.service = service.map(|s| told.find_service(ns, s).map(|s| s.id.clone())).transpose()?;
        filter.node = node.map(|n| told.find_node(n).map(|n| n.id.clone())).transpose()?;
        Ok(Self { raft, filter, told, listed: false })
    }

    /// The listing first, then the next changes the filter wants (waits
    /// until there are some).
    pub async fn next(&mut self) -> Result<Batch, ClusterError> {
        if !self.listed {
            self.listed = true;
            let events = self.listing();
            return Ok(Batch { view: self.told.clone(), listing: true, events });
        }
        loop {
            let s = self.raft.get()?;
            let mut changed = s.sm.changed.subscribe();
            let now = s.sm.applied.read().await.state.clone();
            if now.version != self.told.version {
                let events = changes(&self.filter, &self.told, &now);
                self.told = now;
                if !events.is_empty() {
                    return Ok(Batch { view: self.told.clone(), listing: false, events });
                }
                continue;
            }
            let _ = tokio::time::timeout(LOOK_AGAIN, changed.changed()).await;
        }
    }

    fn listing(&self) -> Vec<Event> {
        let (f, v) = (&self.filter, &self.told);
        let added = |object| Event { change: Change::Added, object };
        let mut events: Vec<Event> = Vec::new();
        if f.nodes {
            events.extend(v.nodes.values().filter(|n| f.wants_node(n)).map(|n| added(Watched::Node(n.clone()))));
        }
        if f.services {
            events
                .extend(v.services.values().filter(|s| f.wants_service(s)).map(|s| added(Watched::Service(s.clone()))));
        }
        if f.tasks {
            let tasks: Box<dyn Iterator<Item = &Arc<Task>>> = match (&f.service, &f.node) {
                (Some(s), _) => Box::new(v.index.tasks_of(s).iter().filter_map(|id| v.tasks.get(id))),
                (None, Some(n)) => Box::new(v.index.tasks_on(n).iter().filter_map(|id| v.tasks.get(id))),
                (None, None) => Box::new(v.tasks.values()),
            };
            events.extend(tasks.filter(|t| f.wants_task(t)).map(|t| added(Watched::Task(t.clone()))));
        }
        events
    }
}

/// What `f` is told between states `old` and `new`.
fn changes(f: &Filter, old: &View, new: &View) -> Vec<Event> {
    let mut keys: BTreeSet<Key> = BTreeSet::new();
    match (new.version > old.version).then(|| new.feed.since(old.version)).flatten() {
        Some(feed) => {
            for c in feed {
                match c.key.kind {
                    Kind::Task => {
                        if f.tasks {
                            keys.insert(c.key.clone());
                        }
                        // What services and nodes derive from their tasks.
                        if f.services && !c.service.is_empty() {
                            keys.insert(Key::new(Kind::Service, c.service.as_str()));
                        }
                        if f.nodes {
                            keys.extend(
                                c.nodes.iter().filter(|n| !n.is_empty()).map(|n| Key::new(Kind::Node, n.as_str())),
                            );
                        }
                    }
                    Kind::Service | Kind::Node => {
                        keys.insert(c.key.clone());
                    }
                    _ => {}
                }
            }
        }
        // Too far behind for the feed (or another Raft's state): compare
        // the tables.
        None => {
            let mut all = |kind: Kind, wanted: bool, a: Vec<&String>, b: Vec<&String>| {
                if wanted {
                    keys.extend(a.into_iter().chain(b).map(|id| Key::new(kind, id.as_str())));
                }
            };
            all(Kind::Node, f.nodes, old.nodes.keys().collect(), new.nodes.keys().collect());
            all(Kind::Service, f.services, old.services.keys().collect(), new.services.keys().collect());
            all(Kind::Task, f.tasks, old.tasks.keys().collect(), new.tasks.keys().collect());
        }
    }
    keys.iter().filter_map(|k| event(f, old, new, k)).collect()
}

/// The event of one object between `old` and `new`, if the filter wants
/// one.
fn event(f: &Filter, old: &View, new: &View, key: &Key) -> Option<Event> {
    let id = key.id.as_str();
    match key.kind {
        Kind::Task => between(&old.tasks, &new.tasks, id, |t| f.wants_task(t), false)
            .map(|(change, t)| Event { change, object: Watched::Task(t) }),
        Kind::Service => {
            let derived = old.index.counts(id) != new.index.counts(id);
            between(&old.services, &new.services, id, |s| f.wants_service(s), derived)
                .map(|(change, s)| Event { change, object: Watched::Service(s) })
        }
        Kind::Node => {
            let derived = old.index.usage(id) != new.index.usage(id);
            between(&old.nodes, &new.nodes, id, |n| f.wants_node(n), derived)
                .map(|(change, n)| Event { change, object: Watched::Node(n) })
        }
        _ => None,
    }
}

/// How object `id` of one table changed for a watcher that wants what
/// `wants` says: an object leaving the filter is deleted for it, one
/// entering it added. `derived`: what is derived from it changed.
fn between<T>(
    old: &Table<T>,
    new: &Table<T>,
    id: &str,
    wants: impl Fn(&T) -> bool,
    derived: bool,
) -> Option<(Change, Arc<T>)> {
    let a = old.get(id).filter(|o| wants(o));
    let b = new.get(id).filter(|o| wants(o));
    match (a, b) {
        (None, Some(b)) => Some((Change::Added, b.clone())),
        (Some(a), None) => Some((Change::Deleted, a.clone())),
        (Some(a), Some(b)) if !Arc::ptr_eq(a, b) || derived => Some((Change::Modified, b.clone())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::db::{ClusterState, Command, Object};
    use crate::model::objects::TaskState;
    use crate::model::patch::TaskPatch;

    fn put_task(s: &mut ClusterState, id: &str, node: &str) {
        let t = Task {
            id: id.into(),
            service_id: "s1".into(),
            node: node.into(),
            desired: TaskState::Running,
            state: TaskState::Assigned,
            ..Default::default()
        };
        s.apply(&Command::put(id, Object::Task(Arc::new(t))));
    }

    fn told(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .map(|e| {
                let id = match &e.object {
                    Watched::Service(s) => format!("service {}", s.id),
                    Watched::Task(t) => format!("task {}@{}", t.id, t.node),
                    Watched::Node(n) => format!("node {}", n.id),
                };
                format!("{:?} {id}", e.change)
            })
            .collect()
    }

    /// Both ways of finding what changed: the feed, and (too far behind)
    /// comparing the tables.
    fn both(f: &Filter, old: &ClusterState, new: &ClusterState) -> Vec<String> {
        let by_feed = told(&changes(f, old, new));
        let mut forgot = new.clone();
        forgot.feed.reset(new.version);
        assert_eq!(by_feed, told(&changes(f, old, &forgot)), "the feed and the tables disagree");
        by_feed
    }

    #[test]
    fn watchers_are_told_each_change_they_want_once_with_the_last_state_of_what_went() {
        let mut s = ClusterState::default();
        s.apply(&Command::put("s1", Object::Service(Arc::new(Service { id: "s1".into(), ..Default::default() }))));
        for n in ["n1", "n2"] {
            s.apply(&Command::put(n, Object::Node(Arc::new(Node { id: n.into(), ..Default::default() }))));
        }
        put_task(&mut s, "t1", "n1");
        let v0 = s.clone();

        // A task placed, another reported running twice: told once each.
        put_task(&mut s, "t2", "n2");
        let running = TaskPatch { state: Some(TaskState::Running), ..Default::default() };
        s.apply(&running.command("t1"));
        s.apply(&TaskPatch { message: Some("up".into()), ..Default::default() }.command("t1"));
        let all = Filter { services: true, tasks: true, nodes: true, ..Default::default() };
        assert_eq!(
            both(&all, &v0, &s),
            ["Modified node n2", "Modified service s1", "Modified task t1@n1", "Added task t2@n2"],
            "n2 and the service are told because their counts changed (n1 holds what it held)"
        );
        let v1 = s.clone();

        // A task moving off n1 is gone for n1's watcher, and new for n2's.
        s.apply(&TaskPatch { node: Some("n2".into()), ..Default::default() }.command("t1"));
        let on = |n: &str| Filter { tasks: true, node: Some(n.into()), ..Default::default() };
        assert_eq!(both(&on("n1"), &v1, &s), ["Deleted task t1@n1"], "the last state it had there");
        assert_eq!(both(&on("n2"), &v1, &s), ["Added task t1@n2"]);
        let v2 = s.clone();

        // Deleted: told with its last state; the unchanged are not told.
        s.apply(&Command::delete(Kind::Task, "t2"));
        let tasks = Filter { tasks: true, ..Default::default() };
        assert_eq!(both(&tasks, &v2, &s), ["Deleted task t2@n2"]);
        assert!(both(&tasks, &s, &s.clone()).is_empty());

        // Another service's watcher hears nothing of s1.
        let other = Filter { services: true, tasks: true, service: Some("s2".into()), ..Default::default() };
        assert!(both(&other, &v0, &s).is_empty());
        // Nor does another namespace's (s1 and its tasks are in default).
        let team = Filter { services: true, tasks: true, namespace: Some("team-a".into()), ..Default::default() };
        assert!(both(&team, &v0, &s).is_empty());
    }
}
