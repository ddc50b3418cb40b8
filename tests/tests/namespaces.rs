//! Namespaces against a real manager: the same names in two namespaces,
//! quotas refusing growth with a message that says what to do (and
//! allowing it once raised), people limited to namespaces refused
//! everywhere else, and only an empty namespace removed.

// The test harness: a failed unwrap is a failed test, with its line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use orc_e2e::agent::Options;
use orc_e2e::cluster::LocalCluster;

const IMAGE: &str = "registry.invalid/app:1";

fn ok(c: &LocalCluster, args: &[&str]) -> String {
    let o = c.ctl(args);
    assert!(o.ok, "{args:?}: {}", o.stderr);
    o.stdout
}

/// The error of a command that must fail.
fn refused(c: &LocalCluster, args: &[&str]) -> String {
    let o = c.ctl(args);
    assert!(!o.ok, "{args:?} must be refused: {}", o.stdout);
    o.stderr
}

fn names(v: &serde_json::Value) -> Vec<(String, String)> {
    let mut n: Vec<_> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["namespace"].as_str().unwrap().to_string(), o["name"].as_str().unwrap().to_string()))
        .collect();
    n.sort();
    n
}

fn pair(ns: &str, name: &str) -> (String, String) {
    (ns.to_string(), name.to_string())
}

#[test]
fn namespaces_quotas_and_scoped_people() {
    let c = LocalCluster::start(1, 0, Options::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();

    // `default` is always there; a bad name says what a good one is.
    let ls = c.json(&["namespace", "ls"]);
    assert_eq!(ls[0]["name"], "default", "{ls}");
    let bad = refused(&c, &["namespace", "create", "Team_A"]);
    assert!(bad.contains("lowercase"), "{bad}");
    ok(&c, &["namespace", "create", "team-a", "--tasks", "3", "--memory", "1g"]);
    ok(&c, &["namespace", "create", "team-b"]);
    let again = refused(&c, &["namespace", "create", "team-a"]);
    assert!(again.contains("exists"), "{again}");
    let nowhere = refused(&c, &["-N", "nope", "service", "create", "--name", "web", IMAGE]);
    assert!(nowhere.contains("nope") && nowhere.contains("namespace create"), "{nowhere}");

    same_names_apart(&c);
    quotas(&c);
    scoped_people(&c, dir.path());
    networks_apart(&c);
    removal(&c);
}

/// One name, three objects: each namespace sees its own.
fn same_names_apart(c: &LocalCluster) {
    let file = |name: &str, body: &str| {
        let p = std::env::temp_dir().join(format!("orc-ns-{}-{name}", std::process::id()));
        std::fs::write(&p, body).unwrap();
        p.display().to_string()
    };
    for ns in ["default", "team-a", "team-b"] {
        ok(c, &["-N", ns, "service", "create", "--name", "web", "--reserve-memory", "256m", IMAGE]);
        ok(c, &["-N", ns, "config", "create", "site", &file(ns, &format!("site of {ns}"))]);
    }
    let a = c.json(&["-N", "team-a", "service", "ls"]);
    assert_eq!(names(&a), vec![pair("team-a", "web")], "{a}");
    assert_eq!(names(&c.json(&["service", "ls"])), vec![pair("default", "web")]);
    let site = c.json(&["-N", "team-b", "config", "inspect", "site"]);
    assert_eq!(site["data"], "site of team-b", "{site}");
    assert_eq!(site["namespace"], "team-b", "{site}");
    // A removal in one namespace leaves the others' alone.
    ok(c, &["-N", "team-b", "service", "rm", "web"]);
    assert!(c.json(&["-N", "team-b", "service", "ls"]).as_array().unwrap().is_empty());
    assert_eq!(names(&c.json(&["-N", "team-a", "service", "ls"])), vec![pair("team-a", "web")]);
    let ns = c.json(&["namespace", "inspect", "team-a"]);
    assert_eq!((ns["services"].as_u64(), ns["configs"].as_u64()), (Some(1), Some(1)), "{ns}");
}

fn quotas(c: &LocalCluster) {
    // team-a: 1 task of 256 MiB held, caps 3 tasks and 1 GiB.
    let more = refused(c, &["-N", "team-a", "service", "scale", "web=4"]);
    assert!(
        more.contains("namespace team-a")
            && more.contains("tasks quota")
            && more.contains("orcctl namespace quota team-a"),
        "{more}"
    );
    let big = refused(c, &["-N", "team-a", "service", "create", "--name", "big", "--reserve-memory", "900m", IMAGE]);
    assert!(big.contains("memory quota") && big.contains("1GiB"), "{big}");
    assert!(c.json(&["-N", "team-a", "service", "inspect", "big"]).is_null(), "nothing of a refused create is kept");
    // Within the quota: fine; up to it: fine.
    ok(c, &["-N", "team-a", "service", "scale", "web=3"]);
    let used = c.json(&["namespace", "inspect", "team-a"]);
    assert_eq!((used["used"]["tasks"].as_u64(), used["used"]["memory"].as_u64()), (Some(3), Some(768 << 20)), "{used}");
    // Raised: what was refused goes through; the other caps stay.
    ok(c, &["namespace", "quota", "team-a", "--tasks", "4"]);
    ok(c, &["-N", "team-a", "service", "scale", "web=4"]);
    let q = c.json(&["namespace", "inspect", "team-a"]);
    assert_eq!((q["quota"]["tasks"].as_u64(), q["quota"]["memory"].as_u64()), (Some(4), Some(1 << 30)), "{q}");
    // Lowered below what is held: nothing stops, but nothing grows.
    ok(c, &["namespace", "quota", "team-a", "--tasks", "2"]);
    assert_eq!(c.json(&["-N", "team-a", "service", "inspect", "web"])["replicas"], 4);
    refused(c, &["-N", "team-a", "service", "scale", "web=5"]);
    ok(c, &["-N", "team-a", "service", "scale", "web=1"]);
    ok(c, &["namespace", "quota", "team-a", "--tasks", "none", "--volumes", "1"]);
    // Volumes.
    ok(c, &["-N", "team-a", "volume", "create", "d1"]);
    let vol = refused(c, &["-N", "team-a", "volume", "create", "d2"]);
    assert!(vol.contains("volumes quota"), "{vol}");
    ok(c, &["volume", "create", "d2"]);
    let bad = refused(c, &["namespace", "quota", "team-a", "--tasks", "lots"]);
    assert!(bad.contains("--tasks") && bad.contains("none"), "{bad}");
    volume_sizes(c);
    racing_writes(c);
}

/// A size quota: every volume needs a size, and their sizes add up.
fn volume_sizes(c: &LocalCluster) {
    ok(c, &["namespace", "create", "sized", "--volume-size", "100MiB"]);
    let no_size = refused(c, &["-N", "sized", "volume", "create", "v0"]);
    assert!(no_size.contains("needs a size limit") && no_size.contains("--size"), "{no_size}");
    ok(c, &["-N", "sized", "volume", "create", "v1", "--size", "60MiB"]);
    let v1 = c.json(&["-N", "sized", "volume", "inspect", "v1"]);
    assert_eq!(v1["size"].as_u64(), Some(60 << 20), "{v1}");
    let over = refused(c, &["-N", "sized", "volume", "create", "v2", "--size", "60MiB"]);
    assert!(over.contains("volume size quota: 60MiB in use + 60MiB more > limit 100MiB"), "{over}");
    // A stateful service's slots: size= times replicas.
    let st = ["-N", "sized", "service", "create", "--name", "st", "--stateful", "--replicas", "2"];
    let slots = refused(c, &[&st[..], &["--mount", "source=d,target=/d,size=30MiB", IMAGE]].concat());
    assert!(slots.contains("60MiB in use + 60MiB more"), "{slots}");
    ok(c, &[&st[..], &["--mount", "source=d,target=/d,size=20MiB", IMAGE]].concat());
    let used = c.json(&["namespace", "inspect", "sized"]);
    assert_eq!(used["used"]["volume_size"].as_u64(), Some(100 << 20), "{used}");
    // An anonymous volume needs a size there too; a named one has its own.
    let anon = refused(c, &["-N", "sized", "service", "create", "--name", "a", "--mount", "target=/x", IMAGE]);
    assert!(anon.contains("needs a size limit"), "{anon}");
    let named = refused(c, &["service", "create", "--name", "n", "--mount", "source=d2,target=/x,size=1m", IMAGE]);
    assert!(named.contains("named volume has its own size"), "{named}");
    ok(c, &["-N", "sized", "service", "rm", "st"]);
    ok(c, &["-N", "sized", "volume", "rm", "v1"]);
}

/// Writes racing for the last of a quota: exactly as many win as fit.
/// Four services of one task each, room for two more tasks, and four
/// clients (each on a connection made beforehand) scaling one service
/// each to two at once: two scale, two are refused by the quota. (Creates
/// race too, but they also claim virtual IPs, which already orders them.)
fn racing_writes(c: &LocalCluster) {
    use orc_proto::cluster::services_client::ServicesClient;
    use orc_proto::cluster::{InspectServiceRequest, UpdateServiceRequest};

    ok(c, &["namespace", "create", "race", "--tasks", "6"]);
    for i in 0..4 {
        ok(c, &["-N", "race", "service", "create", "--name", &format!("r{i}"), IMAGE]);
    }
    let cfg = orcctl::config::Config::load_or_default(&c.config).unwrap();
    let (_, ctx) = cfg.context(&c.config, None).unwrap();
    let trust = orcctl::connect::Trust::Cluster(ctx.clone());
    fn in_race<T>(msg: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        req.metadata_mut().insert(orc_proto::NAMESPACE_HEADER, "race".parse().unwrap());
        req
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let results: Vec<Result<(), tonic::Status>> = rt.block_on(async {
        let mut racers = Vec::new();
        for i in 0..4 {
            let (_, ch) = orcctl::connect::manager(&ctx.endpoints, &trust).await.unwrap();
            let mut svc = ServicesClient::new(ch);
            let service = format!("r{i}");
            let req = in_race(InspectServiceRequest { service: service.clone() });
            let mut spec = svc.inspect(req).await.unwrap().into_inner().spec.unwrap();
            spec.replicas = 2;
            racers.push((svc, UpdateServiceRequest { service, spec: Some(spec), ..Default::default() }));
        }
        let start = std::sync::Arc::new(tokio::sync::Barrier::new(racers.len()));
        let racers: Vec<_> = racers
            .into_iter()
            .map(|(mut svc, update)| {
                let (start, req) = (start.clone(), in_race(update));
                tokio::spawn(async move {
                    start.wait().await;
                    svc.update(req).await.map(|_| ())
                })
            })
            .collect();
        let mut out = Vec::new();
        for r in racers {
            out.push(r.await.unwrap());
        }
        out
    });
    let won = results.iter().filter(|r| r.is_ok()).count();
    for e in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(e.message().contains("tasks quota"), "a loser is refused by the quota, not a conflict: {e}");
    }
    assert_eq!(won, 2, "two fit the quota: {results:?}");
    let used = c.json(&["namespace", "inspect", "race"]);
    assert_eq!(used["used"]["tasks"].as_u64(), Some(6), "{used}");
    for i in 0..4 {
        ok(c, &["-N", "race", "service", "rm", &format!("r{i}")]);
    }
}

fn scoped_people(c: &LocalCluster, dir: &Path) {
    let alice = dir.join("alice.toml");
    let made = ok(
        c,
        &[
            "user",
            "cert",
            "create",
            "alice",
            "--role",
            "operator",
            "--namespaces",
            "team-a",
            "--out",
            alice.to_str().unwrap(),
        ],
    );
    assert!(made.contains("alice"), "{made}");
    // `--namespace` on `user cert create` limits the certificate too.
    let bob = dir.join("bob.toml");
    ok(
        c,
        &["user", "cert", "create", "bob", "--role", "reader", "--namespace", "team-a", "--out", bob.to_str().unwrap()],
    );
    let admin = refused(c, &["user", "cert", "create", "root2", "--role", "admin", "--namespaces", "team-a"]);
    assert!(admin.contains("not an admin"), "{admin}");
    let nowhere = refused(c, &["user", "cert", "create", "carol", "--role", "reader", "--namespaces", "nope"]);
    assert!(nowhere.contains("nope"), "{nowhere}");
    let certs = c.json(&["user", "cert", "ls"]);
    let a = certs.as_array().unwrap().iter().find(|x| x["name"] == "alice").unwrap();
    assert_eq!(a["namespaces"], serde_json::json!(["team-a"]), "{certs}");
    let b = certs.as_array().unwrap().iter().find(|x| x["name"] == "bob").unwrap();
    assert_eq!(b["namespaces"], serde_json::json!(["team-a"]), "{certs}");

    let as_alice = |args: &[&str]| {
        let o = std::process::Command::new(orc_e2e::paths::debug_bin("orcctl"))
            .arg("--orcconfig")
            .arg(&alice)
            .args(args)
            .output()
            .unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    // Her context works in team-a.
    let (ok_, out, err) = as_alice(&["-o", "json", "service", "ls"]);
    assert!(ok_, "{err}");
    assert_eq!(names(&serde_json::from_str(&out).unwrap()), vec![pair("team-a", "web")]);
    let (ok_, _, err) = as_alice(&["service", "scale", "web=2"]);
    assert!(ok_, "{err}");
    // A node's tasks: every namespace's for the admin, hers for her.
    let node = c.json(&["node", "ls"])[0]["id"].as_str().unwrap().to_string();
    let namespaces_of = |tasks: &serde_json::Value| {
        let mut ns: Vec<String> =
            tasks.as_array().unwrap().iter().map(|t| t["namespace"].as_str().unwrap().to_string()).collect();
        ns.sort();
        ns.dedup();
        ns
    };
    let all = c.json(&["node", "ps", &node]);
    assert_eq!(namespaces_of(&all), ["default", "team-a"], "{all}");
    let (ok_, out, err) = as_alice(&["-o", "json", "node", "ps", &node]);
    assert!(ok_, "{err}");
    assert_eq!(namespaces_of(&serde_json::from_str(&out).unwrap()), ["team-a"], "{out}");
    let (ok_, out, err) = as_alice(&["-o", "json", "namespace", "ls"]);
    assert!(ok_, "{err}");
    let seen: Vec<String> = serde_json::from_str::<serde_json::Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(seen, vec!["team-a"], "she sees only her namespaces");
    // Anywhere else: refused, saying where she may work.
    for args in [
        &["-N", "team-b", "service", "ls"][..],
        &["-N", "default", "service", "rm", "web"],
        &["-N", "default", "config", "inspect", "site"],
        &["-N", "team-b", "volume", "create", "x"],
    ] {
        let (ok_, _, err) = as_alice(args);
        assert!(!ok_ && err.contains("works in namespaces team-a only"), "{args:?}: {err}");
    }
    for args in [&["node", "ls"][..], &["-N", "default", "network", "create", "n1"], &["namespace", "create", "mine"]] {
        let (ok_, _, err) = as_alice(args);
        assert!(!ok_, "{args:?} reaches beyond team-a");
        assert!(err.contains("team-a") || err.contains("admin"), "{args:?}: {err}");
    }
    // Networks are her namespace's: she makes one there, and of the shared
    // `default` she sees her services only, and no node's lease.
    let (ok_, _, err) = as_alice(&["network", "create", "n1"]);
    assert!(ok_, "{err}");
    let (ok_, out, err) = as_alice(&["-o", "json", "network", "ls"]);
    assert!(ok_, "{err}");
    assert_eq!(names(&serde_json::from_str(&out).unwrap()), vec![pair("team-a", "default"), pair("team-a", "n1")]);
    let (ok_, out, err) = as_alice(&["-o", "json", "network", "inspect", "default"]);
    assert!(ok_, "{err}");
    let d: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(d["services"], serde_json::json!(["web"]), "{d}");
    assert_eq!(d["leases"], serde_json::json!([]), "{d}");
    let tasks = d["tasks"].as_array().unwrap();
    let all = c.json(&["network", "inspect", "default"]);
    assert!(!all["leases"].as_array().unwrap().is_empty(), "an admin sees the leases: {all}");
    let hers = c.json(&["-N", "team-a", "service", "ps", "web"]);
    for t in tasks {
        assert!(hers.to_string().contains(t["id"].as_str().unwrap()), "{t} is not hers: {hers}");
    }
    assert!(!c.json(&["network", "ls"]).to_string().contains("n1"), "default has no n1");
    assert_eq!(names(&c.json(&["service", "ls"])), vec![pair("default", "web")], "default's web untouched");
}

/// One network name in two namespaces is two networks; services join
/// their own namespace's.
fn networks_apart(c: &LocalCluster) {
    ok(c, &["network", "create", "back"]);
    ok(c, &["-N", "team-b", "network", "create", "back"]);
    ok(c, &["-N", "team-b", "service", "create", "--name", "api", "--network", "back", IMAGE]);
    let b = c.json(&["-N", "team-b", "network", "inspect", "back"]);
    assert_eq!((&b["namespace"], &b["services"]), (&serde_json::json!("team-b"), &serde_json::json!(["api"])), "{b}");
    let d = c.json(&["network", "inspect", "back"]);
    assert_eq!(d["services"], serde_json::json!([]), "default's back is another network: {d}");
    assert_ne!(b["vni"], d["vni"], "each has its own VXLAN");
    let used = refused(c, &["-N", "team-b", "network", "rm", "back"]);
    assert!(used.contains("in use by services api"), "{used}");
    let none = refused(c, &["-N", "team-b", "service", "create", "--name", "x", "--network", "front", IMAGE]);
    assert!(
        none.contains("does not exist in namespace team-b") && none.contains("orcctl -N team-b network create front"),
        "{none}"
    );
    let ls = c.json(&["-N", "team-b", "network", "ls"]);
    assert_eq!(names(&ls), vec![pair("team-b", "back"), pair("team-b", "default")]);
    ok(c, &["network", "rm", "back"]);
    assert!(c.json(&["-N", "team-b", "network", "inspect", "back"])["name"] == "back", "team-b's stays");
}

fn removal(c: &LocalCluster) {
    let busy = refused(c, &["namespace", "rm", "team-a"]);
    assert!(busy.contains("team-a") && busy.contains("service") && busy.contains("1 networks"), "{busy}");
    let def = refused(c, &["namespace", "rm", "default"]);
    assert!(def.contains("default"), "{def}");
    ok(c, &["-N", "team-a", "service", "rm", "web"]);
    ok(c, &["-N", "team-a", "config", "rm", "site"]);
    ok(c, &["-N", "team-a", "volume", "rm", "d1"]);
    ok(c, &["-N", "team-a", "network", "rm", "n1"]);
    ok(c, &["namespace", "rm", "team-a"]);
    let ls = c.json(&["namespace", "ls"]);
    assert!(!ls.as_array().unwrap().iter().any(|n| n["name"] == "team-a"), "{ls}");
}
