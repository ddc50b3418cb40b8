//! VM end to end: OS upgrades of nodes booted from their disks under UEFI
//! (OVMF, systemd-boot, unified kernel images), a manager and two workers
//! on the L2 hub (`orc_e2e::upgrade_rig`); everything through the `orcctl`
//! binary. One cluster for every check (CI time matters): a
//! bundle signed with another key is refused; v1 → v2, published as an
//! image the node pulls itself, keeps the node's identity, STATE and its
//! task (an image without a bundle is refused); four broken v3 bundles (kernel panic, PID
//! 1 exiting, no network, never rejoining) each fall back to v2 by
//! themselves, recorded as failed in the cluster, and the cluster refuses
//! v3 unforced; a v4 that breaks a workload on this node only is blessed
//! and then rolled back within its health window; `upgrade --all` takes
//! every node to a good v5 built without any node's addresses (kept on
//! STATE) while a 3-replica service keeps running, and a second run finds
//! nothing to do; a rollback by hand goes back to v2. Last, zero touch: a
//! UEFI machine booted live with `orc.install=` and `orc.join=` installs
//! itself from a published bundle to its blank disk, and the disk boots
//! and joins the cluster with the name and addresses of the live boot.

// The test harness: a failed unwrap is a failed test, with its line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use orc_e2e::os_images::{self, Variant};
use orc_e2e::upgrade_rig::{Rig, IMAGE, W_NAME, W_NET};

const BOOT: Duration = Duration::from_secs(300);
const TASK: Duration = Duration::from_secs(120);

fn inspect_w(rig: &Rig) -> serde_json::Value {
    rig.w_node().unwrap()
}

/// The tasks of `service` are `n`, all ready.
fn all_ready(rig: &Rig, service: &str, n: usize) -> bool {
    let o = rig.ctl(&["-o", "json", "service", "ps", service]);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap_or_default();
    let ready = v.as_array().map(|t| t.iter().filter(|t| t["state"] == "running" && t["health"] == "ready").count());
    ready == Some(n)
}

#[test]
fn a_worker_upgrades_and_falls_back_by_itself() {
    let Some(image) = orc_e2e::e2e_image() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let rig = Rig::start(&image, tmp.path(), BOOT).unwrap_or_else(|e| panic!("{e:#}"));
    let v1 = rig.w_version().unwrap();
    let node_id = v1["node_id"].as_str().unwrap().to_string();
    let v1_version = rig.built.version.clone();
    assert_eq!((v1["boot_slot"].as_str(), v1["os_version"].as_str()), (Some("A"), Some(v1_version.as_str())), "{v1}");
    let key = rig.built.dev_key().unwrap();
    let [v2, v3, v4, v5] = [1, 2, 3, 4].map(|n| format!("{v1_version}.{n}"));

    // Signed with a key the image does not trust: refused, nothing written.
    let foreign = rig.bundle("foreign", &v2, &Rig::net(), &os_images::other_key().unwrap()).unwrap();
    let o = rig.on_w(&["upgrade", "--bundle", foreign.to_str().unwrap()]);
    assert!(!o.ok && o.stderr.contains("not signed by a key this image trusts"), "{}{}", o.stderr, o.stdout);
    assert_eq!(rig.w_version().unwrap()["boot_entries"].as_array().unwrap().len(), 1, "nothing written");

    // v1 → v2, published as an image the node pulls itself: written to
    // slot B, booted, blessed once back with its task.
    let good = rig.bundle("v2", &v2, &Rig::net(), &key).unwrap();
    let busybox =
        rig.on_w(&["upgrade", "--image", &rig.publish_image(&orc_e2e::oci::busybox(0).unwrap(), "bb").unwrap()]);
    assert!(!busybox.ok && busybox.stderr.contains("holds no *.bundle file"), "{}", busybox.stderr);
    let published = rig.publish(&good, "v2").unwrap();
    let o = rig.on_w(&["upgrade", "--image", &published, "--health-window", "240s"]);
    assert!(o.ok, "{}{}\n--- console:\n{}", o.stderr, o.stdout, rig.console());
    assert!(o.stdout.contains("blessed") && o.stdout.contains(&format!("pulls {v2} from {published}")), "{}", o.stdout);
    let v = rig.w_version().unwrap();
    assert_eq!(v["node_id"], node_id.as_str(), "the identity is kept on STATE");
    assert_eq!((v["boot_slot"].as_str(), v["os_version"].as_str()), (Some("B"), Some(v2.as_str())), "{v}");
    let entries = v["boot_entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{v}");
    assert!(entries.iter().all(|e| e["state"] == "blessed"), "{v}");
    rig.wait_task(TASK).unwrap();
    assert_eq!(inspect_w(&rig)["os_version"], v2.as_str());

    // Four broken v3 bundles: each falls back to v2 by itself.
    let breaks = tmp.path().join("breaks");
    std::fs::create_dir_all(&breaks).unwrap();
    let garbage = breaks.join("garbage.img");
    os_images::garbage_initramfs(&garbage).unwrap();
    let exiting = breaks.join("exiting.img");
    os_images::exiting_initramfs(&breaks.join("exit"), &exiting).unwrap();
    let with = |extra: &str, initrd: Option<std::path::PathBuf>| Variant { extra_cmdline: extra.into(), initrd };
    let cases = [
        ("panic", with(W_NET, Some(garbage)), "boot tries ran out"),
        ("init-exits", with(W_NET, Some(exiting)), "boot tries ran out"),
        (
            "no-network",
            with("orc.hostname=upg-w orc.ip=eth0:192.0.2.10/24 orc.ip=eth1:10.99.0.12/24", None),
            "not proven within its health window",
        ),
        (
            "never-rejoins",
            with("orc.hostname=upg-w orc.ip=eth1:10.99.0.12/24 orc.advertise=10.42.0.12:7443", None),
            "not proven within its health window",
        ),
    ];
    for (i, (name, variant, reason)) in cases.into_iter().enumerate() {
        let b = rig.bundle(name, &v3, &variant, &key).unwrap();
        let path = b.to_str().unwrap();
        if i == 1 {
            // It failed on a node of the cluster: refused unforced.
            let o = rig.on_w(&["upgrade", "--bundle", path]);
            assert!(!o.ok && o.stderr.contains(&format!("failed on node {W_NAME}")), "{}{}", o.stderr, o.stdout);
        }
        let started = Instant::now();
        let o = rig.on_w(&["upgrade", "--bundle", path, "--force", "--health-window", "40s"]);
        eprintln!("{name}: back on v2 {} s after the command", started.elapsed().as_secs());
        assert!(!o.ok, "{name}: the broken upgrade succeeded?\n{}", o.stdout);
        let all = format!("{}{}", o.stdout, o.stderr);
        assert!(all.contains(&format!("fell back to {v2}")), "{name}: {all}\n--- console:\n{}", rig.console());
        let v = rig.w_version().unwrap();
        assert_eq!((v["boot_slot"].as_str(), v["os_version"].as_str()), (Some("B"), Some(v2.as_str())), "{name}: {v}");
        assert_eq!(v["node_id"], node_id.as_str());
        let failed = v["failed_upgrades"].as_array().unwrap();
        let f = failed.iter().find(|f| f["version"] == v3.as_str()).unwrap_or_else(|| panic!("{name}: {v}"));
        assert!(f["reason"].as_str().unwrap().contains(reason), "{name}: {f}");
        if name == "never-rejoins" {
            assert!(o.stdout.contains("waiting for the session"), "{name}: seen trying: {}", o.stdout);
        }
        rig.wait_task(TASK).unwrap();
        // The cluster has it on record.
        let start = Instant::now();
        while !inspect_w(&rig)["failed_upgrades"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f["version"] == v3.as_str()))
        {
            assert!(start.elapsed() < Duration::from_secs(60), "{name}: the failure is not on record");
            std::thread::sleep(Duration::from_secs(2));
        }
    }

    // Workloads: a global service on the nodes' own network whose readiness
    // checks the node's hostname. v4 renames the worker: it boots, rejoins
    // and is blessed, then its task fails readiness there only (the
    // manager's is ready) within the health window: back to v2.
    let probe = "readiness shell hostname | grep -qx -e upg-w -e upg-m -e upg-w2 interval=2s";
    let create = ["service", "create", "--name", "probe", "--mode", "global", "--network", "host", "--probe", probe];
    rig.ctl(&[&create[..], &[IMAGE, "--", "sleep", "100000"]].concat()).check().unwrap();
    let start = Instant::now();
    while !all_ready(&rig, "probe", 3) {
        assert!(start.elapsed() < TASK, "the probe service is not ready on every node");
        std::thread::sleep(Duration::from_secs(2));
    }
    let renamed = with("orc.hostname=upg-w4 orc.ip=eth1:10.42.0.12/24 orc.advertise=10.42.0.12:7443", None);
    let b = rig.bundle("workloads", &v4, &renamed, &key).unwrap();
    // orcctl returns once it is blessed (or, on a slow poll, once it fell back).
    let o = rig.on_w(&["upgrade", "--bundle", b.to_str().unwrap(), "--health-window", "180s"]);
    eprintln!("workloads: orcctl said: {}{}", o.stdout, o.stderr);
    let start = Instant::now();
    let v = loop {
        let v = rig.w_version();
        if let Ok(v) = v {
            let fell = v["failed_upgrades"].as_array().is_some_and(|f| f.iter().any(|f| f["version"] == v4.as_str()));
            if fell && v["boot_slot"] == "B" {
                break v;
            }
        }
        assert!(start.elapsed() < Duration::from_secs(400), "v4 did not roll back:\n{}", rig.console());
        std::thread::sleep(Duration::from_secs(3));
    };
    assert_eq!(v["os_version"], v2.as_str(), "{v}");
    let f = v["failed_upgrades"].as_array().unwrap().iter().find(|f| f["version"] == v4.as_str()).unwrap().clone();
    assert!(f["reason"].as_str().unwrap().contains("service probe's task is not ready on this node"), "{f}");
    let bad = v["boot_entries"].as_array().unwrap().iter().find(|e| e["version"] == v4.as_str()).unwrap().clone();
    assert_eq!(bad["state"], "bad", "the blessed entry was marked bad: {v}");
    rig.wait_task(TASK).unwrap();

    // Every node to a good v5 with `upgrade --all`: one bundle with no
    // node's addresses in it (each node boots with those its STATE kept),
    // the workers one at a time, then the manager; a 3-replica service keeps
    // running throughout.
    let web = ["service", "create", "--name", "web", "--replicas", "3", IMAGE, "--", "sleep", "100000"];
    rig.ctl(&web).check().unwrap();
    let start = Instant::now();
    while running(&rig, "web") != Some(3) {
        assert!(start.elapsed() < TASK, "web is not running");
        std::thread::sleep(Duration::from_secs(2));
    }
    let fixed = rig.bundle("v5", &v5, &Rig::generic(), &key).unwrap();
    let endpoints = rig.apis.join(",");
    let all = ["-n", &endpoints, "upgrade", "--all", "--bundle", fixed.to_str().unwrap(), "--health-window", "240s"];
    let done = std::sync::atomic::AtomicBool::new(false);
    let (o, seen) = std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            let mut seen = Vec::new();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                // None while the only manager reboots: nobody to ask.
                seen.extend(running(&rig, "web"));
                std::thread::sleep(Duration::from_secs(1));
            }
            seen
        });
        let o = rig.ctl(&[&all[..], &["--drain-timeout", "90s"]].concat());
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        (o, watcher.join().unwrap())
    });
    eprintln!("upgrade --all said:\n{}{}", o.stdout, o.stderr);
    assert!(o.ok, "{}{}\n--- worker console:\n{}", o.stderr, o.stdout, rig.console());
    let least = seen.iter().min().copied();
    eprintln!("web's running tasks seen during the rolling upgrade: {} samples, least {least:?}", seen.len());
    assert!(least >= Some(2), "the service went below two running tasks: {seen:?}");
    let o = rig.ctl(&["-o", "json", "node", "ls"]).check().unwrap();
    let nodes: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let mut hosts: Vec<(String, String)> = nodes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["hostname"].as_str().unwrap().to_string(), n["os_version"].as_str().unwrap().to_string()))
        .collect();
    hosts.sort();
    let want: Vec<(String, String)> =
        [("upg-m", &v5), ("upg-w", &v5), ("upg-w2", &v5)].iter().map(|(h, v)| (h.to_string(), v.to_string())).collect();
    assert_eq!(hosts, want, "every node on v5 with the addresses and name its STATE kept");
    let start = Instant::now();
    while running(&rig, "web") != Some(3) {
        assert!(start.elapsed() < TASK, "web is not back to 3 running");
        std::thread::sleep(Duration::from_secs(2));
    }
    // Run again: nothing left to do.
    let o = rig.ctl(&all).check().unwrap();
    assert!(o.stdout.contains("every node runs"), "{}", o.stdout);

    // Back to v2 by hand on the worker.
    let o = rig.on_w(&["rollback"]);
    assert!(o.ok, "{}{}", o.stderr, o.stdout);
    let v = rig.w_version().unwrap();
    assert_eq!((v["boot_slot"].as_str(), v["os_version"].as_str()), (Some("B"), Some(v2.as_str())), "{v}");
    assert_eq!(v["node_id"], node_id.as_str());
    rig.wait_task(TASK).unwrap();

    installs_itself_and_joins(&rig, &image, tmp.path());
}

/// A live UEFI machine with `orc.install=`, `orc.install_image=` and
/// `orc.join=` installs itself and reboots; its disk (booted on a machine
/// of its own, as QEMU's kernel loader would boot the live system again)
/// joins as a worker named as the live command line said.
fn installs_itself_and_joins(rig: &Rig, image: &std::path::Path, dir: &std::path::Path) {
    use orc_e2e::qemu::{extra_disk, Boot, Node, NodeSpec};
    let token = rig.ctl(&["cluster", "join-token", "worker"]).check().unwrap().stdout.trim().to_string();
    let bundle = std::fs::read_dir(image)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "bundle"))
        .expect("the image's bundle (cargo xtask image)");
    let published = rig.publish(&bundle, "install").unwrap();
    let mut spec = NodeSpec {
        name: "upg-new".into(),
        dir: dir.join("upg-new"),
        image: image.to_path_buf(),
        api_port: orc_e2e::free_port(),
        l2: Some((dir.join("hub.sock"), 4)),
        memory_mb: 768,
        boot: Boot::LiveKernel,
        extra_disks: vec![("orc-install".into(), 2 << 30)],
        extra_cmdline: format!(
            "orc.insecure_registries=10.0.2.2:{} orc.join={token}@10.42.0.11:7443 \
             orc.install=/dev/disk/by-id/virtio-orc-install orc.install_image={published}",
            rig.registry.port
        ),
        ..Default::default()
    };
    let start = Instant::now();
    let mut live = Node::start(spec.clone()).unwrap();
    let said = live.wait_console(0, "orc: installed", BOOT);
    live.kill();
    assert!(said.is_some(), "no install:\n{}", live.console_from(0));
    eprintln!("live boot to installed in {:?}", start.elapsed());
    spec.disk = Some(spec.dir.join(extra_disk("orc-install")));
    spec.dir = dir.join("upg-new-disk");
    spec.boot = Boot::Disk;
    spec.extra_disks.clear();
    let installed = Node::start(spec).unwrap();
    let start = Instant::now();
    loop {
        let o = rig.ctl(&["-o", "json", "node", "ls"]).check().unwrap();
        let nodes: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
        let new = nodes.as_array().unwrap().iter().find(|n| n["hostname"] == "upg-new").cloned();
        if new.as_ref().is_some_and(|n| n["status"] == "ready") {
            eprintln!("the installed disk booted and joined in {:?}: {}", start.elapsed(), new.unwrap());
            break;
        }
        assert!(start.elapsed() < BOOT, "the installed node did not join: {nodes}\n{}", installed.console_from(0));
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// How many tasks of `service` run, as the managers see it (None: no answer).
fn running(rig: &Rig, service: &str) -> Option<usize> {
    let o = rig.ctl(&["-o", "json", "service", "ps", service]);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).ok()?;
    Some(v.as_array()?.iter().filter(|t| t["state"] == "running").count())
}
