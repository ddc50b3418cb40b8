//! The database against a plain model of the semantics the JSON tables had
//! (objects and versions by key; conditional puts; patches of missing
//! objects refused; a batch with a failed condition applies nothing), on
//! random operation sequences; the indexes against a full scan and the
//! change feed against what the model saw change.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::*;
use crate::model::objects::{Node, Service, Task, TaskState};
use crate::model::patch::{NodePatch, TaskPatch};

/// The old semantics, written plainly.
#[derive(Default)]
struct Model {
    version: u64,
    objects: BTreeMap<Key, (u64, Object)>,
    /// Keys changed at each version.
    changed: Vec<(u64, Key)>,
}

impl Model {
    fn refuses(&self, id: &str, o: &Object, expect: Option<u64>) -> bool {
        let key = Key::new(o.kind(), id);
        expect.is_some_and(|want| self.objects.get(&key).map(|(v, _)| *v).unwrap_or(0) != want)
    }

    fn unexpected(&self, key: &Key, want: u64) -> bool {
        self.objects.get(key).map(|(v, _)| *v).unwrap_or(0) != want
    }

    fn apply(&mut self, cmd: &Command) -> bool {
        if let Command::Group(cmds) = cmd {
            // Each its own version; the group itself refuses nothing.
            for c in cmds {
                self.apply(c);
            }
            return true;
        }
        self.version += 1;
        let mut ok = true;
        self.one(cmd, &mut ok);
        ok
    }

    fn set(&mut self, key: Key, o: Object) {
        self.changed.push((self.version, key.clone()));
        self.objects.insert(key, (self.version, o));
    }

    fn one(&mut self, cmd: &Command, ok: &mut bool) {
        match cmd {
            Command::Put { id, object, expect_version } => {
                if self.refuses(id, object, *expect_version) {
                    *ok = false;
                    return;
                }
                self.set(Key::new(object.kind(), id.as_str()), object.clone());
            }
            Command::Expect { key, version } => {
                if self.unexpected(key, *version) {
                    *ok = false;
                }
            }
            Command::Delete { key } => {
                if self.objects.remove(key).is_some() {
                    self.changed.push((self.version, key.clone()));
                }
            }
            Command::PatchNode { id, patch } => {
                let key = Key::new(Kind::Node, id.as_str());
                match self.objects.get(&key) {
                    Some((_, Object::Node(n))) => {
                        let mut n = Node::clone(n);
                        patch.apply(&mut n);
                        self.set(key, Object::Node(Arc::new(n)));
                    }
                    _ => *ok = false,
                }
            }
            Command::PatchTask { id, patch } => {
                let key = Key::new(Kind::Task, id.as_str());
                match self.objects.get(&key) {
                    Some((_, Object::Task(t))) => {
                        let mut t = Task::clone(t);
                        patch.apply(&mut t);
                        self.set(key, Object::Task(Arc::new(t)));
                    }
                    _ => *ok = false,
                }
            }
            Command::Batch(cmds) | Command::Group(cmds) => {
                let batch = matches!(cmd, Command::Batch(_));
                let refused = cmds.iter().any(|c| match c {
                    Command::Put { id, object, expect_version } => self.refuses(id, object, *expect_version),
                    Command::Expect { key, version } => self.unexpected(key, *version),
                    _ => false,
                });
                if batch && refused {
                    *ok = false;
                    return;
                }
                for c in cmds {
                    self.one(c, ok);
                }
            }
        }
    }
}

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, v: &'a [&'a str]) -> &'a str {
        v[self.below(v.len() as u64) as usize]
    }
}

const IDS: &[&str] = &["a", "b", "c", "d", "e", "f"];
const NODES: &[&str] = &["", "n1", "n2", "n3"];
const SERVICES: &[&str] = &["s1", "s2"];

fn task(r: &mut Rng, id: &str) -> Object {
    Object::Task(Arc::new(Task {
        id: id.into(),
        service_id: r.pick(SERVICES).into(),
        node: r.pick(NODES).into(),
        state: if r.below(2) == 0 { TaskState::Pending } else { TaskState::Running },
        desired: if r.below(4) == 0 { TaskState::Shutdown } else { TaskState::Running },
        spec: crate::model::objects::ServiceSpec {
            reserve_cpus: 0.1 * r.below(3) as f64,
            reserve_memory: r.below(3) << 20,
            ports: (0..r.below(2))
                .map(|i| crate::model::objects::Port {
                    published: 8080 + i as u16,
                    mode: crate::model::objects::PublishMode::Host,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        },
        ..Default::default()
    }))
}

fn node(r: &mut Rng, id: &str) -> Object {
    Object::Node(Arc::new(Node { id: id.into(), hostname: r.pick(&["h1", "h2"]).into(), ..Default::default() }))
}

fn op(r: &mut Rng, m: &Model) -> Command {
    let id = r.pick(IDS).to_string();
    match r.below(10) {
        0 | 1 => Command::put(id.clone(), task(r, &id)),
        2 => {
            // Conditional: right about half the time.
            let key = Key::new(Kind::Task, id.as_str());
            let current = m.objects.get(&key).map(|(v, _)| *v).unwrap_or(0);
            let expect = if r.below(2) == 0 { current } else { current + 1 };
            Command::put_if(id.clone(), task(r, &id), expect)
        }
        3 => Command::put(id.clone(), node(r, &id)),
        4 => Command::delete(if r.below(2) == 0 { Kind::Task } else { Kind::Node }, id),
        5 => TaskPatch { node: Some(r.pick(NODES).into()), state: Some(TaskState::Failed), ..Default::default() }
            .command(&id),
        6 => NodePatch { hostname: Some(r.pick(&["h1", "h3"]).into()), ..Default::default() }.command(&id),
        7 => Command::put(id, Object::Service(Arc::new(Service::default()))),
        8 => {
            // A check: right about half the time.
            let key = Key::new(Kind::Task, id.as_str());
            let current = m.objects.get(&key).map(|(v, _)| *v).unwrap_or(0);
            Command::expect(Kind::Task, id, if r.below(2) == 0 { current } else { current + 1 })
        }
        _ => {
            let n = 1 + r.below(3);
            let cmds = (0..n).map(|_| op(r, m)).collect();
            if r.below(2) == 0 {
                Command::Batch(cmds)
            } else {
                Command::Group(cmds)
            }
        }
    }
}

fn check(s: &ClusterState, m: &Model, seed: u64, step: usize) {
    let ctx = format!("seed {seed}, step {step}");
    let got: BTreeMap<Key, (u64, Object)> =
        s.image().objects.into_iter().map(|o| (Key::new(o.object.kind(), o.id), (o.version, o.object))).collect();
    assert_eq!(got, m.objects, "objects and versions, {ctx}");
    // Indexes against a scan.
    for n in NODES {
        let scan: BTreeSet<String> = s.tasks.iter().filter(|(_, t)| t.node == *n).map(|(id, _)| id.clone()).collect();
        let idx: BTreeSet<String> = s.index.tasks_on(n).iter().cloned().collect();
        assert_eq!(idx, scan, "tasks on {n:?}, {ctx}");
    }
    for sv in SERVICES {
        let scan: BTreeSet<String> =
            s.tasks.iter().filter(|(_, t)| t.service_id == *sv).map(|(id, _)| id.clone()).collect();
        let idx: BTreeSet<String> = s.index.tasks_of(sv).iter().cloned().collect();
        assert_eq!(idx, scan, "tasks of {sv}, {ctx}");
        let mut want = index::Counts::default();
        for t in s.tasks.values().filter(|t| t.service_id == *sv && t.desired == TaskState::Running) {
            want.wanted += 1;
            want.running += u32::from(t.state == TaskState::Running);
        }
        assert_eq!(s.index.counts(sv), want, "counts of {sv}, {ctx}");
    }
    for n in NODES.iter().filter(|n| !n.is_empty()) {
        let mut want = index::Usage::default();
        for t in s.tasks.values().filter(|t| t.node == *n && index::holds(t)) {
            want.count(t, 1);
        }
        assert_eq!(s.index.usage(n), want, "usage of {n}, {ctx}");
        for sv in SERVICES {
            let scan = s.tasks.values().filter(|t| t.node == *n && t.service_id == *sv && index::holds(t)).count();
            let idx = s.index.per_service().get(*sv).and_then(|m| m.get(*n)).copied().unwrap_or(0);
            assert_eq!(idx as usize, scan, "tasks of {sv} holding {n}, {ctx}");
        }
    }
    let scan: BTreeSet<String> = s
        .tasks
        .iter()
        .filter(|(_, t)| t.desired == TaskState::Running && t.state == TaskState::Pending)
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(s.index.pending().iter().cloned().collect::<BTreeSet<_>>(), scan, "pending, {ctx}");
    for h in ["h1", "h2", "h3"] {
        let scan: BTreeSet<String> =
            s.nodes.iter().filter(|(_, n)| n.hostname == h).map(|(id, _)| id.clone()).collect();
        let idx: BTreeSet<String> = s.index.nodes_named(h).iter().cloned().collect();
        assert_eq!(idx, scan, "nodes named {h}, {ctx}");
    }
}

#[test]
fn random_operation_sequences_match_the_old_semantics() {
    for seed in 1..=200u64 {
        let mut r = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let (mut s, mut m) = (ClusterState::default(), Model::default());
        for step in 0..60 {
            let cmd = op(&mut r, &m);
            let before = s.version;
            let res = s.apply(&cmd);
            let ok = match &cmd {
                Command::Group(cmds) => {
                    let each: Vec<bool> = cmds.iter().map(|c| m.apply(c)).collect();
                    assert_eq!(res.each.len(), cmds.len(), "a result per grouped command");
                    for ((r, ok), c) in res.each.iter().zip(&each).zip(cmds) {
                        // (A group's own result has no conflict: its commands' have.)
                        if !matches!(c, Command::Group(_)) {
                            assert_eq!(r.conflict.is_none(), *ok, "grouped result, seed {seed} step {step}: {cmd:?}");
                        }
                    }
                    true
                }
                _ => m.apply(&cmd),
            };
            assert_eq!(res.conflict.is_none(), ok, "seed {seed} step {step}: {cmd:?} -> {res:?}");
            assert_eq!(s.version, m.version, "versions, seed {seed} step {step}");
            check(&s, &m, seed, step);
            // The feed says what changed since any earlier version.
            let since: BTreeSet<Key> = s.feed.since(before).unwrap().iter().map(|c| c.key.clone()).collect();
            let want: BTreeSet<Key> = m.changed.iter().filter(|(v, _)| *v > before).map(|(_, k)| k.clone()).collect();
            assert_eq!(since, want, "feed since {before}, seed {seed} step {step}");
        }
        // A snapshot round trip keeps everything and rebuilds the indexes.
        let back = ClusterState::from_image(
            crate::raft::codec::decode(&crate::raft::codec::encode(&s.image()).unwrap()).unwrap(),
        );
        check(&back, &m, seed, usize::MAX);
        assert_eq!(back.version, s.version);
        assert!(back.feed.since(s.version - 1).is_none(), "a restored state's feed starts at its version");
    }
}

#[test]
fn task_changes_name_their_service_and_both_nodes() {
    let mut s = ClusterState::default();
    let t = Task { id: "t".into(), service_id: "s1".into(), node: String::new(), ..Default::default() };
    s.apply(&Command::put("t", Object::Task(Arc::new(t))));
    let v = s.version;
    s.apply(&TaskPatch { node: Some("n1".into()), ..Default::default() }.command("t"));
    s.apply(&Command::delete(Kind::Task, "t"));
    let feed = s.feed.since(v).unwrap();
    assert_eq!(feed[0].service, "s1");
    assert_eq!(feed[0].nodes, [String::new(), "n1".to_string()]);
    assert_eq!(feed[1].nodes, ["n1".to_string(), String::new()]);
    assert!(s.index.tasks_on("n1").is_empty() && s.index.tasks_of("s1").is_empty());
}

#[test]
fn an_old_json_state_and_its_commands_convert() {
    let old: legacy::LegacyState = serde_json::from_value(serde_json::json!({
        "version": 7,
        "tables": {
            "nodes": {"n1": {"version": 3, "value": {"id": "n1", "hostname": "h", "role": "worker", "addr": "a:1",
                "availability": "active", "labels": {}, "cpus": 1.0, "memory": 1, "status": "ready",
                "message": "", "agent_version": "", "updated_ms": 0}}},
            "service-names": {"web": {"version": 5, "value": "s1"}},
            "cluster": {"settings": {"version": 6, "value": {"node_cert_ttl_secs": 60}}}
        }
    }))
    .unwrap();
    let s = old.convert().unwrap();
    assert_eq!(s.version, 7);
    assert_eq!(s.version_of(&Key::new(Kind::Node, "n1")), 3);
    assert!(s.nodes["n1"].was_manager, "conservatively refused manager calls once demoted");
    assert_eq!(s.service_names["web"], "s1");
    assert_eq!(s.settings.node_cert_ttl_secs, 60);
    assert_eq!(s.index.nodes_named("h").len(), 1);
    let cmd: legacy::LegacyCommand = serde_json::from_value(serde_json::json!({"Batch": [
        {"Patch": {"table": "tasks", "id": "t1", "patch": {"state": "running", "exit_code": null}}},
        {"Delete": {"table": "service-names", "id": "web"}}
    ]}))
    .unwrap();
    match cmd.convert().unwrap() {
        Command::Batch(c) => {
            assert!(matches!(&c[0], Command::PatchTask { id, patch } if id == "t1" && patch.exit_code == Some(None)));
            assert_eq!(c[1], Command::delete(Kind::ServiceName, "web"));
        }
        other => panic!("{other:?}"),
    }
    let bad: legacy::LegacyCommand =
        serde_json::from_value(serde_json::json!({"Delete": {"table": "mystery", "id": "x"}})).unwrap();
    assert!(bad.convert().unwrap_err().to_string().contains("mystery"));
}
