//! Process-level tests of the container runtime: a real agent (as root, in
//! a private mount namespace with cgroup2), a real docker-registry on
//! loopback, a busybox image built here and pushed to it, and the orcctl
//! binary. Skipped when not root.

// The test harness: a failed unwrap is a failed test, with its line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use orc_e2e::agent::{can_run_containers, AgentProcess, Options};
use orc_e2e::oci;
use orc_e2e::paths::debug_bin;
use orc_e2e::registry::Registry;
use orc_e2e::{free_port, http_get};
use orcctl::cmd::cluster::{bootstrap, save_context};
use orcctl::connect::Trust;

struct Ctl {
    config: std::path::PathBuf,
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Ctl {
    fn run(&self, args: &[&str]) -> Out {
        let o = Command::new(debug_bin("orcctl")).arg("--orcconfig").arg(&self.config).args(args).output().unwrap();
        let out = Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into(),
            stderr: String::from_utf8_lossy(&o.stderr).into(),
        };
        eprintln!("$ orcctl {}\n  -> {} {:?} {:?}", args.join(" "), out.code, out.stdout, out.stderr);
        out
    }
    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert_eq!(o.code, 0, "orcctl {args:?} failed: {}", o.stderr);
        o.stdout
    }
    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&a)).unwrap()
    }
    /// The container named `name` in `container ls -a`.
    fn container(&self, name: &str) -> serde_json::Value {
        let all = self.json(&["container", "ls", "-a"]);
        all.as_array().unwrap().iter().find(|c| c["name"] == name).cloned().unwrap_or_default()
    }
    fn wait_state(&self, name: &str, state: &str) -> serde_json::Value {
        let start = Instant::now();
        loop {
            let c = self.container(name);
            if c["state"] == state {
                return c;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "{name} never became {state}: {c}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn wait_http(port: u16) -> String {
    let start = Instant::now();
    loop {
        if let Some(body) = http_get(port) {
            return body;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "nothing answers on 127.0.0.1:{port}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn images_and_containers_on_a_real_agent() {
    if !can_run_containers() {
        eprintln!("skipped: running containers needs root");
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let registry = Registry::start().unwrap();
    let image = oci::busybox(0).unwrap();
    let name = rt.block_on(registry.push(&image, "orc/busybox:1")).unwrap();
    let mut agent = AgentProcess::start_with(Options {
        runtime: true,
        insecure_registries: vec![registry.host()],
        ..Default::default()
    })
    .unwrap();
    let cfg = agent.dir.path().join("orcctl.toml");
    let fp = agent.fingerprint().unwrap();
    let (_, ctx) = rt.block_on(bootstrap(&agent.addr, &Trust::Pinned(fp), "t", "admin")).unwrap();
    save_context(&cfg, "t", ctx).unwrap();
    let ctl = Ctl { config: cfg };

    // Images: pull, list, a missing tag, a registry that is not there.
    assert!(ctl.ok(&["image", "pull", &name]).contains("pulled"));
    let images = ctl.json(&["image", "ls"]);
    assert_eq!(images[0]["name"], name.as_str(), "{images}");
    assert_eq!(images[0]["layers"].as_array().unwrap().len(), 2);
    let missing = ctl.run(&["image", "pull", &format!("{}/orc/busybox:nope", registry.host())]);
    assert_ne!(missing.code, 0);
    assert!(missing.stderr.contains("no such image"), "{}", missing.stderr);
    let unreachable = ctl.run(&["image", "pull", "127.0.0.1:1/x:1"]);
    assert!(unreachable.stderr.contains("cannot reach the registry"), "{}", unreachable.stderr);

    // A web server with host networking.
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let id = ctl.ok(&["container", "run", "--name", "web", &name, "--", "httpd", "-f", "-p", &listen, "-h", "/www"]);
    assert_eq!(id.trim().len(), 64, "{id}");
    assert_eq!(wait_http(port), oci::INDEX_HTML);
    let dup = ctl.run(&["container", "run", "--name", "web", &name]);
    assert!(dup.stderr.contains("exists"), "{}", dup.stderr);

    // Exec: output, exit code, the whiteout of the second layer, users.
    let o = ctl.run(&["container", "exec", "web", "--", "sh", "-c", "echo out; echo err >&2; cat /etc/motd; exit 7"]);
    assert_eq!(o.code, 7);
    assert_eq!(o.stdout, "out\n");
    assert!(o.stderr.contains("err") && o.stderr.contains("motd"), "{}", o.stderr);
    assert_eq!(ctl.ok(&["container", "exec", "-u", "www", "web", "--", "id", "-u"]), "33\n");
    // exec'd processes run under the container's seccomp filter too.
    let status =
        ctl.ok(&["container", "exec", "web", "--", "grep", "-E", "^(Seccomp|NoNewPrivs):", "/proc/self/status"]);
    assert!(status.contains("Seccomp:\t2") && status.contains("NoNewPrivs:\t1"), "{status}");
    // The kernel command line (it carries the join token) is masked.
    assert_eq!(ctl.ok(&["container", "exec", "web", "--", "sh", "-c", "wc -c < /proc/cmdline"]).trim(), "0");
    // Out of memory, the kernel kills containers before the agent.
    assert_eq!(ctl.ok(&["container", "exec", "web", "--", "cat", "/proc/self/oom_score_adj"]).trim(), "0");
    let agent_adj = std::fs::read_to_string(format!("/proc/{}/oom_score_adj", agent.child.id())).unwrap();
    // Lowering a score takes CAP_SYS_RESOURCE, which some sandboxes withhold
    // even from root (a node's agent has it).
    let cap_eff = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:").map(|v| u64::from_str_radix(v.trim(), 16).unwrap()))
        .unwrap();
    const CAP_SYS_RESOURCE: u32 = 24;
    if cap_eff & (1 << CAP_SYS_RESOURCE) != 0 {
        assert_eq!(agent_adj.trim(), "-900");
    } else {
        assert!(agent.log().contains("cannot lower the agent's OOM score"), "{}", agent.log());
    }
    // Container processes get default signal handling (the shim ignores SIGPIPE).
    let ign = ctl.ok(&["container", "exec", "web", "--", "grep", "SigIgn", "/proc/self/status"]);
    let mask = u64::from_str_radix(ign.trim().trim_start_matches("SigIgn:").trim(), 16).unwrap();
    assert_eq!(mask & (1 << (libc::SIGPIPE - 1)), 0, "SIGPIPE is ignored in the container: {ign}");
    assert_eq!(ctl.ok(&["container", "exec", "-e", "X=1", "web", "--", "sh", "-c", "echo $X$ORC_TEST"]), "1image\n");
    let stdin = Command::new(debug_bin("orcctl"))
        .arg("--orcconfig")
        .arg(&ctl.config)
        .args(["container", "exec", "-i", "web", "--", "wc", "-c"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    stdin.stdin.as_ref().unwrap().write_all(b"twelve bytes").unwrap();
    let o = stdin.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "12");

    // exec -it: a real pty on both ends (script(1) gives orcctl a terminal
    // of 30x100); inside, a terminal of the same size.
    let cmd = format!(
        "stty rows 30 cols 100; {} --orcconfig {} container exec -it web -- sh -c 'tty; stty size'",
        debug_bin("orcctl").display(),
        ctl.config.display()
    );
    let o =
        Command::new("script").args(["-qec", &cmd, "/dev/null"]).stdin(std::process::Stdio::null()).output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{text}");
    assert!(text.contains("/dev/pts/") && text.contains("30 100"), "{text}");

    // Logs of a short-lived container, with its environment.
    ctl.ok(&[
        "container",
        "run",
        "--name",
        "hello",
        "-e",
        "A=b",
        &name,
        "--",
        "sh",
        "-c",
        "echo to-stdout; env; echo to-stderr >&2; exit 3",
    ]);
    let hello = ctl.wait_state("hello", "exited");
    assert_eq!(hello["exit"]["code"], 3, "{hello}");
    let logs = ctl.run(&["container", "logs", "hello"]);
    assert!(
        logs.stdout.contains("to-stdout") && logs.stdout.contains("A=b") && logs.stdout.contains("ORC_TEST=image"),
        "{}",
        logs.stdout
    );
    assert!(logs.stderr.contains("to-stderr"), "{}", logs.stderr);
    assert_eq!(ctl.ok(&["container", "logs", "--tail", "1", "hello"]), "");
    let inspect: serde_json::Value = serde_json::from_str(&ctl.ok(&["container", "inspect", "hello"])).unwrap();
    assert_eq!(inspect[0]["spec"]["linux"]["cgroupsPath"], format!("/orc/{}", inspect[0]["id"].as_str().unwrap()));

    // wait: at once for an ended container, with its code.
    assert_eq!(ctl.ok(&["container", "wait", "hello"]), "3\n");
    // run --rm: attached, its output on ours, its exit status ours, removed after.
    let o = ctl.run(&[
        "container",
        "run",
        "--rm",
        "--name",
        "once",
        &name,
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 4",
    ]);
    assert_eq!((o.code, o.stdout.as_str()), (4, "out\n"), "{}", o.stderr);
    assert!(o.stderr.contains("err"), "{}", o.stderr);
    assert!(ctl.container("once").is_null(), "run --rm left the container behind");
    assert_eq!(ctl.run(&["container", "run", "--rm", &name, "--", "true"]).code, 0);
    let both = ctl.run(&["container", "run", "--rm", "--restart", "always", &name]);
    assert!(both.code != 0 && both.stderr.contains("contradict"), "{}", both.stderr);

    // Restart policy: on-failure with a limit.
    ctl.ok(&[
        "container",
        "run",
        "--name",
        "flaky",
        "--restart",
        "on-failure:2",
        &name,
        "--",
        "sh",
        "-c",
        "echo try; exit 1",
    ]);
    let start = Instant::now();
    loop {
        let c = ctl.container("flaky");
        if c["restart_count"] == 2 && c["state"] == "exited" {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "flaky: {c}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(ctl.ok(&["container", "logs", "flaky"]).matches("try").count(), 3);

    // The agent dies (twice, each time with the shims' Wait calls open): the
    // web server keeps serving, the new agent re-attaches.
    agent.restart().unwrap();
    assert_eq!(ctl.container("web")["state"], "running");
    agent.restart().unwrap();
    assert_eq!(http_get(port).as_deref(), Some(oci::INDEX_HTML));
    assert_eq!(ctl.container("web")["state"], "running");
    assert_eq!(ctl.ok(&["container", "exec", "web", "--", "echo", "still here"]), "still here\n");

    // Stop, remove, image garbage collection.
    let rm = ctl.run(&["container", "rm", "web"]);
    assert!(rm.stderr.contains("is running"), "{}", rm.stderr);
    assert!(ctl.ok(&["container", "stop", "-t", "2", "web"]).contains("exited"));
    assert!(http_get(port).is_none());
    let in_use = ctl.run(&["image", "rm", &name]);
    assert!(in_use.stderr.contains("used by"), "{}", in_use.stderr);
    for c in ["web", "hello", "flaky"] {
        ctl.ok(&["container", "rm", c]);
    }
    assert!(ctl.ok(&["image", "rm", &name]).contains("freed"));
    let layers = std::fs::read_dir(agent.state_dir().join("images/layers/sha256")).unwrap().count();
    assert_eq!(layers, 0);

    // Air-gapped: an OCI layout archive; then a corrupt one.
    let archive = agent.dir.path().join("busybox.tar");
    std::fs::write(&archive, image.layout_tar("local/busybox:2").unwrap()).unwrap();
    assert!(ctl.ok(&["image", "load", archive.to_str().unwrap()]).contains("local/busybox:2"));
    ctl.ok(&["container", "run", "--name", "loaded", "local/busybox:2", "--", "true"]);
    assert_eq!(ctl.wait_state("loaded", "exited")["exit"]["code"], 0);
    let saved = agent.dir.path().join("saved.tar");
    std::fs::write(&saved, image.docker_save_tar("local/saved:3").unwrap()).unwrap();
    assert!(ctl.ok(&["image", "load", saved.to_str().unwrap()]).contains("local/saved:3"));
    assert_eq!(
        ctl.ok(&["container", "run", "--name", "saved", "local/saved:3", "--", "cat", "/www/index.html"]).trim().len(),
        64
    );
    ctl.wait_state("saved", "exited");
    assert_eq!(ctl.ok(&["container", "logs", "saved"]), oci::INDEX_HTML);
    // An image of 128 layers (2 + 126): the overlay's options stay short.
    let deep = agent.dir.path().join("deep.tar");
    std::fs::write(&deep, oci::busybox_with(0, 126).unwrap().layout_tar("local/deep:1").unwrap()).unwrap();
    assert!(ctl.ok(&["image", "load", deep.to_str().unwrap()]).contains("local/deep:1"));
    ctl.ok(&[
        "container",
        "run",
        "--name",
        "deep",
        "local/deep:1",
        "--",
        "sh",
        "-c",
        "cat /layers/125; ls /layers | wc -l",
    ]);
    ctl.wait_state("deep", "exited");
    assert_eq!(ctl.ok(&["container", "logs", "deep"]), "125\n126\n");
    std::fs::write(&archive, b"not an archive at all").unwrap();
    let bad = ctl.run(&["image", "load", archive.to_str().unwrap()]);
    assert_ne!(bad.code, 0);
    assert!(bad.stderr.contains("image archive"), "{}", bad.stderr);
    let missing = ctl.run(&["container", "run", "nope/nothing:1"]);
    assert_ne!(missing.code, 0);
    eprintln!("{}", agent.log());
}
