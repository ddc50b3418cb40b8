//! The shim's gRPC service on its unix socket.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::Shim;
use orc_proto::container as cpb;
use orc_proto::shim as pb;

pub struct ShimService {
    pub shim: Arc<Shim>,
}

#[tonic::async_trait]
impl pb::shim_server::Shim for ShimService {
    async fn state(&self, _: Request<pb::StateRequest>) -> Result<Response<pb::StateResponse>, Status> {
        let exit = *self.shim.exit.borrow();
        Ok(Response::new(pb::StateResponse {
            pid: self.shim.pid,
            started: self.shim.started,
            exit: exit.map(|e| e.to_proto()),
        }))
    }

    async fn kill(&self, req: Request<pb::KillRequest>) -> Result<Response<pb::KillResponse>, Status> {
        let req = req.into_inner();
        let sig = nix::sys::signal::Signal::try_from(req.signal)
            .map_err(|_| Status::invalid_argument(format!("{} is not a signal number", req.signal)))?;
        tracing::info!(signal = %sig, all = req.all, "kill");
        if self.shim.exit.borrow().is_some() {
            return Ok(Response::new(pb::KillResponse {}));
        }
        if req.all {
            self.shim.cgroup.signal_all(sig).map_err(|e| Status::internal(format!("signalling the cgroup: {e}")))?;
        } else {
            match nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.shim.pid), sig) {
                Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
                Err(e) => return Err(Status::internal(format!("kill: {e}"))),
            }
        }
        Ok(Response::new(pb::KillResponse {}))
    }

    async fn stats(&self, _: Request<pb::StatsRequest>) -> Result<Response<cpb::Stats>, Status> {
        Ok(Response::new(self.shim.cgroup.stats()))
    }

    type ExecStream = ReceiverStream<Result<cpb::ExecOutput, Status>>;

    async fn exec(&self, req: Request<Streaming<cpb::ExecInput>>) -> Result<Response<Self::ExecStream>, Status> {
        let mut input = req.into_inner();
        let start = match input.message().await? {
            Some(cpb::ExecInput { input: Some(cpb::exec_input::Input::Start(s)) }) => s,
            _ => return Err(Status::invalid_argument("the first exec message must be `start`")),
        };
        if self.shim.exit.borrow().is_some() {
            return Err(Status::failed_precondition("the container is not running"));
        }
        let spawned = super::exec::spawn(&self.shim, &start)?;
        let (tx, rx) = mpsc::channel(32);
        tokio::spawn(super::exec::relay(spawned, input, tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn wait(&self, _: Request<pb::WaitRequest>) -> Result<Response<cpb::ExitStatus>, Status> {
        let mut rx = self.shim.exit.subscribe();
        let exit = rx
            .wait_for(|e| e.is_some())
            .await
            .map_err(|_| Status::unavailable("the shim is going away"))?
            .map(|e| e.to_proto())
            .unwrap_or_default();
        Ok(Response::new(exit))
    }
}
