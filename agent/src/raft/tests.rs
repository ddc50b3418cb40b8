//! Three managers' Raft over real mutual TLS on loopback: election,
//! replication into the redb-backed state machines, and the leader's loss
//! with a majority left.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::{BasicNode, Config, Raft};
use tokio::net::TcpListener;

use super::store;
use super::transport::client::Network;
use super::transport::server::RaftRpc;
use super::types::{NodeId, TypeConfig};
use crate::model::db::{Command, Object};
use crate::pki::ca::{issue, new_ca, CertKey};
use crate::pki::channel::{client_tls, ClientTls, Expect};
use crate::pki::role::Role;

struct Manager {
    id: NodeId,
    raft: Raft<TypeConfig>,
    sm: store::StateMachineStore,
    server: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

/// Serves `raft` on `listener` behind the cluster's server TLS.
fn serve(
    listener: TcpListener,
    started: super::handle::Started,
    ca: &CertKey,
    node: &CertKey,
) -> tokio::task::JoinHandle<()> {
    let handle = Arc::new(super::RaftHandle::default());
    let _ = handle.set(started);
    let tls = crate::pki::tls::cluster(&ca.cert_pem, node).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let incoming = async_stream(listener, acceptor);
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(RaftRpc::server(handle))
            .serve_with_incoming(incoming)
            .await;
    })
}

fn async_stream(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
) -> tokio_stream::wrappers::ReceiverStream<Result<crate::api::peer::PeerStream, std::io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        while let Ok((tcp, addr)) = listener.accept().await {
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let io: Box<dyn crate::api::peer::Io> = Box::new(tcp);
                if let Ok(tls) = acceptor.accept(io).await {
                    let peer = crate::api::peer::Peer { remote: addr.to_string(), identity: None };
                    let Ok(slot) = Arc::new(tokio::sync::Semaphore::new(1)).try_acquire_owned() else { return };
                    let _ = tx.send(Ok(crate::api::peer::PeerStream::new(tls, peer, slot))).await;
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

async fn wait_for<F: Fn() -> bool>(what: &str, f: F) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

/// The service name `name` claims, as `sm` has applied it.
async fn value_on(sm: &store::StateMachineStore, name: &str) -> Option<String> {
    sm.applied.read().await.state.service_names.get(name).cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_managers_elect_replicate_and_survive_the_leader() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = new_ca("c1", "test").unwrap();
    let config = Arc::new(
        Config { heartbeat_interval: 100, election_timeout_min: 400, election_timeout_max: 800, ..Default::default() }
            .validate()
            .unwrap(),
    );
    let mut listeners = Vec::new();
    let mut members = BTreeMap::new();
    for id in 1..=3u64 {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        members.insert(id, BasicNode { addr: l.local_addr().unwrap().to_string() });
        listeners.push(l);
    }
    let mut managers = Vec::new();
    for (id, listener) in (1..=3u64).zip(listeners) {
        let cert = issue(&ca, "c1", &format!("m{id}"), Role::Manager, Duration::from_secs(3600)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft.redb");
        let (log, sm) = store::open(&path).await.unwrap();
        let tls = ClientTls::new(client_tls(&ca.cert_pem, &cert, Expect::Manager).unwrap());
        let raft = Raft::new(id, config.clone(), Network { tls: tls.clone() }, log, sm.clone()).await.unwrap();
        let server = serve(
            listener,
            super::handle::Started {
                id,
                raft: raft.clone(),
                sm: sm.clone(),
                tls,
                store: path,
                writes: super::group::Committer::start(raft.clone()),
                leader_link: Default::default(),
                reads: Default::default(),
            },
            &ca,
            &cert,
        );
        managers.push(Manager { id, raft, sm, server, _dir: dir });
    }
    managers[0].raft.initialize(members.clone()).await.unwrap();

    // A leader, and a write that reaches every state machine.
    let leader_of = |ms: &[Manager]| ms.iter().find_map(|m| m.raft.metrics().borrow().current_leader);
    wait_for("a leader", || leader_of(&managers).is_some()).await;
    let leader = leader_of(&managers).unwrap();
    let put = |name: &str, id: i64| Command::put(name, Object::ServiceName(id.to_string()));
    let l = managers.iter().find(|m| m.id == leader).unwrap();
    let r = l.raft.client_write(put("web", 1)).await.unwrap();
    assert_eq!(r.data.version, 1);
    for m in &managers {
        for _ in 0..100 {
            if value_on(&m.sm, "web").await.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(value_on(&m.sm, "web").await, Some("1".to_string()), "manager {}", m.id);
    }

    // Concurrent writes are committed in groups, each with its own result:
    // distinct versions, and of ten creates of one name exactly one wins.
    let writes = super::group::Committer::start(l.raft.clone());
    let each = futures::future::join_all((0..40).map(|i| writes.write(put(&format!("g{i}"), i)))).await;
    let mut versions: Vec<u64> = each.into_iter().map(|r| r.unwrap().unwrap().version).collect();
    versions.sort();
    versions.dedup();
    assert_eq!(versions.len(), 40, "one version per write");
    let claims = (0..10).map(|i| writes.write(Command::put_if("same", Object::ServiceName(i.to_string()), 0)));
    let won = futures::future::join_all(claims)
        .await
        .into_iter()
        .filter(|r| matches!(r, Ok(Ok(r)) if r.conflict.is_none()))
        .count();
    assert_eq!(won, 1, "conditional puts in one group keep their semantics");

    // The leader goes away: the two others elect one and take writes.
    let idx = managers.iter().position(|m| m.id == leader).unwrap();
    let gone = managers.remove(idx);
    gone.server.abort();
    gone.raft.shutdown().await.unwrap();
    wait_for("a new leader", || leader_of(&managers).is_some_and(|l| l != leader)).await;
    let new_leader = leader_of(&managers).unwrap();
    let l = managers.iter().find(|m| m.id == new_leader).unwrap();
    l.raft.ensure_linearizable().await.unwrap();
    let r = l.raft.client_write(put("web", 2)).await.unwrap();
    assert!(r.data.version > 40);
    for m in &managers {
        for _ in 0..100 {
            if value_on(&m.sm, "web").await == Some("2".to_string()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(value_on(&m.sm, "web").await, Some("2".to_string()), "manager {}", m.id);
    }
    for m in managers {
        m.server.abort();
        let _ = m.raft.shutdown().await;
    }
}
