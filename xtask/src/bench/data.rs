//! `cargo xtask bench data`: what secrets cost, orc against Docker Swarm
//! on this machine in the same run (the setup of `bench cluster`: three
//! nodes each, the same busybox image, tasks on the host network).
//!
//! A service of 10 replicas mounting a secret, with the update policy of
//! `bench update`. Figure, median of 3 rounds: a rotation, from the first
//! command to every task running with the new content (the update
//! completed): orc's one `secret update`; Swarm's `secret create` of a new
//! secret and the `service update --secret-rm --secret-add` that moves the
//! service to it (Swarm's secrets are immutable). Checked at the end of
//! each round: a task of each system holds the new content.
//!
//! Then, orc alone (Swarm has no signed-images-only mode without a Notary
//! server): what checking signatures costs. A service of 6 replicas of an
//! image every node has already, created until all run, without and with
//! an image policy trusting its signer (each task start then resolves the
//! tag's digest, fetches the signature from the registry and verifies it),
//! alternating, 5 rounds each.

use std::path::Path;
use std::time::Instant;

use anyhow::bail;

use super::cluster::{start_both, Both, IMAGE};
use super::update::{orc_state, swarm_state, until, POLICY};
use crate::bench::{machine, versus_row};

const ROUNDS: usize = 3;
const REPLICAS: &str = "10";

pub fn run() -> anyhow::Result<()> {
    let Both { orc, swarm, image, ws, rev, docker_version, registry } = start_both("data")?;
    let work = orc_e2e::paths::target_dir().join("orc/bench/data/secrets");
    std::fs::create_dir_all(&work)?;
    let secret = |round: usize| -> anyhow::Result<String> {
        let p = work.join(format!("db{round}"));
        std::fs::write(&p, format!("secret-of-round-{round}"))?;
        Ok(p.display().to_string())
    };
    let mut c = orc.client()?;
    orc.ctl(&["secret", "create", "db", &secret(0)?])?;
    let mut args = vec!["service", "create", "--name", "upd", "--replicas", REPLICAS, "--network", "host"];
    args.extend(["--secret", "db"]);
    args.extend(POLICY);
    args.extend([image.as_str(), "--", "sleep", "3600"]);
    orc.ctl(&args)?;
    swarm.docker(1, &["secret", "create", "db0", &secret(0)?])?;
    let mut args = vec!["service", "create", "--detach", "--quiet", "--name", "upd", "--replicas", REPLICAS];
    args.extend(["--secret", "source=db0,target=db"]);
    args.extend(POLICY);
    args.extend(["--network", "host", "--no-resolve-image", IMAGE, "sleep", "3600"]);
    swarm.docker(1, &args)?;
    super::cluster::wait("10 orc tasks", || orc.running(&mut c, "upd", None) == 10)?;
    super::cluster::wait("10 swarm tasks", || swarm.running("upd", None) == 10)?;

    let mut rotation: [Vec<f64>; 2] = [vec![], vec![]];
    for round in 1..=ROUNDS {
        eprintln!("xtask: round {round} of {ROUNDS}");
        let file = secret(round)?;
        let t = Instant::now();
        orc.ctl(&["secret", "update", "db", &file, "-d"])?;
        rotation[0].push(until(t, "the orc rotation", &["completed"], || orc_state(&orc, &mut c))?);
        let t = Instant::now();
        swarm.docker(1, &["secret", "create", &format!("db{round}"), &file])?;
        let add = format!("source=db{round},target=db");
        let rm = format!("db{}", round - 1);
        swarm.docker(
            1,
            &["service", "update", "--detach", "--quiet", "--secret-rm", &rm, "--secret-add", &add, "upd"],
        )?;
        rotation[1].push(until(t, "the swarm rotation", &["completed"], || swarm_state(&swarm))?);
        eprintln!("  rotation: orc {:.2}s swarm {:.2}s", rotation[0][round - 1], rotation[1][round - 1]);
        check_orc(&orc, round)?;
        check_swarm(&swarm, round)?;
    }
    drop(swarm);
    orc.ctl(&["service", "rm", "upd"])?;
    let mut signed = signatures(&orc, &registry, &work)?;
    write(&ws, &rev, &docker_version, &mut rotation, &mut signed)
}

const SIGNED_ROUNDS: usize = 5;

/// Create → 6 running, without and with the image policy: seconds per round.
fn signatures(
    orc: &super::cluster::Orc,
    registry: &orc_e2e::registry::Registry,
    work: &Path,
) -> anyhow::Result<[Vec<f64>; 2]> {
    let image = orc.rt.block_on(registry.push(&orc_e2e::oci::busybox_with(0, 1)?, "orc/signed:1"))?;
    let key = work.join("bench");
    let _ = std::fs::remove_file(key.with_extension("key"));
    let _ = std::fs::remove_file(key.with_extension("pub"));
    orc.ctl(&["image", "keygen", "--out", &key.display().to_string()])?;
    orc.ctl(&[
        "image",
        "sign",
        &image,
        "--key",
        &key.with_extension("key").display().to_string(),
        "--insecure-registry",
    ])?;
    let policy = work.join("policy.yaml");
    std::fs::write(&policy, format!("rules:\n  - pattern: \"{}/orc/*\"\n    keys: [bench.pub]\n", registry.host()))?;
    let mut c = orc.client()?;
    let mut once = |with_policy: bool| -> anyhow::Result<f64> {
        if with_policy {
            orc.ctl(&["cluster", "update", "--image-policy", &policy.display().to_string()])?;
        } else {
            orc.ctl(&["cluster", "update", "--no-image-policy"])?;
        }
        // The nodes hear of the policy within their session's next message.
        std::thread::sleep(std::time::Duration::from_secs(1));
        let t = Instant::now();
        orc.ctl(&[
            "service",
            "create",
            "--name",
            "sig",
            "--replicas",
            "6",
            "--network",
            "host",
            &image,
            "--",
            "sleep",
            "3600",
        ])?;
        super::cluster::wait("6 orc tasks", || orc.running(&mut c, "sig", None) == 6)?;
        let took = t.elapsed().as_secs_f64();
        orc.ctl(&["service", "rm", "sig"])?;
        super::cluster::wait("sig's tasks to go", || orc.running(&mut c, "sig", None) == 0)?;
        std::thread::sleep(std::time::Duration::from_secs(2));
        Ok(took)
    };
    // Warm: the image on every node.
    once(false)?;
    let mut out: [Vec<f64>; 2] = [vec![], vec![]];
    for round in 1..=SIGNED_ROUNDS {
        out[0].push(once(false)?);
        out[1].push(once(true)?);
        eprintln!("  signatures, round {round}: without {:.2}s with {:.2}s", out[0][round - 1], out[1][round - 1]);
    }
    orc.ctl(&["cluster", "update", "--no-image-policy"])?;
    Ok(out)
}

/// A running orc task reads round `round`'s secret.
fn check_orc(orc: &super::cluster::Orc, round: usize) -> anyhow::Result<()> {
    let ps: serde_json::Value =
        serde_json::from_str(&orc.ctl(&["-o", "json", "service", "ps", "upd", "--running"])?)?;
    let nodes: serde_json::Value = serde_json::from_str(&orc.ctl(&["-o", "json", "node", "ls"])?)?;
    let t = ps.as_array().and_then(|a| a.iter().find(|t| t["state"] == "running")).cloned().unwrap_or_default();
    let node = nodes
        .as_array()
        .and_then(|n| n.iter().find(|n| n["id"] == t["node_id"]))
        .and_then(|n| n["addr"].as_str())
        .unwrap_or_default()
        .to_string();
    let ctr = t["container"].as_str().unwrap_or_default();
    let got = orc.ctl(&["--nodes", &node, "container", "exec", ctr, "--", "cat", "/run/secrets/db"])?;
    if got.trim() != format!("secret-of-round-{round}") {
        bail!("orc's task reads {got:?} after round {round}");
    }
    Ok(())
}

/// A running Swarm task reads round `round`'s secret.
fn check_swarm(swarm: &super::cluster::Swarm, round: usize) -> anyhow::Result<()> {
    for i in 1..=3 {
        let ids = swarm.docker(i, &["ps", "-q", "--filter", "label=com.docker.swarm.service.name=upd"])?;
        if let Some(id) = ids.lines().next() {
            let got = swarm.docker(i, &["exec", id.trim(), "cat", "/run/secrets/db"])?;
            if got.trim() != format!("secret-of-round-{round}") {
                bail!("Swarm's task reads {got:?} after round {round}");
            }
            return Ok(());
        }
    }
    bail!("no running Swarm task to read the secret in")
}

fn write(
    ws: &Path,
    rev: &str,
    docker_version: &str,
    rotation: &mut [Vec<f64>; 2],
    signed: &mut [Vec<f64>; 2],
) -> anyhow::Result<()> {
    let mut md = String::new();
    md.push_str("# data\n\n");
    md.push_str(&format!("Command: `cargo xtask bench data` (revision {rev}).\n\n"));
    md.push_str(&format!("Machine: {}. Shared and noisy: compare medians and ratios, not single runs.\n\n", machine()));
    md.push_str(&format!(
        "Both systems on this machine in the same run, alternating, each with three nodes (one manager, two \
         workers) as in `bench cluster` (orc: three static release agents in network namespaces on a bridge; \
         Docker Swarm {docker_version}: three `dockerd` in network namespaces), one service of {REPLICAS} \
         replicas of the same busybox image (`sleep 3600`, host network) mounting a secret at \
         `/run/secrets/db`, with the policy `{}`. {ROUNDS} rounds.\n\n",
        POLICY.join(" ")
    ));
    md.push_str("| figure | orc median | Swarm median | Swarm / orc |\n|---|---|---|---|\n");
    md.push_str(&versus_row("secret rotation → every task running with the new content", rotation));
    md.push_str(
        "\nA rotation is, in orc, `orcctl secret update db FILE` (a new version; the services mounting it roll \
         to it in the same Raft entry) and, in Swarm (whose secrets are immutable), `docker secret create db<N> \
         FILE` then `docker service update --secret-rm db<N-1> --secret-add source=db<N>,target=db`; both timed \
         from the first command, the update state polled every 100 ms until `completed`. After each round a \
         running task of each system is read (`cat /run/secrets/db`) to check it holds the new content.\n",
    );
    let (without, with) = (crate::bench::median(&mut signed[0]), crate::bench::median(&mut signed[1]));
    md.push_str(&format!(
        "\n## Signed images only (orc)\n\n\
         A service of 6 replicas of an image every node already has (host network), created until all 6 run, \
         without and then with an image policy trusting the key that signed the image (`orcctl image sign`; each \
         task start then resolves the tag's manifest digest at the registry, fetches the signature artifact and \
         its payload, verifies the Ed25519 signature and runs the image by digest), alternating, {SIGNED_ROUNDS} \
         rounds. Docker Swarm has no peer of this without a Notary server.\n\n\
         | figure | median |\n|---|---|\n\
         | create → 6 running, no policy | {without:.2} s |\n\
         | create → 6 running, signatures checked | {with:.2} s |\n\
         | added by the checks, per service start (6 tasks on 3 nodes, in parallel per node) | {:.0} ms |\n",
        (with - without) * 1000.0
    ));
    let out = ws.join("bench/results/data.md");
    std::fs::write(&out, &md)?;
    eprintln!("{md}\nxtask: wrote {}", out.display());
    Ok(())
}
