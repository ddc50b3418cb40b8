//! `cargo xtask qemu [up|down|status] [--cluster qemu/FILE | --nodes N]`: a
//! local cluster of QEMU nodes on one L2 network (a user-space hub, no
//! root), as a cluster definition describes it (`qemu/local.toml` by
//! default: nodes, roles, memory, disks, kernel arguments), each with its
//! API forwarded to 127.0.0.1:<base+i>, a persistent STATE disk and a
//! console log under `target/orc/qemu/<node>/`. The first node is
//! bootstrapped, the others join with the token of their role, and an
//! orcctl context `qemu` is written. The definition in use is kept as
//! `target/orc/qemu/cluster.toml` for `down` and `status`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use orc_e2e::cluster_def::{ClusterDef, NodeRole};
use orc_e2e::qemu::{self, Node, NodeSpec};
use orcctl::connect::Trust;

pub const BASE_PORT: u16 = 17442;
const BOOT_LIMIT: Duration = Duration::from_secs(300);

fn cluster_dir() -> PathBuf {
    crate::image::out_dir().join("qemu")
}

/// Where `up` keeps the definition it booted, for `down` and `status`.
fn running_def() -> PathBuf {
    cluster_dir().join("cluster.toml")
}

/// Node `i` (0-based) of `def`, detached.
fn spec(def: &ClusterDef, i: usize) -> NodeSpec {
    let dir = cluster_dir();
    let s = def.spec(i, &dir, &crate::image::out_dir(), &dir.join("hub.sock"), BASE_PORT + 1 + i as u16);
    NodeSpec { daemonize: true, ..s }
}

/// The nodes of the cluster booted last (none when there is none).
fn existing() -> Vec<NodeSpec> {
    let Ok(def) = ClusterDef::load(&running_def()) else { return vec![] };
    (0..def.nodes.len()).map(|i| spec(&def, i)).filter(|s| s.dir.exists()).collect()
}

fn start_hub() -> anyhow::Result<()> {
    let dir = cluster_dir();
    std::fs::create_dir_all(&dir)?;
    let pidfile = dir.join("hub.pid");
    if let Some(pid) = std::fs::read_to_string(&pidfile).ok().and_then(|p| p.trim().parse::<i32>().ok()) {
        if Path::new(&format!("/proc/{pid}")).exists() {
            return Ok(());
        }
    }
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.arg("hub").arg(dir.join("hub.sock")).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    // SAFETY: setsid in the child before exec only detaches it from our session.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            nix::unistd::setsid().map(|_| ()).map_err(std::io::Error::from)
        });
    }
    let child = cmd.spawn().context("starting the L2 hub")?;
    std::fs::write(pidfile, child.id().to_string())?;
    for _ in 0..50 {
        if dir.join("hub.sock").exists() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("the L2 hub did not start")
}

pub fn up(definition: &Path, nodes: Option<u8>) -> anyhow::Result<()> {
    let def = match nodes {
        Some(n) => ClusterDef::with_nodes(n),
        None => ClusterDef::load(&crate::image::workspace().join(definition))?,
    };
    crate::image::build(&crate::image::ImageOptions { kernel: None })?;
    if existing().into_iter().any(|s| !qemu::attach(s).exited()) {
        bail!("a cluster is already running; `cargo xtask qemu status` shows it, `cargo xtask qemu down` stops it");
    }
    start_hub()?;
    let accel = qemu::accel(&crate::image::out_dir());
    let config = orcctl::config::path(None);
    // STATE disks persist between runs; they are only useful with the context that knows their CA.
    let known = orcctl::config::Config::load_or_default(&config)?.contexts.get("qemu").cloned();
    eprintln!(
        "xtask: booting {} nodes with {accel}{}",
        def.nodes.len(),
        if known.is_some() { " (reusing STATE disks)" } else { "" }
    );
    std::fs::write(running_def(), toml::to_string(&def)?)?;
    let mut started = vec![];
    for i in 0..def.nodes.len() {
        let s = spec(&def, i);
        let _ = std::fs::remove_file(s.dir.join("console.log"));
        if known.is_none() {
            let _ = std::fs::remove_file(s.dir.join("state.img"));
        }
        started.push(Node::start(s)?);
    }
    let roles = def.roles();
    let managers = roles.iter().filter(|r| **r == NodeRole::Manager).count();
    eprintln!("xtask: forming the cluster: {managers} manager(s), {} worker(s)", roles.len() - managers);
    let reused = known.is_some();
    let (cluster_id, ctx) = orc_e2e::qemu_cluster::form(&started, &roles, known, BOOT_LIMIT).map_err(|e| {
        if reused {
            e.context(
                "the STATE disks of an earlier cluster were reused; to start afresh: `cargo xtask qemu down`, \
                       `rm -rf target/orc/qemu`, and remove [contexts.qemu] from the orcctl config",
            )
        } else {
            e
        }
    })?;
    orc_e2e::qemu_cluster::save(&config, "qemu", ctx)?;
    println!("cluster {cluster_id}: {} nodes up, {managers} manager(s)", started.len());
    println!("orcctl context \"qemu\" in {}", config.display());
    println!("try: orcctl node ls; orcctl service create --name web --replicas 3 <image> -- sleep 3600; orcctl service ps web");
    Ok(())
}

pub fn down() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let config = orcctl::config::path(None);
    let ctx = orcctl::config::Config::load_or_default(&config)?.contexts.get("qemu").cloned();
    for s in existing() {
        let mut n = qemu::attach(s);
        if n.exited() {
            continue;
        }
        // Members power off in order through the API; maintenance nodes hold nothing to flush.
        let asked = match &ctx {
            Some(ctx) => rt.block_on(async {
                let addr = format!("127.0.0.1:{}", n.spec.api_port);
                match orcctl::cmd::machine::client(&addr, &Trust::Cluster(ctx.clone())).await {
                    Ok(mut c) => c.shutdown(orc_proto::machine::ShutdownRequest {}).await.is_ok(),
                    Err(_) => false,
                }
            }),
            None => false,
        };
        if !(asked && n.wait_exit(Duration::from_secs(60))) {
            n.kill();
        }
        println!("{}: stopped{}", n.spec.name, if asked { " (orderly shutdown)" } else { "" });
    }
    if let Some(pid) =
        std::fs::read_to_string(cluster_dir().join("hub.pid")).ok().and_then(|p| p.trim().parse::<i32>().ok())
    {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
        let _ = std::fs::remove_file(cluster_dir().join("hub.pid"));
    }
    Ok(())
}

pub fn status() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let config = orcctl::config::path(None);
    let ctx = orcctl::config::Config::load_or_default(&config)?.contexts.get("qemu").cloned();
    let mut rows = vec![];
    for s in existing() {
        let n = qemu::attach(s);
        let addr = format!("127.0.0.1:{}", n.spec.api_port);
        let api = if n.exited() {
            "-".to_string()
        } else {
            rt.block_on(async {
                let trusts = ctx.iter().map(|c| Trust::Cluster(c.clone())).chain([Trust::Insecure]);
                for t in trusts {
                    if let Ok(mut c) = orcctl::cmd::machine::client(&addr, &t).await {
                        if let Ok(v) = c.version(orc_proto::machine::VersionRequest {}).await {
                            let v = v.into_inner();
                            return if v.maintenance {
                                "maintenance".to_string()
                            } else {
                                format!("{} ({})", v.role, v.node_id)
                            };
                        }
                    }
                }
                "unreachable".to_string()
            })
        };
        rows.push(vec![
            n.spec.name.clone(),
            if n.exited() { "stopped".into() } else { format!("running (pid {})", n.pid().unwrap_or(0)) },
            addr,
            api,
            n.console_path().display().to_string(),
        ]);
    }
    if rows.is_empty() {
        println!("no local cluster; start one with `cargo xtask qemu`");
    } else {
        orcctl::output::table(&["NODE", "QEMU", "API", "STATE", "CONSOLE"], &rows);
    }
    Ok(())
}
