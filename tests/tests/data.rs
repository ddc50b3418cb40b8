//! Data and access between real agents (root: each agent a host of its own
//! on the test LAN): secrets reach exactly the node that runs a task
//! mounting them, as a tmpfs file with its owner and mode, and no STATE,
//! Raft store, log or API reply holds their plaintext; a new version rolls
//! the service; a secret in use is not removed; configs are mounted
//! read-only; bad references are refused with what to do.

// The test harness: a failed unwrap is a failed test, with its line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use orc_e2e::agent::{can_run_containers, Options};
use orc_e2e::cluster::LocalCluster;
use orc_e2e::oci;
use orc_e2e::registry::Registry;

const SETTLE: Duration = Duration::from_secs(60);

/// The running task of `service`: (task id, node address, container).
fn running(c: &LocalCluster, service: &str) -> Vec<(String, String, String)> {
    let t = c.json(&["service", "ps", service, "--running"]);
    let nodes = c.json(&["node", "ls"]);
    let addr_of = |id: &str| {
        nodes
            .as_array()
            .and_then(|n| n.iter().find(|n| n["id"] == id))
            .map(|n| n["addr"].as_str().unwrap_or_default().to_string())
            .unwrap_or_default()
    };
    t.as_array()
        .map(|ts| {
            ts.iter()
                .filter(|t| t["state"] == "running")
                .map(|t| {
                    let s = |k: &str| t[k].as_str().unwrap_or_default().to_string();
                    (s("id"), addr_of(&s("node_id")), s("container"))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn exec(c: &LocalCluster, node: &str, container: &str, cmd: &[&str]) -> (bool, String) {
    let mut args = vec!["--nodes", node, "container", "exec", container, "--"];
    args.extend_from_slice(cmd);
    let o = c.ctl(&args);
    (o.ok, format!("{}{}", o.stdout, o.stderr))
}

/// Files under `dir` whose bytes hold `needle`.
fn holding(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for e in entries.flatten() {
        let p = e.path();
        let Ok(meta) = std::fs::symlink_metadata(&p) else { continue };
        if meta.is_dir() {
            out.extend(holding(&p, needle));
        } else if meta.is_file() {
            if let Ok(bytes) = std::fs::read(&p) {
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    out.push(p.display().to_string());
                }
            }
        }
    }
    out
}

/// Every place the plaintext must not be: each agent's STATE (the Raft
/// store on managers), its run directory as the host sees it, its log.
fn nowhere_on_disk(c: &LocalCluster, plain: &str) {
    for a in &c.agents {
        let found = holding(a.dir.path(), plain.as_bytes());
        assert!(found.is_empty(), "the plaintext of a secret is in {found:?}");
    }
}

#[test]
fn secrets_and_configs_reach_only_their_tasks() {
    if !can_run_containers() {
        eprintln!("skipped: needs root");
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let registry = Registry::start_on_lan().unwrap();
    let image = rt.block_on(registry.push(&oci::busybox(0).unwrap(), "orc/busybox:1")).unwrap();
    let opts = Options { runtime: true, lan: true, insecure_registries: vec![registry.host()], ..Default::default() };
    let c = LocalCluster::start(1, 2, opts).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let canary = format!("canary-{:016x}", rand_u64());
    let out = c.ctl(&["secret", "create", "db", &file("db1", &canary), "--label", "team=data"]);
    assert!(out.ok && out.stdout.contains("version 1"), "{} {}", out.stdout, out.stderr);
    let again = c.ctl(&["secret", "create", "db", &file("x", "x")]);
    assert!(!again.ok && again.stderr.contains("orcctl secret update db"), "{}", again.stderr);
    let big = c.ctl(&["secret", "create", "big", &file("big", &"x".repeat(600 * 1024))]);
    assert!(!big.ok && big.stderr.contains("500 KiB"), "{}", big.stderr);
    assert!(c.ctl(&["config", "create", "app.conf", &file("conf", "greeting=hello\n")]).ok);

    // A reference to nothing is refused, saying how to make it.
    let nope = c.ctl(&["service", "create", "--name", "x", "--secret", "nope", &image, "--", "sleep", "1"]);
    assert!(!nope.ok && nope.stderr.contains("orcctl secret create nope"), "{}", nope.stderr);
    let twice = c.ctl(&[
        "service",
        "create",
        "--name",
        "x",
        "--secret",
        "source=db,target=/a",
        "--config",
        "source=app.conf,target=/a",
        &image,
        "--",
        "sleep",
        "1",
    ]);
    assert!(!twice.ok && twice.stderr.contains("mounted at /a"), "{}", twice.stderr);

    let out = c.ctl(&[
        "service",
        "create",
        "--name",
        "app",
        "--secret",
        "source=db,target=/etc/pw,uid=1000,gid=1001,mode=0400",
        "--config",
        "app.conf",
        "--update-parallelism",
        "1",
        &image,
        "--",
        "sleep",
        "3600",
    ]);
    assert!(out.ok, "{}", out.stderr);
    c.wait(SETTLE, "app running", |c| running(c, "app").len() == 1)
        .unwrap_or_else(|e| panic!("{e}\n{}", c.ctl(&["service", "ps", "app"]).stdout));
    let (task, node, ctr) = running(&c, "app").remove(0);
    let (ok, pw) = exec(&c, &node, &ctr, &["cat", "/etc/pw"]);
    assert!(ok && pw == canary, "the secret in the task: {pw}");
    let (_, ls) = exec(&c, &node, &ctr, &["ls", "-ln", "/etc/pw"]);
    let f: Vec<&str> = ls.split_whitespace().collect();
    assert_eq!(f.get(..4), Some(&["-r--------", "1", "1000", "1001"][..]), "owner and mode: {ls}");
    let (_, mounts) = exec(&c, &node, &ctr, &["cat", "/proc/mounts"]);
    let line = mounts.lines().find(|l| l.split_whitespace().nth(1) == Some("/etc/pw")).unwrap_or_default();
    assert!(line.starts_with("tmpfs ") && line.contains(" ro,"), "a read-only tmpfs file: {line:?}");
    let (ok, conf) = exec(&c, &node, &ctr, &["cat", "/app.conf"]);
    assert!(ok && conf == "greeting=hello\n", "the config at /<name>: {conf}");
    let (ok, _) = exec(&c, &node, &ctr, &["sh", "-c", "echo x > /app.conf"]);
    assert!(!ok, "configs are read-only");

    // Only the node running the task got it: the others have no files at all.
    for a in &c.agents {
        let files = a.dir.path().join("run/files");
        let tasks: Vec<String> = std::fs::read_dir(&files)
            .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        if a.addr == node {
            assert_eq!(tasks, std::slice::from_ref(&task), "the task's own tmpfs on its node");
        } else {
            assert!(tasks.is_empty(), "{} holds files of {tasks:?}", a.addr);
        }
    }
    // Nowhere on disk, in a reply, or in the events.
    nowhere_on_disk(&c, &canary);
    for args in [
        &["secret", "inspect", "db"][..],
        &["secret", "ls"],
        &["service", "inspect", "app"],
        &["events"],
        &["-o", "json", "service", "ps", "app"],
    ] {
        let out = c.ctl(args);
        assert!(out.ok, "{args:?}: {}", out.stderr);
        assert!(!out.stdout.contains(&canary), "{args:?} shows the secret");
    }
    let s = c.json(&["secret", "inspect", "db"]);
    assert_eq!(s["services"], serde_json::json!(["app"]), "{s}");
    assert!(s.get("data").is_none(), "{s}");
    let conf = c.json(&["config", "inspect", "app.conf"]);
    assert_eq!(conf["data"], "greeting=hello\n", "{conf}");

    // In use: not removed.
    let rm = c.ctl(&["secret", "rm", "db"]);
    assert!(!rm.ok && rm.stderr.contains("in use by services app"), "{}", rm.stderr);

    // Rotation: a new version, and the service rolls to it.
    let canary2 = format!("canary-{:016x}", rand_u64());
    let out = c.ctl(&["secret", "update", "db", &file("db2", &canary2)]);
    assert!(out.ok && out.stdout.contains("version 2") && out.stdout.contains("rolling app"), "{}", out.stdout);
    assert_eq!(c.json(&["service", "inspect", "app"])["spec_version"], 2);
    c.wait(SETTLE, "app running the new version", |c| {
        running(c, "app")
            .first()
            .is_some_and(|(t, n, ctr)| *t != task && exec(c, n, ctr, &["cat", "/etc/pw"]) == (true, canary2.clone()))
    })
    .unwrap();
    // The old task's files went with its container.
    c.wait(SETTLE, "the old task's files removed", |c| {
        c.agents.iter().all(|a| !a.dir.path().join("run/files").join(&task).exists())
    })
    .unwrap();
    nowhere_on_disk(&c, &canary2);
    let versions = c.json(&["secret", "inspect", "db"])["versions"].as_array().map(Vec::len);
    assert_eq!(versions, Some(2), "the previous version kept for a rollback");

    // Unmounted, then removable (once its last task is gone).
    assert!(c.ctl(&["service", "update", "app", "--secret-rm", "db", "--detach"]).ok);
    c.wait(SETTLE, "db removable", |c| c.ctl(&["secret", "rm", "db"]).ok).unwrap();
    assert!(!c.ctl(&["secret", "inspect", "db"]).ok);
    assert!(c.ctl(&["service", "rm", "app"]).ok);
    c.wait(SETTLE, "the config removable", |c| c.ctl(&["config", "rm", "app.conf"]).ok).unwrap();
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    h.finish()
}
