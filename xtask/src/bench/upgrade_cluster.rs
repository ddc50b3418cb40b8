//! `cargo xtask bench upgrade-cluster`: `orcctl upgrade --all` of a
//! 3-node cluster (a manager and two workers, each booted from its disk
//! under UEFI, TCG here; `orc_e2e::upgrade_rig`) while a 3-replica web
//! service published on the routing mesh takes requests on every node.
//! Per round: command → every node on the new version, blessed; the time
//! each node took (drained → set back); the requests that failed, split
//! into those sent to nodes in service and those sent to the node that
//! was drained or rebooting at the time (a load balancer in front would
//! stop sending there: the figure says what it saves). Writes
//! bench/results/upgrade-cluster.md.

use std::collections::BTreeSet;
use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use orc_e2e::upgrade_rig::{Rig, IMAGE, NODES, WEB_PORT};

use crate::bench::update::load;
use crate::bench::{machine, median};

const ROUNDS: usize = 3;
/// Each node's client: one request at a time, this pause between them
/// (TCG VMs: a light load leaves the cores to the upgrade).
const PACE: Duration = Duration::from_millis(100);
/// The load's bound, whatever happens.
const MAX: Duration = Duration::from_secs(1800);

/// Requests (sent, failed) to nodes in service and to the node away.
#[derive(Default)]
struct Tally {
    in_service: [AtomicU64; 2],
    away: [AtomicU64; 2],
}

/// One paced client per node, each request counted by whether its node
/// was away (drained or rebooting) when it was sent.
fn load(
    webs: &[SocketAddr],
    away: Arc<Mutex<BTreeSet<String>>>,
    stop: Arc<AtomicBool>,
) -> (Arc<Tally>, Vec<std::thread::JoinHandle<()>>) {
    let tally = Arc::new(Tally::default());
    let threads = webs
        .iter()
        .zip(NODES)
        .map(|(addr, (host, _))| {
            let (addr, tally, away, stop) = (*addr, tally.clone(), away.clone(), stop.clone());
            std::thread::spawn(move || {
                let start = Instant::now();
                while !stop.load(Ordering::Relaxed) && start.elapsed() < MAX {
                    let is_away = away.lock().map(|a| a.contains(host)).unwrap_or(false);
                    let ok = load::get(addr, orc_e2e::oci::INDEX_HTML);
                    let c = if is_away { &tally.away } else { &tally.in_service };
                    c[0].fetch_add(1, Ordering::Relaxed);
                    if !ok {
                        c[1].fetch_add(1, Ordering::Relaxed);
                    }
                    std::thread::sleep(PACE);
                }
            })
        })
        .collect();
    (tally, threads)
}

/// `orcctl upgrade --all` with JSON stages; marks nodes away from their
/// `draining` to their `undrained`. Returns the total time and each node's.
fn upgrade_all(rig: &Rig, bundle: &str, away: &Mutex<BTreeSet<String>>) -> anyhow::Result<(f64, Vec<f64>)> {
    let start = Instant::now();
    let mut child = Command::new(orc_e2e::paths::debug_bin("orcctl"))
        .arg("--orcconfig")
        .arg(&rig.config)
        .args(["-o", "json", "-n", &rig.apis.join(","), "upgrade", "--all", "--bundle", bundle])
        .args(["--health-window", "240s", "--drain-timeout", "90s"])
        .stdout(Stdio::piped())
        .spawn()
        .context("running orcctl")?;
    let mut since = std::collections::HashMap::new();
    let mut per_node = Vec::new();
    if let Some(out) = child.stdout.take() {
        for line in std::io::BufReader::new(out).lines() {
            let line = line?;
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            let (node, stage) = (v["node"].as_str().unwrap_or_default(), v["stage"].as_str().unwrap_or_default());
            match stage {
                "draining" => {
                    since.insert(node.to_string(), Instant::now());
                    if let Ok(mut a) = away.lock() {
                        a.insert(node.to_string());
                    }
                }
                "undrained" => {
                    if let Some(t) = since.remove(node) {
                        per_node.push(t.elapsed().as_secs_f64());
                    }
                    if let Ok(mut a) = away.lock() {
                        a.remove(node);
                    }
                }
                _ => {}
            }
        }
    }
    anyhow::ensure!(child.wait()?.success(), "upgrade --all failed; worker console:\n{}", rig.console());
    Ok((start.elapsed().as_secs_f64(), per_node))
}

pub fn run() -> anyhow::Result<()> {
    crate::test::cargo(&["build", "-p", "orcctl", "-p", "orc-agent"], false)?;
    let image = crate::image::build(&crate::image::ImageOptions { kernel: None })?;
    let dir = crate::image::out_dir().join("bench-upgrade-cluster");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let setup = Instant::now();
    let rig = Rig::start(&image, &dir, Duration::from_secs(600))?;
    eprintln!("xtask: 3 UEFI nodes up in {:.0} s", setup.elapsed().as_secs_f64());
    let key = rig.built.dev_key()?;
    let publish = format!("{WEB_PORT}:80");
    let web = ["service", "create", "--name", "web", "--replicas", "3", "--publish", &publish];
    let probe = ["--probe", "readiness http :80/ interval=1s"];
    rig.ctl(&[&web[..], &probe, &[IMAGE, "--", "httpd", "-f", "-p", "80", "-h", "/www"]].concat()).check()?;
    for addr in &rig.webs {
        load::answering(*addr, orc_e2e::oci::INDEX_HTML, 10, Duration::from_secs(300))?;
    }
    let (mut totals, mut nodes) = (vec![], vec![]);
    let (mut sent, mut failed, mut away_sent, mut away_failed) = (0, 0, 0, 0);
    for round in 1..=ROUNDS {
        eprintln!("xtask: round {round} of {ROUNDS}");
        let v = format!("{}.{round}", rig.built.version);
        let b = rig.bundle(&format!("all{round}"), &v, &Rig::generic(), &key)?;
        let away = Arc::new(Mutex::new(BTreeSet::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (tally, threads) = load(&rig.webs, away.clone(), stop.clone());
        std::thread::sleep(Duration::from_secs(2));
        let r = upgrade_all(&rig, &b.display().to_string(), &away);
        std::thread::sleep(Duration::from_secs(2));
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            let _ = t.join();
        }
        let (total, per) = r?;
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let round_figures = [n(&tally.in_service[0]), n(&tally.in_service[1]), n(&tally.away[0]), n(&tally.away[1])];
        eprintln!(
            "  {total:.1} s, nodes {per:?}, requests (in service sent/failed, away sent/failed) {round_figures:?}"
        );
        totals.push(total);
        nodes.extend(per);
        sent += round_figures[0];
        failed += round_figures[1];
        away_sent += round_figures[2];
        away_failed += round_figures[3];
    }
    let (t, per) = (median(&mut totals), median(&mut nodes));
    let mut md = String::from("# Benchmark: rolling OS upgrade of a cluster (`cargo xtask bench upgrade-cluster`)\n\n");
    md.push_str(&format!(
        "Machine: {}. QEMU with TCG (no KVM); three nodes — a manager and two workers — each booted from its own \
         disk under UEFI (OVMF, systemd-boot, unified kernel images), on one L2 hub. Each round, `orcctl upgrade \
         --all` takes every node to a new version from one bundle (no node's addresses in it: each node keeps its \
         own on STATE): the two workers one at a time, then the manager (the only one: the cluster's API pauses \
         while it reboots), each drained, upgraded, blessed and set back. Meanwhile a 3-replica busybox `httpd` \
         service with a readiness probe, published on port {WEB_PORT} of the routing mesh, takes requests from \
         one client per node (through QEMU's port forward to that node; one request at a time, {} ms apart). \
         Medians of {ROUNDS} rounds.\n\n",
        machine(),
        PACE.as_millis()
    ));
    md.push_str("| figure | value |\n|---|---|\n");
    md.push_str(&format!("| `upgrade --all`, command → every node on the new version, blessed | {t:.1} s |\n"));
    md.push_str(&format!("| one node, drained → upgraded, blessed and set back | {per:.1} s |\n"));
    md.push_str(&format!(
        "| requests to nodes in service that failed, all rounds | {failed} of {sent} |\n\
         | requests to the node being drained or rebooting that failed, all rounds (a load balancer health-checking \
         the nodes would not send these) | {away_failed} of {away_sent} |\n\n"
    ));
    md.push_str(
        "The issue names no target for these. Talos upgrades nodes one `talosctl upgrade` at a time (its rolling \
         order is the operator's or Omni's), Flatcar's nodes update when update-engine finds a version and reboot \
         when locksmith or FLUO lets them (one at a time by default), and neither measures a replicated service \
         across it; they are not run here (no images of theirs on this machine).\n",
    );
    let out = crate::image::workspace().join("bench/results/upgrade-cluster.md");
    std::fs::write(&out, &md)?;
    drop(rig);
    print!("{md}");
    Ok(())
}
