//! The control plane under many nodes, at a size CI carries: three managers
//! and simulated nodes ([`orc_e2e::simulator`]), every task run exactly
//! once, through a leader kill. The large figures come from
//! `cargo xtask bench scale`, not from here.

// The test harness: a failed unwrap is a failed test, with its line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use orc_e2e::cluster::LocalCluster;
use orc_e2e::simulator::{SimOptions, Simulator};

const NODES: usize = 200;
const SERVICES: usize = 5;
const REPLICAS: usize = 1000;
const TASKS: usize = SERVICES * REPLICAS;

/// Desired and running tasks over every service, as `service ls` says.
fn counts(c: &LocalCluster) -> (u64, u64) {
    let ls = c.json(&["service", "ls"]);
    let sum = |k: &str| ls.as_array().map(|a| a.iter().filter_map(|s| s[k].as_u64()).sum()).unwrap_or(0);
    (sum("desired"), sum("running"))
}

#[test]
fn simulated_nodes_run_every_task_exactly_once_through_a_leader_kill() {
    let mut c = LocalCluster::start(3, 0, Default::default()).unwrap();
    c.drain_managers().unwrap();
    let token = c.ctl(&["cluster", "join-token", "worker"]);
    assert!(token.ok, "{}", token.stderr);
    let endpoints = c.agents.iter().map(|a| a.addr.clone()).collect();
    let sim = Simulator::start(SimOptions::new(endpoints, token.stdout.trim().to_string(), NODES)).unwrap();
    sim.wait(Duration::from_secs(60), "every simulated node connected", |s| s.connected() == NODES).unwrap();
    c.wait(Duration::from_secs(30), "every simulated node ready", |c| {
        let nodes = c.json(&["node", "ls"]);
        nodes.as_array().map(|a| a.iter().filter(|n| n["status"] == "ready").count()) == Some(NODES + 3)
    })
    .unwrap();
    for i in 0..SERVICES {
        let o = c.ctl(&["service", "create", "--name", &format!("s{i}"), "--replicas", &REPLICAS.to_string(), "img"]);
        assert!(o.ok, "{}", o.stderr);
    }
    sim.wait(Duration::from_secs(240), "every task running on the simulated nodes", |s| s.running() == TASKS).unwrap();
    c.wait(Duration::from_secs(30), "the managers to see every task running", |c| {
        counts(c) == (TASKS as u64, TASKS as u64)
    })
    .unwrap();
    // Spread over the nodes, none on a manager.
    assert!(sim.nodes.iter().all(|n| n.running() > 0), "a simulated node got no task");
    assert_eq!(sim.stopped(), 0);

    // The leader killed: a new one takes every session over and restarts nothing.
    let leader = c.leader().unwrap();
    let sessions = sim.sessions();
    let _ = c.agents[leader].child.kill();
    let _ = c.agents[leader].child.wait();
    sim.wait(Duration::from_secs(60), "every session back on the new leader", |s| {
        s.connected() == NODES && s.sessions() >= sessions + NODES as u64
    })
    .unwrap();
    // Heartbeats go on for a few periods under the new leader.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(sim.running(), TASKS, "tasks running after the leader kill");
    assert_eq!(sim.stopped(), 0, "running tasks the cluster stopped after the leader kill");
    c.wait(Duration::from_secs(30), "the new leader to count every task running", |c| {
        counts(c) == (TASKS as u64, TASKS as u64)
    })
    .unwrap();

    // A node lost: its tasks run elsewhere, and only its tasks are replaced.
    let lost = sim.nodes[0].running();
    sim.fail(0);
    sim.wait(Duration::from_secs(60), "the lost node's tasks running elsewhere", |s| s.running() == TASKS).unwrap();
    assert_eq!(sim.stopped(), 0, "tasks on the other nodes stayed");
    assert!(lost > 0);
    c.wait(Duration::from_secs(30), "the managers to count every task running again", |c| {
        counts(c) == (TASKS as u64, TASKS as u64)
    })
    .unwrap();
}
