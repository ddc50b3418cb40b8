//! `cargo xtask bench network`: container to container across two nodes
//! over orc's VXLAN overlay, against host to host on the same two hosts
//! (the floor), in the same run:
//!
//! - two static release agents, each on a host of its own (a network
//!   namespace on a bridge: `orc_e2e::lan`), one manager and one worker;
//! - a server task on one node and a client task on the other, from an
//!   image with Debian's `iperf3` (and its shared objects) and `rr`
//!   (`bench/tools/rr.rs`, a TCP request/response probe: netperf's TCP_RR,
//!   which Debian does not ship), run through `orcctl container exec`;
//! - the floor: the same tools in the two hosts' namespaces directly.
//!
//! Figures (medians of the rounds): TCP throughput with 1 and 4 streams
//! (iperf3, 5 s), request/response latency p50 and p99 (20,000 one-byte
//! round trips) — host to host, task to task, task to the server's
//! service VIP, and a client on the LAN (the test host) to the port the
//! server publishes on the routing mesh, at the node running no task of
//! it (DNAT, masquerade, the overlay to the other node); DNS answers from the client's node (5,000 queries of the
//! server's name, `rr dns`); and the time from a new task recorded ready
//! to its address in the VIP's rule on both nodes (the nft chain polled on
//! each host).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::Context;
use orc_e2e::agent::Options;
use orc_e2e::cluster::LocalCluster;

use super::{machine, median};

mod swarm;
mod vm;

const ROUNDS: usize = 3;
const SECONDS: &str = "5";
const ROUND_TRIPS: &str = "20000";
const RR_PORT: &str = "7000";
const IPERF_PORT: &str = "5201";
/// The server's ports published on the routing mesh.
const MESH_IPERF_PORT: &str = "15201";
const MESH_RR_PORT: &str = "17000";
const DNS_QUERIES: &str = "5000";
/// New tasks timed from ready to in rotation.
const ROTATIONS: usize = 5;

/// Debian's iperf3 with the shared objects `ldd` names and the loader, as
/// image files.
fn iperf3_files() -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let bin = Path::new("/usr/bin/iperf3");
    let mut files = vec![("usr/bin/iperf3".to_string(), std::fs::read(bin).context("/usr/bin/iperf3")?)];
    let ldd = crate::deps::output(Command::new("ldd").arg(bin))?;
    for lib in ldd.lines().filter_map(|l| l.split("=>").nth(1)).filter_map(|r| r.split_whitespace().next()) {
        let name = Path::new(lib).file_name().context("a library without a name")?.to_string_lossy().into_owned();
        files.push((format!("usr/lib/x86_64-linux-gnu/{name}"), std::fs::read(lib)?));
    }
    files.push(("lib64/ld-linux-x86-64.so.2".into(), std::fs::read("/lib64/ld-linux-x86-64.so.2")?));
    Ok(files)
}

/// `bench/tools/rr.rs`, built static.
fn rr(ws: &Path, work: &Path) -> anyhow::Result<PathBuf> {
    let out = work.join("rr");
    let st = Command::new("rustc")
        .args(["-O", "-C", "target-feature=+crt-static", "--edition", "2021"])
        .arg(ws.join("bench/tools/rr.rs"))
        .arg("-o")
        .arg(&out)
        .status()?;
    anyhow::ensure!(st.success(), "building bench/tools/rr.rs failed");
    Ok(out)
}

/// iperf3's received throughput in Gbit/s, from its JSON.
fn gbits(json: &str) -> anyhow::Result<f64> {
    let v: serde_json::Value = serde_json::from_str(json).with_context(|| format!("iperf3 said: {json}"))?;
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .map(|b| b / 1e9)
        .with_context(|| format!("no throughput in iperf3's output: {json}"))
}

/// rr's "p50 p99 mean" in µs.
fn latency(out: &str) -> anyhow::Result<(f64, f64)> {
    let v: Vec<f64> = out.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    anyhow::ensure!(v.len() == 3, "rr said: {out}");
    Ok((v[0], v[1]))
}

#[derive(Default)]
struct Figures {
    floor: Path3,
    overlay: Path3,
    vip: Path3,
    mesh: Path3,
    dns_p50: Vec<f64>,
    dns_p99: Vec<f64>,
    /// ms from ready to in rotation on every node.
    rotation: Vec<f64>,
    /// The encrypted network beside the plain overlay, in two VMs.
    vm: vm::VmFigures,
    /// The peer's paths, on hosts of the same kind.
    swarm: swarm::SwarmFigures,
}

#[derive(Default)]
struct Path3 {
    one: Vec<f64>,
    four: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
}

/// Runs a command on one side of a path (a host namespace or a task).
trait Side {
    fn run(&self, args: &[&str]) -> anyhow::Result<String>;
}

struct Host<'a>(&'a orc_e2e::lan::Host);

/// The test host itself: a client on the LAN.
struct Lan;

impl Side for Lan {
    fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let (bin, rest) = args.split_first().context("an empty command")?;
        crate::deps::output(Command::new(bin).args(rest))
    }
}

impl Side for Host<'_> {
    fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        crate::deps::output(Command::new("nsenter").arg(format!("--net={}", self.0.path())).args(args))
    }
}

struct Task<'a> {
    c: &'a LocalCluster,
    node: String,
    container: String,
}

impl Side for Task<'_> {
    fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut a = vec!["--nodes", self.node.as_str(), "container", "exec", self.container.as_str(), "--"];
        a.extend_from_slice(args);
        let o = self.c.ctl(&a);
        anyhow::ensure!(o.ok, "exec {args:?}: {}", o.stderr);
        Ok(o.stdout)
    }
}

/// Where a client measures: the server's address and its iperf3 and rr ports.
struct Target<'a> {
    addr: &'a str,
    iperf: &'a str,
    rr: &'a str,
}

fn measure(
    client: &dyn Side,
    iperf3: &str,
    rr: &str,
    to: &Target,
    round_trips: &str,
    f: &mut Path3,
) -> anyhow::Result<()> {
    let (server, port) = (to.addr, to.iperf);
    f.one.push(gbits(&client.run(&[iperf3, "-c", server, "-p", port, "-t", SECONDS, "-J"])?)?);
    f.four.push(gbits(&client.run(&[iperf3, "-c", server, "-p", port, "-t", SECONDS, "-P", "4", "-J"])?)?);
    let (p50, p99) = latency(&client.run(&[rr, "client", &format!("{server}:{}", to.rr), round_trips])?)?;
    f.p50.push(p50);
    f.p99.push(p99);
    Ok(())
}

/// Kills the floor's servers when dropped.
struct Servers(Vec<Child>);

impl Drop for Servers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn run() -> anyhow::Result<()> {
    anyhow::ensure!(nix::unistd::geteuid().is_root(), "cargo xtask bench network needs root (network namespaces)");
    crate::deps::ensure()?;
    crate::deps::ensure_packages(&[("iperf3", "iperf3"), ("util-linux", "nsenter")])?;
    let ws = orc_e2e::paths::workspace();
    let rev = crate::image::git_revision(&ws);
    let agent = crate::image::static_binaries(&ws, &rev)?.join("orc-agent");
    let st = Command::new(env!("CARGO")).args(["build", "-p", "orcctl"]).current_dir(&ws).status()?;
    anyhow::ensure!(st.success(), "building orcctl failed");
    let work = orc_e2e::paths::target_dir().join("orc/bench/network");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let rr_bin = rr(&ws, &work)?;

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let registry = orc_e2e::registry::Registry::start_on_lan()?;
    let mut files = iperf3_files()?;
    files.push(("bin/rr".into(), std::fs::read(&rr_bin)?));
    let image = rt.block_on(registry.push(&orc_e2e::oci::busybox_plus(&files)?, "orc/net:1"))?;
    // For your own loops: only the VMs' part, its figures printed, no file written.
    if std::env::var("ORC_BENCH_NETWORK").as_deref() == Ok("vm") {
        let mut md = String::new();
        vm_table(&mut md, &mut vm::run(&files, 1)?);
        eprintln!("{md}");
        return Ok(());
    }

    eprintln!("xtask: starting two agents on hosts of their own");
    let opts = Options {
        runtime: true,
        lan: true,
        insecure_registries: vec![registry.host()],
        binary: Some(agent),
        ..Default::default()
    };
    let c = LocalCluster::start(1, 1, opts)?;
    let ids: Vec<String> = (0..2).map(|i| c.node_id(i)).collect::<anyhow::Result<_>>()?;
    let create = |name: &str, node: &str, publish: &[&str], cmd: &[&str]| -> anyhow::Result<()> {
        let constraint = format!("node.id=={node}");
        let mut a = vec!["service", "create", "--name", name, "--constraint", &constraint];
        for p in publish {
            a.extend_from_slice(&["--publish", p]);
        }
        a.extend_from_slice(&[&image, "--"]);
        a.extend_from_slice(cmd);
        let o = c.ctl(&a);
        anyhow::ensure!(o.ok, "creating {name}: {}", o.stderr);
        Ok(())
    };
    let serve = format!("/usr/bin/iperf3 -s -D && exec /bin/rr server {RR_PORT}");
    let published = [format!("{MESH_IPERF_PORT}:{IPERF_PORT}"), format!("{MESH_RR_PORT}:{RR_PORT}")];
    create("srv", &ids[1], &[&published[0], &published[1]], &["sh", "-c", &serve])?;
    create("cli", &ids[0], &[], &["sleep", "36000"])?;
    let task = |service: &str| -> Option<(String, String)> {
        let t = c.json(&["service", "ps", service, "--running"]);
        let t = t.as_array()?.iter().find(|t| t["state"] == "running" && t["address"] != "")?.clone();
        Some((t["address"].as_str()?.to_string(), t["container"].as_str()?.to_string()))
    };
    c.wait(std::time::Duration::from_secs(120), "the server and client tasks", |_| {
        task("srv").is_some() && task("cli").is_some()
    })?;
    let (srv_addr, _) = task("srv").context("no server task")?;
    let (_, cli_ctr) = task("cli").context("no client task")?;
    let client = Task { c: &c, node: c.agents[0].addr.clone(), container: cli_ctr };

    let hosts: Vec<&orc_e2e::lan::Host> = c.agents.iter().filter_map(|a| a.host.as_ref()).collect();
    anyhow::ensure!(hosts.len() == 2, "the agents have no hosts of their own");
    let ns = |h: &orc_e2e::lan::Host| format!("--net={}", h.path());
    let quiet =
        |cmd: &mut Command| -> anyhow::Result<Child> { Ok(cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn()?) };
    let _servers = Servers(vec![
        quiet(Command::new("nsenter").arg(ns(hosts[1])).args(["iperf3", "-s"]))?,
        quiet(Command::new("nsenter").arg(ns(hosts[1])).arg(&rr_bin).args(["server", RR_PORT]))?,
    ]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let floor_client = Host(hosts[0]);
    let floor_server = hosts[1].addr.to_string();
    let rr_path = rr_bin.to_string_lossy().into_owned();
    // The node without the server: the mesh takes the connection over the overlay.
    let mesh_addr = hosts[0].addr.to_string();

    let vip = c.json(&["service", "inspect", "srv"])["vips"]["default"].as_str().context("srv has no VIP")?.to_string();
    let resolv = client.run(&["cat", "/etc/resolv.conf"])?;
    let dns = resolv
        .lines()
        .find_map(|l| l.strip_prefix("nameserver "))
        .context("the client task has no nameserver")?
        .trim()
        .to_string();

    let mut f = Figures::default();
    for round in 0..ROUNDS {
        eprintln!("xtask: round {} of {ROUNDS}", round + 1);
        let at = |addr| Target { addr, iperf: IPERF_PORT, rr: RR_PORT };
        measure(&floor_client, "iperf3", &rr_path, &at(&floor_server), ROUND_TRIPS, &mut f.floor)?;
        measure(&client, "/usr/bin/iperf3", "/bin/rr", &at(&srv_addr), ROUND_TRIPS, &mut f.overlay)?;
        measure(&client, "/usr/bin/iperf3", "/bin/rr", &at(&vip), ROUND_TRIPS, &mut f.vip)?;
        let mesh = Target { addr: &mesh_addr, iperf: MESH_IPERF_PORT, rr: MESH_RR_PORT };
        measure(&Lan, "iperf3", &rr_path, &mesh, ROUND_TRIPS, &mut f.mesh)?;
        let (p50, p99) = latency(&client.run(&["/bin/rr", "dns", &dns, "srv", DNS_QUERIES])?)?;
        f.dns_p50.push(p50);
        f.dns_p99.push(p99);
    }
    for n in 2..2 + ROTATIONS {
        eprintln!("xtask: a new task into the rotation ({} of {ROTATIONS})", n - 1);
        f.rotation.push(into_rotation(&c, &hosts, &vip, n)?);
    }
    // The VMs get the machine to themselves.
    drop(_servers);
    drop(c);
    f.swarm = swarm::run(&files, &rr_bin, ROUNDS)?;
    eprintln!("xtask: an encrypted network beside the plain overlay, in two VMs");
    f.vm = vm::run(&files, ROUNDS)?;
    write(&ws, &rev, &mut f)
}

/// Scales `srv` to `n` tasks and returns the ms from the new task recorded
/// ready to its address in the VIP's chain on every host.
fn into_rotation(c: &LocalCluster, hosts: &[&orc_e2e::lan::Host], vip: &str, n: usize) -> anyhow::Result<f64> {
    let o = c.ctl(&["service", "scale", &format!("srv={n}")]);
    anyhow::ensure!(o.ok, "scaling srv: {}", o.stderr);
    let now_ms = || {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64() * 1e3).unwrap_or(0.0)
    };
    let chain = format!("svc-{vip}");
    let mut seen: Vec<Option<f64>> = vec![None; hosts.len()];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while seen.iter().any(Option::is_none) {
        anyhow::ensure!(std::time::Instant::now() < deadline, "{n} tasks never all in the rotation");
        for (h, at) in hosts.iter().zip(seen.iter_mut()).filter(|(_, s)| s.is_none()) {
            let rules = crate::deps::output(
                Command::new("nsenter")
                    .arg(format!("--net={}", h.path()))
                    .args(["nft", "list", "chain", "ip", "orc", &chain]),
            )
            .unwrap_or_default();
            if rules.matches("goto ep-").count() >= n {
                *at = Some(now_ms());
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let all = seen.into_iter().flatten().fold(0.0, f64::max);
    let tasks = c.json(&["service", "ps", "srv", "--running"]);
    let ready = tasks
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["ready_ms"].as_i64())
        .max()
        .context("no task of srv recorded ready")?;
    Ok(all - ready as f64)
}

fn write(ws: &Path, rev: &str, f: &mut Figures) -> anyhow::Result<()> {
    let mut md = String::new();
    md.push_str("# network\n\n");
    md.push_str(&format!("Command: `cargo xtask bench network` (revision {rev}).\n\n"));
    md.push_str(&format!("Machine: {}. Shared and noisy: compare medians and ratios, not single runs.\n\n", machine()));
    md.push_str(&format!(
        "Two static release agents (one manager, one worker), each on a host of its own: a network namespace with a \
         veth into a bridge (MTU 1500), as two machines on one L2. A server task on one node and a client task on the \
         other, each in its own namespace on orc's VXLAN overlay (MTU 1450), from an image with Debian's iperf3 and \
         `rr` (`bench/tools/rr.rs`: one-byte TCP request/response, netperf's TCP_RR, which Debian does not ship; and \
         DNS queries), run with `orcctl container exec`. The floor: the same tools between the two hosts' namespaces \
         directly. Through the VIP: the client to the server's service VIP (DNAT by the client node's nftables). \
         Through the routing mesh: the test host (a client on the LAN) to the ports the server publishes, at the \
         address of the node without the server (DNAT and masquerade there, then the overlay). \
         iperf3 {SECONDS} s, 1 and 4 streams; {ROUND_TRIPS} round trips (after 1,000 to warm up). {ROUNDS} rounds, \
         alternating; medians.\n\n"
    ));
    md.push_str(
        "| figure | host to host (floor) | task to task over the overlay | overlay / floor | task to the service's VIP \
         | VIP / floor | LAN client to a published port (mesh) | mesh / floor |\n|---|---|---|---|---|---|---|---|\n",
    );
    let (f1, o1, v1, m1) =
        (median(&mut f.floor.one), median(&mut f.overlay.one), median(&mut f.vip.one), median(&mut f.mesh.one));
    let (f4, o4, v4, m4) =
        (median(&mut f.floor.four), median(&mut f.overlay.four), median(&mut f.vip.four), median(&mut f.mesh.four));
    let (fp50, op50, vp50, mp50) =
        (median(&mut f.floor.p50), median(&mut f.overlay.p50), median(&mut f.vip.p50), median(&mut f.mesh.p50));
    let (fp99, op99, vp99, mp99) =
        (median(&mut f.floor.p99), median(&mut f.overlay.p99), median(&mut f.vip.p99), median(&mut f.mesh.p99));
    let pct = |x: f64, of: f64| x / of * 100.0;
    for (what, floor, o, v, m) in [("TCP, 1 stream", f1, o1, v1, m1), ("TCP, 4 streams", f4, o4, v4, m4)] {
        md.push_str(&format!(
            "| {what} | {floor:.2} Gbit/s | {o:.2} Gbit/s | {:.0} % | {v:.2} Gbit/s | {:.0} % | {m:.2} Gbit/s | {:.0} % |\n",
            pct(o, floor),
            pct(v, floor),
            pct(m, floor)
        ));
    }
    for (what, floor, o, v, m) in
        [("request/response p50", fp50, op50, vp50, mp50), ("request/response p99", fp99, op99, vp99, mp99)]
    {
        md.push_str(&format!(
            "| {what} | {floor:.1} µs | {o:.1} µs | +{:.1} µs | {v:.1} µs | +{:.1} µs | {m:.1} µs | +{:.1} µs |\n",
            o - floor,
            v - floor,
            m - floor
        ));
    }
    let (d50, d99) = (median(&mut f.dns_p50), median(&mut f.dns_p99));
    let rot_max = f.rotation.iter().copied().fold(0.0, f64::max);
    let rot = median(&mut f.rotation);
    md.push_str(&format!(
        "\nThe VIP adds {:+.1} µs at the median over task to task (target ≤ 50 µs).\n\n\
         | figure | value | target |\n|---|---|---|\n\
         | DNS answer of a service name from the client's node, p50 | {d50:.1} µs | |\n\
         | DNS answer, p99 | {d99:.1} µs | ≤ 1 ms |\n\
         | a new task recorded ready → in the VIP's rule on both nodes, median of {ROTATIONS} | {rot:.0} ms | ≤ 1 s |\n\
         | the same, slowest | {rot_max:.0} ms | |\n",
        vp50 - op50
    ));
    swarm_table(&mut md, f);
    vm_table(&mut md, &mut f.vm);
    md.push_str("\nTarget (the networking issue): overlay ≥ 90 % of the floor's throughput.\n");
    let out = ws.join("bench/results/network.md");
    std::fs::write(&out, &md)?;
    eprintln!("{md}\nxtask: wrote {}", out.display());
    Ok(())
}

/// The encrypted network's figures, from the VMs.
fn vm_table(md: &mut String, v: &mut vm::VmFigures) {
    md.push_str(&format!(
        "\n## An encrypted network, in two VMs\n\n\
         This host's kernel has no WireGuard, so the encrypted network is measured where orc runs it: two QEMU VMs \
         ({}, 1 vCPU each) booting orc's image on one L2 network, one manager and one worker. A client task on \
         node 1 and a server task on node 2 on `default` (VXLAN), and another pair on `secret` (`network create \
         --encrypted`: WireGuard, ChaCha20-Poly1305); the floor: tasks on the nodes' own network \
         (`--network host`), node to node. The same tools; {} round trips; {ROUNDS} rounds, alternating; medians. \
         Under TCG every instruction of the guests is emulated, crypto included: compare the ratios, not the \
         absolute figures, with real machines.\n\n\
         | figure | VM to VM (floor) | plain overlay | plain / floor | encrypted network | encrypted / floor \
         | encrypted / plain |\n|---|---|---|---|---|---|---|\n",
        v.accel,
        vm::VM_ROUND_TRIPS
    ));
    let pct = |x: f64, of: f64| x / of * 100.0;
    for (what, fl, p, e) in [
        ("TCP, 1 stream", median(&mut v.floor.one), median(&mut v.plain.one), median(&mut v.encrypted.one)),
        ("TCP, 4 streams", median(&mut v.floor.four), median(&mut v.plain.four), median(&mut v.encrypted.four)),
    ] {
        md.push_str(&format!(
            "| {what} | {:.0} Mbit/s | {:.0} Mbit/s | {:.0} % | {:.0} Mbit/s | {:.0} % | {:.0} % |\n",
            fl * 1e3,
            p * 1e3,
            pct(p, fl),
            e * 1e3,
            pct(e, fl),
            pct(e, p)
        ));
    }
    for (what, fl, p, e) in [
        ("request/response p50", median(&mut v.floor.p50), median(&mut v.plain.p50), median(&mut v.encrypted.p50)),
        ("request/response p99", median(&mut v.floor.p99), median(&mut v.plain.p99), median(&mut v.encrypted.p99)),
    ] {
        md.push_str(&format!(
            "| {what} | {fl:.0} µs | {p:.0} µs | +{:.0} µs | {e:.0} µs | +{:.0} µs | {:+.0} µs |\n",
            p - fl,
            e - fl,
            e - p
        ));
    }
}

/// orc beside Docker Swarm, path by path.
fn swarm_table(md: &mut String, f: &mut Figures) {
    let s = &mut f.swarm;
    md.push_str(&format!(
        "\n## Beside Docker Swarm\n\n\
         Docker {} in Swarm mode in the same run: three dockerd, each in a network namespace on one bridge (hosts \
         of the same kind as orc's), the same image and tools, a Swarm overlay network (VXLAN, MTU 1450) with the \
         server task on node 2 and the client task on node 1; the floor between Swarm's hosts. Not measurable on \
         this machine: Swarm's VIPs and routing mesh need IPVS (`CONFIG_IP_VS` is not set in this host's kernel) \
         and iptables rules (the host's firewall is nftables; the bench's dockerd run with `--iptables=false`), \
         its encrypted overlay IPsec ESP (`CONFIG_INET_ESP` is not set).\n\n\
         | figure | orc's floor | orc overlay | orc / floor | Swarm's floor | Swarm overlay | Swarm / floor \
         | orc / Swarm |\n|---|---|---|---|---|---|---|---|\n",
        s.version
    ));
    type Pick = fn(&mut Path3) -> &mut Vec<f64>;
    let rows: [(&str, Pick, bool); 4] = [
        ("TCP, 1 stream", |p| &mut p.one, true),
        ("TCP, 4 streams", |p| &mut p.four, true),
        ("request/response p50", |p| &mut p.p50, false),
        ("request/response p99", |p| &mut p.p99, false),
    ];
    for (what, pick, throughput) in rows {
        let m = |p: &mut Path3| median(pick(p));
        let (of, o, sf, so) = (m(&mut f.floor), m(&mut f.overlay), m(&mut s.floor), m(&mut s.overlay));
        let v = |x: f64| if throughput { format!("{x:.2} Gbit/s") } else { format!("{x:.1} µs") };
        let r =
            |a: f64, b: f64| if throughput { format!("{:.0} %", a / b * 100.0) } else { format!("{:+.1} µs", a - b) };
        md.push_str(&format!(
            "| {what} | {} | {} | {} | {} | {} | {} | {} |\n",
            v(of),
            v(o),
            r(o, of),
            v(sf),
            v(so),
            r(so, sf),
            r(o, so)
        ));
    }
}
