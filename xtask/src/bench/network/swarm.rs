//! The peer of `cargo xtask bench network`: Docker Swarm on this machine,
//! three dockerd in network namespaces on one bridge (the cluster bench's
//! `Swarm`), the same image, the same tools, the same paths:
//!
//! - the floor between Swarm's first two hosts' namespaces;
//! - task to task over a Swarm overlay network (`docker network create
//!   -d overlay`, VXLAN), a client task on node 1, a server task on node 2.
//!
//! Not measurable on this machine, whose kernel lacks what Swarm needs
//! (and says so in the results): its VIPs and routing mesh (IPVS,
//! `CONFIG_IP_VS` unset, and the iptables rules the bench's dockerd are
//! started without: the host's firewall is nftables), and its encrypted
//! overlay (IPsec ESP, `CONFIG_INET_ESP` unset).

use std::process::Command;

use anyhow::Context;

use super::{measure, Path3, Side, Target, IPERF_PORT, ROUND_TRIPS, RR_PORT};
use crate::bench::cluster::Swarm;

const IMAGE: &str = "orc/net:1";
const NETWORK: &str = "benchnet";

#[derive(Default)]
pub struct SwarmFigures {
    pub version: String,
    pub floor: Path3,
    pub overlay: Path3,
}

/// A Swarm host's namespace.
struct SwarmHost(usize);

impl Side for SwarmHost {
    fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        crate::deps::output(Command::new("nsenter").arg(format!("--net=/run/netns/{}", Swarm::ns(self.0))).args(args))
    }
}

/// A container on Swarm node `node`.
struct SwarmTask<'a> {
    swarm: &'a Swarm,
    node: usize,
    container: String,
}

impl Side for SwarmTask<'_> {
    fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut a = vec!["exec", self.container.as_str()];
        a.extend_from_slice(args);
        self.swarm.docker(self.node, &a)
    }
}

/// The floor's servers in Swarm host 2's namespace, killed when dropped.
struct Servers(Vec<std::process::Child>);

impl Drop for Servers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts Swarm with the bench image (`files` on busybox), measures
/// `rounds` rounds of the two paths; `rr` is the host's build of the probe.
pub fn run(files: &[(String, Vec<u8>)], rr: &std::path::Path, rounds: usize) -> anyhow::Result<SwarmFigures> {
    crate::deps::ensure_packages(&[("docker.io", "dockerd")])?;
    let work = orc_e2e::paths::target_dir().join("orc/bench/network-swarm");
    std::fs::create_dir_all(&work)?;
    let tar = work.join("net.tar");
    std::fs::write(&tar, orc_e2e::oci::busybox_plus(files)?.docker_save_tar(IMAGE)?)?;
    eprintln!("xtask: starting Docker Swarm (3 dockerd)");
    let swarm = Swarm::start(&work.join("swarm"), &tar)?;
    let mut f = SwarmFigures {
        version: swarm.docker(1, &["version", "--format", "{{.Server.Version}}"])?.trim().to_string(),
        ..Default::default()
    };
    swarm.docker(1, &["network", "create", "-d", "overlay", NETWORK])?;
    let on = |n: usize| format!("node.hostname=={}", Swarm::ns(n));
    let serve = format!("/usr/bin/iperf3 -s -D && exec /bin/rr server {RR_PORT}");
    let (srv_on, cli_on) = (on(2), on(1));
    let service = |name: &str, constraint: &str, cmd: &[&str]| -> anyhow::Result<()> {
        let mut a = vec!["service", "create", "--detach", "--quiet", "--name", name, "--network", NETWORK];
        a.extend(["--constraint", constraint, IMAGE]);
        a.extend_from_slice(cmd);
        swarm.docker(1, &a).map(|_| ())
    };
    service("srv", &srv_on, &["sh", "-c", &serve])?;
    service("cli", &cli_on, &["sleep", "36000"])?;
    crate::bench::cluster::wait("the Swarm bench tasks", || {
        swarm.running("srv", None) == 1 && swarm.running("cli", None) == 1
    })?;
    let container = |node: usize, name: &str| -> anyhow::Result<String> {
        let out = swarm.docker(node, &["ps", "-q", "--filter", &format!("name={name}.")])?;
        out.lines().next().map(str::to_string).with_context(|| format!("no {name} container on Swarm node {node}"))
    };
    let srv = container(2, "srv")?;
    let fmt = format!("{{{{(index .NetworkSettings.Networks \"{NETWORK}\").IPAddress}}}}");
    let srv_addr = swarm.docker(2, &["inspect", "-f", &fmt, &srv])?.trim().to_string();
    anyhow::ensure!(!srv_addr.is_empty(), "the Swarm server has no address on {NETWORK}");
    let client = SwarmTask { swarm: &swarm, node: 1, container: container(1, "cli")? };
    let quiet = |args: &[&str]| -> anyhow::Result<std::process::Child> {
        Ok(Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", Swarm::ns(2)))
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?)
    };
    let rr_path = rr.to_string_lossy().into_owned();
    let _servers = Servers(vec![quiet(&["iperf3", "-s"])?, quiet(&[&rr_path, "server", RR_PORT])?]);
    // (rr gives up on a path that does not answer within seconds.)
    let probe = |side: &dyn Side, rr: &str, to: &str| side.run(&[rr, "client", to, "10"]).is_ok();
    let floor_addr = Swarm::addr(2);
    crate::bench::cluster::wait("Swarm's overlay and hosts to answer", || {
        probe(&client, "/bin/rr", &format!("{srv_addr}:{RR_PORT}"))
            && probe(&SwarmHost(1), &rr_path, &format!("{floor_addr}:{RR_PORT}"))
    })?;
    for round in 0..rounds {
        eprintln!("xtask: Swarm round {} of {rounds}", round + 1);
        let at = |addr| Target { addr, iperf: IPERF_PORT, rr: RR_PORT };
        measure(&SwarmHost(1), "iperf3", &rr_path, &at(&floor_addr), ROUND_TRIPS, &mut f.floor)?;
        measure(&client, "/usr/bin/iperf3", "/bin/rr", &at(&srv_addr), ROUND_TRIPS, &mut f.overlay)?;
    }
    Ok(f)
}
