//! `cargo xtask bench upgrade`: OS upgrades of a worker booted from its
//! disk under UEFI (OVMF + systemd-boot, TCG here) in a cluster with one
//! manager and another worker (`orc_e2e::upgrade_rig`). Per round: a good upgrade (command to
//! blessed, with its stages), a version whose kernel panics (command to
//! back on the old slot: systemd-boot's three tries), one that boots but
//! never rejoins (command to back: the agent's health window, then one
//! reboot), and one that is blessed but breaks a workload on this node
//! only (command to back). Writes bench/results/upgrade.md with the
//! published behaviour of Talos, Flatcar and Bottlerocket beside it.

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use orc_e2e::os_images::{self, Variant};
use orc_e2e::upgrade_rig::{Rig, IMAGE, W_NET};

use crate::bench::{machine, median};

const ROUNDS: usize = 3;
/// The health window of the version that never rejoins.
const WINDOW: &str = "30s";

/// Each stage orcctl printed and when it first appeared (s).
type Stages = Vec<(String, f64)>;

/// Runs `orcctl upgrade|rollback …` on the worker; returns whether it
/// succeeded, its total time and its stages.
fn timed(rig: &Rig, args: &[&str]) -> anyhow::Result<(bool, f64, Stages)> {
    let start = Instant::now();
    let mut child = Command::new(orc_e2e::paths::debug_bin("orcctl"))
        .arg("--orcconfig")
        .arg(&rig.config)
        .args(["-o", "json", "-n", &rig.w_api])
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .context("running orcctl")?;
    let mut stages: Stages = vec![];
    if let Some(out) = child.stdout.take() {
        for line in std::io::BufReader::new(out).lines() {
            let line = line?;
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            let stage = v["stage"].as_str().unwrap_or_default().to_string();
            if !stage.is_empty() && !stages.iter().any(|(s, _)| *s == stage) {
                stages.push((stage, start.elapsed().as_secs_f64()));
            }
        }
    }
    let ok = child.wait()?.success();
    Ok((ok, start.elapsed().as_secs_f64(), stages))
}

/// The tasks of `service` are `n`, all ready.
fn all_ready(rig: &Rig, service: &str, n: usize) -> bool {
    let o = rig.ctl(&["-o", "json", "service", "ps", service]);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap_or_default();
    let ready = v.as_array().map(|t| t.iter().filter(|t| t["state"] == "running" && t["health"] == "ready").count());
    ready == Some(n)
}

fn wait(what: &str, limit: Duration, f: impl Fn() -> bool) -> anyhow::Result<()> {
    let start = Instant::now();
    while !f() {
        anyhow::ensure!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_secs(2));
    }
    Ok(())
}

/// Seconds from now until the worker runs slot B again with `version`
/// recorded as failed.
fn until_back(rig: &Rig, version: &str, start: Instant) -> anyhow::Result<f64> {
    loop {
        if let Ok(v) = rig.w_version() {
            let failed = v["failed_upgrades"].as_array().is_some_and(|f| f.iter().any(|f| f["version"] == version));
            if failed {
                return Ok(start.elapsed().as_secs_f64());
            }
        }
        anyhow::ensure!(start.elapsed() < Duration::from_secs(600), "{version} did not roll back");
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn at(stages: &[(String, f64)], stage: &str) -> Option<f64> {
    stages.iter().find(|(s, _)| s == stage).map(|(_, t)| *t)
}

pub fn run() -> anyhow::Result<()> {
    crate::test::cargo(&["build", "-p", "orcctl", "-p", "orc-agent"], false)?;
    let image = crate::image::build(&crate::image::ImageOptions { kernel: None })?;
    let dir = crate::image::out_dir().join("bench-upgrade");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let setup = Instant::now();
    let rig = Rig::start(&image, &dir, Duration::from_secs(600))?;
    eprintln!("xtask: cluster with a UEFI worker up in {:.0} s", setup.elapsed().as_secs_f64());
    let key = rig.built.dev_key()?;
    let garbage = dir.join("garbage.img");
    os_images::garbage_initramfs(&garbage)?;
    let never = "orc.hostname=upg-w orc.ip=eth1:10.99.0.12/24 orc.advertise=10.42.0.12:7443";
    let renamed = "orc.hostname=upg-w9 orc.ip=eth1:10.42.0.12/24 orc.advertise=10.42.0.12:7443";
    let probe = "readiness shell hostname | grep -qx -e upg-w -e upg-m -e upg-w2 interval=2s";
    let create = ["service", "create", "--name", "probe", "--mode", "global", "--network", "host", "--probe", probe];
    rig.ctl(&[&create[..], &[IMAGE, "--", "sleep", "100000"]].concat()).check()?;
    wait("the probe service ready on every node", Duration::from_secs(180), || all_ready(&rig, "probe", 3))?;
    let mut n = 0;
    let mut next = || {
        n += 1;
        format!("{}.{n}", rig.built.version)
    };
    // (total, written, back up, blessed) of good upgrades; totals of fallbacks.
    let (mut good, mut written, mut up, mut panic, mut judged) = (vec![], vec![], vec![], vec![], vec![]);
    let mut workloads = vec![];
    for round in 1..=ROUNDS {
        eprintln!("xtask: round {round} of {ROUNDS}");
        let v = next();
        let b = rig.bundle(&format!("good{round}"), &v, &Rig::net(), &key)?;
        let (ok, total, stages) = timed(&rig, &["upgrade", "--bundle", &b.display().to_string()])?;
        anyhow::ensure!(ok, "upgrade to {v} failed; console:\n{}", rig.console());
        good.push(total);
        written.push(at(&stages, "written").unwrap_or(total));
        up.push(at(&stages, "trying").or(at(&stages, "booted")).unwrap_or(total));
        rig.wait_task(Duration::from_secs(120))?;

        let broken = Variant { extra_cmdline: W_NET.into(), initrd: Some(garbage.clone()) };
        let b = rig.bundle(&format!("panic{round}"), &next(), &broken, &key)?;
        let (ok, total, _) = timed(&rig, &["upgrade", "--bundle", &b.display().to_string()])?;
        anyhow::ensure!(!ok, "a panicking version was blessed?");
        panic.push(total);
        rig.wait_task(Duration::from_secs(120))?;

        let broken = Variant { extra_cmdline: never.into(), initrd: None };
        let b = rig.bundle(&format!("never{round}"), &next(), &broken, &key)?;
        let (ok, total, _) =
            timed(&rig, &["upgrade", "--bundle", &b.display().to_string(), "--health-window", WINDOW])?;
        anyhow::ensure!(!ok, "a version that never rejoined was blessed?");
        judged.push(total);
        rig.wait_task(Duration::from_secs(120))?;

        wait("the probe service ready on every node", Duration::from_secs(180), || all_ready(&rig, "probe", 3))?;
        let broken = Variant { extra_cmdline: renamed.into(), initrd: None };
        let v = next();
        let b = rig.bundle(&format!("workloads{round}"), &v, &broken, &key)?;
        let start = Instant::now();
        let _ = timed(&rig, &["upgrade", "--bundle", &b.display().to_string(), "--health-window", "180s"])?;
        workloads.push(until_back(&rig, &v, start)?);
        rig.wait_task(Duration::from_secs(120))?;
    }
    let bundle_mib = std::fs::metadata(dir.join("bundles/good1.bundle")).map(|m| m.len() >> 20).unwrap_or_default();
    let (g, w, u, p, j) =
        (median(&mut good), median(&mut written), median(&mut up), median(&mut panic), median(&mut judged));
    let wl = median(&mut workloads);
    let mut md = String::from("# Benchmark: OS upgrades (`cargo xtask bench upgrade`)\n\n");
    md.push_str(&format!(
        "Machine: {}. QEMU with TCG (no KVM), a UEFI worker (OVMF, systemd-boot, unified kernel images) in a \
         cluster of three such nodes, on one L2 hub; the bundle is {bundle_mib} MiB, streamed from the host over \
         QEMU's user network. Medians of {ROUNDS} rounds, each: a good upgrade, one whose kernel panics at \
         boot, one that boots but never rejoins (health window {WINDOW}), and one that is blessed and then breaks a \
         workload on this node only (health window 180 s).\n\n",
        machine()
    ));
    md.push_str("| one node | median |\n|---|---|\n");
    md.push_str(&format!("| command → bundle verified and written to the other slot | {w:.1} s |\n"));
    md.push_str(&format!("| command → the new version's agent answers (reboot through the firmware) | {u:.1} s |\n"));
    md.push_str(&format!("| command → blessed (back in the cluster, its task running) | {g:.1} s |\n"));
    md.push_str(&format!("| kernel panics at boot: command → back on the old slot, failure recorded | {p:.1} s |\n"));
    md.push_str(&format!("| never rejoins: command → back on the old slot, failure recorded | {j:.1} s |\n"));
    md.push_str(&format!(
        "| blessed, then a workload fails readiness on this node only: command → back on the old slot | {wl:.1} s |\n\n"
    ));
    md.push_str(
        "The 3-node rolling upgrade (`orcctl upgrade --all`) and a replicated service's requests during it: \
         `cargo xtask bench upgrade-cluster`, [upgrade-cluster.md](upgrade-cluster.md).\n\n",
    );
    md.push_str(
        "## What each system detects, and how fast it is back\n\n\
         Talos, Flatcar and Bottlerocket are not run here (no images of theirs on this machine); their \
         behaviour as published:\n\n\
         | failure after an upgrade | orc | Talos (`talosctl upgrade`, A/B) | Flatcar (update-engine, USR-A/B) | \
         Bottlerocket |\n\
         |---|---|---|---|---|\n",
    );
    md.push_str(&format!(
        "| kernel panic / PID 1 exits before userspace | boot counting (3 tries, `panic=5`): back in {p:.0} s here | \
         on the systemd-boot path no boot counting: a human picks the old entry (talos#14146, #10364) | GPT \
         tries: falls back at the next boot | signpost tries: falls back |\n"
    ));
    md.push_str(&format!(
        "| boots but never rejoins the cluster / no network | the agent's health window, then one reboot: back \
         in {j:.0} s with a {WINDOW} window | success is the machine reaching Running+Ready, not rejoining | \
         marked successful after ~2 min of uptime, whatever the cluster says | marked successful by a unit early in its boot |\n"
    ));
    md.push_str(
        "| workloads fail after the boot | a task ready before failing readiness on this node only (ready \
         elsewhere, same spec) within the health window: rolled back | no | no | no |\n\
         | the failed version comes again | never unforced: the cluster keeps it and `orcctl upgrade` refuses it | \
         up to the operator | re-applied in a loop (Flatcar#1924) | up to the operator |\n",
    );
    let out = crate::image::workspace().join("bench/results/upgrade.md");
    std::fs::write(&out, &md)?;
    drop(rig);
    print!("{md}");
    Ok(())
}
