//! Pulls from private registries: HTTP basic (htpasswd) and bearer tokens
//! (a token server issuing ES256 JWTs, the flow Docker Hub uses), through a
//! real agent and the orcctl binary — images, and an OS upgrade published
//! as an image (`upgrade --image`). No root needed: pulls do not run
//! containers.

// The test harness: a failed unwrap is a failed test, with its line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::{Command, Stdio};

use orc_e2e::agent::{AgentProcess, Options};
use orc_e2e::oci;
use orc_e2e::paths::debug_bin;
use orc_e2e::registry::{Access, Registry};
use orcctl::cmd::cluster::{bootstrap, save_context};
use orcctl::connect::Trust;

fn pull(config: &std::path::Path, name: &str, login: Option<(&str, &str)>) -> (bool, String, String) {
    with_login(config, &["image", "pull", name], login)
}

/// orcctl `args`, with `--username` and the password on stdin when `login`.
fn with_login(config: &std::path::Path, args: &[&str], login: Option<(&str, &str)>) -> (bool, String, String) {
    let name = args.last().copied().unwrap_or_default();
    let mut cmd = Command::new(debug_bin("orcctl"));
    cmd.arg("--orcconfig").arg(config).args(args);
    if let Some((user, _)) = login {
        cmd.args(["--username", user, "--password-stdin"]);
    }
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    if let Some((_, password)) = login {
        child.stdin.as_mut().unwrap().write_all(format!("{password}\n").as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let o = child.wait_with_output().unwrap();
    let (out, err) = (String::from_utf8_lossy(&o.stdout).to_string(), String::from_utf8_lossy(&o.stderr).to_string());
    eprintln!("{} {name} {login:?}: {} {out:?} {err:?}", args[0], o.status);
    (o.status.success(), out, err)
}

fn check(access: Access) {
    let registry = Registry::start_with(access.clone()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let name = rt.block_on(registry.push(&oci::busybox(0).unwrap(), "private/busybox:1")).unwrap();
    let agent =
        AgentProcess::start_with(Options { insecure_registries: vec![registry.host()], ..Default::default() }).unwrap();
    let cfg = agent.dir.path().join("orcctl.toml");
    let (_, ctx) =
        rt.block_on(bootstrap(&agent.addr, &Trust::Pinned(agent.fingerprint().unwrap()), "t", "admin")).unwrap();
    save_context(&cfg, "t", ctx).unwrap();

    let (ok, _, err) = pull(&cfg, &name, None);
    assert!(!ok);
    assert!(err.contains("--username"), "anonymous pull of a private image: {err}");
    let (ok, _, err) = pull(&cfg, &name, Some(("alice", "wrong")));
    assert!(!ok);
    assert!(err.contains("refused these credentials"), "wrong password: {err}");
    let (ok, out, err) = pull(&cfg, &name, Some(("alice", "s3cret")));
    assert!(ok, "{err}");
    assert!(out.contains("pulled"), "{out}");

    // An OS upgrade published as an image in the private registry: the
    // node pulls it with the credentials given (`upgrade --image`) and
    // reads the bundle's version; orcctl then stops only because this
    // agent did not boot from a disk with slots.
    let bundle = small_bundle(agent.dir.path(), "9.9.9");
    let image = oci::files_only(&[("orc-9.9.9.bundle", std::fs::read(&bundle).unwrap())]).unwrap();
    let os = rt.block_on(registry.push(&image, "private/os:9.9.9")).unwrap();
    let upgrade = |name: &str, login| with_login(&cfg, &["-n", &agent.addr, "upgrade", "--image", name], login);
    let (ok, _, err) = upgrade(&os, None);
    assert!(!ok && err.contains("--password-stdin"), "anonymous: {err}");
    // Past the probe (the node pulled the layer and read the version) to
    // the refusal of a node without slots.
    let (ok, out, err) = upgrade(&os, Some(("alice", "s3cret")));
    assert!(!ok && err.contains("did not boot from the disk image"), "{out}{err}");
    let (ok, _, err) = upgrade(&name, Some(("alice", "s3cret")));
    assert!(!ok && err.contains("holds no *.bundle file"), "busybox is no bundle: {err}");

    // Credentials are not kept on the node.
    let state = agent.state_dir();
    let grep = Command::new("grep").args(["-r", "-l", "s3cret"]).arg(&state).output().unwrap();
    assert!(grep.stdout.is_empty(), "the password was written to {}", String::from_utf8_lossy(&grep.stdout));
}

/// A signed bundle of `version` with tiny stand-ins for its images (what
/// the node reads before it writes anything is all the same).
fn small_bundle(dir: &std::path::Path, version: &str) -> std::path::PathBuf {
    use orc_image::bundle::{BundleManifest, FORMAT, UKI_A, UKI_B};
    let parts = dir.join("bundle-parts");
    std::fs::create_dir_all(&parts).unwrap();
    let artifact = |name: &str| {
        std::fs::write(parts.join(name), format!("stand-in for {name}")).unwrap();
        orc_image::manifest::Artifact::of_file(&parts.join(name)).unwrap()
    };
    let m = BundleManifest {
        format: FORMAT,
        version: version.into(),
        git_revision: "test".into(),
        kernel_version: "test".into(),
        root_hash: "00".into(),
        uki_a: artifact(UKI_A),
        uki_b: artifact(UKI_B),
        root: artifact("root.img"),
    };
    let out = dir.join(format!("orc-{version}.bundle"));
    orc_image::bundle::write(&m, &parts, &orc_e2e::os_images::other_key().unwrap(), &out).unwrap();
    out
}

#[test]
fn basic_auth_registry() {
    check(Access::Basic { user: "alice".into(), password: "s3cret".into() });
}

#[test]
fn bearer_token_registry() {
    check(Access::Token { user: "alice".into(), password: "s3cret".into() });
}

#[test]
fn plain_http_registry_not_listed_as_insecure_is_named() {
    let registry = Registry::start().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let name = rt.block_on(registry.push(&oci::busybox(0).unwrap(), "orc/busybox:1")).unwrap();
    let agent = AgentProcess::start().unwrap();
    let cfg = agent.dir.path().join("orcctl.toml");
    let (_, ctx) =
        rt.block_on(bootstrap(&agent.addr, &Trust::Pinned(agent.fingerprint().unwrap()), "t", "admin")).unwrap();
    save_context(&cfg, "t", ctx).unwrap();
    let (ok, _, err) = pull(&cfg, &name, None);
    assert!(!ok);
    assert!(err.contains("plain HTTP") && err.contains("orc.insecure_registries"), "{err}");
}

#[test]
fn multi_arch_index_resolves_to_linux_amd64() {
    let registry = Registry::start().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let amd64 = oci::busybox(0).unwrap();
    let mut arm64 = oci::busybox(0).unwrap();
    arm64.config = String::from_utf8(arm64.config).unwrap().replace("\"amd64\"", "\"arm64\"").into_bytes();
    let name = rt.block_on(registry.push_index(&amd64, &arm64, "orc/multi", "1")).unwrap();
    let agent =
        AgentProcess::start_with(Options { insecure_registries: vec![registry.host()], ..Default::default() }).unwrap();
    let cfg = agent.dir.path().join("orcctl.toml");
    let (_, ctx) =
        rt.block_on(bootstrap(&agent.addr, &Trust::Pinned(agent.fingerprint().unwrap()), "t", "admin")).unwrap();
    save_context(&cfg, "t", ctx).unwrap();
    let (ok, _, err) = pull(&cfg, &name, None);
    assert!(ok, "{err}");
    let ls = Command::new(debug_bin("orcctl"))
        .arg("--orcconfig")
        .arg(&cfg)
        .args(["-o", "json", "image", "ls"])
        .output()
        .unwrap();
    let images: serde_json::Value = serde_json::from_slice(&ls.stdout).unwrap();
    assert_eq!(images[0]["id"], oci::sha256(&amd64.config), "{images}");
}
