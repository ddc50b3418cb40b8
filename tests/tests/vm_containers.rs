//! VM end to end for containers: a QEMU node pulls the busybox test image
//! from a real docker-registry on the host (10.0.2.2 from the guest), runs
//! busybox httpd, serves a page through a forwarded port, execs, shows
//! logs, enforces memory, pids and CPU limits, keeps serving across an
//! agent restart and brings the container back after a reboot. Runs when
//! `ORC_E2E_IMAGE` is set (`cargo xtask test`).

// The test harness: a failed unwrap is a failed test, with its line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use orc_e2e::oci;
use orc_e2e::qemu::{Node, NodeSpec};
use orc_e2e::registry::Registry;
use orc_e2e::{free_port, http_get};

const BOOT: Duration = Duration::from_secs(240);

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(config: &Path, args: &[&str]) -> Out {
    let o =
        Command::new(orc_e2e::paths::debug_bin("orcctl")).arg("--orcconfig").arg(config).args(args).output().unwrap();
    let out = Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into(),
        stderr: String::from_utf8_lossy(&o.stderr).into(),
    };
    let shown: String = if out.stdout.len() > 300 {
        format!("{}…{}", &out.stdout[..150], &out.stdout[out.stdout.len() - 150..])
    } else {
        out.stdout.clone()
    };
    eprintln!("$ orcctl {} -> {} {shown:?} {:?}", args.join(" "), out.code, out.stderr);
    out
}

fn ok(config: &Path, args: &[&str]) -> String {
    let o = run(config, args);
    assert_eq!(o.code, 0, "orcctl {args:?}: {}", o.stderr);
    o.stdout
}

fn json(config: &Path, args: &[&str]) -> serde_json::Value {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    serde_json::from_str(&ok(config, &a)).unwrap()
}

fn container(config: &Path, name: &str) -> serde_json::Value {
    let all = json(config, &["container", "ls", "-a"]);
    all.as_array().unwrap().iter().find(|c| c["name"] == name).cloned().unwrap_or_default()
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn stats(config: &Path, name: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(&ok(config, &["container", "inspect", name])).unwrap();
    v[0]["stats"].clone()
}

#[test]
fn node_runs_containers_from_a_registry() {
    let Some(image) = orc_e2e::e2e_image() else { return };
    let registry = Registry::start().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(registry.push(&oci::busybox(0).unwrap(), "orc/busybox:1")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let web_port = free_port();
    let spec = NodeSpec {
        name: "c1".into(),
        dir: dir.path().join("c1"),
        image: image.clone(),
        api_port: free_port(),
        memory_mb: 1024,
        // The guest reaches the host's loopback as 10.0.2.2.
        extra_cmdline: format!("orc.insecure_registries=10.0.2.2:{}", registry.port),
        forwards: vec![(web_port, 8080)],
        ..Default::default()
    };
    let mut node = Node::start(spec).unwrap();
    let fp = node.fingerprint(0, BOOT).unwrap_or_else(|| panic!("no fingerprint:\n{}", node.console_from(0)));
    let addr = format!("127.0.0.1:{}", node.spec.api_port);
    let cfg = dir.path().join("orcctl.toml");
    ok(&cfg, &["cluster", "init", &addr, "--fingerprint", &format!("sha256:{fp}"), "--context-name", "c"]);
    let name = format!("10.0.2.2:{}/orc/busybox:1", registry.port);

    // Pull, run a web server, fetch a page, exec, logs.
    assert!(ok(&cfg, &["image", "pull", &name]).contains("pulled"));
    ok(
        &cfg,
        &[
            "container",
            "run",
            "--name",
            "web",
            "--restart",
            "always",
            &name,
            "--",
            "httpd",
            "-f",
            "-p",
            "8080",
            "-h",
            "/www",
        ],
    );
    wait_for("the web page", Duration::from_secs(60), || http_get(web_port).as_deref() == Some(oci::INDEX_HTML));
    assert_eq!(ok(&cfg, &["container", "exec", "web", "--", "cat", "/www/index.html"]), oci::INDEX_HTML);
    let o = run(&cfg, &["container", "exec", "web", "--", "sh", "-c", "touch /probe && echo rw; exit 4"]);
    assert_eq!((o.code, o.stdout.as_str()), (4, "rw\n"));
    ok(&cfg, &["container", "run", "--name", "hello", &name, "--", "sh", "-c", "echo hi from the node"]);
    wait_for("hello to exit", Duration::from_secs(60), || container(&cfg, "hello")["state"] == "exited");
    assert!(ok(&cfg, &["container", "logs", "hello"]).contains("hi from the node"));

    // Limits: memory (OOM kill reported), pids (fork bomb contained), CPU quota.
    ok(&cfg, &["container", "run", "--name", "oom", "--memory", "16m", &name, "--", "sh", "-c", "tail /dev/zero"]);
    wait_for("the OOM kill", Duration::from_secs(120), || container(&cfg, "oom")["state"] == "exited");
    let oom = container(&cfg, "oom");
    assert_eq!(oom["exit"]["oom_killed"], true, "{oom}");
    // A fork bomb under a pids limit: its shell cannot fork past the limit
    // and gives up; the node does not notice.
    ok(
        &cfg,
        &[
            "container",
            "run",
            "--name",
            "bomb",
            "--pids-limit",
            "24",
            &name,
            "--",
            "sh",
            "-c",
            "i=0; while [ $i -lt 500 ]; do sleep 600 & i=$((i+1)); done; echo spawned all",
        ],
    );
    wait_for("the fork bomb to be stopped", Duration::from_secs(60), || container(&cfg, "bomb")["state"] == "exited");
    let bomb = container(&cfg, "bomb");
    assert_ne!(bomb["exit"]["code"], 0, "{bomb}");
    let o = run(&cfg, &["container", "logs", "bomb"]);
    assert!(o.stderr.contains("fork") && !o.stdout.contains("spawned all"), "{} {}", o.stdout, o.stderr);
    assert_eq!(json(&cfg, &["health"])[0]["healthy"], true, "the node suffered from the fork bomb");
    ok(
        &cfg,
        &[
            "container",
            "run",
            "--name",
            "few",
            "--pids-limit",
            "24",
            &name,
            "--",
            "sh",
            "-c",
            "for i in 1 2 3 4 5; do sleep 600 & done; sleep 600",
        ],
    );
    // Five sleepers and the last command (the shell execs it): 6.
    wait_for("five sleepers", Duration::from_secs(60), || {
        stats(&cfg, "few")["pids_current"].as_u64().unwrap_or(0) >= 6
    });
    assert!(stats(&cfg, "few")["pids_current"].as_u64().unwrap() <= 7);
    ok(&cfg, &["container", "run", "--name", "spin", "--cpus", "0.5", &name, "--", "sh", "-c", "while :; do :; done"]);
    std::thread::sleep(Duration::from_secs(2));
    let (u1, t1) = (stats(&cfg, "spin")["cpu_usage_usec"].as_u64().unwrap(), Instant::now());
    std::thread::sleep(Duration::from_secs(6));
    let (u2, t2) = (stats(&cfg, "spin")["cpu_usage_usec"].as_u64().unwrap(), Instant::now());
    let share = (u2 - u1) as f64 / (t2 - t1).as_micros() as f64;
    eprintln!("cpu quota 0.5: measured share {share:.3} of one CPU");
    assert!(share > 0.2 && share < 0.65, "a 0.5 CPU quota gave {share:.3}");
    for c in ["bomb", "few", "spin"] {
        ok(&cfg, &["container", "rm", "-f", c]);
    }

    // The agent restarts: the container keeps serving, the new agent re-attaches.
    ok(&cfg, &["restart", "agent"]);
    std::thread::sleep(Duration::from_secs(2));
    wait_for("the agent to come back", Duration::from_secs(60), || run(&cfg, &["container", "ls"]).code == 0);
    assert_eq!(container(&cfg, "web")["state"], "running");
    assert_eq!(http_get(web_port).as_deref(), Some(oci::INDEX_HTML));
    assert_eq!(ok(&cfg, &["container", "exec", "web", "--", "echo", "after restart"]), "after restart\n");

    // Reboot: the restart policy brings the web server back.
    let before = node.console_len();
    ok(&cfg, &["reboot"]);
    node.wait_console(before, "orc-init starting", BOOT).expect("node did not reboot");
    wait_for("the web page after the reboot", BOOT, || http_get(web_port).as_deref() == Some(oci::INDEX_HTML));
    let web = container(&cfg, "web");
    assert_eq!(web["state"], "running");
    assert!(web["restart_count"].as_u64().unwrap() >= 1, "{web}");

    ok(&cfg, &["container", "stop", "web"]);
    assert!(http_get(web_port).is_none());
    ok(&cfg, &["shutdown"]);
    assert!(node.wait_exit(Duration::from_secs(120)), "node did not power off");
}
