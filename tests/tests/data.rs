//! Data and access between real agents (root: each agent a host of its own
//! on the test LAN): secrets reach exactly the node that runs a task
//! mounting them, as a tmpfs file with its owner and mode, and no STATE,
//! Raft store, log or API reply holds their plaintext; a new version rolls
//! the service; a secret in use is not removed; configs are mounted
//! read-only; bad references are refused with what to do. Volumes: named
//! and anonymous on the node's STATE, a tmpfs, a stateful service's slot
//! volumes kept across task restarts on the node that holds them, `rm`
//! refused while in use and every copy deleted after. A namespace's task
//! mounts its namespace's secret, not another's of the same name.

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
    running_in(c, "default", service)
}

/// [`running`] of `service` in namespace `ns`.
fn running_in(c: &LocalCluster, ns: &str, service: &str) -> Vec<(String, String, String)> {
    let t = c.json(&["-N", ns, "service", "ps", service, "--running"]);
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

/// Every place the plaintext must not be: each agent's STATE (the Raft
/// store on managers), its run directory as the host sees it, its log.
fn nowhere_on_disk(c: &LocalCluster, plain: &str) {
    for a in &c.agents {
        let found = orc_e2e::files_holding(a.dir.path(), plain.as_bytes());
        assert!(found.is_empty(), "the plaintext of a secret is in {found:?}");
    }
}

/// One cluster for every check of this capability.
#[test]
fn data_and_access() {
    if !can_run_containers() {
        eprintln!("skipped: needs root");
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let registry = Registry::start_on_lan().unwrap();
    let image = rt.block_on(registry.push(&oci::busybox(0).unwrap(), "orc/busybox:1")).unwrap();
    let opts = Options { runtime: true, lan: true, insecure_registries: vec![registry.host()], ..Default::default() };
    let c = LocalCluster::start(1, 2, opts).unwrap();
    secrets_and_configs_reach_only_their_tasks(&c, &image);
    a_namespace_has_its_own_secrets(&c, &image);
    volumes_keep_data_where_their_tasks_run(&c, &image);
    signed_images_only(&c, &rt, &registry);
}

/// Team A's `app` mounts team A's `db`, not the default namespace's
/// secret of the same name (the node looks secrets up by namespace, and
/// opens them with the namespace in their associated data).
fn a_namespace_has_its_own_secrets(c: &LocalCluster, image: &str) {
    let dir = tempfile::tempdir().unwrap();
    let theirs = dir.path().join("db");
    let canary = format!("team-a-{:016x}", rand_u64());
    std::fs::write(&theirs, &canary).unwrap();
    let ok = |args: &[&str]| {
        let o = c.ctl(args);
        assert!(o.ok, "{args:?}: {}", o.stderr);
    };
    ok(&["namespace", "create", "team-a"]);
    ok(&["-N", "team-a", "secret", "create", "db", theirs.to_str().unwrap()]);
    ok(&[
        "-N",
        "team-a",
        "service",
        "create",
        "--name",
        "app",
        "--secret",
        "source=db,target=/etc/pw",
        image,
        "--",
        "sleep",
        "3600",
    ]);
    c.wait(SETTLE, "team-a's app running", |c| running_in(c, "team-a", "app").len() == 1)
        .unwrap_or_else(|e| panic!("{e}\n{}", c.ctl(&["-N", "team-a", "service", "ps", "app"]).stdout));
    let (_, node, ctr) = running_in(c, "team-a", "app").remove(0);
    let (read, pw) = c.exec(&node, &ctr, &["cat", "/etc/pw"]);
    assert!(read && pw == canary, "team-a's secret in team-a's task: {pw}");
    nowhere_on_disk(c, &canary);
    ok(&["-N", "team-a", "service", "rm", "app"]);
    // Removable once its last task has stopped.
    c.wait(SETTLE, "team-a's db removed", |c| c.ctl(&["-N", "team-a", "secret", "rm", "db"]).ok).unwrap();
    ok(&["namespace", "rm", "team-a"]);
}

/// A task of `service` that was rejected, as `service ps` shows it.
fn rejected(c: &LocalCluster, service: &str) -> serde_json::Value {
    let ps = c.json(&["service", "ps", service]);
    ps.as_array().and_then(|a| a.iter().find(|t| t["state"] == "rejected")).cloned().unwrap_or_default()
}

/// Under an image policy: an image signed with the trusted key runs, by
/// digest; an unsigned one, one signed with another key and one no rule
/// matches are refused, each saying why.
fn signed_images_only(c: &LocalCluster, rt: &tokio::runtime::Runtime, registry: &Registry) {
    let dir = tempfile::tempdir().unwrap();
    let ctl_ok = |args: &[&str]| {
        let o = c.ctl(args);
        assert!(o.ok, "{args:?}: {}", o.stderr);
        o.stdout
    };
    let team = dir.path().join("team");
    let other = dir.path().join("other");
    ctl_ok(&["image", "keygen", "--out", team.to_str().unwrap()]);
    ctl_ok(&["image", "keygen", "--out", other.to_str().unwrap()]);
    let again = c.ctl(&["image", "keygen", "--out", team.to_str().unwrap()]);
    assert!(!again.ok && again.stderr.contains("never overwritten"), "{}", again.stderr);
    let push = |n: usize, name: &str| rt.block_on(registry.push(&oci::busybox_with(0, n).unwrap(), name)).unwrap();
    let signed = push(1, "orc/signed:1");
    let unsigned = push(2, "orc/unsigned:1");
    let wrong = push(3, "orc/wrong:1");
    let elsewhere = push(4, "elsewhere/app:1");
    let key = |p: &std::path::Path| p.with_extension("key").display().to_string();
    let out = ctl_ok(&["image", "sign", &signed, "--key", &key(&team), "--insecure-registry"]);
    assert!(out.contains("signed ") && out.contains("@sha256:"), "{out}");
    ctl_ok(&["image", "sign", &wrong, "--key", &key(&other), "--insecure-registry"]);
    ctl_ok(&["image", "sign", &elsewhere, "--key", &key(&team), "--insecure-registry"]);

    let policy = dir.path().join("policy.yaml");
    let text = format!("rules:\n  - pattern: \"{}/orc/*\"\n    keys: [team.pub]\n", registry.host());
    std::fs::write(&policy, text).unwrap();
    let out = ctl_ok(&["cluster", "update", "--image-policy", policy.to_str().unwrap()]);
    assert!(out.contains("only signed images run"), "{out}");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "rules:\n  - pattern: \"*\"\n    keys: [\"-----BEGIN PUBLIC KEY-----\\nAAAA\\n-----END PUBLIC KEY-----\"]\n",
    )
    .unwrap();
    let refused = c.ctl(&["cluster", "update", "--image-policy", bad.to_str().unwrap()]);
    assert!(!refused.ok && refused.stderr.contains("rule 1 (*), key 1"), "{}", refused.stderr);

    for (name, image) in [("signed", &signed), ("unsigned", &unsigned), ("wrong", &wrong), ("elsewhere", &elsewhere)] {
        ctl_ok(&["service", "create", "--name", name, image, "--", "sleep", "3600"]);
    }
    c.wait(SETTLE, "the signed image running", |c| running(c, "signed").len() == 1).unwrap();
    let (_, node, ctr) = running(c, "signed").remove(0);
    let inspect = c.json(&["--nodes", &node, "container", "inspect", &ctr]);
    let ran = inspect[0]["image"].as_str().unwrap_or_default().to_string();
    assert!(ran.contains("/orc/signed@sha256:"), "run by digest: {inspect}");
    for (name, why) in [
        ("unsigned", "it is not signed"),
        ("wrong", "does not verify with any trusted key"),
        ("elsewhere", "no rule of the cluster's image policy matches"),
    ] {
        c.wait(SETTLE, &format!("{name} refused"), |c| {
            rejected(c, name)["error"].as_str().is_some_and(|e| e.contains(why))
        })
        .unwrap_or_else(|e| panic!("{e}: {}", c.json(&["service", "ps", name])));
        let t = rejected(c, name);
        let error = t["error"].as_str().unwrap_or_default();
        if name != "elsewhere" {
            assert!(error.contains("@sha256:") || error.contains("(sha256:"), "names the digest: {error}");
            assert!(error.contains("rule 1"), "names the rule: {error}");
        }
    }
    for name in ["signed", "unsigned", "wrong", "elsewhere"] {
        ctl_ok(&["service", "rm", name]);
    }
    air_gapped(c, registry, dir.path(), &key(&team), &key(&other));
    let out = ctl_ok(&["cluster", "update", "--no-image-policy"]);
    assert!(out.contains("any image runs"), "{out}");
}

/// Archives for air-gapped nodes carry their signatures: an image in no
/// registry, signed inside its archive and loaded on every node, runs by
/// digest under the policy; one signed with another key, and an unsigned
/// one, are refused.
fn air_gapped(c: &LocalCluster, registry: &Registry, dir: &Path, team_key: &str, other_key: &str) {
    let ctl_ok = |args: &[&str]| {
        let o = c.ctl(args);
        assert!(o.ok, "{args:?}: {}", o.stderr);
        o.stdout
    };
    let nodes: Vec<String> = c.agents.iter().map(|a| a.addr.clone()).collect();
    let nodes = nodes.join(",");
    for (n, name, key) in
        [(5, "airgap", Some(team_key)), (6, "airgap-other", Some(other_key)), (7, "airgap-plain", None)]
    {
        let reference = format!("{}/orc/{name}:1", registry.host());
        let archive = dir.join(format!("{name}.tar"));
        std::fs::write(&archive, oci::busybox_with(0, n).unwrap().layout_tar(&reference).unwrap()).unwrap();
        if let Some(key) = key {
            let out = ctl_ok(&["image", "sign", archive.to_str().unwrap(), "--key", key]);
            assert!(out.contains(&format!("signed {reference} (sha256:")), "{out}");
        }
        ctl_ok(&["--nodes", &nodes, "image", "load", archive.to_str().unwrap()]);
        ctl_ok(&["service", "create", "--name", name, &reference, "--", "sleep", "3600"]);
    }
    let gz = dir.join("x.tar.gz");
    std::fs::write(&gz, [0x1f, 0x8b, 0, 0]).unwrap();
    let refused = c.ctl(&["image", "sign", gz.to_str().unwrap(), "--key", team_key]);
    assert!(!refused.ok && refused.stderr.contains("gunzip"), "{}", refused.stderr);

    c.wait(SETTLE, "the air-gapped signed image running", |c| running(c, "airgap").len() == 1)
        .unwrap_or_else(|e| panic!("{e}: {}", c.json(&["service", "ps", "airgap"])));
    let (_, node, ctr) = running(c, "airgap").remove(0);
    let inspect = c.json(&["--nodes", &node, "container", "inspect", &ctr]);
    assert!(inspect[0]["image"].as_str().unwrap_or_default().contains("/orc/airgap@sha256:"), "{inspect}");
    for (name, why) in [
        ("airgap-other", "none of the 1 signatures its archive carried verifies"),
        ("airgap-plain", "it is not signed"),
    ] {
        c.wait(SETTLE, &format!("{name} refused"), |c| {
            rejected(c, name)["error"].as_str().is_some_and(|e| e.contains(why))
        })
        .unwrap_or_else(|e| panic!("{e}: {}", c.json(&["service", "ps", name])));
    }
    for name in ["airgap", "airgap-other", "airgap-plain"] {
        ctl_ok(&["service", "rm", name]);
    }
}

/// The agent of the node at `addr`.
fn agent<'a>(c: &'a LocalCluster, addr: &str) -> &'a orc_e2e::agent::AgentProcess {
    c.agents.iter().find(|a| a.addr == addr).unwrap()
}

fn volumes_keep_data_where_their_tasks_run(c: &LocalCluster, image: &str) {
    let nope = c.ctl(&["service", "create", "--name", "x", "--mount", "source=nope,target=/x", image, "--", "true"]);
    assert!(!nope.ok && nope.stderr.contains("orcctl volume create nope"), "{}", nope.stderr);
    assert!(c.ctl(&["volume", "create", "data"]).ok);
    let again = c.ctl(&["volume", "create", "data"]);
    assert!(!again.ok && again.stderr.contains("exists"), "{}", again.stderr);
    let script = "hostname >> /data/log && touch /cache/x /scratch/y && exec sleep 3600";
    let out = c.ctl(&[
        "service",
        "create",
        "--name",
        "vol",
        "--mount",
        "type=volume,source=data,target=/data",
        "--mount",
        "target=/cache",
        "--mount",
        "type=tmpfs,target=/scratch",
        image,
        "--",
        "sh",
        "-c",
        script,
    ]);
    assert!(out.ok, "{}", out.stderr);
    c.wait(SETTLE, "vol running", |c| running(c, "vol").len() == 1).unwrap();
    let (task, node, ctr) = running(c, "vol").remove(0);
    let (_, mounts) = c.exec(&node, &ctr, &["cat", "/proc/mounts"]);
    let fs_at = |p: &str| mounts.lines().find(|l| l.split_whitespace().nth(1) == Some(p)).map(str::to_string);
    assert!(fs_at("/scratch").is_some_and(|l| l.starts_with("tmpfs ")), "{mounts}");
    assert!(fs_at("/data").is_some() && fs_at("/cache").is_some(), "{mounts}");
    let id = c.json(&["volume", "inspect", "data"])["id"].as_str().unwrap().to_string();
    let state = agent(c, &node).dir.path().join("state/volumes");
    c.wait(Duration::from_secs(10), "the volume's data on its node's STATE", |_| {
        std::fs::read_to_string(state.join(&id).join("_data/log")).is_ok_and(|l| !l.is_empty())
    })
    .unwrap();
    assert!(state.join(".anon").join(&task).join("1/x").exists(), "the anonymous volume");
    let rm = c.ctl(&["volume", "rm", "data"]);
    assert!(!rm.ok && rm.stderr.contains("in use by services vol"), "{}", rm.stderr);

    // A stateful service: each slot its own volume, kept with its node.
    let script = "hostname >> /d/log && exec sleep 3600";
    let st = ["service", "create", "--name", "st", "--stateful", "--replicas", "2", "--mount", "source=d,target=/d"];
    assert!(c.ctl(&[&st[..], &[image, "--", "sh", "-c", script]].concat()).ok);
    c.wait(SETTLE, "st's two slots running", |c| running(c, "st").len() == 2).unwrap();
    let ls = c.json(&["volume", "ls"]);
    let slots: Vec<(String, String)> = ls
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["slot_service"] == "st")
        .map(|v| (v["name"].as_str().unwrap().to_string(), v["node_id"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(slots.iter().map(|s| s.0.as_str()).collect::<Vec<_>>(), ["d-st.1", "d-st.2"], "{ls}");
    let ps = c.json(&["service", "ps", "st", "--running"]);
    let slot1 = ps.as_array().unwrap().iter().find(|t| t["slot"] == 1).unwrap().clone();
    assert_eq!(slot1["node_id"].as_str(), Some(slots[0].1.as_str()), "the volume records its slot's node");
    // The slot's task killed: its replacement runs on the node holding its
    // volume and finds what the first one wrote.
    let (id1, node1) = (slot1["id"].as_str().unwrap().to_string(), slot1["node_id"].as_str().unwrap().to_string());
    let (_, addr1, ctr1) = running(c, "st").into_iter().find(|t| t.0 == id1).unwrap();
    assert!(c.ctl(&["--nodes", &addr1, "container", "kill", &ctr1, "--signal", "KILL"]).ok);
    c.wait(SETTLE, "slot 1 replaced", |c| {
        let ps = c.json(&["service", "ps", "st", "--running"]);
        ps.as_array()
            .is_some_and(|a| a.iter().any(|t| t["slot"] == 1 && t["id"] != id1.as_str() && t["state"] == "running"))
    })
    .unwrap();
    let ps = c.json(&["service", "ps", "st", "--running"]);
    let again = ps.as_array().unwrap().iter().find(|t| t["slot"] == 1 && t["state"] == "running").unwrap().clone();
    assert_eq!(again["node_id"].as_str(), Some(node1.as_str()), "the node holding the slot's volume");
    let (_, addr, ctr) = running(c, "st").into_iter().find(|t| Some(t.0.as_str()) == again["id"].as_str()).unwrap();
    let (_, log) = c.exec(&addr, &ctr, &["cat", "/d/log"]);
    assert_eq!(log.lines().count(), 2, "both tasks of slot 1 wrote to its volume: {log}");
    let rm = c.ctl(&["volume", "rm", "d-st.1"]);
    assert!(!rm.ok && rm.stderr.contains("in use by services st"), "{}", rm.stderr);

    // Removed: the anonymous volume goes with its task, the named one's
    // copies once it is removed.
    assert!(c.ctl(&["service", "rm", "vol"]).ok && c.ctl(&["service", "rm", "st"]).ok);
    c.wait(SETTLE, "the anonymous volume deleted", |_| !state.join(".anon").join(&task).exists()).unwrap();
    c.wait(SETTLE, "data removable", |c| c.ctl(&["volume", "rm", "data"]).ok).unwrap();
    c.wait(Duration::from_secs(15), "every copy of data deleted", |_| !state.join(&id).exists()).unwrap();
    for v in ["d-st.1", "d-st.2"] {
        c.wait(SETTLE, "the slot volumes removable", |c| c.ctl(&["volume", "rm", v]).ok).unwrap();
    }
    volumes_a_node_cannot_give(c, image);
}

/// Where a node cannot give what a volume asks, its task is refused saying
/// which volume and why: this host's filesystems hold no project quotas and
/// its kernel has no NFS client (orc nodes have both: `vm_cluster` checks
/// them there).
fn volumes_a_node_cannot_give(c: &LocalCluster, image: &str) {
    assert!(c.ctl(&["volume", "create", "capped", "--size", "1MiB"]).ok);
    let nfs = ["--opt", "type=nfs", "--opt", "o=addr=127.0.0.1", "--opt", "device=:/srv"];
    assert!(c.ctl(&[&["volume", "create", "remote"][..], &nfs].concat()).ok);
    let sized_nfs = c.ctl(&[&["volume", "create", "both", "--size", "1MiB"][..], &nfs].concat());
    assert!(!sized_nfs.ok && sized_nfs.stderr.contains("NFS volume takes no --size"), "{}", sized_nfs.stderr);
    let cases = [
        ("capped-user", "capped", "needs project quotas"),
        ("remote-user", "remote", "mounting NFS export 127.0.0.1:/srv (nfs4, vers=4.2,addr=127.0.0.1)"),
    ];
    for (service, volume, why) in cases {
        let mount = format!("source={volume},target=/v");
        assert!(c.ctl(&["service", "create", "--name", service, "--mount", &mount, image, "--", "sleep", "60"]).ok);
        let said = |c: &LocalCluster| {
            let tasks = c.json(&["service", "ps", service]);
            tasks
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t["error"].as_str().map(str::to_string))
                .find(|e| e.starts_with(&format!("volume {volume}: ")) && e.contains(why))
        };
        c.wait(SETTLE, why, |c| said(c).is_some()).unwrap();
        assert!(c.ctl(&["service", "rm", service]).ok);
        c.wait(SETTLE, "the volume removable", |c| c.ctl(&["volume", "rm", volume]).ok).unwrap();
    }
}

fn secrets_and_configs_reach_only_their_tasks(c: &LocalCluster, image: &str) {
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
    let nope = c.ctl(&["service", "create", "--name", "x", "--secret", "nope", image, "--", "sleep", "1"]);
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
        image,
        "--",
        "sleep",
        "1",
    ]);
    assert!(!twice.ok && twice.stderr.contains("are at /a"), "{}", twice.stderr);

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
        image,
        "--",
        "sleep",
        "3600",
    ]);
    assert!(out.ok, "{}", out.stderr);
    c.wait(SETTLE, "app running", |c| running(c, "app").len() == 1)
        .unwrap_or_else(|e| panic!("{e}\n{}", c.ctl(&["service", "ps", "app"]).stdout));
    let (task, node, ctr) = running(c, "app").remove(0);
    let (ok, pw) = c.exec(&node, &ctr, &["cat", "/etc/pw"]);
    assert!(ok && pw == canary, "the secret in the task: {pw}");
    let (_, ls) = c.exec(&node, &ctr, &["ls", "-ln", "/etc/pw"]);
    let f: Vec<&str> = ls.split_whitespace().collect();
    assert_eq!(f.get(..4), Some(&["-r--------", "1", "1000", "1001"][..]), "owner and mode: {ls}");
    let (_, mounts) = c.exec(&node, &ctr, &["cat", "/proc/mounts"]);
    let line = mounts.lines().find(|l| l.split_whitespace().nth(1) == Some("/etc/pw")).unwrap_or_default();
    assert!(line.starts_with("tmpfs ") && line.contains(" ro,"), "a read-only tmpfs file: {line:?}");
    let (ok, conf) = c.exec(&node, &ctr, &["cat", "/app.conf"]);
    assert!(ok && conf == "greeting=hello\n", "the config at /<name>: {conf}");
    let (ok, _) = c.exec(&node, &ctr, &["sh", "-c", "echo x > /app.conf"]);
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
    nowhere_on_disk(c, &canary);
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
            .is_some_and(|(t, n, ctr)| *t != task && c.exec(n, ctr, &["cat", "/etc/pw"]) == (true, canary2.clone()))
    })
    .unwrap();
    // The old task's files went with its container.
    c.wait(SETTLE, "the old task's files removed", |c| {
        c.agents.iter().all(|a| !a.dir.path().join("run/files").join(&task).exists())
    })
    .unwrap();
    nowhere_on_disk(c, &canary2);
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
