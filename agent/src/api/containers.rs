//! `orc.container.v1.Containers`.

use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::runtime::logs;
use crate::runtime::manager::Runtime;
use orc_proto::container::containers_server::Containers;
use orc_proto::container::*;

pub struct ContainersService {
    runtime: Arc<Runtime>,
}

impl ContainersService {
    pub fn new(runtime: Arc<Runtime>) -> Self {
        Self { runtime }
    }
}

type Streamed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// `KILL`, `SIGKILL`, `9` → 9.
pub fn parse_signal(s: &str) -> Result<i32, Status> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(libc::SIGKILL);
    }
    if let Ok(n) = s.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(n)
            .map(|s| s as i32)
            .map_err(|_| Status::invalid_argument(format!("{n} is not a signal number")));
    }
    let name = s.to_ascii_uppercase();
    let name = if name.starts_with("SIG") { name } else { format!("SIG{name}") };
    nix::sys::signal::Signal::from_str(&name)
        .map(|s| s as i32)
        .map_err(|_| Status::invalid_argument(format!("{s:?} is not a signal (e.g. TERM, KILL, HUP, 15)")))
}

#[tonic::async_trait]
impl Containers for ContainersService {
    async fn run(&self, req: Request<RunRequest>) -> Result<Response<Container>, Status> {
        let caller = crate::pki::peer::caller(&req);
        let spec = req.into_inner().spec.unwrap_or_default();
        if spec.mounts.iter().any(|m| m.r#type.is_empty() || m.r#type == "bind") {
            super::authz::require_admin(super::authz::AdminOnly::BindMount, caller.as_ref())?;
        }
        tracing::info!(image = %spec.image, name = %spec.name, "run requested");
        let r = self.runtime.run(&spec).await?;
        Ok(Response::new(r.to_proto()))
    }

    async fn list(&self, req: Request<ListContainersRequest>) -> Result<Response<ListContainersResponse>, Status> {
        let all = req.into_inner().all;
        let containers = self.runtime.list(all).await.iter().map(|r| r.to_proto()).collect();
        Ok(Response::new(ListContainersResponse { containers }))
    }

    async fn inspect(&self, req: Request<InspectRequest>) -> Result<Response<InspectResponse>, Status> {
        let (r, oci_spec, stats) = self.runtime.inspect(&req.into_inner().id).await?;
        Ok(Response::new(InspectResponse { container: Some(r.to_proto()), oci_spec, stats }))
    }

    type LogsStream = Streamed<LogEntry>;

    async fn logs(&self, req: Request<LogsRequest>) -> Result<Response<Self::LogsStream>, Status> {
        let req = req.into_inner();
        let (dir, running) = self.runtime.log_source(&req.id).await?;
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(logs::stream(dir, req.follow, req.tail, running, self.runtime.subscribe(), tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx).map(Ok))))
    }

    type ExecStream = Streamed<ExecOutput>;

    async fn exec(&self, req: Request<Streaming<ExecInput>>) -> Result<Response<Self::ExecStream>, Status> {
        let mut input = req.into_inner();
        let first = input.message().await?.ok_or_else(|| Status::invalid_argument("empty exec stream"))?;
        let Some(exec_input::Input::Start(start)) = &first.input else {
            return Err(Status::invalid_argument("the first exec message must be `start`"));
        };
        tracing::info!(container = %start.container, args = ?start.args, tty = start.tty, "exec requested");
        let mut shim = self.runtime.shim(&start.container).await?;
        let rest = input.filter_map(|m| futures::future::ready(m.ok()));
        let outbound = futures::stream::once(futures::future::ready(first)).chain(rest);
        let output = shim.exec(outbound).await?.into_inner();
        Ok(Response::new(Box::pin(output)))
    }

    async fn stop(&self, req: Request<StopRequest>) -> Result<Response<Container>, Status> {
        let req = req.into_inner();
        let timeout = (req.timeout > 0).then(|| Duration::from_secs(req.timeout as u64));
        let r = self.runtime.stop(&req.id, timeout).await?;
        Ok(Response::new(r.to_proto()))
    }

    async fn kill(&self, req: Request<KillRequest>) -> Result<Response<Container>, Status> {
        let req = req.into_inner();
        let sig = parse_signal(&req.signal)?;
        let r = self.runtime.kill(&req.id, sig).await?;
        Ok(Response::new(r.to_proto()))
    }

    async fn wait(&self, req: Request<WaitRequest>) -> Result<Response<Container>, Status> {
        let r = self.runtime.wait(&req.into_inner().id).await?;
        Ok(Response::new(r.to_proto()))
    }

    async fn remove(&self, req: Request<RemoveContainerRequest>) -> Result<Response<RemoveContainerResponse>, Status> {
        let req = req.into_inner();
        self.runtime.remove(&req.id, req.force).await?;
        let (_, layers, ids) = self.runtime.in_use().await;
        // Layers of removed images that only this container still held.
        if let Err(e) = self.runtime.images.gc(&layers, &ids).await {
            tracing::warn!(error = %e, "image gc after container removal");
        }
        Ok(Response::new(RemoveContainerResponse {}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse() {
        assert_eq!(parse_signal("").unwrap(), 9);
        assert_eq!(parse_signal("TERM").unwrap(), 15);
        assert_eq!(parse_signal("sighup").unwrap(), 1);
        assert_eq!(parse_signal("2").unwrap(), 2);
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("999").is_err());
    }
}
