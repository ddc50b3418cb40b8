//! `cargo xtask bench run`: `orcctl container run --rm` of `/bin/true` end
//! to end — the CLI process, mTLS to the agent, the shim, the exit, the
//! removal — against `docker run --rm` of the same image with Debian's
//! docker.io on this machine, interleaved. The agent is the static release
//! binary nodes run, on loopback in a private mount namespace with cgroup2;
//! dockerd runs in this network namespace and the container on the host
//! network (`--network host`: orc's containers share the node's network
//! today), both with the image already on the node. Writes
//! bench/results/run.md. Needs root.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::Context;

use crate::bench::dockerd::{kill_matching, unmount_under, Dockerd};
use crate::bench::{machine, median};
use orc_e2e::agent::{AgentProcess, Options};

const RUNS: usize = 30;
const WARMUP: usize = 3;
const IMAGE: &str = "bench/busybox:1";

/// Wall-clock milliseconds of `cmd`, which must succeed.
fn timed(cmd: &mut Command, what: &str) -> anyhow::Result<f64> {
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    let start = Instant::now();
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    anyhow::ensure!(out.status.success(), "{what} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    Ok(ms)
}

pub fn run() -> anyhow::Result<()> {
    anyhow::ensure!(nix::unistd::geteuid().is_root(), "cargo xtask bench run needs root (it runs containers)");
    crate::deps::ensure()?;
    crate::deps::ensure_packages(&[("docker.io", "dockerd"), ("util-linux", "nsenter")])?;
    let ws = orc_e2e::paths::workspace();
    let rev = crate::image::git_revision(&ws);
    let agent_bin = crate::image::static_binaries(&ws, &rev)?.join("orc-agent");
    crate::test::cargo(&["build", "--release", "-p", "orcctl"], false)?;
    let orcctl = orc_e2e::paths::target_dir().join("release/orcctl");
    let work = orc_e2e::paths::target_dir().join("orc/bench/run");
    kill_matching(&work.display().to_string());
    unmount_under(&work);
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;

    // The image: pushed to a registry for orc, loaded into dockerd for Docker.
    let registry = orc_e2e::registry::Registry::start()?;
    let busybox = orc_e2e::oci::busybox(0)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let image = rt.block_on(registry.push(&busybox, IMAGE))?;
    let tar = work.join("busybox.tar");
    std::fs::write(&tar, busybox.docker_save_tar(IMAGE)?)?;

    let agent = AgentProcess::start_with(Options {
        runtime: true,
        insecure_registries: vec![registry.host()],
        binary: Some(agent_bin),
        ..Default::default()
    })?;
    let (_, ctx) = rt.block_on(orcctl::cmd::cluster::bootstrap(
        &agent.addr,
        &orcctl::connect::Trust::Pinned(agent.fingerprint()?),
        "bench",
        "admin",
    ))?;
    let config = work.join("orcctl.toml");
    orcctl::cmd::cluster::save_context(&config, "bench", ctx)?;
    let orc = || {
        let mut c = Command::new(&orcctl);
        c.arg("--orcconfig").arg(&config).args(["--nodes", &agent.addr, "container", "run", "--rm", &image, "--"]);
        c.arg("/bin/true");
        c
    };

    let dockerd = Dockerd::start(&work.join("docker"), None, "orc-bench-run")?;
    dockerd.docker(&["load", "-q", "-i", &tar.display().to_string()])?;
    let docker_version = dockerd.docker(&["version", "--format", "{{.Server.Version}}"])?.trim().to_string();
    let docker = || dockerd.command(&["run", "--rm", "--network", "host", IMAGE, "/bin/true"]);

    // The floors: each CLI's process, connection and one call that does nothing.
    let orc_floor = || {
        let mut c = Command::new(&orcctl);
        c.arg("--orcconfig").arg(&config).args(["--nodes", &agent.addr, "version"]);
        c
    };
    let docker_floor = || dockerd.command(&["version", "--format", "{{.Server.Version}}"]);
    let mut times = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
    for round in 0..WARMUP + RUNS {
        let t = [
            timed(&mut orc(), "orcctl container run --rm")?,
            timed(&mut docker(), "docker run --rm")?,
            timed(&mut orc_floor(), "orcctl version")?,
            timed(&mut docker_floor(), "docker version")?,
        ];
        if round >= WARMUP {
            for (v, t) in times.iter_mut().zip(t) {
                v.push(t);
            }
        }
    }
    // Nothing left behind by either.
    let left = Command::new(&orcctl)
        .arg("--orcconfig")
        .arg(&config)
        .args(["--nodes", &agent.addr, "container", "ls", "-a", "-o", "json"])
        .output()?;
    let left: serde_json::Value = serde_json::from_slice(&left.stdout).unwrap_or_default();
    anyhow::ensure!(left.as_array().is_some_and(|a| a.is_empty()), "orc left containers behind: {left}");
    anyhow::ensure!(dockerd.docker(&["ps", "-aq"])?.trim().is_empty(), "docker left containers behind");
    drop(dockerd);
    unmount_under(&work);
    // Where orc's time goes, per call, for whoever looks next.
    std::fs::write(work.join("agent.log"), agent.log())?;
    write(&ws, &rev, &docker_version, &mut times)
}

fn write(ws: &Path, rev: &str, docker_version: &str, times: &mut [Vec<f64>; 4]) -> anyhow::Result<()> {
    let stats: Vec<(f64, f64, f64)> = times
        .iter_mut()
        .map(|v| {
            v.sort_by(|a, b| a.total_cmp(b));
            (v[v.len() / 10], median(v), v[v.len() * 9 / 10])
        })
        .collect();
    let mut md = String::new();
    md.push_str("# run\n\n");
    md.push_str(&format!("Command: `cargo xtask bench run` (revision {rev}).\n\n"));
    md.push_str(&format!("Machine: {}. Shared and noisy: compare medians and ratios, not single runs.\n\n", machine()));
    md.push_str(&format!(
        "`/bin/true` in a busybox image, run, waited for and removed, end to end from a fresh CLI process, {RUNS} runs \
         each after {WARMUP} warm-ups, the two interleaved, the image already on the node:\n\n\
         - orc: `orcctl container run --rm` (release build) over mTLS to an agent (the static release binary) on \
           loopback, in a private mount namespace with cgroup2: Run, Logs (follow), Wait and Remove on one connection;\n\
         - Docker {docker_version} (Debian's docker.io): `docker run --rm --network host` against its dockerd \
           (containerd, runc), overlay2.\n\n"
    ));
    md.push_str("| | median ms | p10 ms | p90 ms |\n|---|---|---|---|\n");
    let names = [
        "orcctl container run --rm",
        "docker run --rm",
        "floor: `orcctl version` (process, mTLS, one call)",
        "floor: `docker version` (process, socket, one call)",
    ];
    for (name, (p10, med, p90)) in names.iter().zip(&stats) {
        md.push_str(&format!("| {name} | {med:.1} | {p10:.1} | {p90:.1} |\n"));
    }
    md.push_str(&format!(
        "\norc is {:.1}× faster than Docker (medians; the target is 7×). Above each CLI's floor: orc {:.1} ms, \
         Docker {:.1} ms.\n",
        stats[1].1 / stats[0].1,
        stats[0].1 - stats[2].1,
        stats[1].1 - stats[3].1
    ));
    let out = ws.join("bench/results/run.md");
    std::fs::write(&out, &md)?;
    eprintln!("{md}\nxtask: wrote {}", out.display());
    Ok(())
}
