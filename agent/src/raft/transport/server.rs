//! The managers' side of `orc.raft.v1`: decode, hand to openraft, encode
//! the result (errors included, so the caller sees openraft's own error).

use std::sync::Arc;

use orc_proto::raft::raft_server;
use orc_proto::raft::Payload;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};

use crate::raft::RaftHandle;

pub struct RaftRpc {
    raft: Arc<RaftHandle>,
}

impl RaftRpc {
    pub fn server(raft: Arc<RaftHandle>) -> raft_server::RaftServer<Self> {
        raft_server::RaftServer::new(Self { raft }).max_decoding_message_size(64 << 20)
    }
}

fn decode<T: DeserializeOwned>(req: Request<Payload>) -> Result<T, Status> {
    crate::raft::codec::decode(&req.into_inner().data)
        .map_err(|e| Status::invalid_argument(format!("undecodable Raft message: {e}")))
}

fn encode<T: Serialize>(v: &T) -> Result<Response<Payload>, Status> {
    crate::raft::codec::encode(v)
        .map(|data| Response::new(Payload { data }))
        .map_err(|e| Status::internal(e.to_string()))
}

#[tonic::async_trait]
impl raft_server::Raft for RaftRpc {
    async fn append_entries(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        let res = self.raft.get()?.raft.append_entries(decode(req)?).await;
        encode(&res)
    }

    async fn vote(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        let res = self.raft.get()?.raft.vote(decode(req)?).await;
        encode(&res)
    }

    async fn install_snapshot(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        let res = self.raft.get()?.raft.install_snapshot(decode(req)?).await;
        encode(&res)
    }

    async fn propose(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        let s = self.raft.get()?;
        let res = crate::raft::consistency::write_here(&s, decode(req)?).await?;
        encode(&res)
    }

    async fn read_index(&self, _: Request<Payload>) -> Result<Response<Payload>, Status> {
        let s = self.raft.get()?;
        let res = crate::raft::consistency::read_index_here(&s).await?;
        encode(&res)
    }
}
