//! A cluster state to reconcile in unit tests: nodes, services and node
//! reports set by hand, passes run as the leader runs them.
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use super::*;
use crate::model::db::ClusterState;
use crate::model::patch::TaskPatch;

pub struct World {
    pub state: ClusterState,
    pub now: i64,
    /// The version the last pass saw (passes look at what changed since).
    pub seen: u64,
}

impl World {
    pub fn new(nodes: &[&str]) -> Self {
        let mut w = World { state: ClusterState::default(), now: 1_000_000, seen: 0 };
        for n in nodes {
            w.node(n, |_| {});
        }
        w
    }
    pub fn node(&mut self, id: &str, f: impl FnOnce(&mut Node)) {
        let mut n = self.view().nodes.get(id).map(|n| Node::clone(n)).unwrap_or(Node {
            id: id.into(),
            hostname: format!("host-{id}"),
            role: crate::pki::role::Role::Worker,
            status: NodeStatus::Ready,
            cpus: 2.0,
            memory: 4 << 30,
            ..Default::default()
        });
        f(&mut n);
        self.state.apply(&Command::put(id, Object::Node(Arc::new(n))));
    }
    pub fn service(&mut self, name: &str, f: impl FnOnce(&mut ServiceSpec)) {
        let v = self.view();
        let mut s = v.service_by_name(name).cloned().unwrap_or(Service {
            id: format!("svc-{name}"),
            spec: ServiceSpec { name: name.into(), image: "busybox".into(), replicas: 1, ..Default::default() },
            created_ms: self.now,
            ..Default::default()
        });
        let old = v.service_by_name(name).cloned();
        f(&mut s.spec);
        // As `services::update` does: a spec that runs differently rolls.
        match &old {
            None => s.spec_version = 1,
            Some(o) if !o.spec.runs_like(&s.spec) => {
                s.spec_version += 1;
                s.previous_spec = Some(o.spec.clone());
                s.update_status = Some(UpdateStatus::start(UpdateState::Updating, s.spec.update.clone(), self.now, ""));
            }
            Some(_) => {}
        }
        let claim = Command::put(s.spec.name.clone(), Object::ServiceName(s.id.clone()));
        self.state.apply(&Command::Batch(vec![claim, Command::put(s.id.clone(), Object::Service(Arc::new(s)))]));
    }
    pub fn view(&self) -> View {
        self.state.clone()
    }
    /// Reconciles until nothing changes, each pass looking only at what
    /// changed since the one before (as the leader does); then a pass
    /// over everything must find nothing left. Returns how many passes
    /// changed something.
    pub fn settle(&mut self) -> usize {
        for pass in 0..10 {
            let v = self.view();
            let scope = v.feed.since(self.seen).map(|c| Scope::of(&c, &v)).unwrap_or(Scope::All);
            self.seen = v.version;
            let cmds = reconcile(&v, self.now, &scope);
            if cmds.is_empty() {
                let full = reconcile(&v, self.now, &Scope::All);
                assert!(full.is_empty(), "a pass over what changed missed: {full:?}");
                return pass;
            }
            let r = self.state.apply(&Command::Batch(cmds));
            assert_eq!(r.conflict, None);
        }
        panic!("reconcile does not settle");
    }
    /// Nodes report every assigned task running (and ready).
    pub fn run_all(&mut self) {
        let v = self.view();
        for t in v.tasks.values().filter(|t| t.live() && t.state == TaskState::Assigned) {
            let p = TaskPatch {
                state: Some(TaskState::Running),
                health: Some(Health::Ready),
                ready_ms: Some(self.now),
                ..Default::default()
            };
            self.state.apply(&p.command(&t.id));
        }
    }
    /// Nodes stop every task wanted down.
    pub fn stop_all(&mut self) {
        let v = self.view();
        for t in v.tasks.values().filter(|t| t.desired == TaskState::Shutdown && !t.state.terminal()) {
            let p = TaskPatch { state: Some(TaskState::Shutdown), updated_ms: Some(self.now), ..Default::default() };
            self.state.apply(&p.command(&t.id));
        }
    }
    pub fn status(&self, service: &str) -> Option<UpdateStatus> {
        self.view().service_by_name(service).and_then(|s| s.update_status.clone())
    }
    pub fn live(&self, service: &str) -> Vec<Task> {
        self.view().tasks.values().filter(|t| t.service == service && t.live()).map(|t| Task::clone(t)).collect()
    }
    pub fn on(&self, service: &str, node: &str) -> usize {
        self.live(service).iter().filter(|t| t.node == node).count()
    }
    pub fn report(&mut self, id: &str, state: &str) {
        let p = TaskPatch { state: Some(TaskState::parse(state)), updated_ms: Some(self.now), ..Default::default() };
        self.state.apply(&p.command(id));
    }
}
