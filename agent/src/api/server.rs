//! Serving the API: accept on TCP (and vsock), handshake TLS with the
//! configuration of the moment (maintenance or cluster), learn who the client
//! is, and hand the connection to tonic. Handshakes run in their own tasks so
//! a slow or hostile client cannot stall the accept loop; connections,
//! handshakes under way, streams per connection and silence are bounded.

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
use orc_proto::cluster::configs_server::ConfigsServer;
use orc_proto::cluster::namespaces_server::NamespacesServer;
use orc_proto::cluster::networks_server::NetworksServer;
use orc_proto::cluster::secrets_server::SecretsServer;
use orc_proto::cluster::volumes_server::VolumesServer;

use crate::model::payload::PayloadKind;
use orc_proto::cluster::nodes_server::NodesServer;
use orc_proto::cluster::services_server::ServicesServer;
use orc_proto::cluster::watch_server::WatchServer;
use orc_proto::container::containers_server::ContainersServer;
use orc_proto::container::images_server::ImagesServer;
use orc_proto::dispatcher::dispatcher_server::DispatcherServer;
use orc_proto::machine::machine_server::MachineServer;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections a node serves at once; more are closed at accept.
pub const MAX_CONNECTIONS: usize = 1024;
/// TLS handshakes under way at once (the expensive part for an attacker to cause).
pub const MAX_HANDSHAKES: usize = 64;
/// Requests (streams) under way on one connection.
pub const MAX_STREAMS: u32 = 128;
/// HTTP/2 keep-alive: a ping this often, the peer gone without an answer in `KEEPALIVE_TIMEOUT`.
const KEEPALIVE: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Whether a client connected over TCP yet.
static FIRST_ACCEPT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// Whether a client got through a TLS handshake yet.
static FIRST_HANDSHAKE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The node's bounds on connections.
struct Slots {
    connections: Arc<tokio::sync::Semaphore>,
    handshakes: Arc<tokio::sync::Semaphore>,
}

async fn handshake(
    state: &NodeState,
    io: Box<dyn Io>,
    remote: String,
    slot: tokio::sync::OwnedSemaphorePermit,
) -> Option<PeerStream> {
    let acceptor = tokio_rustls::TlsAcceptor::from(state.tls());
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            if super::authz::REFUSALS.allow() {
                tracing::info!(remote = %remote, error = %e, "TLS handshake refused");
            }
            return None;
        }
        Err(_) => {
            if super::authz::REFUSALS.allow() {
                tracing::info!(remote = %remote, "TLS handshake timed out");
            }
            return None;
        }
    };
    // The boot timeline's last stage: the first client through TLS.
    if !FIRST_HANDSHAKE.swap(true, std::sync::atomic::Ordering::Relaxed) {
        crate::node::timeline::mark(state.config.init_pid.is_some(), "api-first-handshake");
    }
    let identity = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(|c| match identity_of(c) {
        Ok(id) => Some(id),
        Err(e) => {
            tracing::info!(remote = %remote, error = %e, "client certificate without a usable identity");
            None
        }
    });
    Some(PeerStream::new(tls, Peer { remote, identity }, slot))
}

/// Takes a connection slot and a handshake slot, or closes `io` at once
/// (with a rate-limited warning) when the node is at either bound.
fn spawn_handshake(
    state: Arc<NodeState>,
    slots: &Slots,
    tx: mpsc::Sender<Result<PeerStream, std::io::Error>>,
    io: Box<dyn Io>,
    remote: String,
) {
    let (Ok(slot), Ok(shaking)) =
        (slots.connections.clone().try_acquire_owned(), slots.handshakes.clone().try_acquire_owned())
    else {
        if super::authz::REFUSALS.allow() {
            tracing::warn!(%remote, max_connections = MAX_CONNECTIONS, max_handshakes = MAX_HANDSHAKES, "at the connection bound; connection closed");
        }
        return;
    };
    tokio::spawn(async move {
        let stream = handshake(&state, io, remote, slot).await;
        drop(shaking);
        if let Some(s) = stream {
            let _ = tx.send(Ok(s)).await;
        }
    });
}

/// What the API's services share with the rest of the agent.
pub struct Parts {
    pub runtime: Arc<crate::runtime::manager::Runtime>,
    pub network: Arc<crate::network::node::NodeNetwork>,
    pub liveness: Arc<crate::cluster::dispatcher::Liveness>,
    pub measurements: Arc<crate::cluster::usage::Measurements>,
    pub executor: Arc<crate::worker::executor::Executor>,
}

/// Serves the API until `shutdown` completes.
pub async fn run(
    state: Arc<NodeState>,
    parts: Parts,
    tcp: TcpListener,
    vsock: Option<tokio_vsock::VsockListener>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let Parts { runtime, network, liveness, measurements, executor } = parts;
    let audit = crate::node::audit::AuditLog::open(state.state_dir());
    let (tx, rx) = mpsc::channel(64);
    let slots = Arc::new(Slots {
        connections: Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS)),
        handshakes: Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES)),
    });
    {
        let (state, tx, slots) = (state.clone(), tx.clone(), slots.clone());
        tokio::spawn(async move {
            loop {
                match tcp.accept().await {
                    Ok((s, addr)) => {
                        if !FIRST_ACCEPT.swap(true, std::sync::atomic::Ordering::Relaxed) {
                            crate::node::timeline::mark(state.config.init_pid.is_some(), "api-first-accept");
                        }
                        let _ = s.set_nodelay(true);
                        spawn_handshake(state.clone(), &slots, tx.clone(), Box::new(s), addr.to_string());
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
        let (state, tx, slots) = (state.clone(), tx.clone(), slots.clone());
        tokio::spawn(async move {
            loop {
                match vsock.accept().await {
                    Ok((s, addr)) => spawn_handshake(
                        state.clone(),
                        &slots,
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
        .max_concurrent_streams(Some(MAX_STREAMS))
        .http2_keepalive_interval(Some(KEEPALIVE))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .layer(AuthzLayer { state: state.clone(), audit: audit.clone() })
        .add_service(crate::raft::transport::server::RaftRpc::server(state.raft.clone()))
        .add_service(ClusterServer::new(super::cluster::ClusterService::new(state.clone())))
        .add_service(ServicesServer::new(super::services::ServicesService::new(state.clone())))
        .add_service(NodesServer::new(super::nodes::NodesService::new(state.clone())))
        .add_service(NetworksServer::new(super::networks::NetworksService::new(state.clone())))
        .add_service(WatchServer::new(super::watch::WatchService::new(state.clone())))
        .add_service(VolumesServer::new(super::volumes::VolumesService::new(state.clone())))
        .add_service(NamespacesServer::new(super::namespaces::NamespacesService::new(state.clone())))
        .add_service(SecretsServer::new(super::payloads::PayloadsService::new(state.clone(), PayloadKind::Secret)))
        .add_service(ConfigsServer::new(super::payloads::PayloadsService::new(state.clone(), PayloadKind::Config)))
        .add_service(DispatcherServer::new(super::dispatcher::DispatcherService::new(
            state.clone(),
            liveness,
            measurements,
        )))
        .add_service(MachineServer::new(MachineService::new(state, audit, executor, runtime.images.clone())))
        .add_service(ImagesServer::new(ImagesService::new(runtime.clone())))
        .add_service(ContainersServer::new(ContainersService::new(runtime, network)))
        .serve_with_incoming_shutdown(ReceiverStream::new(rx), shutdown)
        .await
}
