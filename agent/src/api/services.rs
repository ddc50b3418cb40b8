//! `orc.cluster.v1.Services`, on any manager: reads are linearizable, writes
//! go to the leader. Logs are gathered from the nodes running the tasks.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use orc_proto::cluster as pb;
use orc_proto::cluster::services_server::Services;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::cluster::command::Command;
use crate::cluster::objects::*;
use crate::cluster::spec;
use crate::state::NodeState;

pub struct ServicesService {
    state: Arc<NodeState>,
}

impl ServicesService {
    pub fn new(state: Arc<NodeState>) -> Self {
        Self { state }
    }
}

pub fn spec_from_proto(p: pb::ServiceSpec) -> Result<ServiceSpec, Status> {
    let bad = Status::invalid_argument;
    let mode = match p.mode.as_str() {
        "" | "replicated" => Mode::Replicated,
        "global" => Mode::Global,
        m => return Err(bad(format!("mode {m:?} is not replicated or global"))),
    };
    // No policy given: Swarm's default, replace after 5 s.
    let r = p.restart.unwrap_or(pb::ServiceRestartPolicy { delay_ms: 5_000, ..Default::default() });
    let condition = match r.condition.as_str() {
        "" | "any" => RestartCondition::Any,
        "on-failure" => RestartCondition::OnFailure,
        "none" => RestartCondition::None,
        c => return Err(bad(format!("restart condition {c:?} is not any, on-failure or none"))),
    };
    let ports = p
        .ports
        .iter()
        .map(|q| {
            let port = |n: u32| u16::try_from(n).map_err(|_| bad(format!("port {n} is above 65535")));
            let protocol = if q.protocol.is_empty() { "tcp".to_string() } else { q.protocol.clone() };
            Ok(Port { published: port(q.published)?, target: port(q.target)?, protocol })
        })
        .collect::<Result<_, Status>>()?;
    let s = ServiceSpec {
        name: p.name,
        image: p.image.trim().to_string(),
        command: p.command,
        args: p.args,
        env: p.env,
        user: p.user,
        workdir: p.workdir,
        replicas: if mode == Mode::Global { 0 } else { p.replicas },
        mode,
        reserve_cpus: p.reserve_cpus,
        reserve_memory: p.reserve_memory,
        limit_cpus: p.limit_cpus,
        limit_memory: p.limit_memory,
        limit_pids: p.limit_pids,
        constraints: p.constraints,
        restart: RestartPolicy {
            condition,
            delay_ms: r.delay_ms,
            max_attempts: r.max_attempts,
            window_ms: r.window_ms,
        },
        ports,
        labels: p.labels.into_iter().collect(),
    };
    spec::validate(&s).map_err(bad)?;
    Ok(s)
}

pub fn spec_to_proto(s: &ServiceSpec) -> pb::ServiceSpec {
    pb::ServiceSpec {
        name: s.name.clone(),
        image: s.image.clone(),
        command: s.command.clone(),
        args: s.args.clone(),
        env: s.env.clone(),
        user: s.user.clone(),
        workdir: s.workdir.clone(),
        mode: if s.mode == Mode::Global { "global" } else { "replicated" }.into(),
        replicas: s.replicas,
        reserve_cpus: s.reserve_cpus,
        reserve_memory: s.reserve_memory,
        limit_cpus: s.limit_cpus,
        limit_memory: s.limit_memory,
        limit_pids: s.limit_pids,
        constraints: s.constraints.clone(),
        restart: Some(pb::ServiceRestartPolicy {
            condition: match s.restart.condition {
                RestartCondition::Any => "any",
                RestartCondition::OnFailure => "on-failure",
                RestartCondition::None => "none",
            }
            .into(),
            delay_ms: s.restart.delay_ms,
            max_attempts: s.restart.max_attempts,
            window_ms: s.restart.window_ms,
        }),
        ports: s
            .ports
            .iter()
            .map(|p| pb::Port { published: p.published.into(), target: p.target.into(), protocol: p.protocol.clone() })
            .collect(),
        labels: s.labels.clone().into_iter().collect(),
    }
}

fn service_to_proto(v: &View, s: &Service) -> pb::Service {
    let live: Vec<&Task> =
        v.tasks.values().filter(|t| t.service_id == s.id && t.desired == TaskState::Running).collect();
    pb::Service {
        id: s.id.clone(),
        spec: Some(spec_to_proto(&s.spec)),
        spec_version: s.spec_version,
        created_ms: s.created_ms,
        updated_ms: s.updated_ms,
        desired_tasks: match s.spec.mode {
            Mode::Replicated => s.spec.replicas,
            Mode::Global => live.len() as u64,
        },
        running_tasks: live.iter().filter(|t| t.state == TaskState::Running).count() as u64,
    }
}

pub fn task_to_proto(v: &View, t: &Task) -> pb::Task {
    pb::Task {
        id: t.id.clone(),
        service: t.service.clone(),
        slot: t.slot,
        node_id: t.node.clone(),
        node_hostname: v.nodes.get(&t.node).map(|n| n.hostname.clone()).unwrap_or_default(),
        desired: t.desired.as_str().into(),
        state: t.state.as_str().into(),
        message: t.message.clone(),
        error: t.error.clone(),
        container: t.container.clone(),
        exit_code: t.exit_code,
        spec_version: t.spec_version,
        created_ms: t.created_ms,
        updated_ms: t.updated_ms,
    }
}

/// A service by name, id or unique id prefix.
fn find<'a>(v: &'a View, ident: &str) -> Result<&'a Service, Status> {
    if let Some(s) = v.service_by_name(ident).or_else(|| v.services.get(ident)) {
        return Ok(s);
    }
    let matches: Vec<&Service> = v.services.values().filter(|s| !ident.is_empty() && s.id.starts_with(ident)).collect();
    match matches.as_slice() {
        [one] => Ok(one),
        [] => Err(Status::not_found(format!("no service {ident:?} (see `orcctl service ls`)"))),
        _ => {
            Err(Status::invalid_argument(format!("{ident:?} matches {} services: give more of the id", matches.len())))
        }
    }
}

fn conflict(r: crate::cluster::command::CommandResult, what: &str) -> Result<u64, Status> {
    match r.conflict {
        None => Ok(r.version),
        Some(c) => Err(Status::aborted(format!("{what}: changed meanwhile ({c}); try again"))),
    }
}

type Streamed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl Services for ServicesService {
    async fn create(&self, req: Request<pb::CreateServiceRequest>) -> Result<Response<pb::Service>, Status> {
        let spec = spec_from_proto(req.into_inner().spec.unwrap_or_default())?;
        let v = self.state.cluster.view().await?;
        if v.service_by_name(&spec.name).is_some() {
            return Err(Status::already_exists(format!(
                "a service named {:?} exists: change it with `orcctl service update {}` or remove it first",
                spec.name, spec.name
            )));
        }
        let now = now_ms();
        let s = Service { id: new_id(), spec, spec_version: 1, previous_spec: None, created_ms: now, updated_ms: now };
        // The name is claimed in the same entry, so two creates cannot both win.
        let claim = Command::Put {
            table: "service-names".into(),
            id: s.spec.name.clone(),
            value: s.id.clone().into(),
            expect_version: Some(0),
        };
        let mut put_service = put(SERVICES, &s.id, &s);
        if let Command::Put { expect_version, .. } = &mut put_service {
            *expect_version = Some(0);
        }
        let r = self.state.cluster.write(Command::Batch(vec![claim, put_service])).await?;
        conflict(r, "creating the service")?;
        tracing::info!(service = %s.spec.name, id = %s.id, "service created");
        Ok(Response::new(service_to_proto(&v, &s)))
    }

    async fn update(&self, req: Request<pb::UpdateServiceRequest>) -> Result<Response<pb::Service>, Status> {
        let req = req.into_inner();
        let spec = spec_from_proto(req.spec.unwrap_or_default())?;
        let started = self.state.cluster.linearizable().await?;
        let (v, old, object_version) = {
            let a = started.sm.applied.read().await;
            let v = View::of(&a.state);
            let old = find(&v, &req.service)?.clone();
            let ov = a.state.get(SERVICES, &old.id).map(|o| o.version).unwrap_or(0);
            (v, old, ov)
        };
        if req.expect_version != 0 && req.expect_version != old.spec_version {
            return Err(Status::aborted(format!(
                "service {} is at version {}, not {}: someone changed it; look again",
                old.spec.name, old.spec_version, req.expect_version
            )));
        }
        if spec.name != old.spec.name {
            return Err(Status::invalid_argument(format!(
                "a service cannot be renamed ({:?} → {:?}): create a new one",
                old.spec.name, spec.name
            )));
        }
        let mut s = old.clone();
        if spec::needs_new_tasks(&old.spec, &spec) {
            s.spec_version += 1;
            s.previous_spec = Some(old.spec.clone());
        }
        s.spec = spec;
        s.updated_ms = now_ms();
        let mut cmd = put(SERVICES, &s.id, &s);
        if let Command::Put { expect_version, .. } = &mut cmd {
            *expect_version = Some(object_version);
        }
        conflict(self.state.cluster.write(cmd).await?, "updating the service")?;
        tracing::info!(service = %s.spec.name, version = s.spec_version, replicas = s.spec.replicas, "service updated");
        Ok(Response::new(service_to_proto(&v, &s)))
    }

    async fn remove(
        &self,
        req: Request<pb::RemoveServiceRequest>,
    ) -> Result<Response<pb::RemoveServiceResponse>, Status> {
        let v = self.state.cluster.view().await?;
        let s = find(&v, &req.into_inner().service)?;
        let cmd = Command::Batch(vec![
            Command::Delete { table: SERVICES.into(), id: s.id.clone() },
            Command::Delete { table: "service-names".into(), id: s.spec.name.clone() },
        ]);
        self.state.cluster.write(cmd).await?;
        tracing::info!(service = %s.spec.name, id = %s.id, "service removed");
        Ok(Response::new(pb::RemoveServiceResponse { id: s.id.clone() }))
    }

    async fn list(&self, _: Request<pb::ListServicesRequest>) -> Result<Response<pb::ListServicesResponse>, Status> {
        let v = self.state.cluster.view().await?;
        let mut services: Vec<pb::Service> = v.services.values().map(|s| service_to_proto(&v, s)).collect();
        services.sort_by(|a, b| a.spec.as_ref().map(|s| &s.name).cmp(&b.spec.as_ref().map(|s| &s.name)));
        Ok(Response::new(pb::ListServicesResponse { services }))
    }

    async fn inspect(&self, req: Request<pb::InspectServiceRequest>) -> Result<Response<pb::Service>, Status> {
        let v = self.state.cluster.view().await?;
        let s = find(&v, &req.into_inner().service)?;
        Ok(Response::new(service_to_proto(&v, s)))
    }

    async fn tasks(&self, req: Request<pb::TasksRequest>) -> Result<Response<pb::TasksResponse>, Status> {
        let req = req.into_inner();
        let v = self.state.cluster.view().await?;
        let service = if req.service.is_empty() { None } else { Some(find(&v, &req.service)?.id.clone()) };
        let node = if req.node.is_empty() { None } else { Some(super::nodes::find(&v, &req.node)?.id.clone()) };
        let mut tasks: Vec<pb::Task> = v
            .tasks
            .values()
            .filter(|t| service.as_ref().is_none_or(|s| &t.service_id == s))
            .filter(|t| node.as_ref().is_none_or(|n| &t.node == n))
            .filter(|t| !req.running_only || t.desired == TaskState::Running)
            .map(|t| task_to_proto(&v, t))
            .collect();
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
        let req = req.into_inner();
        let v = self.state.cluster.view().await?;
        let s = find(&v, &req.service)?;
        let id = self.state.identity().ok_or_else(|| Status::failed_precondition("this node is not in a cluster"))?;
        let tls = crate::cluster::network::client_tls(&id.ca_cert_pem, &id.node.cert_pem, &id.node.key_pem)
            .map_err(Status::internal)?;
        let (tx, rx) = mpsc::channel(256);
        let tasks: Vec<Task> =
            v.tasks.values().filter(|t| t.service_id == s.id && !t.container.is_empty()).cloned().collect();
        for t in tasks {
            let Some(node) = v.nodes.get(&t.node).cloned() else { continue };
            let (tx, tls) = (tx.clone(), tls.clone());
            let label = format!(
                "{}.{}.{}@{}",
                t.service,
                if t.slot > 0 { t.slot.to_string() } else { "g".into() },
                t.id,
                node.hostname
            );
            let creq =
                orc_proto::container::LogsRequest { id: t.container.clone(), follow: req.follow, tail: req.tail };
            tokio::spawn(async move {
                let channel = match crate::cluster::network::channel(&node.addr, tls).await {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = tx
                            .send(Err(Status::unavailable(format!("node {} ({}): {e}", node.hostname, node.addr))))
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
                        pb::ServiceLogEntry { task: label.clone(), time: e.time, stream: e.stream, line: e.line };
                    if tx.send(Ok(entry)).await.is_err() {
                        return;
                    }
                }
            });
        }
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
