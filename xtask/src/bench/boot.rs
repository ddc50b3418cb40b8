//! `cargo xtask bench boot`: time from QEMU start to the first successful
//! mutual-TLS `Version` of a bootstrapped node, against the floor: the same
//! kernel booting a trivial static init (busybox) that powers off at once.
//! Also the artifact sizes and the idle RSS of orc-init and orc-agent.
//! Writes bench/results/boot.md.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::bench::{machine, median};
use orc_e2e::qemu::{self, Node, NodeSpec};
use orc_image::manifest::Manifest;
use orcctl::connect::Trust;

const RUNS: usize = 5;

/// Waits for the first answered `Version` at `addr`, trying a new
/// connection every 50 ms while earlier ones are still open: a connection
/// made before the node listens can hang in QEMU's user network (it keeps
/// re-sending the SYN to the guest with a growing back-off), and waiting it
/// out measured the retry schedule (up to a second), not the node.
async fn first_answer(addr: &str, trust: &Trust, start: Instant, deadline: Instant) -> Option<Instant> {
    let mut tries = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut failed = 0u32;
    while Instant::now() < deadline {
        tokio::select! {
            _ = tick.tick() => {
                let (addr, trust) = (addr.to_string(), trust.clone());
                tries.spawn(async move {
                    let opened = Instant::now();
                    let mut c = orcctl::cmd::machine::client(&addr, &trust).await.map_err(|e| e.to_string())?;
                    let connected = Instant::now();
                    c.version(orc_proto::machine::VersionRequest {}).await.map_err(|e| e.to_string())?;
                    Ok::<_, String>((opened, connected, Instant::now()))
                });
            }
            Some(Ok(r)) = tries.join_next(), if !tries.is_empty() => match r {
                Ok((opened, connected, at)) => {
                    let s = |t: Instant| t.duration_since(start).as_secs_f64();
                    eprintln!(
                        "xtask: answered by a connection opened at {:.2} s, through TLS at {:.2} s, answered at {:.2} s ({failed} tries failed before)",
                        s(opened), s(connected), s(at)
                    );
                    return Some(at);
                }
                Err(_) => failed += 1,
            },
        }
    }
    None
}

fn floor_boot(image: &std::path::Path, accel: &str) -> anyhow::Result<f64> {
    let start = Instant::now();
    let st = Command::new("qemu-system-x86_64")
        .args(["-machine", "q35", "-accel", accel, "-cpu", if accel == "kvm" { "host" } else { "max" }])
        .args([
            "-m",
            "512",
            "-smp",
            "1",
            "-display",
            "none",
            "-monitor",
            "none",
            "-serial",
            "null",
            "-no-reboot",
            "-kernel",
        ])
        .arg(image.join("vmlinuz"))
        .arg("-initrd")
        .arg(image.join("floor-initramfs.img"))
        .args(["-append", "console=ttyS0 panic=-1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    anyhow::ensure!(st.success(), "floor boot failed");
    Ok(start.elapsed().as_secs_f64())
}

pub fn run() -> anyhow::Result<()> {
    let image = crate::image::build(&crate::image::ImageOptions { kernel: None })?;
    let accel = qemu::accel(&image);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let dir = tempfile_dir()?;
    let spec = NodeSpec {
        name: "bench".into(),
        dir: dir.join("bench"),
        image: image.clone(),
        root_img: None,
        api_port: 17499,
        l2: None,
        memory_mb: 512,
        daemonize: false,
        ..Default::default()
    };
    let addr = format!("127.0.0.1:{}", spec.api_port);

    // Bootstrap once; every measured boot is then a member node coming back.
    let mut node = Node::start(spec.clone())?;
    let fp = node.fingerprint(0, Duration::from_secs(300)).context("bench node did not reach maintenance mode")?;
    let (_, ctx) = rt.block_on(orcctl::cmd::cluster::bootstrap(&addr, &Trust::Pinned(fp), "bench", "admin"))?;
    let trust = Trust::Cluster(ctx);
    let stop = |node: &mut Node| {
        let asked = rt.block_on(async {
            match orcctl::cmd::machine::client(&addr, &trust).await {
                Ok(mut c) => c.shutdown(orc_proto::machine::ShutdownRequest {}).await.is_ok(),
                Err(_) => false,
            }
        });
        if !(asked && node.wait_exit(Duration::from_secs(60))) {
            node.kill();
        }
    };
    stop(&mut node);
    drop(node);

    let mut orc = vec![];
    let mut rss = (0u64, 0u64);
    // Each boot's stages (name → ms it took), from its kernel log.
    let mut stages: Vec<Vec<(String, f64)>> = vec![];
    for i in 0..RUNS {
        let start = Instant::now();
        let mut node = Node::start(spec.clone())?;
        let answered = rt.block_on(first_answer(&addr, &trust, start, start + Duration::from_secs(300)));
        let Some(at) = answered else { anyhow::bail!("boot {i} did not answer Version") };
        orc.push(at.duration_since(start).as_secs_f64());
        let dmesg = rt.block_on(async {
            let mut c = orcctl::cmd::machine::client(&addr, &trust).await?;
            let mut s = c
                .dmesg(orc_proto::machine::DmesgRequest { follow: false })
                .await
                .map_err(|s| orcctl::error::CliError::from_status(&addr, s))?
                .into_inner();
            let mut lines = vec![];
            while let Ok(Some(e)) = s.message().await {
                lines.push(e.message);
            }
            Ok::<_, anyhow::Error>(lines)
        })?;
        let t = timeline(&dmesg);
        if i == 0 {
            for l in dmesg.iter().filter(|l| l.contains("boot stage") || l.contains("boot timeline")) {
                eprintln!("xtask: dmesg: {l}");
            }
        }
        eprintln!("xtask: boot {} timeline: {t:?}", i + 1);
        stages.push(t);
        if i == RUNS - 1 {
            std::thread::sleep(Duration::from_secs(5));
            let s = rt.block_on(async {
                orcctl::cmd::machine::client(&addr, &trust)
                    .await?
                    .services(orc_proto::machine::ServicesRequest {})
                    .await
                    .map_err(|s| orcctl::error::CliError::from_status(&addr, s))
            })?;
            for svc in s.into_inner().services {
                match svc.name.as_str() {
                    "init" => rss.0 = svc.rss_bytes,
                    "agent" => rss.1 = svc.rss_bytes,
                    _ => {}
                }
            }
        }
        stop(&mut node);
        eprintln!("xtask: orc boot {} to mTLS Version: {:.2} s", i + 1, orc[i]);
    }
    let mut floor = vec![];
    for i in 0..RUNS {
        floor.push(floor_boot(&image, &accel)?);
        eprintln!("xtask: floor boot {} to poweroff: {:.2} s", i + 1, floor[i]);
    }
    let (mo, mf) = (median(&mut orc), median(&mut floor));
    let m = Manifest::load(&image.join("manifest.json"))?;
    let mut md = String::new();
    md.push_str("# Benchmark: boot\n\n");
    md.push_str(
        "`cargo xtask bench boot` — time from starting QEMU to the first successful mutual-TLS `Version` of a\n",
    );
    md.push_str(
        "bootstrapped node (member, STATE on disk), against the floor: the same kernel booting a static busybox\n",
    );
    md.push_str("init that powers off at once (QEMU start to QEMU exit). Direct kernel boot, 1 vCPU, 512 MiB.\n\n");
    md.push_str(&format!(
        "- machine: {}\n- accelerator: {accel}\n- image: orc {} ({}), kernel {}\n- runs: {RUNS} each\n\n",
        machine(),
        m.version,
        m.git_revision,
        m.kernel_version
    ));
    md.push_str("| measure | median | runs (s) |\n|---|---|---|\n");
    let fmt = |v: &[f64]| v.iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>().join(", ");
    md.push_str(&format!("| orc: QEMU start → mTLS Version | {mo:.2} s | {} |\n", fmt(&orc)));
    md.push_str(&format!("| floor: QEMU start → poweroff (busybox init) | {mf:.2} s | {} |\n", fmt(&floor)));
    md.push_str(&format!("| orc over floor | {:.2} s ({:.2}×) | |\n\n", mo - mf, mo / mf));
    md.push_str(&timeline_table(&stages));
    md.push_str("| artifact | bytes |\n|---|---|\n");
    for a in &m.artifacts {
        md.push_str(&format!("| {} | {} |\n", a.name, a.size));
    }
    md.push_str(&format!(
        "\nIdle RSS 5 s after the API answered (from `orcctl services`): orc-init {:.1} MiB, orc-agent {:.1} MiB.\n",
        rss.0 as f64 / 1048576.0,
        rss.1 as f64 / 1048576.0
    ));
    let out = crate::image::workspace().join("bench/results/boot.md");
    std::fs::create_dir_all(out.parent().context("bench dir")?)?;
    std::fs::write(&out, &md)?;
    let _ = std::fs::remove_dir_all(&dir);
    print!("{md}");
    Ok(())
}

/// A boot's stages from its kernel log: orc-init's `boot timeline:` line
/// (`name N ms, ...`), then the agent's `boot stage stage=X at_ms=N`
/// records (each taking the time since the stage before).
fn timeline(dmesg: &[String]) -> Vec<(String, f64)> {
    let mut out = vec![];
    let mut at = 0.0;
    for m in dmesg {
        if let Some(rest) = m.split("boot timeline: ").nth(1) {
            let list = rest.split(" (total").next().unwrap_or("");
            for part in list.split(", ") {
                let mut w = part.split_whitespace();
                if let (Some(name), Some(ms)) = (w.next(), w.next().and_then(|v| v.parse::<f64>().ok())) {
                    out.push((name.to_string(), ms));
                    at += ms;
                }
            }
        } else if m.contains("orc-agent: boot stage") {
            let field = |k: &str| m.split_whitespace().find_map(|w| w.strip_prefix(k)).map(str::to_string);
            if let (Some(name), Some(ms)) = (field("stage="), field("at_ms=").and_then(|v| v.parse::<f64>().ok())) {
                out.push((name, ms - at));
                at = ms;
            }
        }
    }
    out
}

/// The median of each stage over the boots, in boot order.
fn timeline_table(boots: &[Vec<(String, f64)>]) -> String {
    let Some(first) = boots.first() else { return String::new() };
    let mut md = String::from(
        "Where a boot's time goes (each stage's median over the boots, from the node's kernel log — \
         `orcctl dmesg` shows the same lines; `kernel` is from the kernel's start to PID 1):\n\n\
         | stage | median ms |\n|---|---|\n",
    );
    let mut total = 0.0;
    for (name, _) in first {
        let mut v: Vec<f64> =
            boots.iter().filter_map(|b| b.iter().find(|(n, _)| n == name).map(|(_, ms)| *ms)).collect();
        let m = median(&mut v);
        total += m;
        md.push_str(&format!("| {name} | {m:.0} |\n"));
    }
    md.push_str(&format!("| kernel start → last stage | {total:.0} |\n\n"));
    md
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let d = crate::image::out_dir().join("bench-boot");
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d)?;
    Ok(d)
}
