//! `--watch` of `service ls|ps` and `node ls`, and `events -f`, against
//! real managers and simulated nodes: the listing (or the events kept)
//! first, then each change (a scale, a node lost, a removal), on a
//! follower as on the leader.

// The test harness: a failed unwrap is a failed test, with its line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use orc_e2e::cluster::LocalCluster;
use orc_e2e::simulator::{SimOptions, Simulator};
use orc_e2e::watching::Watching;

const NODES: usize = 4;
const SOON: Duration = Duration::from_secs(20);

#[test]
fn watchers_see_the_objects_then_every_change() {
    let c = LocalCluster::start(3, 0, Default::default()).unwrap();
    c.drain_managers().unwrap();
    let token = c.ctl(&["cluster", "join-token", "worker"]);
    assert!(token.ok, "{}", token.stderr);
    let endpoints = c.agents.iter().map(|a| a.addr.clone()).collect();
    let sim = Simulator::start(SimOptions::new(endpoints, token.stdout.trim().to_string(), NODES)).unwrap();
    sim.wait(SOON, "every simulated node connected", |s| s.connected() == NODES).unwrap();
    let o = c.ctl(&["service", "create", "--name", "w", "--replicas", "2", "img"]);
    assert!(o.ok, "{}", o.stderr);
    sim.wait(SOON, "two tasks running", |s| s.running() == 2).unwrap();
    c.wait(SOON, "the managers to count them", |c| c.json(&["service", "ls"])[0]["running"] == 2).unwrap();

    // On a follower: a watch reads the state that manager applied.
    let leader = c.leader().unwrap();
    let follower = c.agents[(leader + 1) % 3].addr.clone();
    let on = |args: &[&str]| {
        let mut a = vec!["--nodes", follower.as_str(), "-o", "json"];
        a.extend(args);
        Watching::start(&c.config, &a).unwrap()
    };
    let mut ps = on(&["service", "ps", "w", "--watch"]);
    let mut ls = on(&["service", "ls", "--watch"]);
    let mut nodes = on(&["node", "ls", "--watch"]);
    let mut table = Watching::start(&c.config, &["service", "ps", "w", "-w"]).unwrap();
    // Events of the service (and its tasks), and of everything.
    let mut events = on(&["events", "-f", "--service", "w"]);
    let mut all = on(&["events", "-f", "--since", "1h"]);
    let event = |w: &mut Watching, what: &str, f: &dyn Fn(&serde_json::Value) -> bool| {
        w.line(SOON, what, |l| serde_json::from_str::<serde_json::Value>(l).is_ok_and(|e| f(&e))).unwrap();
    };
    let is = |e: &serde_json::Value, subject: &str, name: &str, action: &str| {
        e["subject"] == subject && e["name"] == name && e["action"] == action
    };
    // What the manager kept first: the service created, its tasks placed and running.
    event(&mut events, "w created", &|e| is(e, "service", "w", "created"));
    event(&mut events, "w.1 assigned", &|e| {
        is(e, "task", "w.1", "assigned") && e["message"].as_str().is_some_and(|m| m.starts_with("to "))
    });
    event(&mut events, "w.1 running", &|e| is(e, "task", "w.1", "running"));

    // The listing: what exists now, as added.
    for slot in [1, 2] {
        ps.event(SOON, "task w.{slot} listed", |t, o| t == "added" && o["slot"] == slot && o["state"] == "running")
            .unwrap();
    }
    ls.event(SOON, "w listed", |t, o| t == "added" && o["name"] == "w" && o["running"] == 2).unwrap();
    for _ in 0..NODES + 3 {
        nodes.event(SOON, "a node listed", |t, _| t == "added").unwrap();
    }
    table.line(SOON, "the table's header", |l| l.starts_with("ID") && l.contains("DESIRED")).unwrap();
    table.line(SOON, "w.1 in the table", |l| l.contains("w.1")).unwrap();

    // A scale: the new task appears, then runs; the service's count follows.
    assert!(c.ctl(&["service", "scale", "w=3"]).ok);
    ps.event(SOON, "w.3 added", |t, o| t == "added" && o["slot"] == 3).unwrap();
    ps.event(SOON, "w.3 running", |t, o| t == "modified" && o["slot"] == 3 && o["state"] == "running").unwrap();
    ls.event(SOON, "w at 3/3", |t, o| t == "modified" && o["running"] == 3 && o["desired"] == 3).unwrap();
    table.line(SOON, "w.3 running in the table", |l| l.contains("w.3") && l.contains("running")).unwrap();
    event(&mut events, "w scaled", &|e| is(e, "service", "w", "scaled") && e["message"] == "2 → 3");
    event(&mut events, "w.3 created", &|e| is(e, "task", "w.3", "created"));
    event(&mut events, "w.3 running", &|e| is(e, "task", "w.3", "running") && e["time_ms"].as_i64() > Some(0));

    // A node lost: it goes down, its task is replaced elsewhere.
    let lost = sim.nodes.iter().position(|n| n.running() > 0).unwrap();
    let lost_id = sim.nodes[lost].id.clone();
    sim.fail(lost);
    nodes
        .event(SOON, "the lost node down", |t, o| {
            t == "modified" && o["id"] == lost_id.as_str() && o["status"] == "down"
        })
        .unwrap();
    ps.event(SOON, "a replacement running elsewhere", |t, o| {
        t == "modified" && o["state"] == "running" && o["node_id"] != lost_id.as_str()
    })
    .unwrap();
    sim.wait(SOON, "three tasks running again", |s| s.running() == 3).unwrap();
    event(&mut all, "the lost node down", &|e| {
        e["subject"] == "node" && e["id"] == lost_id.as_str() && e["action"] == "down"
    });
    event(&mut events, "its task stopped for it", &|e| {
        e["subject"] == "task" && e["message"].as_str().is_some_and(|m| m.contains("is down"))
    });

    // Removed: the service's watcher is told with its last state.
    assert!(c.ctl(&["service", "rm", "w"]).ok);
    ls.event(SOON, "w deleted", |t, o| t == "deleted" && o["name"] == "w").unwrap();
    ps.event(SOON, "w's tasks told to stop", |t, o| t == "deleted" || o["desired"] == "shutdown").unwrap();
    event(&mut events, "w removed", &|e| is(e, "service", "w", "removed"));
    event(&mut all, "w removed, for everyone", &|e| is(e, "service", "w", "removed"));
    // Without -f: what is kept, then the end; --since narrows it.
    let o = c.ctl(&["-o", "json", "events", "--service", "w"]);
    assert!(!o.ok, "the service is gone: {}", o.stdout);
    let o = c.ctl(&["-o", "json", "events", "--since", "1h"]);
    assert!(o.ok, "{}", o.stderr);
    let kept: Vec<serde_json::Value> = o.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(kept.iter().any(|e| is(e, "service", "w", "scaled")), "{}", o.stdout);
    let times: Vec<i64> = kept.iter().map(|e| e["version"].as_i64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "oldest first");
    let o = c.ctl(&["-o", "json", "events", "--since", "2099-01-01T00:00:00Z"]);
    assert!(o.ok && o.stdout.trim().is_empty(), "{}", o.stdout);
    let o = c.ctl(&["events", "--since", "last week"]);
    assert!(!o.ok && o.stderr.contains("--since \"last week\""), "{}", o.stderr);

    // A manager serves a bounded number of watches, and says so.
    drop((ps, ls, table, events, all));
    let mut more = Vec::new();
    while more.len() < 63 {
        let mut w = on(&["node", "ls", "--watch"]);
        w.event(SOON, "a node listed", |t, _| t == "added").unwrap();
        more.push(w);
    }
    let o = c.ctl(&["--nodes", follower.as_str(), "node", "ls", "--watch"]);
    assert!(!o.ok && o.stderr.contains("serves 64 watches already"), "{}", o.stderr);
    drop(more);
    // Ended watches give their places back.
    c.wait(SOON, "a watch again", |c| {
        let mut w =
            Watching::start(&c.config, &["--nodes", follower.as_str(), "-o", "json", "node", "ls", "-w"]).unwrap();
        w.event(Duration::from_secs(5), "a node listed", |t, _| t == "added").is_ok()
    })
    .unwrap();

    // A watch of something that does not exist says so at once.
    let o = c.ctl(&["service", "ps", "nope", "--watch"]);
    assert!(!o.ok && o.stderr.contains("no service \"nope\""), "{}", o.stderr);
}
