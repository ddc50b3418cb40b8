//! `cargo xtask bench cluster`: orc against Docker Swarm on this machine,
//! in the same run, each with three nodes (one manager, two workers) and
//! the same busybox image:
//!
//! - orc: three agent processes (the static release binary nodes run),
//!   each in a network namespace on a bridge (as Swarm's) and a private
//!   mount namespace with cgroup2, pulling the image from a docker-registry
//!   on the bridge, services on the host network;
//! - Swarm: three `dockerd` (Debian's docker.io) in network namespaces on a
//!   bridge, the image loaded from a `docker save` archive, services on the
//!   host network (as orc's tasks).
//!
//! Figures: service create → 20 and → 100 replicas running; a worker's
//! agent killed → its tasks running on the others; service updates per
//! second (a label: no task is replaced).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use orc_e2e::agent::Options;
use orc_e2e::cluster::LocalCluster;
use orc_proto::cluster::services_client::ServicesClient;
use orcctl::connect::Trust;

use crate::bench::dockerd::{kill_matching, run_cmd, unmount_under, Dockerd};
use crate::bench::{machine, versus_row};

const ROUNDS: usize = 3;
const UPDATES: usize = 40;
const LIMIT: Duration = Duration::from_secs(600);
pub(super) const IMAGE: &str = "orc/busybox:1";

fn ip(args: &[&str]) -> anyhow::Result<String> {
    run_cmd(Command::new("ip").args(args))
}

/// Three dockerd in network namespaces `orcbench1..3` on bridge `orcbench0`.
pub(super) struct Swarm {
    work: PathBuf,
    daemons: Vec<Option<Dockerd>>,
}

impl Swarm {
    pub(super) fn ns(i: usize) -> String {
        format!("orcbench{i}")
    }

    pub(super) fn addr(i: usize) -> String {
        format!("10.77.0.{}", 10 + i)
    }

    fn cleanup_network() {
        let _ = ip(&["link", "del", "orcbench0"]);
        for i in 1..=3 {
            let _ = ip(&["link", "del", &format!("obv{i}")]);
            let _ = ip(&["netns", "del", &Self::ns(i)]);
        }
    }

    pub(super) fn start(work: &Path, image_tar: &Path) -> anyhow::Result<Self> {
        kill_matching(&work.display().to_string());
        Self::cleanup_network();
        unmount_under(work);
        if work.exists() {
            std::fs::remove_dir_all(work)
                .with_context(|| format!("removing {} (left by an earlier run)", work.display()))?;
        }
        std::fs::create_dir_all(work)?;
        ip(&["link", "add", "orcbench0", "type", "bridge"])?;
        ip(&["addr", "add", "10.77.0.1/24", "dev", "orcbench0"])?;
        ip(&["link", "set", "orcbench0", "up"])?;
        let mut s = Swarm { work: work.to_path_buf(), daemons: vec![None, None, None, None] };
        for i in 1..=3 {
            let ns = Self::ns(i);
            ip(&["netns", "add", &ns])?;
            let (host, guest) = (format!("obv{i}"), format!("obp{i}"));
            ip(&["link", "add", &host, "type", "veth", "peer", "name", &guest])?;
            ip(&["link", "set", &guest, "netns", &ns])?;
            ip(&["link", "set", &host, "master", "orcbench0", "up"])?;
            ip(&["netns", "exec", &ns, "ip", "addr", "add", &format!("{}/24", Self::addr(i)), "dev", &guest])?;
            ip(&["netns", "exec", &ns, "ip", "link", "set", &guest, "up"])?;
            ip(&["netns", "exec", &ns, "ip", "link", "set", "lo", "up"])?;
            s.start_daemon(i)?;
            s.docker(i, &["load", "-q", "-i", &image_tar.display().to_string()])?;
        }
        s.docker(1, &["swarm", "init", "--advertise-addr", &Self::addr(1)])?;
        let token = s.docker(1, &["swarm", "join-token", "-q", "worker"])?;
        for i in 2..=3 {
            s.docker(
                i,
                &[
                    "swarm",
                    "join",
                    "--advertise-addr",
                    &Self::addr(i),
                    "--token",
                    token.trim(),
                    &format!("{}:2377", Self::addr(1)),
                ],
            )?;
        }
        Ok(s)
    }

    fn start_daemon(&mut self, i: usize) -> anyhow::Result<()> {
        self.daemons[i] = Some(Dockerd::start(&self.work.join(format!("dk{i}")), Some(&Self::ns(i)), &Self::ns(i))?);
        Ok(())
    }

    pub(super) fn docker(&self, i: usize, args: &[&str]) -> anyhow::Result<String> {
        match &self.daemons[i] {
            Some(d) => d.docker(args),
            None => bail!("dockerd {i} is not running"),
        }
    }

    /// Kills the node's dockerd and everything it started (its containers too).
    fn kill(&mut self, i: usize) {
        if let Some(mut d) = self.daemons[i].take() {
            d.kill();
        }
    }

    /// Running tasks of `service`, optionally not on node `skip`'s hostname.
    pub(super) fn running(&self, service: &str, skip: Option<&str>) -> usize {
        let out = self
            .docker(
                1,
                &[
                    "service",
                    "ps",
                    service,
                    "--filter",
                    "desired-state=running",
                    "--format",
                    "{{.Node}} {{.CurrentState}}",
                ],
            )
            .unwrap_or_default();
        out.lines().filter(|l| l.contains("Running") && skip.is_none_or(|s| !l.starts_with(&format!("{s} ")))).count()
    }

    fn containers(&self, i: usize) -> usize {
        self.docker(i, &["ps", "-aq"]).map(|o| o.lines().count()).unwrap_or(usize::MAX)
    }
}

impl Drop for Swarm {
    fn drop(&mut self) {
        for i in 1..=3 {
            self.kill(i);
        }
        Self::cleanup_network();
        unmount_under(&self.work);
    }
}

pub(super) fn wait(what: &str, mut done: impl FnMut() -> bool) -> anyhow::Result<f64> {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > LIMIT {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(start.elapsed().as_secs_f64())
}

pub(super) struct Orc {
    c: LocalCluster,
    pub(super) rt: tokio::runtime::Runtime,
    orcctl: PathBuf,
    trust: Trust,
    endpoints: Vec<String>,
}

impl Orc {
    pub(super) fn ctl(&self, args: &[&str]) -> anyhow::Result<String> {
        run_cmd(Command::new(&self.orcctl).arg("--orcconfig").arg(&self.c.config).args(args))
    }

    pub(super) fn client(&self) -> anyhow::Result<ServicesClient<tonic::transport::Channel>> {
        let (_, ch) = self.rt.block_on(orcctl::connect::manager(&self.endpoints, &self.trust))?;
        Ok(ServicesClient::new(ch))
    }

    /// Tasks of `service` running, and of those not on node `skip`.
    pub(super) fn running(
        &self,
        c: &mut ServicesClient<tonic::transport::Channel>,
        service: &str,
        skip: Option<&str>,
    ) -> usize {
        let req = orc_proto::cluster::TasksRequest { service: service.into(), running_only: true, node: String::new() };
        match self.rt.block_on(c.tasks(req)) {
            Ok(r) => r
                .into_inner()
                .tasks
                .iter()
                .filter(|t| t.state == "running" && skip.is_none_or(|s| t.node_id != s))
                .count(),
            Err(_) => 0,
        }
    }

    /// Node `i`'s address on the LAN (its host's), where its published ports answer.
    pub(super) fn lan_addr(&self, i: usize) -> Option<std::net::Ipv4Addr> {
        self.c.agents.get(i)?.host.as_ref().map(|h| h.addr)
    }

    fn containers(&self, i: usize) -> usize {
        let out =
            self.ctl(&["--nodes", &self.c.agents[i].addr, "-o", "json", "container", "ls", "-a"]).unwrap_or_default();
        serde_json::from_str::<serde_json::Value>(&out)
            .ok()
            .and_then(|v| v.as_array().map(|a| a.len()))
            .unwrap_or(usize::MAX)
    }
}

struct Figures {
    create20: [Vec<f64>; 2],
    create100: [Vec<f64>; 2],
    failover: [Vec<f64>; 2],
    updates: [f64; 2],
    updates_api: f64,
}

fn orc_create(o: &Orc, image: &str, n: usize) -> anyhow::Result<f64> {
    let mut c = o.client()?;
    let start = Instant::now();
    o.ctl(&[
        "service",
        "create",
        "--name",
        "bench",
        "--replicas",
        &n.to_string(),
        "--network",
        "host",
        image,
        "--",
        "sleep",
        "3600",
    ])?;
    wait(&format!("{n} orc tasks"), || o.running(&mut c, "bench", None) == n)?;
    let t = start.elapsed().as_secs_f64();
    o.ctl(&["service", "rm", "bench"])?;
    wait("orc containers to go", || (0..3).all(|i| o.containers(i) == 0))?;
    Ok(t)
}

fn swarm_create(s: &Swarm, n: usize) -> anyhow::Result<f64> {
    let start = Instant::now();
    s.docker(
        1,
        &[
            "service",
            "create",
            "--detach",
            "--quiet",
            "--name",
            "bench",
            "--replicas",
            &n.to_string(),
            "--network",
            "host",
            "--no-resolve-image",
            IMAGE,
            "sleep",
            "3600",
        ],
    )?;
    wait(&format!("{n} swarm tasks"), || s.running("bench", None) == n)?;
    let t = start.elapsed().as_secs_f64();
    s.docker(1, &["service", "rm", "bench"])?;
    wait("swarm containers to go", || (1..=3).all(|i| s.containers(i) == 0))?;
    Ok(t)
}

const FAILOVER_REPLICAS: usize = 12;

fn orc_failover(o: &mut Orc, image: &str) -> anyhow::Result<f64> {
    let mut c = o.client()?;
    o.ctl(&[
        "service",
        "create",
        "--network",
        "host",
        "--name",
        "fo",
        "--replicas",
        &FAILOVER_REPLICAS.to_string(),
        image,
        "--",
        "sleep",
        "3600",
    ])?;
    wait("orc failover tasks", || o.running(&mut c, "fo", None) == FAILOVER_REPLICAS)?;
    let victim = o.c.agents[2].addr.clone();
    let nodes = o.ctl(&["-o", "json", "node", "ls"])?;
    let nodes: serde_json::Value = serde_json::from_str(&nodes)?;
    let id = nodes
        .as_array()
        .and_then(|a| a.iter().find(|n| n["addr"] == victim.as_str()))
        .and_then(|n| n["id"].as_str())
        .unwrap_or_default()
        .to_string();
    let _ = o.c.agents[2].child.kill();
    let _ = o.c.agents[2].child.wait();
    let start = Instant::now();
    wait("orc tasks elsewhere", || o.running(&mut c, "fo", Some(&id)) == FAILOVER_REPLICAS)?;
    let t = start.elapsed().as_secs_f64();
    o.c.agents[2].restart()?;
    o.ctl(&["service", "rm", "fo"])?;
    wait("orc containers to go", || (0..3).all(|i| o.containers(i) == 0))?;
    Ok(t)
}

fn swarm_failover(s: &mut Swarm) -> anyhow::Result<f64> {
    s.docker(
        1,
        &[
            "service",
            "create",
            "--detach",
            "--quiet",
            "--name",
            "fo",
            "--replicas",
            &FAILOVER_REPLICAS.to_string(),
            "--network",
            "host",
            "--no-resolve-image",
            IMAGE,
            "sleep",
            "3600",
        ],
    )?;
    wait("swarm failover tasks", || s.running("fo", None) == FAILOVER_REPLICAS)?;
    let victim = s.docker(3, &["info", "--format", "{{.Name}}"])?.trim().to_string();
    s.kill(3);
    let start = Instant::now();
    wait("swarm tasks elsewhere", || s.running("fo", Some(&victim)) == FAILOVER_REPLICAS)?;
    let t = start.elapsed().as_secs_f64();
    s.start_daemon(3)?;
    s.docker(1, &["service", "rm", "fo"])?;
    wait("swarm containers to go", || (1..=3).all(|i| s.containers(i) == 0))?;
    Ok(t)
}

fn orc_updates(o: &Orc, image: &str) -> anyhow::Result<(f64, f64)> {
    o.ctl(&[
        "service",
        "create",
        "--name",
        "upd",
        "--replicas",
        "1",
        "--network",
        "host",
        image,
        "--",
        "sleep",
        "3600",
    ])?;
    let start = Instant::now();
    for i in 0..UPDATES {
        o.ctl(&["service", "update", "upd", "--label-add", &format!("i={i}")])?;
    }
    let cli = UPDATES as f64 / start.elapsed().as_secs_f64();
    // Through the API from one connection: read the spec, write it back changed.
    let mut c = o.client()?;
    let n = UPDATES * 5;
    let start = Instant::now();
    for i in 0..n {
        let cur =
            o.rt.block_on(c.inspect(orc_proto::cluster::InspectServiceRequest { service: "upd".into() }))?.into_inner();
        let mut spec = cur.spec.unwrap_or_default();
        spec.labels.insert("i".into(), i.to_string());
        let req = orc_proto::cluster::UpdateServiceRequest {
            service: cur.id,
            spec: Some(spec),
            expect_version: cur.spec_version,
            ..Default::default()
        };
        o.rt.block_on(c.update(req))?;
    }
    let api = n as f64 / start.elapsed().as_secs_f64();
    o.ctl(&["service", "rm", "upd"])?;
    wait("orc containers to go", || (0..3).all(|i| o.containers(i) == 0))?;
    Ok((cli, api))
}

fn swarm_updates(s: &Swarm) -> anyhow::Result<f64> {
    s.docker(
        1,
        &[
            "service",
            "create",
            "--detach",
            "--quiet",
            "--name",
            "upd",
            "--replicas",
            "1",
            "--network",
            "host",
            "--no-resolve-image",
            IMAGE,
            "sleep",
            "3600",
        ],
    )?;
    let start = Instant::now();
    for i in 0..UPDATES {
        s.docker(1, &["service", "update", "--detach", "--quiet", "--label-add", &format!("i={i}"), "upd"])?;
    }
    let rate = UPDATES as f64 / start.elapsed().as_secs_f64();
    s.docker(1, &["service", "rm", "upd"])?;
    wait("swarm containers to go", || (1..=3).all(|i| s.containers(i) == 0))?;
    Ok(rate)
}

/// Both systems started, side by side, and what the results name.
pub(super) struct Both {
    pub orc: Orc,
    pub swarm: Swarm,
    /// The image as orc pulls it (from the registry on the nodes' bridge).
    pub image: String,
    pub ws: PathBuf,
    pub rev: String,
    pub docker_version: String,
    /// Serves the image for as long as the bench runs.
    pub registry: orc_e2e::registry::Registry,
}

/// Starts orc (three agents) and Swarm (three dockerd) with the busybox
/// image on every node of both, working under `target/orc/bench/<name>`.
pub(super) fn start_both(name: &str) -> anyhow::Result<Both> {
    anyhow::ensure!(
        nix::unistd::geteuid().is_root(),
        "cargo xtask bench {name} needs root (containers, network namespaces)"
    );
    crate::deps::ensure()?;
    // The peer, and the namespace tools the Swarm nodes are built with.
    crate::deps::ensure_packages(&[("docker.io", "dockerd"), ("iproute2", "ip"), ("util-linux", "nsenter")])?;
    let ws = orc_e2e::paths::workspace();
    let rev = crate::image::git_revision(&ws);
    let agent = crate::image::static_binaries(&ws, &rev)?.join("orc-agent");
    let st = Command::new(env!("CARGO")).args(["build", "--release", "-p", "orcctl"]).current_dir(&ws).status()?;
    anyhow::ensure!(st.success(), "building orcctl (release) failed");
    let orcctl = orc_e2e::paths::target_dir().join("release/orcctl");
    let work = orc_e2e::paths::target_dir().join(format!("orc/bench/{name}"));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    // orc's nodes on hosts of their own (each programs its container
    // network), as Swarm's dockerd are: the registry on their LAN.
    let registry = orc_e2e::registry::Registry::start_on_lan()?;
    let busybox = orc_e2e::oci::busybox(0)?;
    let image = rt.block_on(registry.push(&busybox, IMAGE))?;
    let tar = work.join("busybox.tar");
    std::fs::write(&tar, busybox.docker_save_tar(IMAGE)?)?;

    eprintln!("xtask: starting orc (3 agents) and Docker Swarm (3 dockerd)");
    let opts = Options {
        runtime: true,
        lan: true,
        insecure_registries: vec![registry.host()],
        binary: Some(agent),
        ..Default::default()
    };
    let c = LocalCluster::start(1, 2, opts)?;
    let cfg = orcctl::config::Config::load_or_default(&c.config)?;
    let (_, ctx) = cfg.context(&c.config, None)?;
    let endpoints = ctx.endpoints.clone();
    let orc = Orc { c, rt, orcctl, trust: Trust::Cluster(ctx.clone()), endpoints };
    let swarm = Swarm::start(&work.join("swarm"), &tar)?;
    let docker_version = swarm.docker(1, &["version", "--format", "{{.Server.Version}}"])?.trim().to_string();
    Ok(Both { orc, swarm, image, ws, rev, docker_version, registry })
}

pub fn run() -> anyhow::Result<()> {
    let Both { mut orc, mut swarm, image, ws, rev, docker_version, registry: _registry } = start_both("cluster")?;
    // Warm both: the image on every node, caches.
    orc_create(&orc, &image, 6)?;
    swarm_create(&swarm, 6)?;

    let mut f = Figures {
        create20: [vec![], vec![]],
        create100: [vec![], vec![]],
        failover: [vec![], vec![]],
        updates: [0.0, 0.0],
        updates_api: 0.0,
    };
    for round in 0..ROUNDS {
        eprintln!("xtask: round {} of {ROUNDS}", round + 1);
        f.create20[0].push(orc_create(&orc, &image, 20)?);
        f.create20[1].push(swarm_create(&swarm, 20)?);
        f.create100[0].push(orc_create(&orc, &image, 100)?);
        f.create100[1].push(swarm_create(&swarm, 100)?);
        f.failover[0].push(orc_failover(&mut orc, &image)?);
        f.failover[1].push(swarm_failover(&mut swarm)?);
        eprintln!(
            "  create 20: orc {:.2}s swarm {:.2}s; 100: orc {:.2}s swarm {:.2}s; failover: orc {:.2}s swarm {:.2}s",
            f.create20[0][round],
            f.create20[1][round],
            f.create100[0][round],
            f.create100[1][round],
            f.failover[0][round],
            f.failover[1][round]
        );
    }
    let (cli, api) = orc_updates(&orc, &image)?;
    f.updates = [cli, swarm_updates(&swarm)?];
    f.updates_api = api;
    drop(swarm);
    write(&ws, &rev, &docker_version, &mut f)
}

fn write(ws: &Path, rev: &str, docker_version: &str, f: &mut Figures) -> anyhow::Result<()> {
    let mut md = String::new();
    md.push_str("# cluster\n\n");
    md.push_str(&format!("Command: `cargo xtask bench cluster` (revision {rev}).\n\n"));
    md.push_str(&format!("Machine: {}. Shared and noisy: compare medians and ratios, not single runs.\n\n", machine()));
    md.push_str(&format!(
        "Both systems on this machine in the same run, alternating, each with three nodes (one manager, two workers) \
         and the same busybox image (`sleep 3600` tasks on the host network):\n\n\
         - **orc**: three `orc-agent` processes (the static release binary nodes run), each in a network namespace \
           on a bridge and a private mount namespace with cgroup2; the image pulled from Debian's docker-registry on \
           the bridge; `--network host`; orcctl release build.\n\
         - **Docker Swarm** {docker_version} (Debian's docker.io): three `dockerd` in network namespaces on a bridge, \
           swarm mode, the same image loaded from a `docker save` archive, `--network host`, `--no-resolve-image`.\n\n\
         {ROUNDS} rounds; times from the create command to every task reported running by the managers.\n\n"
    ));
    md.push_str("| figure | orc median | Swarm median | Swarm / orc |\n|---|---|---|---|\n");
    let mut row = |name: &str, v: &mut [Vec<f64>; 2]| md.push_str(&versus_row(name, v));
    row("service create → 20 replicas running", &mut f.create20);
    row("service create → 100 replicas running", &mut f.create100);
    row(&format!("worker agent killed → its tasks running elsewhere ({FAILOVER_REPLICAS} replicas)"), &mut f.failover);
    md.push_str(&format!(
        "| service updates per second, CLI, sequential ({UPDATES}) | {:.1}/s | {:.1}/s | {:.2}× (orc faster) |\n",
        f.updates[0],
        f.updates[1],
        f.updates[0] / f.updates[1]
    ));
    md.push_str(&format!(
        "\norc through its gRPC API from one connection (inspect + update each): {:.0} updates/s.\n",
        f.updates_api
    ));
    md.push_str(
        "\nNotes: node failure detection is each system's default (orc: 1 s heartbeats, down after 5 s; Swarm: \
         5 s heartbeat period). The failed worker is killed hard: orc's agent \
         process (its containers keep running, unseen), Swarm's dockerd with its containerd; measured from the kill to \
         the managers having every replacement running on the two other nodes. Updates change a service label, which \
         replaces no task in either system; Docker's CLI runs with `--detach`.\n",
    );
    let out = ws.join("bench/results/cluster.md");
    std::fs::write(&out, &md)?;
    eprintln!("{md}\nxtask: wrote {}", out.display());
    Ok(())
}
