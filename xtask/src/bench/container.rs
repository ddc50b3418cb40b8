//! `cargo xtask bench container-start`: create + start + wait + delete of
//! `/bin/true` from one prepared bundle, through our shim (`orc-agent shim`,
//! what the agent runs per container) against `runc run` and `crun run`,
//! interleaved, in a private mount namespace with cgroup2 at /sys/fs/cgroup
//! (the host is cgroup v1 hybrid; nodes are v2 only). Then pull + unpack
//! throughput of a multi-layer image from a real registry on loopback,
//! against `curl | tar -xz` of the same blobs. Writes
//! bench/results/container-start.md. Needs root.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context};

use crate::bench::{machine, median};
use orc_e2e::agent::{AgentProcess, Options};
use orc_e2e::oci;
use orc_e2e::registry::Registry;

const RUNS: usize = 50;
const WARMUP: usize = 3;
const PULLS: usize = 3;
/// Random (incompressible) bytes in the image's third layer.
const FILLER: usize = 64 << 20;

fn enter_private_cgroup2() -> anyhow::Result<()> {
    use nix::mount::{mount, MsFlags};
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).context("unshare(CLONE_NEWNS): run as root")?;
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)?;
    // As a node mounts it (`orc-init`): migrations into a cgroup without an
    // RCU wait. The option is the hierarchy's, so every runtime here has it.
    mount(Some("cgroup2"), "/sys/fs/cgroup", Some("cgroup2"), MsFlags::empty(), Some("favordynmods"))
        .or_else(|_| mount(Some("cgroup2"), "/sys/fs/cgroup", Some("cgroup2"), MsFlags::empty(), None::<&str>))
        .context("mounting cgroup2 at /sys/fs/cgroup")?;
    Ok(())
}

/// One busybox rootfs (`dir/rootfs`, `/bin/true`) and, per runtime, a bundle
/// `dir/<runtime>/bundle/config.json`: runc's default spec without a
/// terminal, identical but for its cgroup (`/orc-bench/<runtime>`), so one
/// runtime's cgroup teardown does not slow the next runtime's creation.
fn bundles(dir: &Path) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin"))?;
    std::fs::copy(oci::BUSYBOX, rootfs.join("bin/busybox"))?;
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/true"))?;
    let tmp = dir.join("spec");
    std::fs::create_dir_all(&tmp)?;
    let st = Command::new("runc").args(["spec"]).current_dir(&tmp).status().context("runc spec")?;
    anyhow::ensure!(st.success(), "runc spec failed");
    let base: serde_json::Value = serde_json::from_slice(&std::fs::read(tmp.join("config.json"))?)?;
    for rt in [Rt::Orc, Rt::Runc, Rt::Crun] {
        let mut spec = base.clone();
        spec["process"]["terminal"] = false.into();
        spec["process"]["args"] = serde_json::json!(["/bin/true"]);
        spec["root"]["path"] = rootfs.display().to_string().into();
        spec["linux"]["cgroupsPath"] = format!("/orc-bench/{}", rt.dir()).into();
        // No device-cgroup rules: on cgroup v2 they are a BPF program, which
        // our nodes do not load (see docs/containers.md), and crun cannot
        // raise RLIMIT_MEMLOCK for it where CAP_SYS_RESOURCE is missing.
        if let Some(r) = spec["linux"]["resources"].as_object_mut() {
            r.remove("devices");
        }
        let b = dir.join(rt.dir()).join("bundle");
        std::fs::create_dir_all(&b)?;
        std::fs::write(b.join("config.json"), serde_json::to_vec_pretty(&spec)?)?;
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq)]
enum Rt {
    Orc,
    Runc,
    Crun,
}

impl Rt {
    fn dir(self) -> &'static str {
        match self {
            Rt::Orc => "orc",
            Rt::Runc => "runc",
            Rt::Crun => "crun",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Rt::Orc => "orc shim",
            Rt::Runc => "runc run",
            Rt::Crun => "crun run",
        }
    }
}

fn once(rt: Rt, agent: &Path, work: &Path, n: usize) -> anyhow::Result<f64> {
    let id = format!("bench{n}");
    let dir = &work.join(rt.dir());
    let mut cmd = match rt {
        Rt::Orc => {
            let mut c = Command::new(agent);
            c.arg("shim")
                .arg("--id")
                .arg(&id)
                .arg("--dir")
                .arg(dir)
                .arg("--run")
                .arg(dir.join("run-orc"))
                .arg("--root")
                .arg(dir.join("state-orc"));
            c
        }
        Rt::Runc | Rt::Crun => {
            let (bin, root) = if rt == Rt::Runc { ("runc", "state-runc") } else { ("crun", "state-crun") };
            let mut c = Command::new(bin);
            c.arg("--root").arg(dir.join(root)).arg("run").arg("--bundle").arg(dir.join("bundle")).arg(&id);
            c
        }
    };
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    let start = Instant::now();
    let st = cmd.status().with_context(|| format!("running {}", rt.name()))?;
    let t = start.elapsed().as_secs_f64() * 1000.0;
    if !st.success() {
        bail!("{} failed with {st}", rt.name());
    }
    if rt == Rt::Orc {
        let exit: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("exit.json"))?)?;
        anyhow::ensure!(exit["code"] == 0, "the container exited with {exit}; see {}", dir.join("shim.log").display());
    }
    Ok(t)
}

struct Pull {
    ours_s: Vec<f64>,
    floor_s: Vec<f64>,
    compressed: u64,
    unpacked: u64,
    layers: usize,
}

fn pull_throughput(agent_bin: &Path, work: &Path) -> anyhow::Result<Pull> {
    let registry = Registry::start()?;
    let image = oci::busybox(FILLER)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let name = rt.block_on(registry.push(&image, "bench/big:1"))?;
    let compressed: u64 = image.layers.iter().map(|l| l.len() as u64).sum();
    let agent = AgentProcess::start_with(Options {
        insecure_registries: vec![registry.host()],
        binary: Some(agent_bin.to_path_buf()),
        ..Default::default()
    })?;
    let (_, ctx) = rt.block_on(orcctl::cmd::cluster::bootstrap(
        &agent.addr,
        &orcctl::connect::Trust::Pinned(agent.fingerprint()?),
        "bench",
        "admin",
    ))?;
    let trust = orcctl::connect::Trust::Cluster(ctx);
    let mut ours_s = Vec::new();
    let mut unpacked = 0;
    for _ in 0..PULLS {
        let (secs, size) = rt.block_on(async {
            use orc_proto::container::images_client::ImagesClient;
            use orc_proto::container::*;
            let mut c = ImagesClient::new(orcctl::connect::channel(&agent.addr, &trust).await?);
            let start = Instant::now();
            let mut s = c.pull(PullRequest { reference: name.clone(), auth: None }).await?.into_inner();
            let mut size = 0;
            while let Some(p) = s.message().await? {
                if let Some(pull_progress::Event::Image(i)) = p.event {
                    size = i.size;
                }
            }
            let secs = start.elapsed().as_secs_f64();
            c.remove(RemoveImageRequest { name: name.clone() }).await?;
            Ok::<_, anyhow::Error>((secs, size))
        })?;
        ours_s.push(secs);
        unpacked = size;
    }
    // The floor: the same blobs over HTTP with curl, unpacked by GNU tar.
    let mut floor_s = Vec::new();
    for i in 0..PULLS {
        let dest = work.join(format!("floor{i}"));
        let _ = std::fs::remove_dir_all(&dest);
        std::fs::create_dir_all(&dest)?;
        let start = Instant::now();
        for l in &image.layers {
            let url = format!("http://{}/v2/bench/big/blobs/{}", registry.host(), oci::sha256(l));
            let st =
                Command::new("sh").args(["-c", "curl -sf \"$0\" | tar -xzf - -C \"$1\"", &url]).arg(&dest).status()?;
            anyhow::ensure!(st.success(), "curl | tar failed for {url}");
        }
        floor_s.push(start.elapsed().as_secs_f64());
        let _ = std::fs::remove_dir_all(&dest);
    }
    Ok(Pull { ours_s, floor_s, compressed, unpacked, layers: image.layers.len() })
}

pub fn run() -> anyhow::Result<()> {
    anyhow::ensure!(
        nix::unistd::geteuid().is_root(),
        "cargo xtask bench container-start needs root (it runs containers)"
    );
    crate::deps::ensure()?;
    let ws = orc_e2e::paths::workspace();
    let rev = crate::image::git_revision(&ws);
    let agent = crate::image::static_binaries(&ws, &rev)?.join("orc-agent");
    let work = orc_e2e::paths::target_dir().join("orc/bench/container-start");
    enter_private_cgroup2()?;
    bundles(&work)?;
    let runtimes = [Rt::Orc, Rt::Runc, Rt::Crun];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); runtimes.len()];
    let mut n = 0;
    for round in 0..WARMUP + RUNS {
        for (i, rt) in runtimes.iter().enumerate() {
            n += 1;
            let t = once(*rt, &agent, &work, n)?;
            if round >= WARMUP {
                times[i].push(t);
            }
        }
    }
    let stats: Vec<(f64, f64, f64)> = times
        .iter_mut()
        .map(|v| {
            v.sort_by(|a, b| a.total_cmp(b));
            (v[v.len() / 10], median(v), v[v.len() * 9 / 10])
        })
        .collect();
    for (rt, (p10, med, p90)) in runtimes.iter().zip(&stats) {
        eprintln!("{:>9}: median {med:.2} ms (p10 {p10:.2}, p90 {p90:.2})", rt.name());
    }
    let pull = pull_throughput(&agent, &work)?;
    let (ours, floor) = (median(&mut pull.ours_s.clone()), median(&mut pull.floor_s.clone()));
    let mb = |b: u64| b as f64 / (1024.0 * 1024.0);
    let versions = |bin: &str| {
        Command::new(bin)
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").to_string())
            .unwrap_or_default()
    };
    let orc_med = stats[0].1;
    let mut md = String::new();
    md.push_str("# container-start\n\n");
    md.push_str(&format!("Command: `cargo xtask bench container-start` (revision {rev}).\n\n"));
    md.push_str(&format!("Machine: {}. Shared and noisy: compare medians and ratios, not single runs.\n\n", machine()));
    md.push_str(&format!(
        "## create + start + wait + delete of `/bin/true`\n\nThe same prepared bundle (one busybox rootfs, `runc spec` \
         with `terminal: false` and no device-cgroup rules; each runtime its own `cgroupsPath`, `/orc-bench/<runtime>`, \
         so no runtime re-creates a cgroup another one just removed), {RUNS} runs each after {WARMUP} warm-ups, the three \
         interleaved, each a fresh process, in a private mount namespace with cgroup2 mounted at /sys/fs/cgroup.\n\
         orc: `orc-agent shim` (the static release binary nodes run), which is what the agent starts per container: \
         libcontainer create + start, log pipes, reaping, exit.json, cgroup and state cleanup.\n\
         Peers: {} and {} from Debian.\n\n",
        versions("runc"),
        versions("crun")
    ));
    md.push_str("| runtime | median ms | p10 ms | p90 ms | orc is faster by |\n|---|---|---|---|---|\n");
    for (rt, (p10, med, p90)) in runtimes.iter().zip(&stats) {
        let ratio = if *rt == Rt::Orc { "-".to_string() } else { format!("{:.2}×", med / orc_med) };
        md.push_str(&format!("| {} | {med:.2} | {p10:.2} | {p90:.2} | {ratio} |\n", rt.name()));
    }
    md.push_str(&format!(
        "\n## pull + unpack\n\nA {}-layer image ({:.1} MiB of compressed blobs, mostly one incompressible {} MiB layer; \
         {:.1} MiB unpacked) from Debian's docker-registry on loopback, by an agent (static release binary): \
         manifest, config, layers three at a time, each digest-verified and unpacked with the safe unpacker. \
         {PULLS} pulls, the image removed (and its layers collected) in between. Floor: the same blobs fetched with \
         `curl` and unpacked by GNU `tar -xz`, one after the other, with no verification.\n\n",
        pull.layers,
        mb(pull.compressed),
        FILLER >> 20,
        mb(pull.unpacked)
    ));
    md.push_str("| | median s | MB/s (compressed) |\n|---|---|---|\n");
    md.push_str(&format!("| orc pull | {ours:.2} | {:.1} |\n", mb(pull.compressed) / ours));
    md.push_str(&format!("| curl \\| tar -xz | {floor:.2} | {:.1} |\n", mb(pull.compressed) / floor));
    md.push_str(&format!("\norc pull takes {:.2}× the floor's time.\n", ours / floor));
    let out = ws.join("bench/results/container-start.md");
    std::fs::write(&out, &md)?;
    eprintln!("{md}\nxtask: wrote {}", out.display());
    Ok(())
}
