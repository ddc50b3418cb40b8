//! The cluster API on a real agent: `cluster init` makes a one-member Raft
//! quorum on redb, which survives an agent restart; only manager nodes may
//! speak Raft.

// The test harness: a failed unwrap is a failed test, with its line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

use orc_e2e::agent::AgentProcess;
use orc_e2e::paths::debug_bin;
use orcctl::cmd::cluster::{bootstrap, save_context};
use orcctl::connect::Trust;

fn status(cfg: &std::path::Path) -> serde_json::Value {
    let o = Command::new(debug_bin("orcctl"))
        .arg("--orcconfig")
        .arg(cfg)
        .args(["-o", "json", "cluster", "status"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()[0].clone()
}

#[test]
fn cluster_init_makes_a_durable_one_member_quorum() {
    let mut agent = AgentProcess::start().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let cfg = agent.dir.path().join("orcctl.toml");
    let (r, ctx) =
        rt.block_on(bootstrap(&agent.addr, &Trust::Pinned(agent.fingerprint().unwrap()), "t", "admin")).unwrap();
    save_context(&cfg, "t", ctx.clone()).unwrap();
    let s = status(&cfg);
    assert_eq!(s["id"], r.node_id.as_str(), "{s}");
    assert_eq!(s["leader"], r.node_id.as_str(), "{s}");
    assert_eq!(s["state"], "Leader");
    assert_eq!(s["members"].as_array().unwrap().len(), 1);
    assert_eq!(s["members"][0]["voter"], true);
    assert_eq!(s["members"][0]["addr"], agent.addr.as_str());
    let (term, log) = (s["term"].as_u64().unwrap(), s["last_log_index"].as_u64().unwrap());
    assert!(term >= 1 && log >= 1, "{s}");

    // Join tokens: one per role, stable until rotated, pinned to this CA.
    let token = |args: &[&str]| {
        let o = Command::new(debug_bin("orcctl"))
            .arg("--orcconfig")
            .arg(&cfg)
            .args(["cluster", "join-token"])
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let worker = token(&["worker"]);
    let manager = token(&["manager"]);
    assert_ne!(worker, manager);
    assert_eq!(token(&["worker"]), worker);
    let ca_der = {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::CertificateDer::from_pem_slice(ctx.ca.as_bytes()).unwrap()
    };
    let parsed = orc_agent::cluster::token::JoinToken::parse(&worker).unwrap();
    parsed.check_ca(&ca_der).unwrap();
    let rotated = token(&["worker", "--rotate"]);
    assert_ne!(rotated, worker);
    assert_eq!(token(&["worker"]), rotated);
    assert_eq!(token(&["manager"]), manager, "rotating the worker token kept the manager's");

    agent.restart().unwrap();
    let mut s = status(&cfg);
    for _ in 0..50 {
        if s["state"] == "Leader" {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        s = status(&cfg);
    }
    assert_eq!(s["state"], "Leader", "{s}");
    assert!(s["term"].as_u64().unwrap() >= term && s["last_log_index"].as_u64().unwrap() >= log, "{s}");
    assert!(agent.state_dir().join("raft/raft.redb").exists());
    assert_eq!(token(&["worker"]), rotated, "the rotated token is in the Raft log and survives");

    // An admin is a person, not a manager node: Raft is refused.
    rt.block_on(async {
        let ch = orcctl::connect::channel(&agent.addr, &Trust::Cluster(ctx)).await.unwrap();
        let mut c = orc_proto::raft::raft_client::RaftClient::new(ch);
        let e = c.vote(orc_proto::raft::Payload { data: b"{}".to_vec() }).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e}");
        assert!(e.message().contains("only manager nodes"), "{e}");
    });
}

fn ctl(cfg: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let o = Command::new(debug_bin("orcctl")).arg("--orcconfig").arg(cfg).args(args).output().unwrap();
    let r = (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).to_string(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    );
    eprintln!("$ orcctl {} -> {r:?}", args.join(" "));
    r
}

#[test]
fn managers_and_workers_join_with_tokens() {
    let a = AgentProcess::start().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let cfg = a.dir.path().join("orcctl.toml");
    let (r, ctx) = rt.block_on(bootstrap(&a.addr, &Trust::Pinned(a.fingerprint().unwrap()), "t", "admin")).unwrap();
    save_context(&cfg, "t", ctx).unwrap();
    let manager_token = ctl(&cfg, &["cluster", "join-token", "manager"]).1.trim().to_string();
    let worker_token = ctl(&cfg, &["cluster", "join-token", "worker"]).1.trim().to_string();

    // A second manager joins and becomes a voter.
    let b = AgentProcess::start().unwrap();
    let fp = format!("sha256:{}", b.fingerprint().unwrap());
    let (ok, out, err) =
        ctl(&cfg, &["node", "join", &b.addr, "--fingerprint", &fp, "--token", &manager_token, "--manager", &a.addr]);
    assert!(ok, "{err}");
    assert!(out.contains("as manager"), "{out}");
    let mut s = status(&cfg);
    for _ in 0..100 {
        let voters = s["members"].as_array().map(|m| m.iter().filter(|m| m["voter"] == true).count()).unwrap_or(0);
        if voters == 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        s = status(&cfg);
    }
    assert_eq!(s["members"].as_array().unwrap().iter().filter(|m| m["voter"] == true).count(), 2, "{s}");
    assert!(s["members"].as_array().unwrap().iter().any(|m| m["addr"] == b.addr.as_str()), "{s}");
    // The new manager answers with the same CA, and sees the same leader.
    let (ok, out, err) = ctl(&cfg, &["--nodes", &b.addr, "-o", "json", "cluster", "status"]);
    assert!(ok, "{err}");
    let sb: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(sb[0]["leader"], r.node_id.as_str(), "{sb}");

    // A worker joins: a node of the cluster, not a Raft member.
    let c = AgentProcess::start().unwrap();
    let fp = format!("sha256:{}", c.fingerprint().unwrap());
    let (ok, out, err) =
        ctl(&cfg, &["node", "join", &c.addr, "--fingerprint", &fp, "--token", &worker_token, "--manager", &a.addr]);
    assert!(ok && out.contains("as worker"), "{out} {err}");
    let (ok, out, _) = ctl(&cfg, &["--nodes", &c.addr, "-o", "json", "version"]);
    assert!(ok && out.contains("\"worker\""), "{out}");
    assert_eq!(status(&cfg)["members"].as_array().unwrap().len(), 2);

    // orc.join (here --join): a node joins by itself at start.
    let e = AgentProcess::start_with(orc_e2e::agent::Options {
        args: vec!["--join".into(), format!("{worker_token}@{}", a.addr)],
        ..Default::default()
    })
    .unwrap();
    let mut joined = false;
    for _ in 0..100 {
        let (ok, out, _) = ctl(&cfg, &["--nodes", &e.addr, "-o", "json", "version"]);
        if ok && out.contains("\"worker\"") {
            joined = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(joined, "the node did not join by itself: {}", e.log());

    // Refusals: a made-up secret, and a token of another cluster (CA digest).
    let d = AgentProcess::start().unwrap();
    let fp = format!("sha256:{}", d.fingerprint().unwrap());
    let fake = format!("{}{}", &worker_token[..worker_token.len() - 4], "0000");
    let (ok, _, err) =
        ctl(&cfg, &["node", "join", &d.addr, "--fingerprint", &fp, "--token", &fake, "--manager", &a.addr]);
    assert!(!ok && err.contains("not valid for this cluster"), "{err}");
    let other_ca = format!("ORC1-{}-{}", "0".repeat(64), &worker_token[worker_token.len() - 40..]);
    let (ok, _, err) =
        ctl(&cfg, &["node", "join", &d.addr, "--fingerprint", &fp, "--token", &other_ca, "--manager", &a.addr]);
    assert!(!ok && err.contains("manager"), "{err}");
    // Still in maintenance mode after both refusals.
    let (_, out, _) = ctl(&cfg, &["--nodes", &d.addr, "-o", "json", "version"]);
    assert!(!out.contains("worker"), "{out}");
}

/// The node id of agent `i`.
fn id_of(c: &orc_e2e::cluster::LocalCluster, i: usize) -> String {
    let nodes = c.json(&["node", "ls"]);
    nodes.as_array().unwrap().iter().find(|n| n["addr"] == c.agents[i].addr.as_str()).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn cert_left(a: &AgentProcess) -> i64 {
    let pem = std::fs::read_to_string(a.state_dir().join("pki/node.crt")).unwrap();
    orc_agent::cluster::renew::remaining(&pem).unwrap()
}

fn identity_role(a: &AgentProcess) -> String {
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.state_dir().join("pki/identity.json")).unwrap()).unwrap();
    meta["role"].as_str().unwrap().to_string()
}

#[test]
fn certificates_renew_nodes_change_roles_and_leave() {
    use orc_e2e::cluster::LocalCluster;
    let mut c = LocalCluster::start(1, 2, Default::default()).unwrap();
    let long = cert_left(&c.agents[1]);
    assert!(long > 80 * 86_400, "joined with the default 90 days: {long}");

    // A short lifetime: nodes renew at once, then again when half is left.
    let out = c.ctl(&["cluster", "update", "--cert-ttl", "20s"]);
    assert!(out.ok, "{}", out.stderr);
    c.wait(Duration::from_secs(30), "the worker's certificate to follow the 20 s lifetime", |c| {
        cert_left(&c.agents[1]) <= 20
    })
    .unwrap();
    let first = std::fs::read_to_string(c.agents[1].state_dir().join("pki/node.crt")).unwrap();
    // Its WireGuard key is renewed with the certificate and reported.
    let w = id_of(&c, 1);
    let key = c.json(&["node", "inspect", &w])["wg_key"].as_str().unwrap_or_default().to_string();
    assert_eq!(key.len(), 44, "the worker reports a WireGuard public key: {key:?}");
    c.wait(Duration::from_secs(30), "a second renewal", |c| {
        std::fs::read_to_string(c.agents[1].state_dir().join("pki/node.crt")).unwrap() != first
    })
    .unwrap();
    c.wait(Duration::from_secs(30), "the worker's renewed WireGuard key", |c| {
        let now = c.json(&["node", "inspect", &w])["wg_key"].as_str().unwrap_or_default().to_string();
        now.len() == 44 && now != key
    })
    .unwrap();
    // The manager renews its own too, and everything still talks.
    c.wait(Duration::from_secs(30), "the manager's renewal", |c| cert_left(&c.agents[0]) <= 20).unwrap();
    // A few renewals later (each renewed certificate living 20 s), all still ready.
    std::thread::sleep(Duration::from_secs(12));
    let nodes = c.json(&["node", "ls"]);
    assert_eq!(nodes.as_array().unwrap().iter().filter(|n| n["status"] == "ready").count(), 3, "{nodes}");
    assert!(c.ctl(&["cluster", "update", "--cert-ttl", "90d"]).ok);

    // Promote a worker: manager certificate, CA key, a voter.
    let w1 = id_of(&c, 1);
    assert!(c.ctl(&["node", "promote", &w1]).ok);
    c.wait(Duration::from_secs(60), "the promoted node to be a voter", |c| {
        let n = c.json(&["node", "inspect", &w1]);
        n["manager_status"] == "reachable" && identity_role(&c.agents[1]) == "manager"
    })
    .unwrap();
    assert!(c.agents[1].state_dir().join("pki/ca.key").exists());
    let s = c.json(&["--nodes", &c.agents[1].addr, "cluster", "status"]);
    assert_eq!(s[0]["members"].as_array().unwrap().iter().filter(|m| m["voter"] == true).count(), 2, "{s}");

    // Demote it again: out of the quorum, no CA key, no Raft store.
    assert!(c.ctl(&["node", "demote", &w1]).ok);
    c.wait(Duration::from_secs(60), "the demoted node to leave the quorum", |c| {
        let s = c.json(&["--nodes", &c.agents[0].addr, "cluster", "status"]);
        s[0]["members"].as_array().is_some_and(|m| m.len() == 1) && identity_role(&c.agents[1]) == "worker"
    })
    .unwrap();
    assert!(!c.agents[1].state_dir().join("pki/ca.key").exists());
    c.wait(Duration::from_secs(10), "the Raft store to go", |c| !c.agents[1].state_dir().join("raft").exists())
        .unwrap();
    let m0 = id_of(&c, 0);
    let last = c.ctl(&["node", "demote", &m0]);
    assert!(!last.ok && last.stderr.contains("last manager"), "{}", last.stderr);

    // Removing a node: refused while it is up; once down, gone for good.
    let w2 = id_of(&c, 2);
    let up = c.ctl(&["node", "rm", &w2]);
    assert!(!up.ok && up.stderr.contains("not down"), "{}", up.stderr);
    let _ = c.agents[2].child.kill();
    let _ = c.agents[2].child.wait();
    c.wait(Duration::from_secs(30), "the stopped node to be down", |c| {
        c.json(&["node", "inspect", &w2])["status"] == "down"
    })
    .unwrap();
    assert!(c.ctl(&["node", "rm", &w2]).ok);
    c.agents[2].restart().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let nodes = c.json(&["node", "ls"]);
    assert_eq!(nodes.as_array().unwrap().len(), 2, "a removed node came back: {nodes}");
    assert!(c.agents[2].log().contains("removed from the cluster"), "{}", c.agents[2].log());
}

#[test]
fn a_cluster_that_lost_its_majority_recovers_on_a_survivor() {
    use orc_e2e::cluster::LocalCluster;
    let mut c = LocalCluster::start(3, 0, Default::default()).unwrap();
    // State to keep: a service (its tasks need not run here).
    assert!(c.ctl(&["service", "create", "--name", "keep", "--replicas", "0", "busybox"]).ok);
    let survivor = c.agents[0].addr.clone();
    for i in [1, 2] {
        let _ = c.agents[i].child.kill();
        let _ = c.agents[i].child.wait();
    }
    // No majority: reads and writes say so.
    let out = c.ctl(&["--nodes", &survivor, "service", "ls"]);
    assert!(!out.ok && out.stderr.contains("no quorum"), "{}", out.stderr);
    let refused = c.ctl(&["--nodes", &survivor, "cluster", "recover"]);
    assert!(!refused.ok && refused.stderr.contains("--force-new-cluster"), "{}", refused.stderr);

    let out = c.ctl(&["--nodes", &survivor, "cluster", "recover", "--force-new-cluster"]);
    assert!(out.ok, "{}", out.stderr);
    assert!(out.stdout.contains("demoted"), "{}", out.stdout);
    let s = c.json(&["--nodes", &survivor, "cluster", "status"]);
    assert_eq!(s[0]["state"], "Leader", "{s}");
    assert_eq!(s[0]["members"].as_array().unwrap().len(), 1, "{s}");
    // The state is kept and the cluster takes writes again.
    let services = c.json(&["--nodes", &survivor, "service", "ls"]);
    assert_eq!(services[0]["name"], "keep", "{services}");
    assert!(c.ctl(&["--nodes", &survivor, "service", "create", "--name", "after", "--replicas", "0", "busybox"]).ok);

    // A lost manager that comes back rejoins as a worker, out of the quorum.
    c.agents[1].restart().unwrap();
    let back = c.agents[1].addr.clone();
    c.wait(Duration::from_secs(60), "the returning manager to be a ready worker", |c| {
        let nodes = c.json(&["--nodes", &survivor, "node", "ls"]);
        nodes.as_array().is_some_and(|n| {
            n.iter().any(|n| n["addr"] == back.as_str() && n["role"] == "worker" && n["status"] == "ready")
        }) && identity_role(&c.agents[1]) == "worker"
    })
    .unwrap();
    let s = c.json(&["--nodes", &survivor, "cluster", "status"]);
    assert_eq!(s[0]["members"].as_array().unwrap().len(), 1, "{s}");
    // And promoting it rebuilds a two-manager quorum with the same state.
    let id = c
        .json(&["--nodes", &survivor, "node", "ls"])
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["addr"] == back.as_str())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(c.ctl(&["--nodes", &survivor, "node", "promote", &id]).ok);
    c.wait(Duration::from_secs(60), "two voters", |c| {
        let s = c.json(&["--nodes", &survivor, "cluster", "status"]);
        s[0]["members"].as_array().is_some_and(|m| m.iter().filter(|m| m["voter"] == true).count() == 2)
    })
    .unwrap();
    let services = c.json(&["--nodes", &back, "service", "ls"]);
    assert_eq!(services.as_array().map(|a| a.len()), Some(2), "{services}");
}

#[test]
fn people_certificates_issue_use_renew_revoke() {
    use orc_e2e::cluster::LocalCluster;
    let c = LocalCluster::start(1, 1, Default::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let op_cfg = dir.path().join("operator.toml");
    let op = op_cfg.to_str().unwrap();

    // Issue: an operator's context written to a file.
    let out = c.ctl(&["user", "cert", "create", "olga", "--role", "operator", "--ttl", "30d", "--out", op]);
    assert!(out.ok && out.stdout.contains("olga"), "{}", out.stderr);
    let mode = std::fs::metadata(&op_cfg).unwrap().permissions();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600);
    // Use: an operator runs services, but is no admin.
    let (ok, out, err) =
        ctl(&op_cfg, &["-o", "json", "service", "create", "--name", "s", "--replicas", "0", "busybox"]);
    assert!(ok, "{out} {err}");
    let (ok, _, err) = ctl(&op_cfg, &["cluster", "join-token", "worker"]);
    assert!(!ok && err.contains("admin"), "{err}");
    let (ok, _, err) = ctl(&op_cfg, &["user", "cert", "create", "eve", "--role", "admin"]);
    assert!(!ok && err.contains("admin"), "{err}");
    // Promoting a node hands it the CA key: admin only.
    let nodes = c.json(&["node", "ls"]);
    let worker = nodes.as_array().unwrap().iter().find(|n| n["role"] == "worker").unwrap()["id"].as_str().unwrap();
    let (ok, _, err) = ctl(&op_cfg, &["node", "promote", worker]);
    assert!(!ok && err.contains("may not promote or demote"), "{err}");
    let (ok, _, err) = ctl(&op_cfg, &["node", "update", "--availability", "drain", worker]);
    assert!(ok, "draining is an operator's job: {err}");
    // Host bind mounts reach the node's files (its CA key): admin only.
    let (ok, _, err) =
        ctl(&op_cfg, &["--nodes", &c.agents[0].addr, "container", "run", "-v", "/var/lib:/x", "busybox", "--", "true"]);
    assert!(!ok && err.contains("bind-mount host paths"), "{err}");

    // Renew: a new key and certificate, same name and role, written back.
    let before = std::fs::read_to_string(&op_cfg).unwrap();
    let (ok, out, err) = ctl(&op_cfg, &["context", "renew"]);
    assert!(ok && out.contains("operator"), "{out} {err}");
    let after = std::fs::read_to_string(&op_cfg).unwrap();
    assert_ne!(before, after);
    assert!(ctl(&op_cfg, &["service", "ls"]).0, "the renewed certificate works");
    // The old file (the certificate before renewal) still works until revoked.
    let old_cfg = dir.path().join("old.toml");
    std::fs::write(&old_cfg, &before).unwrap();
    assert!(ctl(&old_cfg, &["service", "ls"]).0);

    // Both of olga's certificates are on record, with the first admin's.
    let certs = c.json(&["user", "cert", "ls"]);
    let olga: Vec<_> = certs.as_array().unwrap().iter().filter(|x| x["name"] == "olga").collect();
    assert_eq!(olga.len(), 2, "{certs}");
    assert!(certs.as_array().unwrap().iter().any(|x| x["issued_by"] == "cluster init"), "{certs}");

    // Revoke by name: both refused on the manager and on the worker (which
    // learns the list from its session) within seconds, on new and open connections.
    let out = c.ctl(&["user", "cert", "revoke", "olga"]);
    assert!(out.ok && out.stdout.matches("revoked").count() == 2, "{}", out.stdout);
    let worker_addr = c.agents[1].addr.clone();
    c.wait(Duration::from_secs(15), "every node to refuse olga", |_| {
        [&op_cfg, &old_cfg].iter().all(|cfg| {
            let (ok_m, _, err_m) = ctl(cfg, &["service", "ls"]);
            let (ok_w, _, err_w) = ctl(cfg, &["--nodes", &worker_addr, "version"]);
            !ok_m && err_m.contains("revoked") && !ok_w && err_w.contains("revoked")
        })
    })
    .unwrap();
    // (The old spelling, `config renew`, still works, with a notice.)
    let (ok, _, err) = ctl(&op_cfg, &["config", "renew"]);
    assert!(!ok && err.contains("revoked"), "a revoked certificate cannot renew itself: {err}");
    assert!(err.contains("orcctl context renew"), "{err}");
    // Revoking the certificate you call with is refused; unknown names are named.
    let out = c.ctl(&["user", "cert", "revoke", "nobody"]);
    assert!(!out.ok && out.stderr.contains("user cert ls"), "{}", out.stderr);
    assert!(c.ctl(&["service", "ls"]).ok, "the admin is untouched");
}

#[test]
fn demoted_and_removed_nodes_lose_their_powers_on_open_connections() {
    use orc_e2e::cluster::LocalCluster;
    let mut c = LocalCluster::start(2, 0, Default::default()).unwrap();
    // The second manager's certificate, kept: what an attacker holding its
    // disk would have after the demotion.
    let pki = c.agents[1].state_dir().join("pki");
    let (cert, key, ca) = (
        std::fs::read_to_string(pki.join("node.crt")).unwrap(),
        std::fs::read_to_string(pki.join("node.key")).unwrap(),
        std::fs::read_to_string(pki.join("ca.crt")).unwrap(),
    );
    let ctx = orcctl::config::Context { endpoints: vec![c.agents[0].addr.clone()], ca, cert, key, namespace: None };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // One connection, opened while it was a manager and kept open.
    let ch = rt.block_on(orcctl::connect::channel(&c.agents[0].addr, &Trust::Cluster(ctx))).unwrap();
    let propose = |ch: &tonic::transport::Channel| {
        rt.block_on(async {
            let mut r = orc_proto::raft::raft_client::RaftClient::new(ch.clone());
            r.read_index(orc_proto::raft::Payload { data: b"{}".to_vec() }).await
        })
    };
    assert!(propose(&ch).is_ok(), "a manager may read through the leader");
    let m1 = id_of(&c, 1);
    assert!(c.ctl(&["node", "demote", &m1]).ok);
    c.wait(Duration::from_secs(30), "the demoted manager's old certificate to be refused", |_| {
        propose(&ch).is_err_and(|e| e.code() == tonic::Code::PermissionDenied)
    })
    .unwrap();
    // Gone from the quorum before it dies: with two voters, Raft's joint
    // configuration needs the leaving one's vote to finish removing it.
    c.wait(Duration::from_secs(30), "the demoted manager to leave the quorum", |c| {
        let s = c.json(&["cluster", "status"]);
        s[0]["members"].as_array().is_some_and(|m| m.iter().filter(|m| m["voter"] == true).count() == 1)
    })
    .unwrap();
    // Removed: refused everything, on the same open connection.
    let _ = c.agents[1].child.kill();
    let _ = c.agents[1].child.wait();
    // (Down after the grace period; longer when the demotion moved the leadership.)
    c.wait(Duration::from_secs(60), "the demoted node to be down", |c| {
        c.json(&["node", "inspect", &m1])["status"] == "down"
    })
    .unwrap();
    assert!(c.ctl(&["node", "rm", &m1]).ok);
    c.wait(Duration::from_secs(10), "the removed node to be refused", |_| {
        rt.block_on(async {
            let mut m = orc_proto::machine::machine_client::MachineClient::new(ch.clone());
            m.version(orc_proto::machine::VersionRequest {}).await
        })
        .is_err_and(|e| e.message().contains("removed from the cluster"))
    })
    .unwrap();
}

/// The `raft` check of a node's `health`: (ok, message).
fn raft_health(c: &orc_e2e::cluster::LocalCluster, i: usize) -> Option<(bool, String)> {
    // `health` exits non-zero when the node is unhealthy: read its output anyway.
    let out = c.ctl(&["--nodes", &c.agents[i].addr, "-o", "json", "health"]);
    let h: serde_json::Value = serde_json::from_str(&out.stdout).ok()?;
    let check = h[0]["checks"].as_array()?.iter().find(|c| c["name"] == "raft")?.clone();
    Some((check["ok"].as_bool()?, check["message"].as_str()?.to_string()))
}

#[test]
fn a_full_state_disk_stops_raft_until_space_returns() {
    use orc_e2e::cluster::LocalCluster;
    use orc_e2e::small_fs::SmallFs;
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: mounting a small STATE filesystem needs root");
        return;
    }
    let fs = SmallFs::new(32).unwrap();
    let opts = orc_e2e::agent::Options { state_dir: Some(fs.mnt.join("state")), ..Default::default() };
    let c = LocalCluster::start(1, 0, opts).unwrap();
    // What must survive: services committed before the disk filled.
    let big: Vec<String> = (0..40).map(|i| format!("-eK{i}={}", "x".repeat(4000))).collect();
    let create = |name: &str| {
        let mut args = vec!["service", "create", "--name", name, "--replicas", "0"];
        args.extend(big.iter().map(String::as_str));
        args.push("busybox");
        c.ctl(&args)
    };
    let mut committed: Vec<String> = Vec::new();
    for i in 0..3 {
        let name = format!("before-{i}");
        assert!(create(&name).ok);
        committed.push(name);
    }

    fs.fill().unwrap();
    // Writes until one fails; those acknowledged must all be kept.
    let mut failed = None;
    for i in 0..100 {
        let name = format!("full-{i}");
        let out = create(&name);
        if out.ok {
            committed.push(name);
        } else {
            failed = Some(out.stderr);
            break;
        }
    }
    let failed = failed.expect("a full STATE never failed a write");
    // The agent keeps serving and says what is wrong.
    c.wait(Duration::from_secs(30), "health to report the stopped Raft", |c| {
        raft_health(c, 0).is_some_and(|(ok, msg)| !ok && msg.contains("restarting by itself"))
    })
    .unwrap();
    let (_, msg) = raft_health(&c, 0).unwrap();
    assert!(msg.contains("No space left") && msg.contains("KiB free"), "{msg}");
    let out = c.ctl(&["service", "ls"]);
    assert!(!out.ok && out.stderr.contains("Raft is stopped"), "write failed with {failed:?}; then: {}", out.stderr);
    assert!(c.json(&["--nodes", &c.agents[0].addr, "container", "ls"]).is_array(), "the Machine API stopped");

    // Space returns: the Raft comes back by itself with everything committed.
    fs.free().unwrap();
    c.wait(Duration::from_secs(60), "the Raft to restart", |c| raft_health(c, 0).is_some_and(|(ok, _)| ok)).unwrap();
    c.wait(Duration::from_secs(30), "the cluster API to answer", |c| c.json(&["service", "ls"]).is_array()).unwrap();
    let names: Vec<String> = c
        .json(&["service", "ls"])
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["name"].as_str().map(String::from))
        .collect();
    for n in &committed {
        assert!(names.contains(n), "{n} was acknowledged before the disk filled but is gone: {names:?}");
    }
    assert!(create("after").ok, "no writes after space returned");
    assert!(c.agents[0].log().contains("Raft restarted"), "{}", c.agents[0].log());
}

#[test]
fn the_clock_is_checked_against_ntp_and_a_node_wildly_off_does_not_join() {
    use orc_e2e::agent::Options;
    use orc_e2e::cluster::LocalCluster;
    use orc_e2e::ntp::NtpServer;
    use orc_proto::machine::HealthRequest;
    if let Some(why) = orc_e2e::ntp::unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let right = NtpServer::start(0, false).unwrap();
    let wrong = NtpServer::start(3600, false).unwrap();
    let server = |s: &NtpServer| vec!["--ntp-server".to_string(), format!("127.0.0.1:{}", s.port)];

    // A manager whose clock agrees with its NTP server.
    let c = LocalCluster::start(1, 0, Options { args: server(&right), ..Default::default() }).unwrap();
    c.wait(Duration::from_secs(30), "the manager's clock to be synchronized", |c| {
        let h = c.json(&["health"]);
        h[0]["clock"]["synchronized"] == true
    })
    .unwrap();
    let h = c.json(&["health"]);
    let offset = h[0]["clock"]["offset_seconds"].as_f64().unwrap();
    assert!(offset.abs() < 1.0, "{h}");
    assert_eq!(h[0]["clock"]["disciplined"], false, "an agent started by hand must not set the host's clock");
    let check = h[0]["checks"].as_array().unwrap().iter().find(|c| c["name"] == "clock").unwrap().clone();
    assert!(check["message"].as_str().unwrap().starts_with("synchronized: offset"), "{check}");

    // A node an hour behind its NTP server (which it cannot correct: this
    // agent does not own the clock) says so, and is refused when joining.
    let joiner =
        orc_e2e::agent::AgentProcess::start_with(Options { args: server(&wrong), ..Default::default() }).unwrap();
    let fp = joiner.fingerprint().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let health = || {
        rt.block_on(async {
            let mut client = orcctl::cmd::machine::client(&joiner.addr, &Trust::Pinned(fp.clone())).await.unwrap();
            client.health(HealthRequest {}).await.unwrap().into_inner()
        })
    };
    let mut h = health();
    for _ in 0..50 {
        if h.clock.as_ref().is_some_and(|c| c.last_sync_unix_ms > 0) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        h = health();
    }
    let clock = h.clock.clone().unwrap();
    assert!((clock.offset_seconds - 3600.0).abs() < 5.0 && !clock.synchronized, "{clock:?}");
    let check = h.checks.iter().find(|c| c.name == "clock").unwrap();
    assert!(!check.ok && check.message.starts_with("wildly off"), "{check:?}");

    let token = c.ctl(&["cluster", "join-token", "worker"]).stdout.trim().to_string();
    let out = c.ctl(&[
        "node",
        "join",
        &joiner.addr,
        "--fingerprint",
        &format!("sha256:{fp}"),
        "--token",
        &token,
        "--manager",
        &c.agents[0].addr,
    ]);
    assert!(!out.ok, "a node an hour off joined");
    // The offset is measured, so it may print as +3599.999 as well as +3600.
    let said = out.stderr.split("clock is ").nth(1).and_then(|s| s.split(" s off").next());
    let off: f64 = said.and_then(|s| s.trim_start_matches('+').parse().ok()).unwrap_or(0.0);
    assert!((off - 3600.0).abs() < 5.0 && out.stderr.contains("orc.ntp="), "{}", out.stderr);
    let nodes = c.json(&["node", "ls"]);
    assert_eq!(nodes.as_array().unwrap().len(), 1, "{nodes}");
}
