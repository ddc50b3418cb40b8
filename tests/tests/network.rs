//! Container networking between real agents on hosts of their own (root:
//! each agent in a network namespace on a test LAN, as nodes on one L2):
//! every task in a namespace of its own with an address from its node's
//! subnet; TCP and ping between tasks on two nodes over the VXLAN overlay;
//! outbound traffic masqueraded; generated hostname, /etc/hosts and
//! /etc/resolv.conf; the node's interfaces out of sight; a node leaving
//! takes its overlay entries off the others; addresses kept across an
//! agent restart and never given twice; networks as objects, kept apart;
//! one service name in two namespaces, two DNS names.

// The test harness: a failed unwrap is a failed test, with its line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv4Addr, TcpStream};
use std::process::Command;
use std::time::Duration;

use orc_e2e::agent::{can_run_containers, Options};
use orc_e2e::cluster::LocalCluster;
use orc_e2e::oci;
use orc_e2e::registry::Registry;

const SETTLE: Duration = Duration::from_secs(60);
/// How long a name may take to appear or go in DNS here (a second is what
/// is meant; the margin is for a loaded 2-core CI machine, not a promise).
const DNS_WAIT: Duration = Duration::from_secs(30);

/// The running tasks of `service`: (task id, node address, task address, container).
fn running(c: &LocalCluster, service: &str) -> Vec<(String, String, String, String)> {
    running_in(c, "default", service)
}

/// [`running`] of `service` in namespace `ns`.
fn running_in(c: &LocalCluster, ns: &str, service: &str) -> Vec<(String, String, String, String)> {
    let t = c.json(&["-N", ns, "service", "ps", service, "--running"]);
    let nodes = c.json(&["node", "ls"]);
    let addr_of = |id: &str| {
        nodes
            .as_array()
            .and_then(|n| n.iter().find(|n| n["id"] == id))
            .map(|n| n["addr"].as_str().unwrap_or_default().to_string())
    };
    t.as_array()
        .map(|ts| {
            ts.iter()
                .filter(|t| t["state"] == "running" && t["address"].as_str().is_some_and(|a| !a.is_empty()))
                .map(|t| {
                    (
                        t["id"].as_str().unwrap_or_default().to_string(),
                        addr_of(t["node_id"].as_str().unwrap_or_default()).unwrap_or_default(),
                        t["address"].as_str().unwrap_or_default().to_string(),
                        t["container"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The addresses `nslookup name` prints in task `ctr` (past the server's).
fn lookup(c: &LocalCluster, node: &str, ctr: &str, name: &str) -> Vec<String> {
    let (_, out) = c.exec(node, ctr, &["nslookup", name]);
    let answers = out.split_once("Name:").map(|(_, a)| a.to_string()).unwrap_or_default();
    let mut v: Vec<String> =
        answers.lines().filter_map(|l| l.trim().strip_prefix("Address:")).map(|a| a.trim().to_string()).collect();
    v.sort();
    v
}

/// What a failed DNS wait needs to be understood afterwards: the node's
/// links and bridge ports, its sockets on :53, its rules, the task's view
/// of its resolver, and the agent's lines about DNS and networks (the whole
/// log is too long to survive CI's excerpt).
fn dns_diagnosis(c: &LocalCluster, node: &str, ctr: &str) -> String {
    let Some(a) = c.agents.iter().find(|a| a.host.as_ref().is_some_and(|h| node.starts_with(&format!("{}:", h.addr))))
    else {
        return format!("no agent at {node}");
    };
    let ns = a.host.as_ref().map(|h| h.name.clone()).unwrap_or_default();
    let run = |args: &[&str]| {
        let o = Command::new("ip").args(["netns", "exec", &ns]).args(args).output();
        o.map(|o| {
            format!(
                "$ {}\n{}{}",
                args.join(" "),
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        })
        .unwrap_or_else(|e| format!("$ {}: {e}\n", args.join(" ")))
    };
    let mut out = String::new();
    for cmd in [
        &["ip", "-br", "addr"][..],
        &["bridge", "link"],
        &["ss", "-unlp", "sport", "=", ":53"],
        &["nft", "list", "ruleset"],
    ] {
        out.push_str(&run(cmd));
    }
    out.push_str(&c.exec(node, ctr, &["sh", "-c", "cat /etc/resolv.conf; ip addr; ip route"]).1);
    let keep = ["DNS", "dns", "network", "device", "lease", "panick", "WARN", "ERROR"];
    let log = a.log();
    out.push_str("\n--- the agent's lines about networks ---\n");
    for l in log.lines().filter(|l| keep.iter().any(|k| l.contains(k))).take(200) {
        out.push_str(l);
        out.push('\n');
    }
    out
}

/// An HTTP GET of `addr:80` from task `ctr`: the body, or the error.
fn get_from(c: &LocalCluster, node: &str, ctr: &str, addr: &str) -> (bool, String) {
    let script = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {addr} 80");
    let (ok, out) = c.exec(node, ctr, &["sh", "-c", &script]);
    (ok, out.rsplit("\r\n\r\n").next().unwrap_or_default().trim().to_string())
}

/// Names and virtual IPs: `who` answers its hostname over HTTP; tasks find
/// it by name through their node's DNS server and reach it through its VIP,
/// spread over its ready tasks; a killed task leaves the answers and the
/// rotation; with no task ready the VIP refuses at once.
fn services_by_name_and_vip(c: &LocalCluster, image: &str, node0: &str, ctr0: &str) {
    let serve = "mkdir -p /tmp/w && hostname > /tmp/w/index.html && exec httpd -f -p 80 -h /tmp/w";
    let out = c.ctl(&[
        "service",
        "create",
        "--name",
        "who",
        "--replicas",
        "3",
        "--stop-drain",
        "1s",
        image,
        "--",
        "sh",
        "-c",
        serve,
    ]);
    assert!(out.ok, "{}", out.stderr);
    c.wait(SETTLE, "3 who tasks running", |c| running(c, "who").len() == 3).unwrap();
    let who = running(c, "who");
    let vip = c.json(&["service", "inspect", "who"])["vips"]["default"].as_str().unwrap().to_string();
    assert!(vip.starts_with("10.255.0."), "from the pool's VIP block: {vip}");
    let mut addrs: Vec<String> = who.iter().map(|t| t.2.clone()).collect();
    addrs.sort();
    c.wait(DNS_WAIT, "DNS answering who and tasks.who", |c| {
        lookup(c, node0, ctr0, "who") == std::slice::from_ref(&vip) && lookup(c, node0, ctr0, "tasks.who") == addrs
    })
    .unwrap_or_else(|e| {
        let (who, tasks) = (lookup(c, node0, ctr0, "who"), lookup(c, node0, ctr0, "tasks.who"));
        panic!("{e}: {who:?} {tasks:?}\n{}", dns_diagnosis(c, node0, ctr0))
    });
    assert_eq!(lookup(c, node0, ctr0, "who.default"), std::slice::from_ref(&vip));

    // Through the VIP, spread over the three.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..15 {
        let (ok, body) = get_from(c, node0, ctr0, &vip);
        assert!(ok && !body.is_empty(), "GET through the VIP: {body}");
        seen.insert(body);
    }
    assert!(seen.len() >= 2, "15 requests through the VIP reached {seen:?}");
    // From a task of the service itself (it may land on itself: hairpin).
    let (_, n1, _, c1) = &who[0];
    // Its node answers the name once it has loaded the VIP's rules.
    c.wait(DNS_WAIT, "who's node answering tasks.who", |c| lookup(c, n1, c1, "tasks.who") == addrs).unwrap();
    for _ in 0..6 {
        let (ok, body) = get_from(c, n1, c1, &vip);
        assert!(ok && !body.is_empty(), "a task through its own service's VIP: {body}");
    }

    // A killed task leaves the answers and the rotation.
    let (kid, kn, kaddr, kctr) = &who[2];
    let out = c.ctl(&["--nodes", kn, "container", "kill", kctr, "--signal", "KILL"]);
    assert!(out.ok, "{}", out.stderr);
    let killed = std::time::Instant::now();
    c.wait(DNS_WAIT, "the killed task out of tasks.who", |c| !lookup(c, node0, ctr0, "tasks.who").contains(kaddr))
        .unwrap();
    eprintln!("a killed task left DNS in {:?}", killed.elapsed());
    for _ in 0..8 {
        let (ok, body) = get_from(c, node0, ctr0, &vip);
        assert!(ok && body != kid[..12], "out of the rotation: {body}");
    }

    // No task ready: refused at once rather than left to time out.
    let out = c.ctl(&["service", "scale", "who=0"]);
    assert!(out.ok, "{}", out.stderr);
    c.wait(SETTLE, "who at 0 in DNS", |c| lookup(c, node0, ctr0, "tasks.who").is_empty()).unwrap();
    let start = std::time::Instant::now();
    let (_, out) = c.exec(node0, ctr0, &["sh", "-c", &format!("nc -w 5 {vip} 80 </dev/null; echo rc=$?")]);
    assert!(out.contains("refused") && start.elapsed() < Duration::from_secs(4), "{out} after {:?}", start.elapsed());
    assert!(c.ctl(&["service", "rm", "who"]).ok);
}

/// One name in two namespaces: `echo` is default's, `echo.team-a` is
/// team-a's from anywhere, and a team-a task's `echo` is team-a's (its
/// resolv.conf searches its namespace first).
fn namespaces_in_dns(c: &LocalCluster, image: &str, node0: &str, ctr0: &str) {
    let ok = |args: &[&str]| {
        let o = c.ctl(args);
        assert!(o.ok, "{args:?}: {}", o.stderr);
    };
    ok(&["namespace", "create", "team-a"]);
    for ns in ["default", "team-a"] {
        ok(&["-N", ns, "service", "create", "--name", "echo", image, "--", "sleep", "3600"]);
    }
    c.wait(SETTLE, "both echo tasks running", |c| {
        running_in(c, "default", "echo").len() == 1 && running_in(c, "team-a", "echo").len() == 1
    })
    .unwrap();
    let vip =
        |ns: &str| c.json(&["-N", ns, "service", "inspect", "echo"])["vips"]["default"].as_str().unwrap().to_string();
    let (ours, theirs) = (vip("default"), vip("team-a"));
    assert_ne!(ours, theirs);
    c.wait(DNS_WAIT, "DNS answering echo and echo.team-a", |c| {
        lookup(c, node0, ctr0, "echo") == std::slice::from_ref(&ours)
            && lookup(c, node0, ctr0, "echo.team-a") == std::slice::from_ref(&theirs)
    })
    .unwrap_or_else(|e| {
        let raw = c.exec(node0, ctr0, &["nslookup", "echo"]).1;
        panic!("{e}: {raw}\n{:?}\n{}", lookup(c, node0, ctr0, "echo.team-a"), dns_diagnosis(c, node0, ctr0))
    });
    let (_, tn, _, tc) = running_in(c, "team-a", "echo").remove(0);
    let (_, resolv) = c.exec(&tn, &tc, &["cat", "/etc/resolv.conf"]);
    assert!(resolv.lines().any(|l| l.starts_with("search team-a")), "{resolv}");
    c.wait(DNS_WAIT, "team-a's task resolving echo as its own", |c| {
        lookup(c, &tn, &tc, "echo") == std::slice::from_ref(&theirs)
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}", lookup(c, &tn, &tc, "echo")));

    // A network of team-a: its service is found there by `db`, `db.back`
    // and `db.back.team-a`, and not from default's network.
    ok(&["-N", "team-a", "network", "create", "back"]);
    ok(&["-N", "team-a", "service", "create", "--name", "db", "--network", "back", image, "--", "sleep", "3600"]);
    c.wait(SETTLE, "team-a's db running", |c| running_in(c, "team-a", "db").len() == 1).unwrap();
    let db = c.json(&["-N", "team-a", "service", "inspect", "db"]);
    let db_vip = db["vips"]["back"].as_str().unwrap_or_else(|| panic!("a VIP on back: {db}")).to_string();
    assert_eq!(db["networks"], serde_json::json!(["back"]), "{db}");
    let (_, dn, _, dc) = running_in(c, "team-a", "db").remove(0);
    c.wait(DNS_WAIT, "db resolved on team-a's back", |c| {
        ["db", "db.back", "db.back.team-a"].iter().all(|n| lookup(c, &dn, &dc, n) == std::slice::from_ref(&db_vip))
    })
    .unwrap_or_else(|e| panic!("{e}: {:?} {:?}", lookup(c, &dn, &dc, "db"), lookup(c, &dn, &dc, "db.back")));
    assert!(lookup(c, node0, ctr0, "db.team-a").is_empty(), "db resolved off its network");
    assert!(lookup(c, &tn, &tc, "db").is_empty(), "team-a's echo is on default, not on back");
    let busy = c.ctl(&["namespace", "rm", "team-a"]);
    assert!(!busy.ok && busy.stderr.contains("networks"), "{}", busy.stderr);
    ok(&["-N", "team-a", "service", "rm", "db"]);
    c.wait(SETTLE, "team-a's back free", |c| c.ctl(&["-N", "team-a", "network", "rm", "back"]).ok).unwrap();

    for ns in ["default", "team-a"] {
        ok(&["-N", ns, "service", "rm", "echo"]);
    }
    c.wait(SETTLE, "team-a's echo gone", |c| c.ctl(&["namespace", "rm", "team-a"]).ok).unwrap();
}

/// Networks as objects: a service on `back` is found by name and reached
/// through its VIP and its tasks' addresses from a task joining `back` as
/// its second network, and is neither
/// resolved nor reached from a task on `default` alone; a network in use
/// is not removed, and is once unused.
fn networks_apart(c: &LocalCluster, image: &str, node0: &str, ctr0: &str) {
    let out = c.ctl(&["network", "create", "back", "--subnet", "172.30.0.0/16", "--attachable"]);
    assert!(out.ok, "{}", out.stderr);
    let again = c.ctl(&["network", "create", "back"]);
    assert!(!again.ok && again.stderr.contains("exists"), "{}", again.stderr);
    let ls = c.json(&["network", "ls"]);
    let names: Vec<&str> = ls.as_array().unwrap().iter().filter_map(|n| n["name"].as_str()).collect();
    assert_eq!(names, ["default", "back"]);
    let nope = c.ctl(&["service", "create", "--name", "x", "--network", "nope", image, "--", "sleep", "1"]);
    assert!(!nope.ok && nope.stderr.contains("orcctl network create nope"), "{}", nope.stderr);

    let serve = "mkdir -p /tmp/w && hostname > /tmp/w/index.html && exec httpd -f -p 80 -h /tmp/w";
    let api =
        ["service", "create", "--name", "api", "--replicas", "2", "--network", "back", image, "--", "sh", "-c", serve];
    assert!(c.ctl(&api).ok);
    let front = [
        "service",
        "create",
        "--name",
        "front",
        "--network",
        "default",
        "--network",
        "back",
        image,
        "--",
        "sleep",
        "3600",
    ];
    assert!(c.ctl(&front).ok);
    c.wait(SETTLE, "api and front running", |c| running(c, "api").len() == 2 && running(c, "front").len() == 1)
        .unwrap_or_else(|e| panic!("{e}\n{}", c.ctl(&["service", "ps", "api"]).stdout));
    let api_tasks = running(c, "api");
    assert!(api_tasks.iter().all(|t| t.2.starts_with("172.30.")), "addresses from back's subnet: {api_tasks:?}");
    let vip = c.json(&["service", "inspect", "api"])["vips"]["back"].as_str().unwrap().to_string();
    assert!(vip.starts_with("172.30.255."), "{vip}");
    let (_, fnode, _, fctr) = &running(c, "front")[0];
    let (_, dev) = c.exec(fnode, fctr, &["cat", "/proc/net/dev"]);
    assert!(dev.contains("eth1:"), "an interface per network: {dev}");
    c.wait(DNS_WAIT, "api resolved on back", |c| lookup(c, fnode, fctr, "api") == [vip.clone()]).unwrap();
    assert_eq!(lookup(c, fnode, fctr, "api.back"), std::slice::from_ref(&vip));
    let (ok, body) = get_from(c, fnode, fctr, &vip);
    assert!(ok && !body.is_empty(), "through back's VIP: {body}");
    // back is front's second network: each api task, on whichever node,
    // by its address (routed through front's back interface).
    for (_, node, addr, _) in &api_tasks {
        let (ok, body) = get_from(c, fnode, fctr, addr);
        assert!(ok && !body.is_empty(), "api's task on {node} at {addr} from front on {fnode}: {body}");
    }

    // A standalone container joins back (attachable): it resolves and
    // reaches api, and front reaches it by its address. default is not
    // attachable.
    let run = |network: &str| {
        let probe = ["--nodes", node0, "container", "run", "--name", "probe", "--network", network, image];
        c.ctl(&[&probe[..], &["--", "sh", "-c", serve]].concat())
    };
    let refused = run("default");
    assert!(!refused.ok && refused.stderr.contains("--attachable"), "{}", refused.stderr);
    let joined = run("back");
    assert!(joined.ok, "{}", joined.stderr);
    let probe = c.json(&["--nodes", node0, "container", "inspect", "probe"]);
    let probe_addr = probe[0]["addresses"]["back"].as_str().unwrap_or_default().to_string();
    assert!(probe_addr.starts_with("172.30."), "an address on back: {probe}");
    c.wait(DNS_WAIT, "api resolved from the container", |c| lookup(c, node0, "probe", "api") == [vip.clone()]).unwrap();
    let (ok, body) = get_from(c, node0, "probe", &vip);
    assert!(ok && !body.is_empty(), "api's VIP from the container: {body}");
    let (ok, body) = get_from(c, fnode, fctr, &probe_addr);
    assert_eq!((ok, body.as_str()), (true, "probe"), "the container from front");
    assert!(c.ctl(&["--nodes", node0, "container", "rm", "-f", "probe"]).ok);
    let gone = c.ctl(&["--nodes", node0, "container", "inspect", "probe"]);
    assert!(!gone.ok, "{}", gone.stdout);

    // From default alone: no name, no route.
    assert!(lookup(c, node0, ctr0, "api").is_empty(), "api resolved off its network");
    for (_, _, addr, _) in &api_tasks {
        let (ok, out) = c.exec(node0, ctr0, &["ping", "-c", "1", "-W", "2", addr]);
        assert!(!ok, "ping across networks went through: {out}");
        let (ok, body) = get_from(c, node0, ctr0, addr);
        assert!(!ok || body.is_empty(), "TCP across networks went through: {body}");
    }

    let inspect = c.json(&["network", "inspect", "back"]);
    assert_eq!(inspect["leases"].as_array().map(|l| l.len()), Some(3), "{inspect}");
    assert_eq!(inspect["tasks"].as_array().map(|t| t.len()), Some(3), "{inspect}");
    let rm = c.ctl(&["network", "rm", "back"]);
    assert!(!rm.ok && rm.stderr.contains("in use by services api, front"), "{}", rm.stderr);
    assert!(c.ctl(&["service", "rm", "api"]).ok && c.ctl(&["service", "rm", "front"]).ok);
    c.wait(SETTLE, "back removed once unused", |c| c.ctl(&["network", "rm", "back"]).ok).unwrap();
}

/// An HTTP GET of `path` on `addr:port` from this process (a client on the
/// LAN): the body, or what went wrong.
fn get_on(addr: Ipv4Addr, port: u16, path: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    let t = Duration::from_secs(5);
    let mut s = TcpStream::connect_timeout(&(addr, port).into(), t).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(t)).map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.0\r\n\r\n").map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    // The body: past the last blank line (a CGI script's own headers end with "\n\n").
    let out = out.replace("\r\n", "\n");
    Ok(out.rsplit("\n\n").next().unwrap_or_default().trim().to_string())
}

/// The client's address a task saw (busybox httpd gives `[::ffff:a.b.c.d]`).
fn peer_seen(addr: Ipv4Addr, port: u16) -> String {
    let got = get_on(addr, port, "/cgi-bin/peer").unwrap_or_else(|e| panic!("{addr}:{port}/cgi-bin/peer: {e}"));
    got.trim_start_matches("[::ffff:").trim_end_matches(']').to_string()
}

/// A web server answering its hostname at `/` and the client's address
/// at `/cgi-bin/peer`.
const SERVE_PEER: &str = "mkdir -p /tmp/w/cgi-bin && hostname > /tmp/w/index.html \
    && printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho $REMOTE_ADDR\\n' > /tmp/w/cgi-bin/peer \
    && chmod +x /tmp/w/cgi-bin/peer && exec httpd -f -p 80 -h /tmp/w";

/// The routing mesh, from a client on the LAN: an ingress port answers on
/// every node (also those running none of its tasks), spread over the
/// tasks and masqueraded; a mesh port is the cluster's, refused to a
/// second service; local mode answers with the node's own task and keeps
/// the client's address; host mode answers only where a task runs; with
/// no task ready a published port refuses at once.
fn routing_mesh(c: &LocalCluster, image: &str) {
    let nodes: Vec<Ipv4Addr> = c.agents.iter().map(|a| a.host.as_ref().unwrap().addr).collect();
    let client = orc_e2e::lan::Lan::get().unwrap().gateway();
    let hostnames =
        |service: &str| -> Vec<String> { running(c, service).iter().map(|t| t.0[..12].to_string()).collect() };
    let on_node = |service: &str, node: Ipv4Addr| -> Option<String> {
        running(c, service).into_iter().find(|t| t.1.starts_with(&format!("{node}:"))).map(|t| t.0[..12].to_string())
    };
    let create = |args: &[&str]| {
        let mut all = vec!["service", "create"];
        all.extend_from_slice(args);
        all.extend_from_slice(&[image, "--", "sh", "-c", SERVE_PEER]);
        let out = c.ctl(&all);
        assert!(out.ok, "{}", out.stderr);
    };

    // Ingress: two tasks, three nodes; every node answers.
    create(&["--name", "edge", "--replicas", "2", "--publish", "8080:80"]);
    c.wait(SETTLE, "2 edge tasks running", |c| running(c, "edge").len() == 2).unwrap();
    let edge = hostnames("edge");
    for node in &nodes {
        c.wait(Duration::from_secs(10), &format!("{node}:8080 answering"), |_| {
            get_on(*node, 8080, "/").is_ok_and(|b| edge.contains(&b))
        })
        .unwrap_or_else(|e| panic!("{e}: {:?}", get_on(*node, 8080, "/")));
    }
    let idle = nodes.iter().find(|n| on_node("edge", **n).is_none()).expect("a node without an edge task");
    // Spread over both once the idle node knows both (its map may hold
    // the first ready task a moment before the second).
    let seen = std::cell::RefCell::new(std::collections::BTreeSet::new());
    c.wait(Duration::from_secs(10), "requests through the idle node reaching both tasks", |_| {
        for _ in 0..12 {
            let body = get_on(*idle, 8080, "/").unwrap();
            assert!(edge.contains(&body), "{body} not one of {edge:?}");
            seen.borrow_mut().insert(body);
        }
        seen.borrow().len() == 2
    })
    .unwrap_or_else(|e| panic!("{e}: requests to {idle} reached {:?}", seen.borrow()));
    let peer = peer_seen(*idle, 8080);
    assert!(
        peer.parse::<Ipv4Addr>().is_ok() && peer != client.to_string(),
        "ingress is masqueraded: the task saw {peer}"
    );
    let ls = c.ctl(&["service", "ls"]).stdout;
    assert!(ls.contains("8080->80/tcp"), "{ls}");

    // A mesh port is the cluster's.
    let clash = c.ctl(&["service", "create", "--name", "clash", "--publish", "8080:90", image]);
    assert!(!clash.ok && clash.stderr.contains("8080/tcp is published by service edge"), "{}", clash.stderr);

    // Local: the node's own task, the client's address.
    create(&["--name", "near", "--mode", "global", "--publish", "published=8081,target=80,mode=local"]);
    c.wait(SETTLE, "3 near tasks running", |c| running(c, "near").len() == 3).unwrap();
    for node in &nodes {
        let own = on_node("near", *node).unwrap();
        c.wait(Duration::from_secs(10), &format!("{node}:8081 answering"), |_| {
            get_on(*node, 8081, "/") == Ok(own.clone())
        })
        .unwrap_or_else(|e| panic!("{e}: {:?}", get_on(*node, 8081, "/")));
        assert_eq!(peer_seen(*node, 8081), client.to_string(), "local mode keeps the client");
    }

    // Host: only where a task runs.
    create(&["--name", "pinned", "--publish", "published=8082,target=80,mode=host"]);
    c.wait(SETTLE, "the pinned task running", |c| running(c, "pinned").len() == 1).unwrap();
    let (task, at) = {
        let t = &running(c, "pinned")[0];
        (t.0[..12].to_string(), nodes.iter().copied().find(|n| t.1.starts_with(&format!("{n}:"))).unwrap())
    };
    c.wait(Duration::from_secs(10), "the pinned node answering", |_| get_on(at, 8082, "/") == Ok(task.clone()))
        .unwrap_or_else(|e| panic!("{e}: {:?}", get_on(at, 8082, "/")));
    for other in nodes.iter().filter(|n| **n != at) {
        let got = get_on(*other, 8082, "/");
        assert!(got.as_ref().is_err_and(|e| e.contains("refused")), "{other}:8082 without a task: {got:?}");
    }

    // No task ready: refused at once; the port is given back with the service.
    assert!(c.ctl(&["service", "scale", "edge=0"]).ok);
    c.wait(SETTLE, "edge at 0", |c| running(c, "edge").is_empty()).unwrap();
    c.wait(Duration::from_secs(10), "8080 refused", |_| {
        get_on(nodes[0], 8080, "/").is_err_and(|e| e.contains("refused"))
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}", get_on(nodes[0], 8080, "/")));
    for s in ["edge", "near", "pinned"] {
        assert!(c.ctl(&["service", "rm", s]).ok);
    }
    let again = c.ctl(&["service", "create", "--name", "clash", "--publish", "8080:90", image]);
    assert!(again.ok, "{}", again.stderr);
    assert!(c.ctl(&["service", "rm", "clash"]).ok);
}

/// Routes orc programmed on the VXLAN device in host `ns`.
fn overlay_routes(ns: &str) -> Vec<String> {
    let o = Command::new("ip").args(["-n", ns, "route", "show", "dev", "orc-vx256"]).output().unwrap();
    String::from_utf8_lossy(&o.stdout).lines().filter(|l| l.contains("onlink")).map(str::to_string).collect()
}

#[test]
fn tasks_talk_across_nodes_over_the_overlay() {
    if !can_run_containers() {
        eprintln!("skipped: container networking needs root");
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let registry = Registry::start_on_lan().unwrap();
    let image = rt.block_on(registry.push(&oci::busybox(0).unwrap(), "orc/busybox:1")).unwrap();
    let opts = Options { runtime: true, lan: true, insecure_registries: vec![registry.host()], ..Default::default() };
    let mut c = LocalCluster::start(1, 2, opts).unwrap();
    let ns: Vec<String> = c.agents.iter().map(|a| a.host.as_ref().unwrap().name.clone()).collect();

    // Every node has its subnet and a route to each other node's.
    c.wait(SETTLE, "each node's overlay reaching the two others", |_| ns.iter().all(|n| overlay_routes(n).len() == 2))
        .unwrap_or_else(|e| panic!("{e}: {:?}", ns.iter().map(|n| overlay_routes(n)).collect::<Vec<_>>()));

    // Each node's bridge has an address the agent set: one the kernel
    // picked would follow the lowest of its ports' as tasks come and go,
    // and cut tasks off from their gateway while their neighbour entry
    // holds the old one.
    for n in &ns {
        let sys = |f: &str| {
            let o = Command::new("ip").args(["netns", "exec", n, "cat", &format!("/sys/class/net/orc0/{f}")]).output();
            o.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default()
        };
        assert_eq!(sys("addr_assign_type"), "3", "{n}'s bridge address set (NET_ADDR_SET), not the kernel's");
        assert!(sys("address").starts_with("02:62:0a:00:"), "{n}'s bridge: {}", sys("address"));
    }

    // Three web servers, one per node, each in a namespace of its own.
    let out = c.ctl(&[
        "service", "create", "--name", "web", "--mode", "global", &image, "--", "httpd", "-f", "-p", "80", "-h", "/www",
    ]);
    assert!(out.ok, "{}", out.stderr);
    c.wait(SETTLE, "3 web tasks running with addresses", |c| running(c, "web").len() == 3)
        .unwrap_or_else(|e| panic!("{e}\n{}", c.ctl(&["service", "ps", "web"]).stdout));
    let web = running(&c, "web");
    let subnets: std::collections::BTreeSet<String> =
        web.iter().map(|(_, _, a, _)| a.rsplit_once('.').unwrap().0.to_string()).collect();
    assert_eq!(subnets.len(), 3, "a subnet per node: {web:?}");
    assert!(web.iter().all(|(_, _, a, _)| a.starts_with("10.")), "{web:?}");
    let ps = c.ctl(&["service", "ps", "web"]).stdout;
    assert!(ps.contains("ADDRESS") && ps.contains(&web[0].2), "{ps}");

    // From the task on one node to the others: TCP and ICMP over the overlay.
    let (id0, node0, _, ctr0) = &web[0];
    let get = |host: &str, port: &str, path: &str| {
        let script = format!("printf 'GET {path} HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {host} {port}");
        c.exec(node0, ctr0, &["sh", "-c", &script])
    };
    for (_, _, addr, _) in &web[1..] {
        let (ok, body) = get(addr, "80", "/");
        assert!(ok && body.contains(oci::INDEX_HTML), "TCP to {addr}: {body}");
        let (ok, out) = c.exec(node0, ctr0, &["ping", "-c", "1", "-W", "3", addr]);
        assert!(ok, "ping {addr}: {out}");
    }
    // Outbound, masqueraded: the registry on the LAN answers.
    let (ok, body) = get(&registry.ip.to_string(), &registry.port.to_string(), "/v2/");
    assert!(ok && body.contains("200 OK"), "outbound to the LAN: {body}");

    services_by_name_and_vip(&c, &image, node0, ctr0);
    namespaces_in_dns(&c, &image, node0, ctr0);
    networks_apart(&c, &image, node0, ctr0);
    routing_mesh(&c, &image);

    // Its own identity and files; the node's interfaces out of sight.
    let (_, hostname) = c.exec(node0, ctr0, &["hostname"]);
    assert_eq!(hostname.trim(), &id0[..12]);
    let (_, hosts) = c.exec(node0, ctr0, &["cat", "/etc/hosts"]);
    assert!(hosts.contains(&format!("{}\t{}", web[0].2, &id0[..12])), "{hosts}");
    let (_, resolv) = c.exec(node0, ctr0, &["cat", "/etc/resolv.conf"]);
    let gateway = format!("{}.1", web[0].2.rsplit_once('.').unwrap().0);
    assert!(resolv.starts_with(&format!("nameserver {gateway}\n")), "the node's DNS server: {resolv}");
    let (_, dev) = c.exec(node0, ctr0, &["cat", "/proc/net/dev"]);
    let ifaces: Vec<&str> = dev.lines().skip(2).filter_map(|l| l.split(':').next()).map(str::trim).collect();
    assert_eq!(ifaces.len(), 2, "lo and eth0 only: {ifaces:?}");

    // An agent restart keeps its task's address; a new task gets another.
    let before = running(&c, "web");
    c.agents[2].restart().unwrap();
    c.wait(SETTLE, "the restarted node reporting again", |c| {
        c.json(&["node", "ls"]).as_array().is_some_and(|n| n.iter().all(|n| n["status"] == "ready"))
    })
    .unwrap();
    let out = c.ctl(&["service", "create", "--name", "more", "--replicas", "3", &image, "--", "sleep", "3600"]);
    assert!(out.ok, "{}", out.stderr);
    c.wait(SETTLE, "3 more tasks with addresses", |c| running(c, "more").len() == 3).unwrap();
    let mut all: Vec<String> = running(&c, "web").into_iter().chain(running(&c, "more")).map(|t| t.2).collect();
    assert_eq!(
        running(&c, "web").iter().map(|t| &t.2).collect::<Vec<_>>(),
        before.iter().map(|t| &t.2).collect::<Vec<_>>()
    );
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 6, "never an address twice: {all:?}");

    // A node leaving: its subnet leaves every other node's overlay.
    let gone = c.agents[2].addr.clone();
    let victim = c.json(&["node", "ls"]).as_array().unwrap().iter().find(|n| n["addr"] == gone.as_str()).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let _ = c.agents[2].child.kill();
    let out = c.ctl(&["node", "rm", "--force", &victim]);
    assert!(out.ok, "{}", out.stderr);
    c.wait(Duration::from_secs(10), "the others' overlay down to one route", |_| {
        overlay_routes(&ns[0]).len() == 1 && overlay_routes(&ns[1]).len() == 1
    })
    .unwrap();
}
