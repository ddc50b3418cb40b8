//! The cluster API on a real agent: `cluster init` makes a one-member Raft
//! quorum on redb, which survives an agent restart; only manager nodes may
//! speak Raft.

use std::process::Command;
use std::time::Duration;

use orc_e2e::agent::AgentProcess;
use orc_e2e::paths::debug_bin;
use orcctl::commands::{bootstrap, save_context};
use orcctl::connect::Trust;

fn status(cfg: &std::path::Path) -> serde_json::Value {
    let o = Command::new(debug_bin("orcctl")).arg("--config").arg(cfg).args(["-o", "json", "cluster", "status"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()[0].clone()
}

#[test]
fn cluster_init_makes_a_durable_one_member_quorum() {
    let mut agent = AgentProcess::start().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let cfg = agent.dir.path().join("orcctl.toml");
    let (r, ctx) = rt.block_on(bootstrap(&agent.addr, &Trust::Pinned(agent.fingerprint().unwrap()), "t", "admin")).unwrap();
    save_context(&cfg, "t", ctx.clone()).unwrap();
    let s = status(&cfg);
    assert_eq!(s["id"], r.node_id.as_str(), "{s}");
    assert_eq!(s["leader"], r.node_id.as_str(), "{s}");
    assert_eq!(s["state"], "Leader");
    assert_eq!(s["members"].as_array().unwrap().len(), 1);
    assert_eq!(s["members"][0]["voter"], true);
    assert_eq!(s["members"][0]["addr"], agent.addr.as_str());
    let (term, log) = (s["term"].as_u64().unwrap(), s["last_log_index"].as_u64().unwrap());
    assert!(term >= 1 && log >= 1, "{s}");

    // Join tokens: one per role, stable until rotated, pinned to this CA.
    let token = |args: &[&str]| {
        let o = Command::new(debug_bin("orcctl")).arg("--config").arg(&cfg).args(["cluster", "join-token"]).args(args).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let worker = token(&["worker"]);
    let manager = token(&["manager"]);
    assert_ne!(worker, manager);
    assert_eq!(token(&["worker"]), worker);
    let ca_der = {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::CertificateDer::from_pem_slice(ctx.ca.as_bytes()).unwrap()
    };
    let parsed = orc_agent::cluster::token::JoinToken::parse(&worker).unwrap();
    parsed.check_ca(&ca_der).unwrap();
    let rotated = token(&["worker", "--rotate"]);
    assert_ne!(rotated, worker);
    assert_eq!(token(&["worker"]), rotated);
    assert_eq!(token(&["manager"]), manager, "rotating the worker token kept the manager's");

    agent.restart().unwrap();
    let mut s = status(&cfg);
    for _ in 0..50 {
        if s["state"] == "Leader" {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        s = status(&cfg);
    }
    assert_eq!(s["state"], "Leader", "{s}");
    assert!(s["term"].as_u64().unwrap() >= term && s["last_log_index"].as_u64().unwrap() >= log, "{s}");
    assert!(agent.state_dir().join("raft/raft.redb").exists());
    assert_eq!(token(&["worker"]), rotated, "the rotated token is in the Raft log and survives");

    // An admin is a person, not a manager node: Raft is refused.
    rt.block_on(async {
        let ch = orcctl::connect::channel(&agent.addr, &Trust::Cluster(ctx)).await.unwrap();
        let mut c = orc_proto::raft::raft_client::RaftClient::new(ch);
        let e = c.vote(orc_proto::raft::Payload { data: b"{}".to_vec() }).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e}");
        assert!(e.message().contains("only manager nodes"), "{e}");
    });
}
