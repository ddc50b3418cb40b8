//! The managers' side of openraft's network: `orc.raft.v1` over mutual TLS
//! with the node's own certificate, to the address in the member's
//! `BasicNode`. A connection failure is `Unreachable` (openraft backs off);
//! an error openraft returned on the other side comes back as itself.

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::BasicNode;
use orc_proto::raft::raft_client::RaftClient;
use orc_proto::raft::Payload;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::Channel;

use crate::pki::channel::{channel, ClientTls};
use crate::raft::types::{NodeId, TypeConfig};

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
        let data = crate::raft::codec::encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
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
            crate::raft::codec::decode(&payload.data).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
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
