//! `cargo xtask bench update`: rolling updates, orc against Docker Swarm
//! on this machine in the same run (the setup of `bench cluster`: three
//! nodes each, the same busybox image, tasks on the host network).
//!
//! One service of 20 replicas in each, with the same policy (parallelism
//! 2, start-first, 1 s monitor, failure action rollback; the rollback
//! parallelism 2, start-first, 1 s monitor). Figures, medians of 3 rounds:
//! - a good update (a new environment variable: every task replaced) from
//!   the command to the update completed;
//! - a broken update (the tasks exit at once) from the command to the
//!   failure detected (rollback started) and to the rollback completed;
//! - under load ([`load`], orc only: Swarm's routing mesh needs IPVS,
//!   which this host's kernel lacks): a rolling update of a 20-replica web
//!   service behind its published port while HTTP requests keep coming,
//!   the failed requests counted.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use orc_proto::cluster::InspectServiceRequest;

use super::cluster::{start_both, Both, Orc, Swarm, IMAGE};
use crate::bench::{machine, median, versus_row};

pub(super) mod load;

const ROUNDS: usize = 3;
const REPLICAS: &str = "20";
const LIMIT: Duration = Duration::from_secs(600);

/// The same policy in both systems' flag names (they share them).
pub(super) const POLICY: &[&str] = &[
    "--update-parallelism",
    "2",
    "--update-order",
    "start-first",
    "--update-monitor",
    "1s",
    "--update-failure-action",
    "rollback",
    "--rollback-parallelism",
    "2",
    "--rollback-order",
    "start-first",
    "--rollback-monitor",
    "1s",
];

/// Polls `state` until it says one of `want`; seconds since `start`.
pub(super) fn until(
    start: Instant,
    what: &str,
    want: &[&str],
    mut state: impl FnMut() -> String,
) -> anyhow::Result<f64> {
    loop {
        let s = state();
        if want.contains(&s.as_str()) {
            return Ok(start.elapsed().as_secs_f64());
        }
        if start.elapsed() > LIMIT {
            bail!("timed out waiting for {what} (state {s:?})");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub(super) fn orc_state(
    o: &Orc,
    c: &mut orc_proto::cluster::services_client::ServicesClient<tonic::transport::Channel>,
) -> String {
    match o.rt.block_on(c.inspect(InspectServiceRequest { service: "upd".into() })) {
        Ok(s) => s.into_inner().update_status.map(|u| u.state).unwrap_or_default(),
        Err(_) => String::new(),
    }
}

pub(super) fn swarm_state(s: &Swarm) -> String {
    s.docker(1, &["service", "inspect", "--format", "{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}", "upd"])
        .map(|o| o.trim().to_string())
        .unwrap_or_default()
}

struct Figures {
    good: [Vec<f64>; 2],
    detect: [Vec<f64>; 2],
    rolled_back: [Vec<f64>; 2],
    /// Requests during each rolling update under load (orc).
    load: Vec<load::Count>,
    /// Seconds each of those updates took.
    load_update: Vec<f64>,
}

pub fn run() -> anyhow::Result<()> {
    let Both { orc, swarm, image, ws, rev, docker_version, registry: _registry } = start_both("update")?;
    let mut c = orc.client()?;
    let mut args = vec!["service", "create", "--name", "upd", "--replicas", REPLICAS, "--network", "host"];
    args.extend(POLICY);
    args.extend([image.as_str(), "--", "sleep", "3600"]);
    orc.ctl(&args)?;
    let mut args = vec!["service", "create", "--detach", "--quiet", "--name", "upd", "--replicas", REPLICAS];
    args.extend(POLICY);
    args.extend(["--network", "host", "--no-resolve-image", IMAGE, "sleep", "3600"]);
    swarm.docker(1, &args)?;
    super::cluster::wait("20 orc tasks", || orc.running(&mut c, "upd", None) == 20)?;
    super::cluster::wait("20 swarm tasks", || swarm.running("upd", None) == 20)?;

    let mut f = Figures {
        good: [vec![], vec![]],
        detect: [vec![], vec![]],
        rolled_back: [vec![], vec![]],
        load: vec![],
        load_update: vec![],
    };
    for round in 0..ROUNDS {
        eprintln!("xtask: round {} of {ROUNDS}", round + 1);
        let env = format!("V={round}");
        let t = Instant::now();
        orc.ctl(&["service", "update", "upd", "--env-add", &env, "-d"])?;
        f.good[0].push(until(t, "the orc update", &["completed"], || orc_state(&orc, &mut c))?);
        let t = Instant::now();
        swarm.docker(1, &["service", "update", "--detach", "--quiet", "--env-add", &env, "upd"])?;
        f.good[1].push(until(t, "the swarm update", &["completed"], || swarm_state(&swarm))?);

        let t = Instant::now();
        orc.ctl(&["service", "update", "upd", "--args", "false", "-d"])?;
        f.detect[0].push(until(t, "orc to roll back", &["rolling-back", "rolled-back"], || orc_state(&orc, &mut c))?);
        f.rolled_back[0].push(until(t, "orc's rollback", &["rolled-back"], || orc_state(&orc, &mut c))?);
        let t = Instant::now();
        swarm.docker(1, &["service", "update", "--detach", "--quiet", "--args", "false", "upd"])?;
        let detect = &["rollback_started", "rollback_completed"];
        f.detect[1].push(until(t, "swarm to roll back", detect, || swarm_state(&swarm))?);
        f.rolled_back[1].push(until(t, "swarm's rollback", &["rollback_completed"], || swarm_state(&swarm))?);
        eprintln!(
            "  good: orc {:.2}s swarm {:.2}s; broken, detected: orc {:.2}s swarm {:.2}s; rolled back: orc {:.2}s swarm {:.2}s",
            f.good[0][round],
            f.good[1][round],
            f.detect[0][round],
            f.detect[1][round],
            f.rolled_back[0][round],
            f.rolled_back[1][round]
        );
    }
    drop(swarm);
    under_load(&orc, &mut c, &image, &mut f)?;
    write(&ws, &rev, &docker_version, &mut f)
}

/// The web service in orc, then rounds of a rolling update under load.
/// (Swarm's side needs its routing mesh, which this host cannot run: no
/// IPVS in its kernel.)
fn under_load(
    orc: &Orc,
    c: &mut orc_proto::cluster::services_client::ServicesClient<tonic::transport::Channel>,
    image: &str,
    f: &mut Figures,
) -> anyhow::Result<()> {
    orc.ctl(&["service", "rm", "upd"])?;
    let publish = format!("{}:80", load::PORT);
    let mut args = vec!["service", "create", "--name", "upd", "--replicas", REPLICAS, "--publish", &publish];
    args.extend(["--probe", "readiness http :80/ interval=1s"]);
    args.extend(POLICY);
    args.extend([image, "--", "httpd", "-f", "-p", "80", "-h", "/www"]);
    orc.ctl(&args)?;
    super::cluster::wait("20 orc web tasks", || orc.running(c, "upd", None) == 20)?;
    let at = std::net::SocketAddr::from((orc.lan_addr(0).context("orc's node 1 has no LAN address")?, load::PORT));
    let page = orc_e2e::oci::INDEX_HTML;
    load::answering(at, page, 20, LIMIT)?;
    for round in 0..ROUNDS {
        eprintln!("xtask: under load, round {} of {ROUNDS}", round + 1);
        let l = load::Load::start(at, page);
        std::thread::sleep(Duration::from_secs(1));
        let t = Instant::now();
        orc.ctl(&["service", "update", "upd", "--env-add", &format!("W={round}"), "-d"])?;
        f.load_update.push(until(t, "the orc update under load", &["completed"], || orc_state(orc, c))?);
        std::thread::sleep(Duration::from_secs(1));
        f.load.push(l.stop());
        eprintln!("  orc {:?}", f.load[round]);
    }
    Ok(())
}

fn write(ws: &Path, rev: &str, docker_version: &str, f: &mut Figures) -> anyhow::Result<()> {
    let mut md = String::new();
    md.push_str("# update\n\n");
    md.push_str(&format!("Command: `cargo xtask bench update` (revision {rev}).\n\n"));
    md.push_str(&format!("Machine: {}. Shared and noisy: compare medians and ratios, not single runs.\n\n", machine()));
    md.push_str(&format!(
        "Both systems on this machine in the same run, alternating, each with three nodes (one manager, two workers) \
         as in `bench cluster` (orc: three static release agents in network namespaces on a bridge; Docker Swarm {docker_version}: three \
         `dockerd` in network namespaces), one service of {REPLICAS} replicas of the same busybox image \
         (`sleep 3600`, host network) with the same policy: `{}`. {ROUNDS} rounds.\n\n",
        POLICY.join(" ")
    ));
    md.push_str("| figure | orc median | Swarm median | Swarm / orc |\n|---|---|---|---|\n");
    let mut row = |name: &str, v: &mut [Vec<f64>; 2]| md.push_str(&versus_row(name, v));
    row("good update (`--env-add`) → completed", &mut f.good);
    row("broken update (tasks exit at once) → failure detected, rollback started", &mut f.detect);
    row("broken update → rollback completed", &mut f.rolled_back);
    md.push_str(
        "\nNotes: each update is sent with `--detach` and its state polled every 100 ms (orc: `Services.Inspect` \
         over gRPC; Swarm: `docker service inspect`), so figures carry up to 0.1 s of polling. A task counts as \
         updated in orc once ready (no readiness probe here: once running) and in Swarm once running; both wait the \
         1 s monitor window after the last one. The broken update replaces the tasks' args with `false`.\n",
    );
    let (sent, failed) = f.load.iter().fold((0, 0), |(s, x), c| (s + c.sent, x + c.failed));
    let rounds = f.load.iter().map(|c| format!("{}/{}", c.failed, c.sent)).collect::<Vec<_>>().join(", ");
    md.push_str(&format!(
        "\n## A rolling update under HTTP load\n\n\
         A service of {REPLICAS} replicas of busybox `httpd` on orc's overlay (`default`), port {port} published \
         on the routing mesh, with a readiness probe (`readiness http :80/ interval=1s`) and the policy above; a \
         task leaves the rotation {drain} before its stop signal (the default drain). The test host sends HTTP \
         requests to node 1's published port ({clients} clients, one request at a time, a {pace} ms pause \
         between requests: about 200 a second) from 1 s before an update (`--env-add`: every task replaced) \
         until 1 s after it completed; a request failed when refused, reset, timed out ({timeout} s) or not a 200 \
         with the page. {ROUNDS} rounds.\n\n\
         | figure | orc |\n|---|---|\n\
         | failed requests, all rounds | {failed} of {sent} |\n\
         | failed / sent, per round | {rounds} |\n\
         | the update under load → completed, median | {:.2} s |\n\n\
         Target (the networking issue): zero failed requests. Swarm's side is not measurable on this machine: its \
         routing mesh and VIPs need IPVS, which this host's kernel lacks (`CONFIG_IP_VS` is not set; see \
         `bench/results/network.md`).\n",
        median(&mut f.load_update),
        port = load::PORT,
        drain = "2 s",
        clients = load::CLIENTS,
        pace = load::PACE.as_millis(),
        timeout = load::TIMEOUT.as_secs(),
    ));
    let out = ws.join("bench/results/update.md");
    std::fs::write(&out, &md)?;
    eprintln!("{md}\nxtask: wrote {}", out.display());
    Ok(())
}
