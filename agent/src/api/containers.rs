//! `orc.container.v1.Containers`.

use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::error::AgentError;
use crate::network::node::{container_key, NodeNetwork};
use crate::runtime::logs;
use crate::runtime::manager::Runtime;
use crate::runtime::record::{ContainerRecord, RunSpec};
use orc_proto::container::containers_server::Containers;
use orc_proto::container::*;

pub struct ContainersService {
    runtime: Arc<Runtime>,
    /// Where standalone containers join the cluster's attachable networks.
    network: Arc<NodeNetwork>,
}

/// The longest hostname the kernel takes.
const MAX_HOSTNAME: usize = 64;

impl ContainersService {
    pub fn new(runtime: Arc<Runtime>, network: Arc<NodeNetwork>) -> Self {
        Self { runtime, network }
    }

    /// Gives a container that names networks its namespace on them (as a
    /// task's, under its own key), named if it was not: the key is the
    /// name. None when it joins none (the node's own network).
    async fn attach(&self, spec: &mut RunSpec) -> Result<Option<String>, AgentError> {
        if spec.networks.is_empty() {
            return Ok(None);
        }
        let net = &self.network;
        net.check_attachable(&spec.networks)?;
        if spec.name.is_empty() {
            spec.name = crate::model::objects::new_id();
        }
        self.runtime.check_name_free(&spec.name).await?;
        let key = container_key(&spec.name);
        let hostname: String = spec.name.chars().take(MAX_HOSTNAME).collect();
        let a = match net.attach(&key, &hostname, "", &spec.networks).await {
            Ok(a) => a,
            Err(e) => {
                net.detach(&key);
                return Err(e.into());
            }
        };
        spec.mounts.extend(a.mounts());
        spec.netns = Some(a.netns);
        spec.hostname = hostname;
        tracing::info!(container = %spec.name, addresses = ?a.addresses, "container attached to the overlay");
        Ok(Some(key))
    }

    /// `r` as the API shows it, with its addresses on the networks it joined.
    fn to_proto(&self, r: &ContainerRecord) -> Container {
        let mut c = r.to_proto();
        if !r.spec.networks.is_empty() {
            c.addresses = self
                .network
                .addresses_of(&container_key(&r.spec.name))
                .into_iter()
                .map(|(n, a)| (n, a.to_string()))
                .collect();
        }
        c
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
        let given = req.into_inner().spec.unwrap_or_default();
        super::audit::target(&given.name);
        if given.mounts.iter().any(|m| m.r#type.is_empty() || m.r#type == "bind") {
            super::authz::require_admin(super::authz::AdminOnly::BindMount, caller.as_ref())?;
        }
        tracing::info!(image = %given.image, name = %given.name, networks = ?given.networks, "run requested");
        let mut spec = RunSpec::from_proto(&given).map_err(|e| AgentError::InvalidArgument(e.to_string()))?;
        let key = self.attach(&mut spec).await?;
        match self.runtime.run_spec(spec, given.auth.as_ref()).await {
            Ok(r) => Ok(Response::new(self.to_proto(&r))),
            Err(e) => {
                if let Some(key) = key {
                    self.network.detach(&key);
                }
                Err(e.into())
            }
        }
    }

    async fn list(&self, req: Request<ListContainersRequest>) -> Result<Response<ListContainersResponse>, Status> {
        let all = req.into_inner().all;
        let containers = self.runtime.list(all).await.iter().map(|r| self.to_proto(r)).collect();
        Ok(Response::new(ListContainersResponse { containers }))
    }

    async fn inspect(&self, req: Request<InspectRequest>) -> Result<Response<InspectResponse>, Status> {
        let (r, oci_spec, stats) = self.runtime.inspect(&req.into_inner().id).await?;
        Ok(Response::new(InspectResponse { container: Some(self.to_proto(&r)), oci_spec, stats }))
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
        super::audit::target(&start.container);
        tracing::info!(container = %start.container, args = ?start.args, tty = start.tty, "exec requested");
        let mut shim = self.runtime.shim(&start.container).await?;
        let rest = input.filter_map(|m| futures::future::ready(m.ok()));
        let outbound = futures::stream::once(futures::future::ready(first)).chain(rest);
        let output = shim.exec(outbound).await?.into_inner();
        Ok(Response::new(Box::pin(output)))
    }

    async fn stop(&self, req: Request<StopRequest>) -> Result<Response<Container>, Status> {
        let req = req.into_inner();
        super::audit::target(&req.id);
        let timeout = (req.timeout > 0).then(|| Duration::from_secs(req.timeout as u64));
        let r = self.runtime.stop(&req.id, timeout).await?;
        Ok(Response::new(r.to_proto()))
    }

    async fn kill(&self, req: Request<KillRequest>) -> Result<Response<Container>, Status> {
        let req = req.into_inner();
        super::audit::target(&req.id);
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
        super::audit::target(&req.id);
        let joined = self.runtime.record(&req.id).await.ok().filter(|r| !r.spec.networks.is_empty());
        self.runtime.remove(&req.id, req.force).await?;
        if let Some(r) = joined {
            self.network.detach(&container_key(&r.spec.name));
        }
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
