//! The part of `cargo xtask bench network` that needs the node's own
//! kernel: an encrypted network (WireGuard, which this host's kernel
//! lacks) beside the plain overlay and the floor, between two QEMU VMs
//! booting orc's image on one L2 network (the user-space hub). Under TCG
//! the guests' CPUs are emulated, crypto included, so the ratios between
//! the three paths in the same VMs, not the absolute figures, are what
//! carries over to real machines.
//!
//! - node 1 (manager) runs the clients, node 2 (worker) the servers;
//! - the floor: tasks on the nodes' own network (`--network host`),
//!   node 1 to node 2's address on the L2 network;
//! - plain and encrypted: a client task and a server task on `default`
//!   (VXLAN), and a pair on `secret` (`network create --encrypted`), each
//!   client to its server's address.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use orc_e2e::cluster_def::ClusterDef;
use orc_e2e::qemu::{self, Node};
use orc_e2e::registry::Registry;

use super::{measure, Path3, Side, Target, IPERF_PORT, RR_PORT};

const BOOT: Duration = Duration::from_secs(600);
/// The floor's servers share node 2's own network with its agent.
const FLOOR_IPERF_PORT: &str = "15301";
const FLOOR_RR_PORT: &str = "17001";
/// Round trips per measure: an emulated CPU takes ~10× the host's time each.
pub const VM_ROUND_TRIPS: &str = "2000";

#[derive(Default)]
pub struct VmFigures {
    pub accel: String,
    pub floor: Path3,
    pub plain: Path3,
    pub encrypted: Path3,
}

/// orcctl against the VMs' cluster.
struct Ctl {
    config: PathBuf,
}

impl Ctl {
    fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let o = Command::new(orc_e2e::paths::debug_bin("orcctl"))
            .arg("--orcconfig")
            .arg(&self.config)
            .args(args)
            .output()?;
        anyhow::ensure!(o.status.success(), "orcctl {}: {}", args.join(" "), String::from_utf8_lossy(&o.stderr).trim());
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        self.run(&a).ok().and_then(|o| serde_json::from_str(&o).ok()).unwrap_or_default()
    }
}

/// A task on a VM, commands run in it with `orcctl container exec`.
struct VmTask<'a> {
    ctl: &'a Ctl,
    api: String,
    container: String,
}

impl Side for VmTask<'_> {
    fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut a = vec!["--nodes", self.api.as_str(), "container", "exec", self.container.as_str(), "--"];
        a.extend_from_slice(args);
        self.ctl.run(&a)
    }
}

/// Kills the VMs when dropped (QEMU children), whatever failed.
struct Vms(Vec<Node>);

impl Drop for Vms {
    fn drop(&mut self) {
        for n in &mut self.0 {
            n.kill();
        }
    }
}

/// Boots two VMs, measures `rounds` rounds of the three paths.
pub fn run(files: &[(String, Vec<u8>)], rounds: usize) -> anyhow::Result<VmFigures> {
    let image_dir = crate::image::build(&crate::image::ImageOptions { kernel: None })?;
    let mut f = VmFigures { accel: qemu::accel(&image_dir), ..Default::default() };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let registry = Registry::start()?;
    rt.block_on(registry.push(&orc_e2e::oci::busybox_plus(files)?, "orc/net:1"))?;
    // The VMs reach the host's loopback at QEMU's user-network gateway.
    let image = format!("10.0.2.2:{}/orc/net:1", registry.port);

    let dir = orc_e2e::paths::target_dir().join("orc/bench/network-vm");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let hub = dir.join("hub.sock");
    let hub_at = hub.clone();
    std::thread::spawn(move || orc_e2e::hub::run(&hub_at));
    wait(Duration::from_secs(5), "the L2 hub", || Ok(hub.exists()))?;
    let def = ClusterDef::with_nodes(2);
    eprintln!("xtask: booting two VMs ({})", f.accel);
    let mut vms = Vms(vec![]);
    for i in 0..2 {
        let mut spec = def.spec(i, &dir, &image_dir, &hub, orc_e2e::free_port());
        spec.extra_cmdline = format!("{} orc.insecure_registries=10.0.2.2:{}", spec.extra_cmdline, registry.port);
        vms.0.push(Node::start(spec)?);
    }
    let (_, ctx) = orc_e2e::qemu_cluster::form(&vms.0, &def.roles(), None, BOOT)?;
    let ctl = Ctl { config: dir.join("orcctl.toml") };
    orc_e2e::qemu_cluster::save(&ctl.config, "bench", ctx)?;
    let api = |i: usize| format!("127.0.0.1:{}", vms.0[i].spec.api_port);
    let l2 = |i: usize| -> anyhow::Result<String> {
        let a = orc_e2e::qemu_cluster::l2_addr(&vms.0[i]).context("a VM without an L2 address")?;
        Ok(a.rsplit_once(':').map(|(h, _)| h.to_string()).unwrap_or(a))
    };
    let id_of = |i: usize| -> anyhow::Result<String> {
        let addr = orc_e2e::qemu_cluster::l2_addr(&vms.0[i]).context("a VM without an L2 address")?;
        ctl.json(&["node", "ls"])
            .as_array()
            .and_then(|ns| ns.iter().find(|n| n["addr"] == addr.as_str()))
            .and_then(|n| n["id"].as_str().map(str::to_string))
            .with_context(|| format!("no node at {addr} in node ls"))
    };
    let (client_node, server_node) = (id_of(0)?, id_of(1)?);

    ctl.run(&["network", "create", "secret", "--encrypted"])?;
    let create = |name: &str, node: &str, networks: &[&str], cmd: &str| -> anyhow::Result<()> {
        let constraint = format!("node.id=={node}");
        let mut a = vec!["service", "create", "--name", name, "--constraint", &constraint];
        for n in networks {
            a.extend(["--network", n]);
        }
        a.extend([image.as_str(), "--", "sh", "-c", cmd]);
        ctl.run(&a).map(|_| ())
    };
    let serve = |iperf: &str, rr: &str| format!("/usr/bin/iperf3 -s -p {iperf} -D && exec /bin/rr server {rr}");
    create("srv", &server_node, &["default"], &serve(IPERF_PORT, RR_PORT))?;
    create("cli", &client_node, &["default"], "exec sleep 36000")?;
    create("srv-secret", &server_node, &["secret"], &serve(IPERF_PORT, RR_PORT))?;
    create("cli-secret", &client_node, &["secret"], "exec sleep 36000")?;
    create("floor-srv", &server_node, &["host"], &serve(FLOOR_IPERF_PORT, FLOOR_RR_PORT))?;
    create("floor-cli", &client_node, &["host"], "exec sleep 36000")?;
    // (container, addresses by network) of a service's running task.
    let task = |service: &str| -> Option<(String, serde_json::Value)> {
        let t = ctl.json(&["service", "ps", service, "--running"]);
        let t = t.as_array()?.iter().find(|t| t["state"] == "running" && t["container"] != "")?.clone();
        Some((t["container"].as_str()?.to_string(), t["addresses"].clone()))
    };
    let services = ["srv", "cli", "srv-secret", "cli-secret", "floor-srv", "floor-cli"];
    wait(Duration::from_secs(300), "the bench tasks on the VMs", || Ok(services.iter().all(|s| task(s).is_some())))?;
    let address = |service: &str, network: &str| -> anyhow::Result<String> {
        let (_, addrs) = task(service).with_context(|| format!("no task of {service}"))?;
        Ok(addrs[network].as_str().with_context(|| format!("{service} has no address on {network}"))?.to_string())
    };
    let (plain, secret) = (address("srv", "default")?, address("srv-secret", "secret")?);
    let client = VmTask { ctl: &ctl, api: api(0), container: task("cli").context("cli")?.0 };
    let secret_client = VmTask { ctl: &ctl, api: api(0), container: task("cli-secret").context("cli-secret")?.0 };
    let floor_client = VmTask { ctl: &ctl, api: api(0), container: task("floor-cli").context("floor-cli")?.0 };
    let floor_addr = l2(1)?;
    // The servers answer once up (the rotation is not in the way here).
    for (side, to) in [
        (&client, format!("{plain}:{RR_PORT}")),
        (&secret_client, format!("{secret}:{RR_PORT}")),
        (&floor_client, format!("{floor_addr}:{FLOOR_RR_PORT}")),
    ] {
        let mut last = String::new();
        let answered = wait(Duration::from_secs(60), &format!("{to} to answer"), || {
            match side.run(&["/bin/rr", "client", &to, "10"]) {
                Ok(_) => Ok(true),
                Err(e) => {
                    last = e.to_string();
                    Ok(false)
                }
            }
        });
        answered.with_context(|| format!("the last attempt: {last}"))?;
    }

    let (iperf3, rr) = ("/usr/bin/iperf3", "/bin/rr");
    for round in 0..rounds {
        eprintln!("xtask: VM round {} of {rounds}", round + 1);
        let floor = Target { addr: &floor_addr, iperf: FLOOR_IPERF_PORT, rr: FLOOR_RR_PORT };
        measure(&floor_client, iperf3, rr, &floor, VM_ROUND_TRIPS, &mut f.floor)?;
        let at = |addr| Target { addr, iperf: IPERF_PORT, rr: RR_PORT };
        measure(&client, iperf3, rr, &at(&plain), VM_ROUND_TRIPS, &mut f.plain)?;
        measure(&secret_client, iperf3, rr, &at(&secret), VM_ROUND_TRIPS, &mut f.encrypted)?;
    }
    Ok(f)
}

fn wait(limit: Duration, what: &str, mut f: impl FnMut() -> anyhow::Result<bool>) -> anyhow::Result<()> {
    let start = std::time::Instant::now();
    while !f()? {
        anyhow::ensure!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_secs(1));
    }
    Ok(())
}
