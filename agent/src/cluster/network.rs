//! The managers' side of openraft's network: `orc.raft.v1` over mutual TLS
//! with the node's own certificate, to the address in the member's
//! `BasicNode`. A connection failure is `Unreachable` (openraft backs off);
//! an error openraft returned on the other side comes back as itself.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::BasicNode;
use orc_proto::raft::raft_client::RaftClient;
use orc_proto::raft::Payload;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};

use super::types::{NodeId, TypeConfig};
use crate::pki::NODE_SERVER_NAME;

/// The client TLS configuration of a manager: cluster CA as the only root,
/// its node certificate as client certificate.
pub fn client_tls(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.map_err(|e| format!("cluster CA: {e}"))?).map_err(|e| format!("cluster CA: {e}"))?;
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("node certificate: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| format!("node key: {e}"))?;
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| format!("node certificate and key: {e}"))?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
}

/// The node's client TLS, replaced when its certificate renews; new
/// connections take the current one.
#[derive(Clone)]
pub struct ClientTls(Arc<std::sync::RwLock<Arc<rustls::ClientConfig>>>);

impl ClientTls {
    pub fn new(c: Arc<rustls::ClientConfig>) -> Self {
        Self(Arc::new(std::sync::RwLock::new(c)))
    }
    pub fn current(&self) -> Arc<rustls::ClientConfig> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
    pub fn replace(&self, c: Arc<rustls::ClientConfig>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = c;
    }
}

#[derive(Clone)]
pub struct Network {
    pub tls: ClientTls,
}

pub struct Peer {
    target: NodeId,
    addr: String,
    tls: ClientTls,
    client: Option<RaftClient<Channel>>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer {
        Peer { target, addr: node.addr.clone(), tls: self.tls.clone(), client: None }
    }
}

type RpcErr<E> = RPCError<NodeId, BasicNode, E>;

/// A channel to another node's API at `addr` with the TLS configuration `tls`.
pub async fn channel(addr: &str, tls: Arc<rustls::ClientConfig>) -> Result<Channel, tonic::transport::Error> {
    let connector = tokio_rustls::TlsConnector::from(tls);
    let target = addr.to_string();
    Endpoint::from_static("http://node.orc")
        .connect_timeout(Duration::from_secs(3))
        .connect_with_connector(tower::service_fn(move |_| {
            let (connector, target) = (connector.clone(), target.clone());
            async move {
                let tcp = tokio::net::TcpStream::connect(&target).await?;
                let _ = tcp.set_nodelay(true);
                let name = ServerName::try_from(NODE_SERVER_NAME).map_err(std::io::Error::other)?;
                Ok::<_, std::io::Error>(TokioIo::new(connector.connect(name, tcp).await?))
            }
        }))
        .await
}

impl Peer {
    async fn client(&mut self) -> Result<RaftClient<Channel>, Unreachable> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        let channel = channel(&self.addr, self.tls.current()).await.map_err(|e| Unreachable::new(&e))?;
        let c = RaftClient::new(channel).max_decoding_message_size(64 << 20);
        self.client = Some(c.clone());
        Ok(c)
    }

    async fn call<Req, Resp, E>(&mut self, req: &Req, which: Rpc, option: &RPCOption) -> Result<Resp, RpcErr<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let data = serde_json::to_vec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut client = self.client().await.map_err(RPCError::Unreachable)?;
        let mut request = tonic::Request::new(Payload { data });
        request.set_timeout(option.hard_ttl());
        let res = match which {
            Rpc::Append => client.append_entries(request).await,
            Rpc::Vote => client.vote(request).await,
            Rpc::Snapshot => client.install_snapshot(request).await,
        };
        let payload = match res {
            Ok(r) => r.into_inner(),
            Err(s) => {
                // A broken connection: drop it and let openraft back off.
                self.client = None;
                return Err(match s.code() {
                    tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled => {
                        RPCError::Unreachable(Unreachable::new(&s))
                    }
                    _ => RPCError::Network(NetworkError::new(&s)),
                });
            }
        };
        let result: Result<Resp, E> =
            serde_json::from_slice(&payload.data).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

#[derive(Clone, Copy)]
enum Rpc {
    Append,
    Vote,
    Snapshot,
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr<RaftError<NodeId>>> {
        self.call(&rpc, Rpc::Append, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<RaftError<NodeId, InstallSnapshotError>>> {
        self.call(&rpc, Rpc::Snapshot, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr<RaftError<NodeId>>> {
        self.call(&rpc, Rpc::Vote, &option).await
    }
}
