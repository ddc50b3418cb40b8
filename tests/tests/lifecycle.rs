//! The life of a service on real agents (3 managers, root,
//! cgroup2, busybox from a real docker-registry on loopback), one cluster
//! for every check: a failing liveness probe restarts its task with the
//! reason; readiness flips without a restart; a global server on a host
//! port updated stop-first never runs two at once; jobs reach their
//! completions and stop; a stateful service starts slots in order and
//! replaces a lost node's slot only after the grace; an autoscaled CPU
//! burner scales up and back down; a cron job runs once per scheduled time
//! across a leader kill; an update to a broken image
//! rolls back by itself while the old tasks keep serving; a start-first
//! update never has fewer ready tasks than replicas; pause and resume.

// The test harness: a failed unwrap is a failed test, with its line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use orc_e2e::agent::{can_run_containers, Options};
use orc_e2e::cluster::LocalCluster;
use orc_e2e::oci;
use orc_e2e::registry::Registry;
use serde_json::Value;

const SETTLE: Duration = Duration::from_secs(90);

fn tasks(c: &LocalCluster, service: &str) -> Vec<Value> {
    c.json(&["service", "ps", service]).as_array().cloned().unwrap_or_default()
}

fn live(c: &LocalCluster, service: &str) -> Vec<Value> {
    tasks(c, service).into_iter().filter(|t| t["desired"] == "running").collect()
}

fn ready(c: &LocalCluster, service: &str) -> usize {
    live(c, service).iter().filter(|t| t["state"] == "running" && t["health"] == "ready").count()
}

fn inspect(c: &LocalCluster, service: &str) -> Value {
    c.json(&["service", "inspect", service])
}

fn ok(c: &LocalCluster, args: &[&str]) -> String {
    let o = c.ctl(args);
    assert!(o.ok, "orcctl {}: {}", args.join(" "), o.stderr);
    o.stdout
}

/// `orcctl events --service S`: what the manager kept, oldest first.
fn events(c: &LocalCluster, service: &str) -> Vec<Value> {
    let out = ok(c, &["-o", "json", "events", "--service", service]);
    out.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Whether an event of `action` whose message contains `text` was kept.
fn told(c: &LocalCluster, service: &str, action: &str, text: &str) -> bool {
    events(c, service).iter().any(|e| e["action"] == action && e["message"].as_str().is_some_and(|m| m.contains(text)))
}

fn wait(c: &LocalCluster, service: &str, what: &str, f: impl Fn(&LocalCluster) -> bool) {
    if let Err(e) = c.wait(SETTLE, what, f) {
        panic!("{e}\n{}", c.ctl(&["service", "ps", service]).stdout);
    }
}

#[test]
fn health_checks_rolling_updates_and_rollbacks() {
    if !can_run_containers() {
        eprintln!("skipped: running containers needs root");
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // Nodes on hosts of their own (each programs its own container network).
    let registry = Registry::start_on_lan().unwrap();
    let image = rt.block_on(registry.push(&oci::busybox(0).unwrap(), "orc/busybox:1")).unwrap();
    let opts = Options { runtime: true, lan: true, insecure_registries: vec![registry.host()], ..Default::default() };
    let mut c = LocalCluster::start(3, 0, opts).unwrap();

    // Bad probes and policies are refused with what to fix.
    let bad = c.ctl(&["service", "create", "--name", "bad", &image, "--probe", "liveness exec true timeout=20s"]);
    assert!(!bad.ok && bad.stderr.contains("liveness probe: timeout 20000 ms"), "{}", bad.stderr);
    let bad = c.ctl(&["service", "create", "--name", "bad", &image, "--update-failure-action", "explode"]);
    assert!(!bad.ok && bad.stderr.contains("pause, continue or rollback"), "{}", bad.stderr);

    // Liveness: alive for 3 s, then its probe fails: restarted, the reason shown.
    ok(
        &c,
        &[
            "service",
            "create",
            "--name",
            "live",
            &image,
            "--probe",
            "liveness exec test -f /tmp/alive interval=1s failures=2",
            "--restart-delay",
            "0s",
            "--",
            "sh",
            "-c",
            "touch /tmp/alive; sleep 3; rm /tmp/alive; sleep 3600",
        ],
    );
    wait(&c, "live", "a task restarted by its liveness probe", |c| {
        tasks(c, "live").iter().any(|t| {
            t["state"] == "failed" && t["message"].as_str().is_some_and(|m| m.contains("liveness probe failed 2 times"))
        }) && ready(c, "live") == 1
    });
    let table = ok(&c, &["service", "ps", "live"]);
    assert!(table.contains("liveness probe failed"), "{table}");
    ok(&c, &["service", "rm", "live"]);

    // Readiness: not ready, ready, not ready again, never restarted.
    ok(
        &c,
        &[
            "service",
            "create",
            "--name",
            "ready",
            &image,
            "--probe",
            "readiness exec test -f /tmp/ready interval=1s failures=1",
            "--",
            "sh",
            "-c",
            "sleep 2; touch /tmp/ready; sleep 4; rm /tmp/ready; sleep 3600",
        ],
    );
    wait(&c, "ready", "the task ready", |c| ready(c, "ready") == 1);
    let id = live(&c, "ready")[0]["id"].clone();
    wait(&c, "ready", "the task not ready", |c| {
        live(c, "ready")
            .iter()
            .any(|t| t["health"] == "not-ready" && t["probe"].as_str().is_some_and(|p| p.starts_with("readiness:")))
    });
    let now = live(&c, "ready");
    assert_eq!((now.len(), &now[0]["id"], &now[0]["state"]), (1, &id, &Value::from("running")), "no restart");
    // Each flip is an event, the probe's failure its reason.
    assert!(told(&c, "ready", "ready", ""), "{:?}", events(&c, "ready"));
    assert!(told(&c, "ready", "not-ready", "readiness:"), "{:?}", events(&c, "ready"));
    ok(&c, &["service", "rm", "ready"]);

    // A replicated job: 4 completions, 2 at a time, none run again; a
    // global job: once on each node.
    ok(
        &c,
        &[
            "service",
            "create",
            "--name",
            "batch",
            "--mode",
            "replicated-job",
            "--replicas",
            "4",
            "--max-concurrent",
            "2",
            &image,
            "--",
            "sleep",
            "1",
        ],
    );
    ok(&c, &["service", "create", "--name", "setup", "--mode", "global-job", &image, "--", "true"]);
    wait(&c, "batch", "4 completions of the job", |c| {
        let s = inspect(c, "batch");
        s["completed"] == 4 && s["running"] == 0
    });
    let done = tasks(&c, "batch");
    assert_eq!(done.iter().filter(|t| t["state"] == "complete").count(), 4, "{done:?}");
    wait(&c, "setup", "the global job done on every node", |c| inspect(c, "setup")["completed"] == 3);
    let ls = ok(&c, &["service", "ls"]);
    assert!(ls.contains("(4/4 completed)") && ls.contains("(3/3 completed)"), "{ls}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(tasks(&c, "batch").len(), 4, "a finished job runs nothing more and keeps its history");
    ok(&c, &["service", "rm", "batch", "setup"]);

    // A global web server on a published host port, updated stop-first to
    // add an HTTP readiness probe: the new task is sent to its node only
    // once the old one stopped and freed the port.
    let port = orc_e2e::free_port().to_string();
    ok(
        &c,
        &[
            "service",
            "create",
            "--name",
            "page",
            "--mode",
            "global",
            "--constraint",
            &format!("node.id=={}", c.node_id(0).unwrap()),
            "-p",
            &port,
            "--stop-grace-period",
            "1s",
            &image,
            "--",
            "httpd",
            "-f",
            "-p",
            &port,
            "-h",
            "/www",
        ],
    );
    // On node 0's own network (a published port), reached at its address on the LAN.
    let node0 = c.agents[0].host.as_ref().unwrap().addr;
    wait(&c, "page", "the page served", |_| orc_e2e::http_get_at(node0, port.parse().unwrap()).is_some());
    let probe = format!("readiness http :{port}/ interval=1s");
    let out = ok(&c, &["service", "update", "page", "--probe", &probe, "--update-failure-action", "rollback"]);
    assert!(out.contains("completed: 1/1 tasks updated"), "{out}");
    assert!(tasks(&c, "page").iter().all(|t| t["state"] != "failed"), "{}", ok(&c, &["service", "ps", "page"]));
    assert!(orc_e2e::http_get_at(node0, port.parse().unwrap()).is_some());
    ok(&c, &["service", "rm", "page"]);

    // A rolling update to a broken image rolls back by itself; the old
    // tasks keep serving throughout.
    ok(
        &c,
        &[
            "service",
            "create",
            "--name",
            "web",
            "--replicas",
            "4",
            &image,
            "--probe",
            "readiness exec true interval=1s",
            "--update-parallelism",
            "1",
            "--update-monitor",
            "1s",
            "--update-failure-action",
            "rollback",
            "--restart-delay",
            "0s",
            "--",
            "sleep",
            "3600",
        ],
    );
    wait(&c, "web", "4 ready tasks", |c| ready(c, "web") == 4);
    let before: Vec<Value> = live(&c, "web").iter().map(|t| t["id"].clone()).collect();
    let broken = format!("{}/orc/nothing-here:1", registry.host());
    let out = c.ctl(&["service", "update", "web", "--image", &broken]);
    assert!(!out.ok, "a rolled-back update is an error: {}", out.stdout);
    assert!(out.stderr.contains("rolled-back") && out.stderr.contains("new tasks failed"), "{}", out.stderr);
    let s = inspect(&c, "web");
    assert_eq!(s["update_status"]["state"], "rolled-back", "{s}");
    assert_eq!(s["image"], Value::from(image.as_str()));
    for (action, why) in [("updating", ""), ("rolling-back", "new tasks failed")] {
        assert!(told(&c, "web", action, why), "no {action} event: {:?}", events(&c, "web"));
    }
    let lost = events(&c, "web");
    assert!(lost.iter().any(|e| e["subject"] == "task" && (e["action"] == "rejected" || e["action"] == "failed")));
    let shown = s["events"].as_array().unwrap();
    assert!(shown.iter().any(|e| e["action"] == "rolling-back"), "inspect shows the service's events: {s}");
    wait(&c, "web", "4 ready tasks after the rollback", |c| ready(c, "web") == 4);
    let after: Vec<Value> = live(&c, "web").iter().map(|t| t["id"].clone()).collect();
    let kept = after.iter().filter(|id| before.contains(id)).count();
    assert!(kept >= 3, "the old tasks kept serving: {kept} of 4 kept");

    // Start-first: never fewer ready tasks than replicas.
    ok(&c, &["service", "update", "web", "--update-order", "start-first", "--update-parallelism", "2", "-d"]);
    let watcher = {
        let config = c.config.clone();
        std::thread::spawn(move || {
            let mut least = usize::MAX;
            let until = std::time::Instant::now() + Duration::from_secs(60);
            while std::time::Instant::now() < until {
                let o = std::process::Command::new(orc_e2e::paths::debug_bin("orcctl"))
                    .args(["--orcconfig"])
                    .arg(&config)
                    .args(["service", "ps", "web", "-o", "json"])
                    .output()
                    .unwrap();
                let list: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap_or_default();
                let n = list
                    .iter()
                    .filter(|t| t["desired"] == "running" && t["state"] == "running" && t["health"] == "ready")
                    .count();
                least = least.min(n);
                let done = list.iter().filter(|t| t["desired"] == "running").all(|t| t["spec_version"] == 4);
                if done && n == 4 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            least
        })
    };
    let out = ok(&c, &["service", "update", "web", "--env-add", "V=2"]);
    assert!(out.contains("completed: 4/4 tasks updated"), "{out}");
    let least = watcher.join().unwrap();
    assert!(least >= 4, "{least} ready tasks at one point of a start-first update of 4");

    // Pause and resume.
    ok(&c, &["service", "update", "web", "--update-parallelism", "1", "--update-delay", "3s", "-d"]);
    ok(&c, &["service", "update", "web", "--env-add", "V=3", "-d"]);
    ok(&c, &["service", "update", "web", "--pause"]);
    assert_eq!(inspect(&c, "web")["update_status"]["state"], "paused");
    let not_paused = c.ctl(&["service", "update", "web", "--pause"]);
    assert!(!not_paused.ok && not_paused.stderr.contains("is paused"), "{}", not_paused.stderr);
    let out = ok(&c, &["service", "update", "web", "--resume"]);
    assert!(out.contains("completed"), "{out}");
    // And back by hand.
    let out = ok(&c, &["service", "rollback", "web"]);
    assert!(out.contains("rolled-back"), "{out}");
    let env = inspect(&c, "web")["spec"]["env"].clone();
    assert!(env.as_array().unwrap().iter().any(|e| e == "V=2"), "{env}");

    // A stateful service: slots started in order, each with its name as
    // hostname; a node lost (its agent and the slot's container killed):
    // the slot comes back elsewhere only after the grace, never two alive.
    ok(&c, &["service", "create", "--name", "db", "--stateful", "--replicas", "3", &image, "--", "sleep", "3600"]);
    wait(&c, "db", "3 ready slots", |c| ready(c, "db") == 3);
    let mut db = live(&c, "db");
    db.sort_by_key(|t| t["slot"].as_u64());
    let created: Vec<i64> = db.iter().map(|t| t["created_ms"].as_i64().unwrap()).collect();
    assert!(created.windows(2).all(|w| w[0] < w[1]), "slots created in order: {created:?}");
    let victim = (0..3).find(|i| Some(*i) != c.leader()).unwrap();
    let victim_id = c.node_id(victim).unwrap();
    let lost = db.iter().find(|t| t["node_id"] == victim_id.as_str()).unwrap().clone();
    let slot = lost["slot"].as_u64().unwrap();
    let addr = c.agents[victim].addr.clone();
    let name = format!("db.{slot}");
    let host = ok(&c, &["--nodes", &addr, "container", "exec", lost["container"].as_str().unwrap(), "--", "hostname"]);
    assert_eq!(host.trim(), name, "the slot's name is its hostname");
    let on_victim = c.json(&["--nodes", &addr, "container", "ls"]);
    let pid =
        on_victim.as_array().unwrap().iter().find(|x| x["id"] == lost["container"]).unwrap()["pid"].as_i64().unwrap();
    let killed = std::time::Instant::now();
    let agent = nix::unistd::Pid::from_raw(c.agents[victim].child.id() as i32);
    nix::sys::signal::kill(agent, nix::sys::signal::Signal::SIGKILL).unwrap();
    let _ = c.agents[victim].child.wait();
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
    wait(&c, "db", "the lost slot running elsewhere", |c| {
        let of_slot: Vec<Value> = live(c, "db").into_iter().filter(|t| t["slot"] == slot).collect();
        assert!(of_slot.len() <= 1, "two tasks of slot {slot} wanted running: {of_slot:?}");
        of_slot.first().is_some_and(|t| t["node_id"] != victim_id.as_str() && t["state"] == "running")
    });
    let took = killed.elapsed();
    assert!(took >= Duration::from_secs(30), "replaced after {took:?}: before the grace");
    c.agents[victim].restart().unwrap();
    ok(&c, &["service", "rm", "db"]);

    // Autoscaling, turned on for a running CPU burner (25 s per task, on a
    // 0.1 CPU reservation): it scales up to its maximum, and once idle back down to its minimum
    // after the scale-down window; each decision is recorded with its reason.
    let bad = c.ctl(&["service", "create", "--name", "bad", &image, "--autoscale-max", "3", "--autoscale-cpu", "50"]);
    assert!(!bad.ok && bad.stderr.contains("set --reserve-cpu"), "{}", bad.stderr);
    ok(
        &c,
        &[
            "service",
            "create",
            "--name",
            "burn",
            "--reserve-cpu",
            "0.1",
            &image,
            "--",
            "sh",
            "-c",
            "end=$(($(date +%s)+25)); while [ $(date +%s) -lt $end ]; do :; done; sleep 3600",
        ],
    );
    // Turned on afterwards: no task is replaced for it.
    let out = ok(
        &c,
        &["service", "update", "burn", "--autoscale-max", "3", "--autoscale-cpu", "50", "--scale-down-window", "20s"],
    );
    assert!(out.contains("(version 1)"), "{out}");
    wait(&c, "burn", "scaled up to the maximum", |c| inspect(c, "burn")["replicas"] == 3 && live(c, "burn").len() == 3);
    let up = inspect(&c, "burn")["autoscale_status"].clone();
    let first = &up["decisions"][0];
    assert_eq!((first["from"].as_u64(), first["to"].as_u64()), (Some(1), Some(3)), "{up}");
    let why = first["reason"].as_str().unwrap();
    assert!(why.contains("cpu at") && why.contains("capped at the maximum 3"), "{why}");
    wait(&c, "burn", "scaled back down to the minimum", |c| {
        inspect(c, "burn")["replicas"] == 1 && live(c, "burn").len() == 1
    });
    let down = inspect(&c, "burn")["autoscale_status"].clone();
    let last = down["decisions"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["to"].as_u64(), Some(1), "{down}");
    assert!(down["cpu_percent"].as_u64().unwrap() < 50, "{down}");
    assert!(told(&c, "burn", "autoscaled", "1 → 3: cpu at"), "{:?}", events(&c, "burn"));
    assert!(told(&c, "burn", "autoscaled", "3 → 1"), "{:?}", events(&c, "burn"));
    ok(&c, &["service", "rm", "burn"]);

    // A cron job every 5 s (forbid), across a leader kill: each scheduled
    // time runs once — no run doubled, at most the one run due during the
    // election late (caught up once).
    // (Its tasks keep off the leader to be killed: a task lost with its
    // node is replaced, which is not a second run.)
    let leader = c.leader().unwrap();
    let off_leader = format!("node.id!={}", c.node_id(leader).unwrap());
    ok(
        &c,
        &[
            "service",
            "create",
            "--name",
            "tick",
            "--mode",
            "replicated-job",
            "--schedule",
            "*/5 * * * * *",
            "--concurrency",
            "forbid",
            "--success-history",
            "100",
            "--constraint",
            &off_leader,
            &image,
            "--",
            "sleep",
            "1",
        ],
    );
    let started = std::time::Instant::now();
    wait(&c, "tick", "two runs", |c| inspect(c, "tick")["cron_status"]["run"].as_u64() >= Some(2));
    assert_eq!(c.leader(), Some(leader));
    let pid = nix::unistd::Pid::from_raw(c.agents[leader].child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    let _ = c.agents[leader].child.wait();
    std::thread::sleep(Duration::from_secs(16));
    let status = inspect(&c, "tick")["cron_status"].clone();
    let elapsed = started.elapsed().as_secs();
    let all = tasks(&c, "tick");
    let n = status["run"].as_u64().unwrap();
    let mut per_run = std::collections::BTreeMap::new();
    for t in &all {
        *per_run.entry(t["run"].as_u64().unwrap()).or_insert(0) += 1;
    }
    assert!(per_run.values().all(|k| *k == 1), "a run doubled: {per_run:?}");
    assert_eq!(per_run.keys().copied().collect::<Vec<_>>(), (1..=n).collect::<Vec<_>>(), "{status}");
    assert!(n + 2 >= elapsed / 5 && n <= elapsed / 5 + 1, "{n} runs in {elapsed} s: {status}");
    c.agents[leader].restart().unwrap();
}
