//! VM end to end for the cluster: the five QEMU nodes of `qemu/e2e.toml` on
//! one L2 network (3 managers, 2 workers, joined with tokens over 10.42.0.x), pulling the
//! busybox test image from a docker-registry on the host. Ten replicas
//! spread; a global web server publishes port 8080 on the routing mesh
//! (answering on every node's address); tasks reach each other across the
//! VMs by address, name and VIP; an encrypted network's traffic crosses the
//! L2 network (captured by the hub) only as WireGuard; a worker
//! VM is killed and its tasks run again on the rest; a manager reboots and
//! the quorum holds; a node is drained; the replicas are updated across the
//! nodes with a readiness probe, then updated to tasks that fail and rolled
//! back by itself; a stateful slot's volume keeps its data through its
//! node's reboot and holds to its size limit; a stateful slot on an NFS
//! volume (served by an NFS server VM on the same L2 network) moves to
//! another node with its data. After each, the task count and the containers on the
//! nodes are exact. Last, a diskless machine PXE-boots with a join token
//! and joins by itself. Runs when `ORC_E2E_IMAGE` is set.

// The test harness: a failed unwrap is a failed test, with its line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use orc_e2e::cluster_def::{workspace_def, ClusterDef};
use orc_e2e::qemu::Node;
use orc_e2e::registry::Registry;
use orc_e2e::{free_port, http_get, oci};

const BOOT: Duration = Duration::from_secs(600);

/// A web server answering its hostname at `/` and the client's address
/// at `/cgi-bin/peer`.
const SERVE_PEER: &str = "mkdir -p /tmp/w/cgi-bin && hostname > /tmp/w/index.html \
    && printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho $REMOTE_ADDR\\n' > /tmp/w/cgi-bin/peer \
    && chmod +x /tmp/w/cgi-bin/peer && exec httpd -f -p 80 -h /tmp/w";
const SETTLE: Duration = Duration::from_secs(240);

struct Cluster {
    nodes: Vec<Node>,
    config: PathBuf,
}

impl Cluster {
    fn ctl(&self, args: &[&str]) -> (bool, String, String) {
        let o = Command::new(orc_e2e::paths::debug_bin("orcctl"))
            .arg("--orcconfig")
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap();
        let r = (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).to_string(),
            String::from_utf8_lossy(&o.stderr).to_string(),
        );
        let shown: String = r.1.chars().take(300).collect();
        eprintln!("$ orcctl {} -> {} {shown:?} {:?}", args.join(" "), r.0, r.2);
        r
    }
    fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.ctl(args);
        assert!(ok, "orcctl {args:?}: {err}");
        out
    }
    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        let (ok, out, _) = self.ctl(&a);
        if !ok {
            return serde_json::Value::Null;
        }
        serde_json::from_str(&out).unwrap_or_default()
    }
    fn api(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.nodes[i].spec.api_port)
    }
    /// Running containers of `service` on node `i`.
    fn containers(&self, i: usize, service: &str) -> Option<usize> {
        let v = self.json(&["--nodes", &self.api(i), "container", "ls"]);
        let prefix = format!("{service}.");
        Some(v.as_array()?.iter().filter(|c| c["name"].as_str().is_some_and(|n| n.starts_with(&prefix))).count())
    }
    /// `n` tasks wanted and running, one per slot, and exactly `n`
    /// containers of the service on the nodes in `up`.
    fn exact(&self, service: &str, n: usize, up: &[usize]) -> bool {
        let t = self.json(&["service", "ps", service, "--running"]);
        let Some(live) = t.as_array() else { return false };
        let running = live.iter().filter(|t| t["state"] == "running").count();
        let mut slots: Vec<u64> = live.iter().filter_map(|t| t["slot"].as_u64()).collect();
        slots.sort();
        slots.dedup();
        if live.len() != n || running != n || slots.len() != n {
            return false;
        }
        let on_nodes: Option<usize> = up.iter().map(|i| self.containers(*i, service)).sum();
        on_nodes == Some(n)
    }
    fn settle(&self, service: &str, n: usize, up: &[usize], after: &str) {
        let start = Instant::now();
        while !self.exact(service, n, up) {
            if start.elapsed() > SETTLE {
                let ps = self.ctl(&["service", "ps", service]).1;
                let nodes = self.ctl(&["node", "ls"]).1;
                panic!("{n} tasks of {service} did not settle {after}\n{ps}\n{nodes}");
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    }
    fn node_id(&self, i: usize) -> String {
        let addr = orc_e2e::qemu_cluster::l2_addr(&self.nodes[i]).unwrap();
        let nodes = self.json(&["node", "ls"]);
        nodes.as_array().unwrap().iter().find(|n| n["addr"] == addr.as_str()).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

/// A failed check shows what each node logged last: the agents' logs go
/// to the console, and a CI log is all there is to read afterwards.
impl Drop for Cluster {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for n in &self.nodes {
            let console = n.console_from(0);
            let lines: Vec<&str> = console.lines().collect();
            let tail = lines[lines.len().saturating_sub(120)..].join("\n");
            eprintln!("--- the last lines of {}'s console ---\n{tail}", n.spec.name);
        }
    }
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// A stateful slot on an NFS volume (the NFS server VM's export) writes on
/// node `a`, is moved to node `b` and finds its data there; removing the
/// volumes unmounts them and leaves the server's data alone.
fn nfs_slot_moves(c: &Cluster, image_ref: &str, server: &str, a: usize, b: usize) {
    let opts = ["--opt", "type=nfs", "--opt", &format!("o=addr={server},soft,timeo=100"), "--opt", "device=:/"];
    c.ok(&[&["volume", "create", "shared"][..], &opts].concat());
    let bad = c.ctl(&["volume", "create", "bad", "--opt", "type=nfs", "--opt", "device=nas.local:/x"]);
    assert!(!bad.0 && bad.2.contains("not an IP address"), "{bad:?}");
    let (na, nb) = (c.node_id(a), c.node_id(b));
    let on = |node: &str| format!("node.id=={node}");
    let append = "hostname >> /d/log && exec sleep 3600";
    c.ok(&[
        "service",
        "create",
        "--name",
        "nst",
        "--stateful",
        "--constraint",
        &on(&na),
        "--mount",
        "source=shared,target=/d",
        image_ref,
        "--",
        "sh",
        "-c",
        append,
    ]);
    // The log as the running task sees it, and the node it runs on.
    let log = |c: &Cluster| -> Option<(String, String)> {
        let ps = c.json(&["service", "ps", "nst", "--running"]);
        let t = ps.as_array()?.iter().find(|t| t["state"] == "running")?.clone();
        let node = t["node_id"].as_str()?.to_string();
        let i = [a, b].into_iter().find(|i| c.node_id(*i) == node)?;
        let (ok, out, _) =
            c.ctl(&["--nodes", &c.api(i), "container", "exec", t["container"].as_str()?, "--", "cat", "/d/log"]);
        ok.then_some((node, out))
    };
    wait_for("nst writing to its NFS volume on the first node", SETTLE, || {
        log(c).is_some_and(|(node, l)| node == na && l.lines().count() == 1)
    });
    let slot = c.json(&["volume", "inspect", "shared-nst.1"]);
    assert_eq!((slot["driver"].as_str(), slot["nfs_dir"].as_str()), (Some("nfs"), Some("shared-nst.1")), "{slot}");
    assert_eq!(slot["node_id"].as_str(), Some(""), "a slot on NFS is held by no node: {slot}");
    c.ok(&["service", "update", "nst", "--constraint-rm", &on(&na), "--constraint-add", &on(&nb)]);
    wait_for("nst on the second node with the first one's data", SETTLE, || {
        log(c).is_some_and(|(node, l)| node == nb && l.lines().count() == 2)
    });
    c.ok(&["service", "rm", "nst"]);
    wait_for("nst's volumes free", SETTLE, || c.ctl(&["volume", "rm", "shared-nst.1"]).0);
    wait_for("the NFS volume free", SETTLE, || c.ctl(&["volume", "rm", "shared"]).0);
    // The server still has it: a new volume on the same export reads it.
    c.ok(&[&["volume", "create", "again"][..], &opts].concat());
    c.ok(&[
        "service",
        "create",
        "--name",
        "reader",
        "--constraint",
        &on(&na),
        "--mount",
        "source=again,target=/d",
        image_ref,
        "--",
        "sh",
        "-c",
        "cat /d/shared-nst.1/log && exec sleep 3600",
    ]);
    wait_for("the slot's data read back from the server", SETTLE, || {
        c.ctl(&["service", "logs", "reader"]).1.lines().filter(|l| !l.trim().is_empty()).count() >= 2
    });
    c.ok(&["service", "rm", "reader"]);
    wait_for("the second NFS volume free", SETTLE, || c.ctl(&["volume", "rm", "again"]).0);
}

/// Boots the nodes of `qemu/e2e.toml`, the first with the web ports (8080, 8081) forwarded.
fn boot(def: &ClusterDef, image: &Path, dir: &Path, registry: &Registry, web_port: u16, near_port: u16) -> Vec<Node> {
    let hub = dir.join("hub.sock");
    (0..def.nodes.len())
        .map(|i| {
            let mut spec = def.spec(i, dir, image, &hub, free_port());
            spec.extra_cmdline = format!("{} orc.insecure_registries=10.0.2.2:{}", spec.extra_cmdline, registry.port);
            if i == 0 {
                spec.forwards = vec![(web_port, 8080), (near_port, 8081)];
            }
            Node::start(spec).unwrap()
        })
        .collect()
}

#[test]
fn five_vms_keep_ten_replicas_through_failures() {
    let Some(image) = orc_e2e::e2e_image() else { return };
    let registry = Registry::start().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(registry.push(&oci::busybox(0).unwrap(), "orc/busybox:1")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let hub_path = dir.path().join("hub.sock");
    let hub = hub_path.clone();
    let capture = std::sync::Arc::new(orc_e2e::hub::Capture::default());
    let tap = capture.clone();
    std::thread::spawn(move || orc_e2e::hub::run_capturing(&hub, tap));
    wait_for("the L2 hub", Duration::from_secs(5), || hub_path.exists());
    let nfs = orc_e2e::nfs_server::NfsServer::start(&image, &hub_path, 50, &dir.path().join("nfs"), BOOT).unwrap();
    let (web_port, near_port) = (free_port(), free_port());
    let def = ClusterDef::load(&workspace_def("e2e.toml")).unwrap();
    let nodes = boot(&def, &image, dir.path(), &registry, web_port, near_port);
    let (_, ctx) = orc_e2e::qemu_cluster::form(&nodes, &def.roles(), None, BOOT).unwrap_or_else(|e| {
        for n in &nodes {
            eprintln!("--- {} ---\n{}", n.spec.name, n.console_from(0));
        }
        panic!("{e:#}")
    });
    let config = dir.path().join("orcctl.toml");
    orc_e2e::qemu_cluster::save(&config, "vm", ctx).unwrap();
    let mut c = Cluster { nodes, config };
    let image_ref = format!("10.0.2.2:{}/orc/busybox:1", registry.port);
    let all = [0, 1, 2, 3, 4];

    // The spread below is over five ready nodes: under TCG a node can be
    // judged down for a moment just after the cluster formed (then every
    // replica would go to the first one back).
    wait_for("five ready nodes", Duration::from_secs(120), || {
        c.json(&["node", "ls"]).as_array().is_some_and(|n| n.len() == 5 && n.iter().all(|n| n["status"] == "ready"))
    });
    // Ten replicas over five nodes; a global web server on port 8080 of every node.
    c.ok(&["service", "create", "--name", "web", "--replicas", "10", &image_ref, "--", "sleep", "3600"]);
    c.ok(&[
        "service",
        "create",
        "--name",
        "page",
        "--mode",
        "global",
        "--publish",
        "8080",
        &image_ref,
        "--",
        "httpd",
        "-f",
        "-p",
        "8080",
        "-h",
        "/www",
    ]);
    c.settle("web", 10, &all, "after create");
    let per_node: Vec<usize> = all.iter().map(|i| c.containers(*i, "web").unwrap()).collect();
    assert_eq!(per_node, [2, 2, 2, 2, 2], "not spread evenly");
    wait_for("the published page on node 1", Duration::from_secs(120), || {
        http_get(web_port).as_deref() == Some(oci::INDEX_HTML)
    });
    let page = c.json(&["service", "ps", "page", "--running"]);
    assert_eq!(page.as_array().map(|a| a.len()), Some(5), "{page}");

    // Tasks on the overlay reach each other across the VMs by address: a
    // web server in its own namespace on every node, fetched from node 1's.
    c.ok(&[
        "service", "create", "--name", "hello", "--mode", "global", &image_ref, "--", "httpd", "-f", "-p", "80", "-h",
        "/www",
    ]);
    let ids: Vec<String> = all.iter().map(|i| c.node_id(*i)).collect();
    // (node index, address, container) of each running task of a service.
    let running = |service: &str| -> Vec<(usize, String, String)> {
        let t = c.json(&["service", "ps", service, "--running"]);
        t.as_array()
            .map(|ts| {
                ts.iter()
                    .filter(|t| t["state"] == "running" && t["address"] != "")
                    .filter_map(|t| {
                        let node = ids.iter().position(|i| t["node_id"] == i.as_str())?;
                        Some((node, t["address"].as_str()?.to_string(), t["container"].as_str()?.to_string()))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    wait_for("a hello task with an overlay address on every node", SETTLE, || running("hello").len() == 5);
    let tasks = running("hello");
    let from = tasks.iter().find(|t| t.0 == 0).unwrap().clone();
    for (_, addr, _) in tasks.iter().filter(|t| t.0 != 0) {
        let script = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 10 {addr} 80");
        let out = c.ok(&["--nodes", &c.api(0), "container", "exec", &from.2, "--", "sh", "-c", &script]);
        assert!(out.contains(oci::INDEX_HTML), "TCP over the overlay to {addr}: {out}");
    }

    // The routing mesh: page's published 8080 answers on every VM's own
    // address, fetched from node 1's hello task.
    let node_ips: Vec<String> = c
        .json(&["node", "ls"])
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| Some(n["addr"].as_str()?.rsplit_once(':')?.0.to_string()))
        .collect();
    assert_eq!(node_ips.len(), 5, "{node_ips:?}");
    for ip in &node_ips {
        let script = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 10 {ip} 8080");
        let out = c.ok(&["--nodes", &c.api(0), "container", "exec", &from.2, "--", "sh", "-c", &script]);
        assert!(out.contains(oci::INDEX_HTML), "the mesh port 8080 on {ip}: {out}");
    }

    // Local mode: every node answers 8081 with its own task, which sees
    // the client's address: QEMU's user-network gateway for the test
    // host's requests through node 1's forwarded port; the hello task's
    // own overlay address for its requests to the other nodes (the pool,
    // 10.0.0.0/8, holds the L2 network: nothing between them is
    // masqueraded, and the replies come back over the overlay).
    c.ok(&[
        "service",
        "create",
        "--name",
        "near",
        "--mode",
        "global",
        "--publish",
        "published=8081,target=80,mode=local",
        &image_ref,
        "--",
        "sh",
        "-c",
        SERVE_PEER,
    ]);
    wait_for("a near task on every node", SETTLE, || running("near").len() == 5);
    let peer = |body: &str| body.trim().trim_start_matches("[::ffff:").trim_end_matches(']').to_string();
    wait_for("node 1's local port from the test host", Duration::from_secs(60), || {
        orc_e2e::http_get_path(std::net::Ipv4Addr::LOCALHOST, near_port, "/cgi-bin/peer").is_some()
    });
    let seen = orc_e2e::http_get_path(std::net::Ipv4Addr::LOCALHOST, near_port, "/cgi-bin/peer").unwrap_or_default();
    assert_eq!(peer(&seen), "10.0.2.2", "local mode keeps the client's address (QEMU's gateway for the host)");
    let own = orc_e2e::qemu_cluster::l2_addr(&c.nodes[0]).unwrap();
    let own = own.rsplit_once(':').unwrap().0;
    let client = &from.1;
    for ip in node_ips.iter().filter(|ip| ip.as_str() != own) {
        let script = format!("printf 'GET /cgi-bin/peer HTTP/1.0\\r\\n\\r\\n' | nc -w 10 {ip} 8081");
        let out = c.ok(&["--nodes", &c.api(0), "container", "exec", &from.2, "--", "sh", "-c", &script]);
        let body = orc_e2e::http_body(&out).unwrap_or_default();
        assert_eq!(&peer(body), client, "local mode on {ip} sees the hello task's address, the client's: {out}");
    }
    c.ok(&["service", "rm", "near"]);

    // A two-tier app: from node 1's hello task, `who` found by name and
    // reached through its VIP; scaled 1 → 5, requests spread over the VMs.
    let serve = "mkdir -p /tmp/w && hostname > /tmp/w/index.html && exec httpd -f -p 80 -h /tmp/w";
    c.ok(&["service", "create", "--name", "who", &image_ref, "--", "sh", "-c", serve]);
    let vip = c.json(&["service", "inspect", "who"])["vips"]["default"].as_str().unwrap().to_string();
    let exec_in = |container: &str, script: &str| {
        let (ok, out, _) = c.ctl(&["--nodes", &c.api(0), "container", "exec", container, "--", "sh", "-c", script]);
        if ok {
            out
        } else {
            String::new()
        }
    };
    let in_task = |script: &str| exec_in(&from.2, script);
    wait_for("who's name answering its VIP in a task", SETTLE, || {
        in_task("nslookup who").contains(&format!("Address: {vip}"))
    });
    c.ok(&["service", "scale", "who=5"]);
    wait_for("5 who tasks running", SETTLE, || {
        c.json(&["service", "ps", "who", "--running"])
            .as_array()
            .is_some_and(|t| t.iter().filter(|t| t["state"] == "running" && t["health"] == "ready").count() == 5)
    });
    let nodes: std::collections::BTreeSet<String> = c
        .json(&["service", "ps", "who", "--running"])
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["node_id"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(nodes.len() >= 3, "who spread over the VMs: {nodes:?}");
    // Every node has heard of the five once the name lists them.
    wait_for("tasks.who listing five", Duration::from_secs(30), || {
        in_task("nslookup tasks.who").matches("Address: 10.").count() >= 5
    });
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let script = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 10 {vip} 80");
        let out = c.ok(&["--nodes", &c.api(0), "container", "exec", &from.2, "--", "sh", "-c", &script]);
        seen.insert(out.rsplit("\r\n\r\n").next().unwrap_or_default().trim().to_string());
    }
    assert!(seen.len() >= 3, "20 requests through who's VIP reached {seen:?}");

    // An encrypted network: between the VMs its tasks' traffic is WireGuard
    // only. A capture of the VMs' L2 network sees the plain overlay's page
    // (the control: plaintext would be seen) and never the encrypted one's,
    // which every vault task builds at run time so that only its answers
    // carry it.
    c.ok(&["network", "create", "secret", "--encrypted"]);
    let canary = "orc-canary-in-the-clear";
    let serve = "mkdir -p /tmp/w && printf 'orc-%s-in-the-%s' canary clear > /tmp/w/index.html \
                 && exec httpd -f -p 80 -h /tmp/w";
    c.ok(&[
        "service",
        "create",
        "--name",
        "vault",
        "--mode",
        "global",
        "--network",
        "secret",
        &image_ref,
        "--",
        "sh",
        "-c",
        serve,
    ]);
    wait_for("a vault task with an address on every node", SETTLE, || running("vault").len() == 5);
    let vaults = running("vault");
    let vault_vip = c.json(&["service", "inspect", "vault"])["vips"]["secret"].as_str().unwrap_or_default().to_string();
    assert!(!vault_vip.is_empty(), "vault has a VIP on secret");
    let inside = vaults.iter().find(|t| t.0 == 0).unwrap().2.clone();
    let pcap = dir.path().join("l2.pcap");
    capture.start(&pcap).unwrap();
    // (Every node reprograms its networks as `secret` comes: retried.)
    for (_, addr, _) in tasks.iter().filter(|t| t.0 != 0) {
        let script = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 10 {addr} 80");
        wait_for(&format!("the plain overlay to {addr}"), Duration::from_secs(30), || {
            exec_in(&from.2, &script).contains(oci::INDEX_HTML)
        });
    }
    let targets = vaults.iter().filter(|t| t.0 != 0).map(|t| t.1.clone()).chain(std::iter::repeat_n(vault_vip, 8));
    for addr in targets {
        let script = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 10 {addr} 80");
        wait_for(&format!("vault's page at {addr} over the encrypted network"), Duration::from_secs(30), || {
            exec_in(&inside, &script).contains(canary)
        });
    }
    capture.stop().unwrap();
    let frames = orc_e2e::hub::frames(&pcap).unwrap();
    let has = |f: &[u8], needle: &str| f.windows(needle.len()).any(|w| w == needle.as_bytes());
    let wireguard =
        frames.iter().filter(|f| orc_e2e::hub::udp_dst_port(f).is_some_and(|p| (51820..=52075).contains(&p))).count();
    let control = frames.iter().filter(|f| has(f, oci::INDEX_HTML)).count();
    let leaked = frames.iter().filter(|f| has(f, canary)).count();
    eprintln!(
        "capture: {} frames, {wireguard} WireGuard, {control} with the plain page, {leaked} with the canary",
        frames.len()
    );
    assert!(control > 0, "the capture sees the plain overlay's page: it would see plaintext");
    assert!(wireguard > 0, "the encrypted network's traffic crossed in WireGuard");
    assert_eq!(leaked, 0, "plaintext of an encrypted network's task crossed the wire");
    c.ok(&["service", "rm", "vault"]);
    wait_for("vault gone, secret free", SETTLE, || c.ctl(&["network", "rm", "secret"]).0);
    c.ok(&["service", "rm", "who"]);
    c.ok(&["service", "rm", "hello"]);

    // A worker VM dies: its tasks run again on the four others.
    c.nodes[4].kill();
    c.settle("web", 10, &all[..4], "after a worker died");
    let down = c.json(&["node", "ls"]);
    assert_eq!(down.as_array().unwrap().iter().filter(|n| n["status"] == "down").count(), 1, "{down}");
    let page = c.json(&["service", "ps", "page", "--running"]);
    assert_eq!(page.as_array().map(|a| a.len()), Some(4), "a global task stayed on the dead node: {page}");

    // A manager reboots: the quorum holds (2 of 3), it comes back ready.
    // A stateful slot pinned to it keeps its volume's data through the
    // reboot (on the node's STATE).
    let m2 = c.api(1);
    let n2 = c.node_id(1);
    let pin = format!("node.id=={n2}");
    let append = "hostname >> /d/log && exec sleep 3600";
    let st = ["service", "create", "--name", "st", "--stateful", "--constraint", &pin];
    let st = [&st[..], &["--mount", "source=d,target=/d,size=8MiB"]].concat();
    c.ok(&[&st[..], &[image_ref.as_str(), "--", "sh", "-c", append]].concat());
    let st_log = |c: &Cluster| -> Option<String> {
        let ps = c.json(&["service", "ps", "st", "--running"]);
        let t = ps.as_array()?.iter().find(|t| t["state"] == "running")?.clone();
        let (ok, out, _) =
            c.ctl(&["--nodes", &m2, "container", "exec", t["container"].as_str()?, "--", "cat", "/d/log"]);
        ok.then_some(out)
    };
    wait_for("st writing to its slot's volume", SETTLE, || st_log(&c).is_some_and(|l| l.lines().count() == 1));
    // Its size limit holds (a project quota on STATE): writing past it fails.
    let st_exec = |c: &Cluster, cmd: &str| -> String {
        let ps = c.json(&["service", "ps", "st", "--running"]);
        let t = ps.as_array().and_then(|a| a.iter().find(|t| t["state"] == "running").cloned()).unwrap_or_default();
        let id = t["container"].as_str().unwrap_or_default();
        let (_, out, err) = c.ctl(&["--nodes", &m2, "container", "exec", id, "--", "sh", "-c", cmd]);
        format!("{out}{err}")
    };
    let full = st_exec(&c, "dd if=/dev/zero of=/d/big bs=1M count=16 2>&1; ls -l /d/big; rm -f /d/big");
    assert!(full.contains("Disk quota exceeded"), "16 MiB went into an 8 MiB volume: {full}");
    let from = c.nodes[1].console_len();
    c.ok(&["--nodes", &m2, "reboot"]);
    assert!(c.nodes[1].wait_console(from, "serving the Machine API", BOOT).is_some(), "node 2 did not come back");
    c.ok(&["service", "scale", "web=12"]);
    wait_for("the rebooted manager to be ready again", SETTLE, || {
        let nodes = c.json(&["node", "ls"]);
        nodes.as_array().is_some_and(|n| n.iter().filter(|n| n["status"] == "ready").count() == 4)
    });
    c.settle("web", 12, &all[..4], "after a manager rebooted");
    wait_for("st back on its node with its volume's data", SETTLE, || {
        st_log(&c).is_some_and(|l| l.lines().count() == 2)
    });
    let vols = c.json(&["volume", "inspect", "d-st.1"]);
    assert_eq!(vols["node_id"].as_str(), Some(n2.as_str()), "{vols}");
    assert_eq!(vols["size"].as_u64(), Some(8 << 20), "{vols}");
    c.ok(&["service", "rm", "st"]);
    let s = c.json(&["--nodes", &m2, "cluster", "status"]);
    assert_eq!(s[0]["members"].as_array().map(|m| m.iter().filter(|m| m["voter"] == true).count()), Some(3), "{s}");

    nfs_slot_moves(&c, &image_ref, &nfs.address, 2, 3);

    // Drain a node: its tasks move, it runs nothing of the services.
    let n4 = c.node_id(3);
    c.ok(&["node", "update", &n4, "--availability", "drain"]);
    wait_for("the drained node to empty", SETTLE, || {
        c.containers(3, "web") == Some(0) && c.containers(3, "page") == Some(0)
    });
    c.settle("web", 12, &all[..4], "after a drain");

    // A rolling update of the replicated service across the nodes that
    // adds a readiness probe, then an update whose tasks fail: it rolls
    // back by itself and the replicas run again. (The probe's timeout is
    // that of five emulated VMs on two cores, not of real nodes: a 1 s
    // exec timeout made ready tasks flap there.)
    let out = c.ok(&[
        "service",
        "update",
        "web",
        "--probe",
        "readiness exec true interval=2s timeout=2s",
        "--update-parallelism",
        "4",
        "--update-monitor",
        "1s",
        "--update-failure-action",
        "rollback",
    ]);
    assert!(out.contains("completed: 12/12 tasks updated"), "{out}");
    let web = c.json(&["service", "ps", "web", "--running"]);
    let ready = web.as_array().unwrap().iter().filter(|t| t["health"] == "ready").count();
    assert_eq!(ready, 12, "{web}");
    let (ok, _, err) = c.ctl(&["service", "update", "web", "--args", "false"]);
    assert!(!ok && err.contains("rolled-back") && err.contains("new tasks failed"), "{err}");
    c.settle("web", 12, &all[..4], "after an update rolled back");

    c.ok(&["service", "rm", "web", "page"]);
    wait_for("every task container to go", SETTLE, || {
        (0..4).all(|i| c.containers(i, "web") == Some(0) && c.containers(i, "page") == Some(0))
    });

    pxe_node_joins_by_itself(&mut c, &image, dir.path(), &hub_path, &registry, &image_ref);
}

/// Zero touch: a machine with no disk boots over the network (iPXE from
/// its NIC, the image's `pxe/` over TFTP) with `orc.join=TOKEN@ADDR` among
/// its arguments, joins as a worker by itself and runs a task; its STATE
/// is tmpfs.
fn pxe_node_joins_by_itself(
    c: &mut Cluster,
    image: &Path,
    dir: &Path,
    hub: &Path,
    registry: &Registry,
    image_ref: &str,
) {
    let token = c.ok(&["cluster", "join-token", "worker"]).trim().to_string();
    let spec = orc_e2e::qemu::NodeSpec {
        name: "pxe1".into(),
        dir: dir.join("pxe1"),
        image: image.to_path_buf(),
        api_port: free_port(),
        l2: Some((hub.to_path_buf(), 6)),
        memory_mb: 1024,
        boot: orc_e2e::qemu::Boot::Pxe,
        extra_cmdline: format!("orc.join={token}@10.42.0.11:7443 orc.insecure_registries=10.0.2.2:{}", registry.port),
        ..Default::default()
    };
    c.nodes.push(Node::start(spec).unwrap());
    let pxe = c.nodes.len() - 1;
    let id = || {
        let nodes = c.json(&["node", "ls"]);
        nodes.as_array().and_then(|n| n.iter().find(|n| n["hostname"] == "pxe1" && n["status"] == "ready").cloned())
    };
    wait_for("the PXE-booted node ready in the cluster", BOOT, || id().is_some());
    let console = c.nodes[pxe].console_from(0);
    assert!(console.contains("root verified by dm-verity device=/dev/loop0"), "{console}");
    let node = id().unwrap();
    assert_eq!(node["role"], "worker", "{node}");
    let id = node["id"].as_str().unwrap().to_string();
    let constraint = format!("node.id=={id}");
    c.ok(&["service", "create", "--name", "onpxe", "--constraint", &constraint, image_ref, "--", "sleep", "3600"]);
    wait_for("a task running on the PXE-booted node", SETTLE, || {
        let t = c.json(&["service", "ps", "onpxe", "--running"]);
        t.as_array().is_some_and(|t| t.iter().any(|t| t["state"] == "running" && t["node_id"] == id.as_str()))
    });
    let h = c.json(&["--nodes", &c.api(pxe), "health"]);
    let state = h[0]["checks"].as_array().and_then(|c| c.iter().find(|c| c["name"] == "state").cloned());
    assert!(state.as_ref().is_some_and(|s| s["message"].as_str().is_some_and(|m| m.contains("is tmpfs"))), "{h}");
    c.ok(&["service", "rm", "onpxe"]);
}
