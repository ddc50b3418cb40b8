//! Services on a cluster of real agent processes (3 managers + 2 workers,
//! root, each in its own mount namespace with cgroup2) pulling a busybox
//! image from a real docker-registry on loopback: replicas spread over the
//! nodes; the leader killed during a scale-out; a manager frozen (SIGSTOP,
//! as cut off) past its heartbeat grace; every agent restarted; a drained
//! worker; restart policies; global services; unplaceable tasks; logs.
//! After each blow the task count and the containers on the nodes are exact.

// The test harness: a failed unwrap is a failed test, with its line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use orc_e2e::agent::{can_run_containers, Options};
use orc_e2e::cluster::LocalCluster;
use orc_e2e::oci;
use orc_e2e::registry::Registry;

const SETTLE: Duration = Duration::from_secs(90);

/// Tasks of `service` wanted running, and of those, running.
fn tasks(c: &LocalCluster, service: &str) -> Option<(Vec<serde_json::Value>, usize)> {
    let t = c.json(&["service", "ps", service, "--running"]);
    let live: Vec<serde_json::Value> = t.as_array()?.clone();
    let running = live.iter().filter(|t| t["state"] == "running").count();
    Some((live, running))
}

/// Exactly `n` tasks wanted running, all running, one per slot, and exactly
/// `n` containers of the service running on the nodes (none left behind).
fn exact(c: &LocalCluster, service: &str, n: usize) -> bool {
    let Some((live, running)) = tasks(c, service) else { return false };
    let mut slots: Vec<u64> = live.iter().filter_map(|t| t["slot"].as_u64()).collect();
    slots.sort();
    slots.dedup();
    if live.len() != n || running != n || slots.len() != n {
        return false;
    }
    let containers: Option<usize> = (0..c.agents.len()).map(|i| c.containers(i, service)).sum();
    containers == Some(n)
}

fn settle(c: &LocalCluster, service: &str, n: usize, after: &str) {
    if let Err(e) = c.wait(SETTLE, &format!("{n} tasks of {service} {after}"), |c| exact(c, service, n)) {
        let ps = c.ctl(&["service", "ps", service]);
        let nodes = c.ctl(&["node", "ls"]);
        let per_node: Vec<Option<usize>> = (0..c.agents.len()).map(|i| c.containers(i, service)).collect();
        panic!("{e}\n{}\n{}\ncontainers per agent: {per_node:?}", ps.stdout, nodes.stdout);
    }
}

fn signal(c: &LocalCluster, i: usize, sig: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(c.agents[i].child.id() as i32);
    nix::sys::signal::kill(pid, sig).unwrap();
}

#[test]
fn services_survive_leader_loss_partitions_and_restarts() {
    if !can_run_containers() {
        eprintln!("skipped: running containers needs root");
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // Nodes on hosts of their own (each programs its own container network).
    let registry = Registry::start_on_lan().unwrap();
    let image = rt.block_on(registry.push(&oci::busybox(0).unwrap(), "orc/busybox:1")).unwrap();
    let opts = Options { runtime: true, lan: true, insecure_registries: vec![registry.host()], ..Default::default() };
    let mut c = LocalCluster::start(3, 2, opts).unwrap();

    // Bad specs are refused with what to fix.
    let bad = c.ctl(&["service", "create", "--name", "bad", &image, "--constraint", "node.zone==eu"]);
    assert!(!bad.ok && bad.stderr.contains("node.labels.<key>"), "{}", bad.stderr);
    let bad = c.ctl(&["service", "create", "--name", "bad", &image, "-p", "7443:80"]);
    assert!(!bad.ok && bad.stderr.contains("node's own (its API)"), "{}", bad.stderr);

    // Six replicas spread over five nodes.
    let out = c.ctl(&["service", "create", "--name", "web", "--replicas", "6", &image, "--", "sleep", "3600"]);
    assert!(out.ok, "{}", out.stderr);
    settle(&c, "web", 6, "after create");
    let per_node: Vec<usize> = (0..5).map(|i| c.containers(i, "web").unwrap()).collect();
    assert!(per_node.iter().all(|n| (1..=2).contains(n)), "not spread: {per_node:?}");
    let dup = c.ctl(&["service", "create", "--name", "web", &image]);
    assert!(!dup.ok && dup.stderr.contains("exists"), "{}", dup.stderr);

    // Scale out and kill the leader right away (SIGKILL, like a crash).
    let leader = c.leader().expect("a leader");
    assert!(c.ctl(&["service", "scale", "web=10"]).ok);
    signal(&c, leader, nix::sys::signal::Signal::SIGKILL);
    let _ = c.agents[leader].child.wait();
    // The others elect a new leader and finish the scale-out without the
    // dead node (its containers still run, unseen).
    c.wait(SETTLE, "10 running tasks without the old leader", |c| {
        tasks(c, "web").is_some_and(|(live, running)| live.len() == 10 && running == 10)
    })
    .unwrap();
    let new_leader = c.leader().expect("a new leader");
    assert_ne!(new_leader, leader);
    // Back: its left-over containers are stopped, the count is exact.
    c.agents[leader].restart().unwrap();
    settle(&c, "web", 10, "after the old leader came back");

    // A manager cut off (frozen) past the heartbeat grace, then back.
    let victim = c.leader().unwrap();
    signal(&c, victim, nix::sys::signal::Signal::SIGSTOP);
    std::thread::sleep(Duration::from_secs(8));
    c.wait(SETTLE, "a new leader while one is frozen", |c| c.leader().is_some_and(|l| l != victim)).unwrap();
    signal(&c, victim, nix::sys::signal::Signal::SIGCONT);
    settle(&c, "web", 10, "after a frozen leader came back");

    // Everything restarts (agents only: containers outlive them).
    for a in c.agents.iter_mut() {
        a.restart().unwrap();
    }
    settle(&c, "web", 10, "after every agent restarted");
    let services = c.json(&["service", "ls"]);
    assert_eq!(services[0]["name"], "web");
    assert_eq!(services[0]["replicas"], 10);

    // Drain a worker: its tasks move, nothing of the service stays on it.
    let nodes = c.json(&["node", "ls"]);
    let w = &c.agents[4].addr;
    let wid =
        nodes.as_array().unwrap().iter().find(|n| n["addr"] == w.as_str()).unwrap()["id"].as_str().unwrap().to_string();
    assert!(c.ctl(&["node", "update", &wid, "--availability", "drain", "--label-add", "zone=eu"]).ok);
    c.wait(SETTLE, "the drained worker to run nothing", |c| c.containers(4, "web") == Some(0)).unwrap();
    settle(&c, "web", 10, "after a drain");
    let on_drained = c.json(&["node", "ps", &wid, "--running"]);
    assert_eq!(on_drained.as_array().map(|a| a.len()), Some(0), "{on_drained}");
    let id0 = nodes.as_array().unwrap().iter().find(|n| n["addr"] == c.agents[0].addr.as_str()).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let on_first = c.json(&["node", "ps", &id0, "--running"]);
    assert_eq!(on_first.as_array().map(|a| a.len()), c.containers(0, "web"), "{on_first}");
    let n = c.json(&["node", "inspect", &wid]);
    assert_eq!((n["availability"].as_str(), n["labels"]["zone"].as_str()), (Some("drain"), Some("eu")), "{n}");
    assert!(c.ctl(&["node", "update", &wid, "--availability", "active"]).ok);

    // Restart policy: on-failure, 2 attempts → 3 runs, each "exit code 3".
    let job = c.ctl(&[
        "service",
        "create",
        "--name",
        "job",
        "--restart-condition",
        "on-failure",
        "--restart-max-attempts",
        "2",
        "--restart-delay",
        "100ms",
        &image,
        "--",
        "sh",
        "-c",
        "exit 3",
    ]);
    assert!(job.ok, "{}", job.stderr);
    c.wait(SETTLE, "job to give up after 3 runs", |c| {
        let all = c.json(&["service", "ps", "job"]);
        let failed = all
            .as_array()
            .map(|t| t.iter().filter(|t| t["state"] == "failed" && t["message"] == "exit code 3").count());
        failed == Some(3) && tasks(c, "job").is_some_and(|(live, _)| live.is_empty())
    })
    .unwrap();

    // Global: one task per node; with a constraint, only the eu worker.
    assert!(c.ctl(&["service", "create", "--name", "agent", "--mode", "global", &image, "--", "sleep", "3600"]).ok);
    assert!(
        c.ctl(&[
            "service",
            "create",
            "--name",
            "eu",
            "--mode",
            "global",
            "--constraint",
            "node.labels.zone==eu",
            &image,
            "--",
            "sleep",
            "3600"
        ])
        .ok
    );
    c.wait(SETTLE, "global tasks", |c| {
        tasks(c, "agent").is_some_and(|(l, r)| l.len() == 5 && r == 5)
            && tasks(c, "eu").is_some_and(|(l, r)| l.len() == 1 && r == 1)
    })
    .unwrap();
    assert_eq!(c.containers(4, "eu"), Some(1));

    // Unplaceable: pending, with the reason.
    assert!(
        c.ctl(&["service", "create", "--name", "huge", "--reserve-memory", "100000g", &image, "--", "sleep", "1"]).ok
    );
    c.wait(SETTLE, "a pending task with a reason", |c| {
        c.json(&["service", "ps", "huge"]).as_array().is_some_and(|t| {
            t.iter()
                .any(|t| t["state"] == "pending" && t["message"].as_str().is_some_and(|m| m.contains("free memory")))
        })
    })
    .unwrap();

    // Logs of every task, labelled.
    assert!(
        c.ctl(&[
            "service",
            "create",
            "--name",
            "talk",
            "--replicas",
            "3",
            &image,
            "--",
            "sh",
            "-c",
            "echo hello; sleep 3600"
        ])
        .ok
    );
    settle(&c, "talk", 3, "after create");
    c.wait(SETTLE, "three labelled log lines", |c| {
        let out = c.ctl(&["service", "logs", "talk"]).stdout;
        out.lines().filter(|l| l.starts_with("talk.") && l.ends_with("| hello")).count() == 3
    })
    .unwrap();

    // A node removed while cut off, that comes back: the cluster refuses it,
    // and after the grace period it stops the tasks whose replacements run
    // elsewhere, saying so.
    let w4 =
        c.json(&["node", "ls"]).as_array().unwrap().iter().find(|n| n["addr"] == c.agents[4].addr.as_str()).unwrap()
            ["id"]
            .as_str()
            .unwrap()
            .to_string();
    let _ = c.agents[4].child.kill();
    let _ = c.agents[4].child.wait();
    c.wait(SETTLE, "the cut-off worker to be down", |c| c.json(&["node", "inspect", &w4])["status"] == "down").unwrap();
    assert!(c.ctl(&["node", "rm", &w4]).ok);
    c.agents[4].restart().unwrap();
    assert!(c.containers(4, "agent") == Some(1), "its task still runs during the grace period");
    c.wait(SETTLE, "the removed node to stop its tasks", |c| {
        c.containers(4, "agent") == Some(0) && c.containers(4, "eu") == Some(0)
    })
    .unwrap();
    assert!(c.agents[4].log().contains("removed from the cluster: stopping its tasks"), "{}", c.agents[4].log());

    // Removing services leaves no container behind.
    for s in ["web", "job", "agent", "eu", "huge", "talk"] {
        assert!(c.ctl(&["service", "rm", s]).ok);
    }
    c.wait(SETTLE, "no task container left", |c| {
        (0..c.agents.len()).all(|i| {
            let v = c.json(&["--nodes", &c.agents[i].addr, "container", "ls", "-a"]);
            v.as_array().is_some_and(|a| a.is_empty())
        })
    })
    .unwrap();
    assert!(c.json(&["service", "ls"]).as_array().is_some_and(|a| a.is_empty()));
}
