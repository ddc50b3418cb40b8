//! Process level: a real orc-agent on loopback, real TLS, driven through
//! orcctl's library. Maintenance mode, bootstrap with a pinned fingerprint,
//! and the whole authorization matrix with real certificates.

// The test harness: a failed unwrap is a failed test, with its line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use orc_agent::pki::ca::{self, CertKey};
use orc_agent::pki::role::Role;
use orc_e2e::agent::AgentProcess;
use orc_proto::machine::*;
use orcctl::cmd::{cluster::bootstrap, machine::client};
use orcctl::config::Context;
use orcctl::connect::Trust;
use orcctl::error::CliError;
use std::time::Duration;
use tonic::Code;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Calls one RPC by name; Ok(()) or the status code.
async fn call(addr: &str, trust: &Trust, method: &str) -> Result<(), Result<Code, String>> {
    let mut c = client(addr, trust).await.map_err(|e| Err(e.to_string()))?;
    let r = match method {
        "Version" => c.version(VersionRequest {}).await.map(|_| ()),
        "Health" => c.health(HealthRequest {}).await.map(|_| ()),
        "Services" => c.services(ServicesRequest {}).await.map(|_| ()),
        "Reboot" => c.reboot(RebootRequest {}).await.map(|_| ()),
        "Shutdown" => c.shutdown(ShutdownRequest {}).await.map(|_| ()),
        "Bootstrap" => c.bootstrap(BootstrapRequest::default()).await.map(|_| ()),
        "Dmesg" => c.dmesg(DmesgRequest { follow: false }).await.map(|_| ()),
        "Logs" => c.logs(LogsRequest { service: "init".into(), follow: false, tail: 0 }).await.map(|_| ()),
        m => panic!("unknown method {m}"),
    };
    r.map_err(|s| match CliError::from_status(addr, s.clone()) {
        CliError::Rpc { code, .. } => Ok(code),
        other => Err(other.to_string()),
    })
}

fn ctx_with(base: &Context, ck: &CertKey) -> Context {
    Context { cert: ck.cert_pem.clone(), key: ck.key_pem.clone(), ..base.clone() }
}

#[test]
fn maintenance_bootstrap_and_authorization_matrix() {
    let agent = AgentProcess::start().unwrap();
    let addr = agent.addr.clone();
    let rt = rt();
    rt.block_on(async {
        // Maintenance mode: Version and Health answer, the rest is refused with advice.
        let v = client(&addr, &Trust::Insecure).await.unwrap().version(VersionRequest {}).await.unwrap().into_inner();
        assert!(v.maintenance && v.node_id.is_empty());
        assert_eq!(call(&addr, &Trust::Insecure, "Health").await, Ok(()));
        assert_eq!(call(&addr, &Trust::Insecure, "Reboot").await, Err(Ok(Code::FailedPrecondition)));
        assert_eq!(call(&addr, &Trust::Insecure, "Logs").await, Err(Ok(Code::FailedPrecondition)));

        // A wrong pinned fingerprint is refused before anything is sent.
        let wrong = Trust::Pinned("00".repeat(32));
        let e = bootstrap(&addr, &wrong, "t", "admin").await.unwrap_err().to_string();
        assert!(e.contains("fingerprint mismatch"), "{e}");

        let fp = agent.fingerprint().unwrap();
        let (r, admin) = bootstrap(&addr, &Trust::Pinned(format!("sha256:{fp}")), "t", "admin").await.unwrap();
        assert!(!r.cluster_id.is_empty() && !r.node_id.is_empty());
        let v = client(&addr, &Trust::Cluster(admin.clone()))
            .await
            .unwrap()
            .version(VersionRequest {})
            .await
            .unwrap()
            .into_inner();
        assert!(!v.maintenance);
        assert_eq!(
            (v.node_id.as_str(), v.cluster_id.as_str(), v.role.as_str()),
            (r.node_id.as_str(), r.cluster_id.as_str(), "manager")
        );

        // Certificates for every role, from the cluster's own CA.
        let pki = agent.dir.path().join("state/pki");
        let ca = CertKey {
            cert_pem: std::fs::read_to_string(pki.join("ca.crt")).unwrap(),
            key_pem: std::fs::read_to_string(pki.join("ca.key")).unwrap(),
        };
        std::fs::create_dir_all(agent.run_dir().join("log")).unwrap();
        std::fs::write(agent.run_dir().join("log/init.log"), "boot\n").unwrap();
        let issue = |role| ca::issue(&ca, &r.cluster_id, "someone", role, Duration::from_secs(3600)).unwrap();
        let trust = |role| Trust::Cluster(ctx_with(&admin, &issue(role)));

        // Reboot/Shutdown pass authorization and then fail: this agent has no orc-init.
        let authorized_but_no_init = Err(Ok(Code::FailedPrecondition));
        use Role::*;
        type Case = (Role, &'static str, Result<(), Result<Code, String>>);
        let cases: Vec<Case> = vec![
            (Admin, "Version", Ok(())),
            (Admin, "Health", Ok(())),
            (Admin, "Services", Ok(())),
            (Admin, "Dmesg", Ok(())),
            (Admin, "Logs", Ok(())),
            (Admin, "Reboot", authorized_but_no_init.clone()),
            (Admin, "Shutdown", authorized_but_no_init.clone()),
            (Admin, "Bootstrap", Err(Ok(Code::AlreadyExists))),
            (Operator, "Version", Ok(())),
            (Operator, "Logs", Ok(())),
            (Operator, "Reboot", authorized_but_no_init.clone()),
            (Operator, "Shutdown", authorized_but_no_init.clone()),
            (Operator, "Bootstrap", Err(Ok(Code::AlreadyExists))),
            (Reader, "Version", Ok(())),
            (Reader, "Health", Ok(())),
            (Reader, "Services", Ok(())),
            (Reader, "Dmesg", Ok(())),
            (Reader, "Logs", Ok(())),
            (Reader, "Reboot", Err(Ok(Code::PermissionDenied))),
            (Reader, "Shutdown", Err(Ok(Code::PermissionDenied))),
            (Worker, "Version", Ok(())),
            (Worker, "Logs", Err(Ok(Code::PermissionDenied))),
            (Worker, "Reboot", Err(Ok(Code::PermissionDenied))),
            (Manager, "Health", Ok(())),
            (Manager, "Shutdown", Err(Ok(Code::PermissionDenied))),
        ];
        for (i, (role, method, want)) in cases.into_iter().enumerate() {
            let got = call(&addr, &trust(role), method).await;
            assert_eq!(got, want, "case {i}: {method} as {role}");
        }

        // No client certificate: refused with a status that says why.
        assert_eq!(call(&addr, &Trust::Insecure, "Version").await, Err(Ok(Code::Unauthenticated)));
        // One from another cluster's CA: refused at the TLS layer.
        let other_ca = ca::new_ca("other", "other").unwrap();
        let foreign = ca::issue(&other_ca, "other", "mallory", Admin, Duration::from_secs(3600)).unwrap();
        let e = call(&addr, &Trust::Cluster(ctx_with(&admin, &foreign)), "Version").await.unwrap_err().unwrap_err();
        assert!(e.contains("refused our client certificate"), "{e}");
        // A context whose CA is not the node's: the node is not trusted.
        let wrong_ca = Context { ca: other_ca.cert_pem.clone(), ..ctx_with(&admin, &foreign) };
        let e = call(&addr, &Trust::Cluster(wrong_ca), "Version").await.unwrap_err().unwrap_err();
        assert!(e.contains("not signed by this context's CA"), "{e}");
        // An expired client certificate is refused with a plain message.
        let expired = ca::issue(&ca, &r.cluster_id, "old", Admin, Duration::ZERO).unwrap();
        std::thread::sleep(Duration::from_secs(1));
        let e = client(&addr, &Trust::Cluster(ctx_with(&admin, &expired)))
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("expired"), "{e}");
    });
}

#[test]
fn identity_survives_agent_restart() {
    let agent = AgentProcess::start().unwrap();
    let rt = rt();
    let fp = agent.fingerprint().unwrap();
    let (r, admin) = rt.block_on(bootstrap(&agent.addr, &Trust::Pinned(fp), "t", "admin")).unwrap();
    let state = agent.dir.path().join("state");
    // A second agent on the same state is a restart of the first.
    let mut agent = agent;
    agent.child.kill().unwrap();
    agent.child.wait().unwrap();
    let bin = orc_e2e::paths::debug_bin("orc-agent");
    let run2 = agent.dir.path().join("run2");
    let mut child = std::process::Command::new(bin)
        .args(["--listen", "127.0.0.1:0", "--vsock-port", "0", "--state-dir"])
        .arg(&state)
        .arg("--run-dir")
        .arg(&run2)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut addr = String::new();
    for _ in 0..200 {
        if let Ok(a) = std::fs::read_to_string(run2.join("api.addr")) {
            addr = a;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let v = rt
        .block_on(async {
            client(&addr, &Trust::Cluster(admin.clone()))
                .await?
                .version(VersionRequest {})
                .await
                .map_err(|s| CliError::from_status(&addr, s))
        })
        .unwrap()
        .into_inner();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!((v.node_id, v.cluster_id), (r.node_id, r.cluster_id));
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn a_flood_of_stalled_connections_is_bounded_and_the_node_keeps_serving() {
    let agent = AgentProcess::start().unwrap();
    let pid = agent.child.id();
    let base = open_fds(pid);
    // 300 clients that connect and never say a word (no TLS hello).
    let stalled: Vec<_> = (0..300).map(|_| std::net::TcpStream::connect(&agent.addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(500));
    let during = open_fds(pid);
    // At most the handshakes under way are held; the rest are closed at accept.
    let bound = orc_agent::api::server::MAX_HANDSHAKES + 8;
    assert!(during <= base + bound, "{during} descriptors with {base} at rest: the flood is not bounded");
    drop(stalled);
    // Once they are gone (closed by the clients, or after the handshake timeout), the node serves.
    let fp = agent.fingerprint().unwrap();
    let rt = rt();
    let mut served = false;
    for _ in 0..100 {
        if rt.block_on(call(&agent.addr, &Trust::Pinned(fp.clone()), "Version")).is_ok() {
            served = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(served, "the node stopped serving after the flood: {}", agent.log());
}

#[test]
fn maintenance_mode_is_claimed_only_as_the_node_was_told() {
    use orc_e2e::agent::Options;
    let rt = rt();
    let start = |args: &[&str]| {
        AgentProcess::start_with(Options { args: args.iter().map(|s| s.to_string()).collect(), ..Default::default() })
            .unwrap()
    };
    let claim = |agent: &AgentProcess, token: &str| {
        let fp = agent.fingerprint().unwrap();
        let req = BootstrapRequest { maintenance_token: token.into(), ..Default::default() };
        rt.block_on(orcctl::cmd::cluster::bootstrap_with(&agent.addr, &Trust::Pinned(fp), req)).map(|_| ())
    };
    // orc.maintenance_token=: whoever claims the node must present it.
    let a = start(&["--maintenance-token", "s3cret"]);
    let e = claim(&a, "").unwrap_err().to_string();
    assert!(e.contains("maintenance-token"), "{e}");
    assert!(claim(&a, "guess").is_err());
    claim(&a, "s3cret").unwrap();
    // orc.join=: the node joins by itself; nobody bootstraps it.
    let b = start(&["--join", "ORC1-x@127.0.0.1:1"]);
    let e = claim(&b, "").unwrap_err().to_string();
    assert!(e.contains("joins a cluster by itself"), "{e}");
    // STATE failed to mount (a former member's disk, maybe): not claimable,
    // and `health` says why and what to do.
    let c = start(&["--state-error", "mounting /dev/vdb: bad superblock"]);
    let e = claim(&c, "").unwrap_err().to_string();
    assert!(e.contains("bad superblock") && e.contains("unclaimable"), "{e}");
    let health = rt
        .block_on(async {
            client(&c.addr, &Trust::Pinned(c.fingerprint().unwrap())).await.unwrap().health(HealthRequest {}).await
        })
        .unwrap()
        .into_inner();
    let identity = health.checks.iter().find(|h| h.name == "identity").unwrap();
    assert!(!identity.ok && identity.message.contains("bad superblock"), "{identity:?}");
    assert!(!health.healthy);
}
