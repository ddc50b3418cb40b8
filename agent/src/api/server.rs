//! Serving the API: accept on TCP (and vsock), handshake TLS with the
//! configuration of the moment (maintenance or cluster), learn who the client
//! is, and hand the connection to tonic. Handshakes run in their own tasks so
//! a slow or hostile client cannot stall the accept loop.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::authz::AuthzLayer;
use super::containers::ContainersService;
use super::images::ImagesService;
use super::machine::MachineService;
use super::peer::{Io, Peer, PeerStream};
use crate::pki::role::identity_of;
use crate::state::NodeState;
use orc_proto::cluster::cluster_server::ClusterServer;
use orc_proto::cluster::nodes_server::NodesServer;
use orc_proto::cluster::services_server::ServicesServer;
use orc_proto::container::containers_server::ContainersServer;
use orc_proto::container::images_server::ImagesServer;
use orc_proto::dispatcher::dispatcher_server::DispatcherServer;
use orc_proto::machine::machine_server::MachineServer;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

async fn handshake(state: &NodeState, io: Box<dyn Io>, remote: String) -> Option<PeerStream> {
    let acceptor = tokio_rustls::TlsAcceptor::from(state.tls());
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::info!(remote = %remote, error = %e, "TLS handshake refused");
            return None;
        }
        Err(_) => {
            tracing::info!(remote = %remote, "TLS handshake timed out");
            return None;
        }
    };
    let identity = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(|c| match identity_of(c) {
        Ok(id) => Some(id),
        Err(e) => {
            tracing::info!(remote = %remote, error = %e, "client certificate without a usable identity");
            None
        }
    });
    Some(PeerStream { inner: tls, peer: Peer { remote, identity } })
}

fn spawn_handshake(
    state: Arc<NodeState>,
    tx: mpsc::Sender<Result<PeerStream, std::io::Error>>,
    io: Box<dyn Io>,
    remote: String,
) {
    tokio::spawn(async move {
        if let Some(s) = handshake(&state, io, remote).await {
            let _ = tx.send(Ok(s)).await;
        }
    });
}

/// Serves the API until `shutdown` completes.
pub async fn run(
    state: Arc<NodeState>,
    runtime: Arc<crate::runtime::manager::Runtime>,
    liveness: Arc<crate::cluster::dispatcher::Liveness>,
    tcp: TcpListener,
    vsock: Option<tokio_vsock::VsockListener>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let (tx, rx) = mpsc::channel(64);
    {
        let (state, tx) = (state.clone(), tx.clone());
        tokio::spawn(async move {
            loop {
                match tcp.accept().await {
                    Ok((s, addr)) => {
                        let _ = s.set_nodelay(true);
                        spawn_handshake(state.clone(), tx.clone(), Box::new(s), addr.to_string());
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
    }
    if let Some(vsock) = vsock {
        let (state, tx) = (state.clone(), tx.clone());
        tokio::spawn(async move {
            loop {
                match vsock.accept().await {
                    Ok((s, addr)) => spawn_handshake(
                        state.clone(),
                        tx.clone(),
                        Box::new(s),
                        format!("vsock:{}:{}", addr.cid(), addr.port()),
                    ),
                    Err(e) => {
                        tracing::warn!(error = %e, "vsock accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
    }
    drop(tx);
    tonic::transport::Server::builder()
        .layer(AuthzLayer { state: state.clone() })
        .add_service(crate::raft::transport::server::RaftRpc::server(state.raft.clone()))
        .add_service(ClusterServer::new(super::cluster::ClusterService::new(state.clone())))
        .add_service(ServicesServer::new(super::services::ServicesService::new(state.clone())))
        .add_service(NodesServer::new(super::nodes::NodesService::new(state.clone())))
        .add_service(DispatcherServer::new(super::dispatcher::DispatcherService::new(state.raft.clone(), liveness)))
        .add_service(MachineServer::new(MachineService::new(state)))
        .add_service(ImagesServer::new(ImagesService::new(runtime.clone())))
        .add_service(ContainersServer::new(ContainersService::new(runtime)))
        .serve_with_incoming_shutdown(ReceiverStream::new(rx), shutdown)
        .await
}
