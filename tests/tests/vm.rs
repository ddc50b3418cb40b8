//! VM end to end: real QEMU nodes booting the built image, driven only
//! through the `orcctl` binary (and its library for the refusal cases).
//! Runs when `ORC_E2E_IMAGE` names the image directory (`cargo xtask test`
//! and `cargo xtask e2e` set it); skipped otherwise.

// The test harness: a failed unwrap is a failed test, with its line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use orc_e2e::free_port;
use orc_e2e::qemu::{Node, NodeSpec};
use orcctl::connect::Trust;

const BOOT: Duration = Duration::from_secs(240);

fn spec(image: &Path, dir: &Path, name: &str) -> NodeSpec {
    NodeSpec {
        name: name.into(),
        dir: dir.join(name),
        image: image.to_path_buf(),
        root_img: None,
        api_port: free_port(),
        l2: None,
        memory_mb: 512,
        daemonize: false,
        ..Default::default()
    }
}

/// Runs orcctl with `config`; returns stdout, panicking with stderr on failure.
fn orcctl(config: &Path, args: &[&str]) -> String {
    let out =
        Command::new(orc_e2e::paths::debug_bin("orcctl")).arg("--orcconfig").arg(config).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "orcctl {args:?}: {}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(config: &Path, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["-o", "json"];
    a.extend_from_slice(args);
    serde_json::from_str(&orcctl(config, &a)).unwrap()
}

/// Waits until `orcctl version` answers (after a boot or reboot).
fn wait_api(config: &Path, limit: Duration) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let out = Command::new(orc_e2e::paths::debug_bin("orcctl"))
            .arg("--orcconfig")
            .arg(config)
            .args(["-o", "json", "version"])
            .output()
            .unwrap();
        if out.status.success() {
            return serde_json::from_slice(&out.stdout).unwrap();
        }
        assert!(start.elapsed() < limit, "node API did not come back: {}", String::from_utf8_lossy(&out.stderr));
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn node_boots_bootstraps_serves_every_rpc_and_survives_reboot() {
    let Some(image) = orc_e2e::e2e_image() else { return };
    let dir = tempfile::tempdir().unwrap();
    // An NTP server 30 s ahead of the host (and so of the node's RTC): the
    // node's agent steps its clock to it (QEMU's user network takes the
    // node's packets to 10.0.2.2 to the host's loopback).
    let ntp = match orc_e2e::ntp::unavailable() {
        None => Some(orc_e2e::ntp::NtpServer::start(30, false).unwrap()),
        Some(why) => {
            eprintln!("not checking the clock: {why}");
            None
        }
    };
    let mut s = spec(&image, dir.path(), "e2e1");
    if let Some(ntp) = &ntp {
        s.extra_cmdline = format!("orc.ntp=10.0.2.2:{}", ntp.port);
    }
    let mut node = Node::start(s).unwrap();
    let fp =
        node.fingerprint(0, BOOT).unwrap_or_else(|| panic!("no maintenance fingerprint:\n{}", node.console_from(0)));
    let addr = format!("127.0.0.1:{}", node.spec.api_port);
    let config = dir.path().join("orcctl.toml");

    orcctl(&config, &["cluster", "init", &addr, "--fingerprint", &format!("sha256:{fp}"), "--context-name", "e2e"]);
    let v = &json(&config, &["version"])[0];
    assert_eq!(v["maintenance"], false);
    assert_eq!(v["hostname"], "e2e1");
    let (node_id, ca_fp) =
        (v["node_id"].as_str().unwrap().to_string(), v["ca_fingerprint"].as_str().unwrap().to_string());

    // The clock: stepped to the NTP server, then confirmed right.
    if ntp.is_some() {
        let start = Instant::now();
        let clock = loop {
            let out = Command::new(orc_e2e::paths::debug_bin("orcctl"))
                .arg("--orcconfig")
                .arg(&config)
                .args(["-o", "json", "health"])
                .output()
                .unwrap();
            let h: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            let check = h[0]["checks"].as_array().and_then(|c| c.iter().find(|c| c["name"] == "clock").cloned());
            // Stepped, then confirmed by the next answer.
            let confirmed = h[0]["clock"]["offset_seconds"].as_f64().is_some_and(|o| o.abs() < 1.0);
            if (h[0]["clock"]["synchronized"] == true && confirmed) || start.elapsed() > Duration::from_secs(60) {
                break (h[0]["clock"].clone(), check.unwrap_or_default());
            }
            std::thread::sleep(Duration::from_secs(1));
        };
        assert_eq!(clock.0["synchronized"], true, "{clock:?}");
        assert_eq!(clock.0["disciplined"], true, "{clock:?}");
        assert!(clock.0["offset_seconds"].as_f64().unwrap().abs() < 1.0, "{clock:?}");
        let msg = clock.1["message"].as_str().unwrap_or_default().to_string();
        assert!(msg.contains("stepped the clock by +"), "{msg}");
    }

    // Health: writing to / fails (read-only verified root), STATE persists.
    let h = &json(&config, &["health"])[0];
    assert_eq!(h["healthy"], true, "{h}");
    let checks = h["checks"].as_array().unwrap();
    let check = |name: &str| checks.iter().find(|c| c["name"] == name).cloned().unwrap_or_default();
    assert_eq!(check("root-readonly")["ok"], true, "{h}");
    assert!(check("root-readonly")["message"].as_str().unwrap().contains("read-only"));
    assert!(check("state")["message"].as_str().unwrap().contains("persistent"), "{h}");

    let services = json(&config, &["services"]);
    let agent = services.as_array().unwrap().iter().find(|s| s["name"] == "agent").unwrap();
    assert_eq!(agent["state"], "running");
    assert!(agent["rss_bytes"].as_u64().unwrap() > 0);
    assert!(orcctl(&config, &["logs", "init"]).contains("root verified by dm-verity"));
    assert!(orcctl(&config, &["logs", "agent"]).contains("cluster bootstrapped"));
    assert!(orcctl(&config, &["dmesg"]).contains("Linux version"));

    // No client certificate, or one from another cluster's CA: refused.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut c = orcctl::cmd::machine::client(&addr, &Trust::Insecure).await.unwrap();
        let s = c.version(orc_proto::machine::VersionRequest {}).await.unwrap_err();
        assert_eq!(s.code(), tonic::Code::Unauthenticated);
        let cfg = orcctl::config::Config::load_or_default(&config).unwrap();
        let ctx = cfg.contexts["e2e"].clone();
        let other = orc_agent::pki::ca::new_ca("x", "x").unwrap();
        let foreign =
            orc_agent::pki::ca::issue(&other, "x", "m", orc_agent::pki::role::Role::Admin, Duration::from_secs(600))
                .unwrap();
        let bad = orcctl::config::Context { cert: foreign.cert_pem, key: foreign.key_pem, ..ctx };
        let r = async {
            orcctl::cmd::machine::client(&addr, &Trust::Cluster(bad))
                .await?
                .version(orc_proto::machine::VersionRequest {})
                .await
                .map_err(|s| orcctl::error::CliError::from_status(&addr, s))
        }
        .await;
        assert!(r.is_err(), "a foreign-CA client was served");
    });

    // Reboot: the identity (cluster CA, node id) is on STATE and survives.
    let before = node.console_len();
    orcctl(&config, &["reboot"]);
    node.wait_console(before, "orc-init starting", BOOT).expect("node did not reboot");
    let v = &wait_api(&config, BOOT)[0];
    assert_eq!(v["node_id"], node_id.as_str());
    assert_eq!(v["ca_fingerprint"], ca_fp.as_str());

    orcctl(&config, &["shutdown"]);
    assert!(node.wait_exit(Duration::from_secs(120)), "node did not power off");
}

#[test]
fn tampered_root_image_does_not_boot() {
    let Some(image) = orc_e2e::e2e_image() else { return };
    let dir = tempfile::tempdir().unwrap();
    let tampered = dir.path().join("root.img");
    let mut bytes = std::fs::read(image.join("root.img")).unwrap();
    // One flipped byte in the erofs superblock block, which every mount reads.
    bytes[1024 + 64] ^= 0x01;
    std::fs::write(&tampered, bytes).unwrap();
    let mut s = spec(&image, dir.path(), "tampered");
    s.root_img = Some(tampered);
    let node = Node::start(s).unwrap();
    let line = node.wait_console(0, "fatal boot error", BOOT);
    assert!(line.is_some(), "no fatal boot error:\n{}", node.console_from(0));
    let console = node.console_from(0);
    assert!(!console.contains("TLS fingerprint"), "the agent started from a tampered root");
    assert!(console.contains("cannot mount the root filesystem"), "{console}");
}

/// A machine installed from the image's disk: OVMF, systemd-boot picking
/// the unified kernel image of slot A, its root found by GPT name and
/// verified, STATE on the disk's own partition (formatted and grown on
/// first boot), the identity kept across a reboot through the firmware.
#[test]
fn boots_from_its_disk_image_under_uefi() {
    let Some(image) = orc_e2e::e2e_image() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec(&image, dir.path(), "uefi1");
    s.boot = orc_e2e::qemu::Boot::Disk;
    let mut node = Node::start(s).unwrap();
    let fp =
        node.fingerprint(0, BOOT).unwrap_or_else(|| panic!("no maintenance fingerprint:\n{}", node.console_from(0)));
    let console = node.console_from(0);
    assert!(console.contains("orc.root=PARTLABEL=orc-root-a"), "the UKI's command line: {console}");
    assert!(console.contains("root verified by dm-verity"), "{console}");
    assert!(console.contains("STATE device is blank, formatting it"), "{console}");
    let addr = format!("127.0.0.1:{}", node.spec.api_port);
    let config = dir.path().join("orcctl.toml");
    orcctl(&config, &["cluster", "init", &addr, "--fingerprint", &format!("sha256:{fp}"), "--context-name", "uefi"]);
    let v = &json(&config, &["version"])[0];
    let node_id = v["node_id"].as_str().unwrap().to_string();
    // Booted from slot A, whose entry on the ESP is the installed version, blessed.
    assert_eq!(v["boot_slot"], "A", "{v}");
    let entries = v["boot_entries"].as_array().unwrap_or_else(|| panic!("{v}"));
    assert_eq!(entries.len(), 1, "{v}");
    let e = &entries[0];
    assert_eq!((&e["slot"], &e["state"], &e["version"]), (&"A".into(), &"blessed".into(), &v["version"]), "{v}");
    assert_eq!(e["file"], format!("EFI/Linux/orc-{}.efi", v["version"].as_str().unwrap()));
    let table = orcctl(&config, &["version"]);
    assert!(table.contains("(slot A, blessed)"), "{table}");
    let h = &json(&config, &["health"])[0];
    assert_eq!(h["healthy"], true, "{h}");
    let state = h["checks"].as_array().unwrap().iter().find(|c| c["name"] == "state").unwrap().clone();
    assert!(state["message"].as_str().unwrap().ends_with("is persistent"), "{state}");
    let init = orcctl(&config, &["logs", "init"]);
    assert!(init.contains("STATE grown to fill its device"), "{init}");

    let before = node.console_len();
    orcctl(&config, &["reboot"]);
    node.wait_console(before, "orc-init starting", BOOT).expect("node did not reboot");
    let v = &wait_api(&config, BOOT)[0];
    assert_eq!(v["node_id"], node_id.as_str(), "the identity is on the disk's STATE");
    assert!(!node.console_from(before).contains("formatting it"), "STATE formatted again");
    orcctl(&config, &["shutdown"]);
    assert!(node.wait_exit(Duration::from_secs(120)), "node did not power off");
}

/// The live ISO boots under BIOS (isolinux) and UEFI (El Torito's ESP,
/// the live UKI) with no disk at all: the root comes out of the
/// initramfs onto a loop device, verified by dm-verity; STATE is tmpfs.
/// The BIOS node is made a cluster and says so.
#[test]
fn boots_live_from_its_iso_under_bios_and_uefi_and_installs_to_a_disk() {
    let Some(image) = orc_e2e::e2e_image() else { return };
    let dir = tempfile::tempdir().unwrap();
    // The UEFI machine has a disk with data and a blank one, both tried
    // before the CD: neither boots until the install.
    const GIB: u64 = 1 << 30;
    let data_disk = dir.path().join("iso-uefi").join(orc_e2e::qemu::extra_disk("orc-data"));
    std::fs::create_dir_all(data_disk.parent().unwrap()).unwrap();
    let mut data = vec![0u8; 1 << 20];
    data[..12].copy_from_slice(b"someone's fs");
    std::fs::write(&data_disk, &data).unwrap();
    std::fs::File::options().write(true).open(&data_disk).unwrap().set_len(GIB).unwrap();
    let nodes: Vec<Node> = [("iso-bios", false), ("iso-uefi", true)]
        .iter()
        .map(|(name, uefi)| {
            let mut s = spec(&image, dir.path(), name);
            s.boot = orc_e2e::qemu::Boot::Iso { uefi: *uefi };
            if *uefi {
                s.extra_disks = vec![("orc-data".into(), GIB), ("orc-install".into(), 2 * GIB)];
            }
            Node::start(s).unwrap()
        })
        .collect();
    let mut fps = Vec::new();
    for n in &nodes {
        let fp =
            n.fingerprint(0, BOOT).unwrap_or_else(|| panic!("{}: no fingerprint:\n{}", n.spec.name, n.console_from(0)));
        let console = n.console_from(0);
        assert!(console.contains("orc.root=initrd:/root.img"), "{}: {console}", n.spec.name);
        assert!(console.contains("root verified by dm-verity device=/dev/loop0"), "{}: {console}", n.spec.name);
        fps.push(format!("sha256:{fp}"));
    }
    let config = dir.path().join("orcctl.toml");
    let bios = format!("127.0.0.1:{}", nodes[0].spec.api_port);
    orcctl(&config, &["cluster", "init", &bios, "--fingerprint", &fps[0], "--context-name", "iso"]);
    let v = &json(&config, &["--context", "iso", "version"])[0];
    assert_eq!(v["boot_slot"], "", "a live boot has no slot: {v}");

    // Install the UEFI node: wrong disks are refused with what to do.
    let uefi = format!("127.0.0.1:{}", nodes[1].spec.api_port);
    let bundle = std::fs::read_dir(&image)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "bundle"))
        .expect("the image's bundle (cargo xtask image)");
    let bundle = bundle.to_str().unwrap();
    let install = |disk: &str| {
        Command::new(orc_e2e::paths::debug_bin("orcctl"))
            .arg("--orcconfig")
            .arg(&config)
            .args([
                "node",
                "install",
                &uefi,
                "--fingerprint",
                &fps[1],
                "--bundle",
                bundle,
                "--timeout",
                "5m",
                "--disk",
                disk,
            ])
            .output()
            .unwrap()
    };
    let refused = |disk: &str, want: &str| {
        let out = install(disk);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(want), "install to {disk}: wanted {want:?}, got {err}");
    };
    refused("/dev/disk/by-id/virtio-nope", "/dev/disk/by-id/virtio-orc-install");
    refused("/dev/disk/by-id/virtio-orc-data", "holds data of an unknown kind: pass --wipe");
    let start = Instant::now();
    let out = install("/dev/disk/by-id/virtio-orc-install");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("from slot A of its disk"),
        "install: {said}{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        nodes[1].console_from(0)
    );
    eprintln!("installed and booted from the disk in {:?}:\n{said}", start.elapsed());
    assert_eq!(std::fs::read(&data_disk).unwrap()[..data.len()], data[..], "the disk not named was written");

    // The installed node is the node it was: the same fingerprint claims
    // it, and STATE is its disk's.
    orcctl(&config, &["cluster", "init", &uefi, "--fingerprint", &fps[1], "--context-name", "installed"]);
    let v = &json(&config, &["--context", "installed", "version"])[0];
    assert_eq!(v["boot_slot"], "A", "{v}");
    let entries = v["boot_entries"].as_array().unwrap_or_else(|| panic!("{v}"));
    assert_eq!(entries.len(), 1, "{v}");
    assert_eq!((&entries[0]["slot"], &entries[0]["state"]), (&"A".into(), &"blessed".into()), "{v}");
    let h = &json(&config, &["--context", "installed", "health"])[0];
    let state = h["checks"].as_array().unwrap().iter().find(|c| c["name"] == "state").unwrap().clone();
    assert!(!state["message"].as_str().unwrap().contains("tmpfs"), "STATE on the disk: {state}");
    let start = Instant::now();
    loop {
        let ls = json(&config, &["--context", "installed", "node", "ls"]);
        if ls.as_array().is_some_and(|n| n.len() == 1 && n[0]["status"] == "ready") {
            break;
        }
        assert!(start.elapsed() < BOOT, "the installed node is not a ready node: {ls}");
        std::thread::sleep(Duration::from_secs(1));
    }
}
