//! `orc.cluster.v1.Services`, on any manager: trace, call the domain
//! function in [`crate::cluster::services`], convert.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use orc_proto::cluster as pb;
use orc_proto::cluster::services_server::Services;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::convert::{service_inspected, service_to_proto, service_with_progress, spec_from_proto, task_to_proto};
use crate::cluster::objects::{NetworkMode, ServiceSpec};
use crate::cluster::services::{self, Control, TaskFilter};
use crate::cluster::ClusterError;
use crate::model::namespace::{shown, stored};
use crate::pki::role::Role;
use crate::state::NodeState;

pub struct ServicesService {
    state: Arc<NodeState>,
}

impl ServicesService {
    pub fn new(state: Arc<NodeState>) -> Self {
        Self { state }
    }
}

type Streamed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The node's own network is for admins: a task on it can bind and sniff
/// on the node's interfaces.
fn host_network_allowed(spec: &ServiceSpec, role: Role) -> Result<(), ClusterError> {
    if spec.network == NetworkMode::Host && role != Role::Admin {
        return Err(ClusterError::PermissionDenied(format!(
            "--network host is for admins (you are {role}): a task on the node's network can bind and listen on \
             its interfaces; leave it on the overlay"
        )));
    }
    Ok(())
}

pub(super) fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

#[tonic::async_trait]
impl Services for ServicesService {
    async fn create(&self, req: Request<pb::CreateServiceRequest>) -> Result<Response<pb::Service>, Status> {
        let role = super::peer::identity(&req)?.role;
        let ns = super::namespaces::of(&req)?;
        let mut spec = spec_from_proto(req.into_inner().spec.unwrap_or_default())?;
        spec.namespace = stored(&ns);
        super::audit::target(&spec.name);
        host_network_allowed(&spec, role)?;
        let (v, s) = services::create(&self.state.raft, spec).await?;
        Ok(Response::new(service_to_proto(&v, &s)))
    }

    async fn update(&self, req: Request<pb::UpdateServiceRequest>) -> Result<Response<pb::Service>, Status> {
        let role = super::peer::identity(&req)?.role;
        let ns = super::namespaces::of(&req)?;
        let req = req.into_inner();
        super::audit::target(&req.service);
        let control = match pb::UpdateControl::try_from(req.control) {
            Ok(pb::UpdateControl::Unspecified) => None,
            Ok(pb::UpdateControl::Pause) => Some(Control::Pause),
            Ok(pb::UpdateControl::Resume) => Some(Control::Resume),
            Err(_) => {
                return Err(Status::invalid_argument(format!("update control {} is not pause or resume", req.control)))
            }
        };
        let (v, s) = match (control, req.spec) {
            (Some(c), None) => services::control(&self.state.raft, &ns, &req.service, c).await?,
            (Some(_), Some(_)) => {
                return Err(Status::invalid_argument("pause or resume an update, or change the spec: not both at once"))
            }
            (None, spec) => {
                let mut spec = spec_from_proto(spec.unwrap_or_default())?;
                spec.namespace = stored(&ns);
                host_network_allowed(&spec, role)?;
                services::update(&self.state.raft, &ns, &req.service, req.expect_version, spec).await?
            }
        };
        Ok(Response::new(service_with_progress(&v, &s)))
    }

    async fn rollback(&self, req: Request<pb::RollbackServiceRequest>) -> Result<Response<pb::Service>, Status> {
        let ns = super::namespaces::of(&req)?;
        let service = req.into_inner().service;
        super::audit::target(&service);
        let (v, s) = services::rollback(&self.state.raft, &ns, &service).await?;
        Ok(Response::new(service_with_progress(&v, &s)))
    }

    async fn remove(
        &self,
        req: Request<pb::RemoveServiceRequest>,
    ) -> Result<Response<pb::RemoveServiceResponse>, Status> {
        let ns = super::namespaces::of(&req)?;
        let service = req.into_inner().service;
        super::audit::target(&service);
        let s = services::remove(&self.state.raft, &ns, &service).await?;
        Ok(Response::new(pb::RemoveServiceResponse { id: s.id }))
    }

    async fn list(&self, req: Request<pb::ListServicesRequest>) -> Result<Response<pb::ListServicesResponse>, Status> {
        let ns = super::namespaces::of(&req)?;
        let v = crate::cluster::objects::view(&self.state.raft).await?;
        let mut services: Vec<pb::Service> =
            v.services.values().filter(|s| shown(&s.spec.namespace) == ns).map(|s| service_to_proto(&v, s)).collect();
        services.sort_by(|a, b| a.spec.as_ref().map(|s| &s.name).cmp(&b.spec.as_ref().map(|s| &s.name)));
        Ok(Response::new(pb::ListServicesResponse { services }))
    }

    async fn inspect(&self, req: Request<pb::InspectServiceRequest>) -> Result<Response<pb::Service>, Status> {
        let ns = super::namespaces::of(&req)?;
        let (v, s) = services::inspect(&self.state.raft, &ns, &req.into_inner().service).await?;
        Ok(Response::new(service_inspected(&v, &s)))
    }

    async fn tasks(&self, req: Request<pb::TasksRequest>) -> Result<Response<pb::TasksResponse>, Status> {
        let ns = super::namespaces::of(&req)?;
        let whole_cluster = super::authz::scope(&req).whole_cluster();
        let req = req.into_inner();
        let filter = TaskFilter {
            namespace: &ns,
            // A node's tasks are all of them, for whoever may see them all.
            every_namespace: whole_cluster && !req.node.is_empty() && req.service.is_empty(),
            service: non_empty(&req.service),
            node: non_empty(&req.node),
            running_only: req.running_only,
        };
        let (v, tasks) = services::tasks(&self.state.raft, filter).await?;
        let mut tasks: Vec<pb::Task> = tasks.iter().map(|t| task_to_proto(&v, t)).collect();
        tasks.sort_by(|a, b| {
            (&a.service, a.slot, &a.node_hostname, std::cmp::Reverse(a.created_ms)).cmp(&(
                &b.service,
                b.slot,
                &b.node_hostname,
                std::cmp::Reverse(b.created_ms),
            ))
        });
        Ok(Response::new(pb::TasksResponse { tasks }))
    }

    type LogsStream = Streamed<pb::ServiceLogEntry>;

    async fn logs(&self, req: Request<pb::ServiceLogsRequest>) -> Result<Response<Self::LogsStream>, Status> {
        let ns = super::namespaces::of(&req)?;
        let req = req.into_inner();
        let sources = services::log_sources(&self.state.raft, &ns, &req.service).await?;
        let id = self.state.identity().ok_or_else(|| Status::failed_precondition("this node is not in a cluster"))?;
        let tls = id.client_tls_any_node().map_err(|e| Status::internal(e.to_string()))?;
        let (tx, rx) = mpsc::channel(256);
        for src in sources {
            let (tx, tls) = (tx.clone(), tls.clone());
            let creq =
                orc_proto::container::LogsRequest { id: src.container.clone(), follow: req.follow, tail: req.tail };
            tokio::spawn(async move {
                let channel = match crate::pki::channel::channel(&src.addr, tls).await {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = tx
                            .send(Err(Status::unavailable(format!("node {} ({}): {e}", src.hostname, src.addr))))
                            .await;
                        return;
                    }
                };
                let mut client = orc_proto::container::containers_client::ContainersClient::new(channel);
                let mut stream = match client.logs(creq).await {
                    Ok(s) => s.into_inner(),
                    // A task whose container is gone has no logs left: skip it.
                    Err(s) if s.code() == tonic::Code::NotFound => return,
                    Err(s) => {
                        let _ = tx.send(Err(s)).await;
                        return;
                    }
                };
                while let Ok(Some(e)) = stream.message().await {
                    let entry =
                        pb::ServiceLogEntry { task: src.label.clone(), time: e.time, stream: e.stream, line: e.line };
                    if tx.send(Ok(entry)).await.is_err() {
                        return;
                    }
                }
            });
        }
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
