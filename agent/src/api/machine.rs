//! `orc.machine.v1.Machine`: each handler traces, then calls a `do_*`
//! function of [`crate::node`]. Authorization already happened in the layer.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use orc_proto::machine::machine_server::Machine;
use orc_proto::machine::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::node::audit::AuditLog;
use crate::node::{bootstrap, dmesg, health, logs, power, services, version};
use crate::state::NodeState;

pub struct MachineService {
    state: Arc<NodeState>,
    audit: Arc<AuditLog>,
    /// The node's tasks (what an upgrade records as ready before it).
    executor: Arc<crate::worker::executor::Executor>,
    /// Where `upgrade --image` pulls with (registries, their settings).
    images: Arc<crate::images::ImageStore>,
}

impl MachineService {
    pub fn new(
        state: Arc<NodeState>,
        audit: Arc<AuditLog>,
        executor: Arc<crate::worker::executor::Executor>,
        images: Arc<crate::images::ImageStore>,
    ) -> Self {
        Self { state, audit, executor, images }
    }
}

fn audit_to_proto(r: &crate::node::audit::Record) -> AuditRecord {
    AuditRecord {
        time_ms: r.time_ms,
        who: r.who.clone(),
        role: r.role.map(|r| r.as_str().to_string()).unwrap_or_default(),
        serial: r.serial.clone(),
        remote: r.remote.clone(),
        method: r.method.clone(),
        target: r.target.clone(),
        code: r.code,
        message: r.message.clone(),
    }
}

type Streamed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl Machine for MachineService {
    async fn version(&self, _: Request<VersionRequest>) -> Result<Response<VersionResponse>, Status> {
        // A node booted from its disk reads the ESP: vfat is a late module.
        let booted = crate::node::boot_slots::booted();
        if booted.is_some() {
            esp_ready(&self.state).await;
        }
        let state = self.state.clone();
        let v = tokio::task::spawn_blocking(move || version::do_version(&state, booted))
            .await
            .map_err(|e| Status::internal(format!("version task: {e}")))?;
        Ok(Response::new(v))
    }

    async fn health(&self, _: Request<HealthRequest>) -> Result<Response<HealthResponse>, Status> {
        Ok(Response::new(health::do_health(&self.state)))
    }

    async fn bootstrap(&self, req: Request<BootstrapRequest>) -> Result<Response<BootstrapResponse>, Status> {
        tracing::info!(remote = ?req.remote_addr(), "bootstrap requested");
        let r = req.into_inner();
        let pool = crate::cluster::settings::bootstrap_pool(&r.container_cidr, r.subnet_size)?;
        let state = self.state.clone();
        let res = tokio::task::spawn_blocking(move || bootstrap::do_bootstrap(&state, r))
            .await
            .map_err(|e| Status::internal(format!("bootstrap task: {e}")))??;
        // The first manager: a one-member Raft quorum, its pool the first
        // entry after its membership (before any node is leased a subnet);
        // the first admin's certificate goes on record once it has a leader.
        self.state.start_raft(true).await;
        crate::cluster::settings::record_bootstrap(&self.state.raft, pool).await?;
        let (raft, admin) = (self.state.raft.clone(), res.admin_cert_pem.clone());
        tokio::spawn(async move { crate::cluster::certs::record_bootstrap_admin(&raft, &admin).await });
        Ok(Response::new(res))
    }

    async fn upgrade(&self, req: Request<tonic::Streaming<UpgradeChunk>>) -> Result<Response<UpgradeResponse>, Status> {
        esp_ready(&self.state).await;
        let mut input = req.into_inner();
        let first = input.message().await?.ok_or_else(|| Status::invalid_argument("the upgrade stream was empty"))?;
        let opts = crate::upgrade::stage::Options {
            force: first.force,
            health_window_secs: first.health_window_secs,
            ready_before: crate::upgrade::stage::ready_now(&self.executor),
            refuse: first.refuse_versions.clone(),
        };
        let state = self.state.clone();
        let (images, auth) = (&self.images, first.auth.as_ref());
        if first.probe && !first.image.is_empty() {
            let m = crate::upgrade::pull::with_bundle(images, &first.image, auth, |r| {
                orc_image::bundle::manifest_unverified(r).map_err(crate::upgrade::UpgradeError::from)
            })
            .await?;
            return Ok(Response::new(UpgradeResponse { version: m.version, ..Default::default() }));
        }
        let staged = if first.image.is_empty() {
            self.stage_streamed(first, input, opts).await?
        } else {
            // The node pulls the bundle itself.
            crate::upgrade::pull::with_bundle(images, &first.image, auth, move |r| {
                crate::upgrade::stage::stage(&state, r, opts)
            })
            .await?
        };
        super::audit::target(&staged.version);
        Ok(Response::new(UpgradeResponse {
            version: staged.version,
            from_version: staged.from_version,
            slot: staged.slot.as_str().into(),
            entry: staged.entry,
        }))
    }

    async fn rollback(&self, _: Request<RollbackRequest>) -> Result<Response<RollbackResponse>, Status> {
        esp_ready(&self.state).await;
        let state = self.state.clone();
        let r = tokio::task::spawn_blocking(move || crate::upgrade::rollback::rollback(&state))
            .await
            .map_err(|e| Status::internal(format!("rollback task: {e}")))??;
        super::audit::target(&r.version);
        Ok(Response::new(RollbackResponse { version: r.version, slot: r.slot.as_str().into() }))
    }

    async fn install(&self, req: Request<tonic::Streaming<InstallChunk>>) -> Result<Response<InstallResponse>, Status> {
        let mut input = req.into_inner();
        let first = input.message().await?.ok_or_else(|| Status::invalid_argument("the install stream was empty"))?;
        self.state.check_maintenance_token(&first.maintenance_token)?;
        if !self.state.mode().0 {
            return Err(crate::install::InstallError::NotMaintenance.into());
        }
        let request = crate::install::Request { disk: first.disk.clone(), wipe: first.wipe };
        let (state_dir, run_dir) = (self.state.state_dir().to_path_buf(), self.state.config.run_dir.clone());
        // Refused before a byte of the bundle travels.
        let checked = request.clone();
        tokio::task::spawn_blocking(move || crate::install::target(&checked))
            .await
            .map_err(|e| Status::internal(format!("install task: {e}")))??;
        let installed = if first.image.is_empty() {
            let reader = ChunkReader::of(first.data, input, |c| c.data);
            tokio::task::spawn_blocking(move || crate::install::install(&state_dir, &run_dir, &request, reader))
                .await
                .map_err(|e| Status::internal(format!("install task: {e}")))??
        } else {
            crate::upgrade::pull::with_bundle(&self.images, &first.image, first.auth.as_ref(), move |r| {
                crate::install::install(&state_dir, &run_dir, &request, r)
            })
            .await?
        };
        super::audit::target(&installed.version);
        power::do_power(&self.state, power::PowerAction::Reboot)?;
        Ok(Response::new(InstallResponse { version: installed.version, disk: installed.disk, entry: installed.entry }))
    }

    async fn reboot(&self, _: Request<RebootRequest>) -> Result<Response<RebootResponse>, Status> {
        power::do_power(&self.state, power::PowerAction::Reboot)?;
        Ok(Response::new(RebootResponse {}))
    }

    async fn shutdown(&self, _: Request<ShutdownRequest>) -> Result<Response<ShutdownResponse>, Status> {
        power::do_power(&self.state, power::PowerAction::Poweroff)?;
        Ok(Response::new(ShutdownResponse {}))
    }

    type DmesgStream = Streamed<DmesgEntry>;

    async fn dmesg(&self, req: Request<DmesgRequest>) -> Result<Response<Self::DmesgStream>, Status> {
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(async move { dmesg::stream(std::path::Path::new("/dev/kmsg"), req.get_ref().follow, tx).await });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx).map(|r| r.map_err(Status::from)))))
    }

    type LogsStream = Streamed<LogLine>;

    type AuditStream = Streamed<AuditRecord>;

    async fn audit(&self, req: Request<AuditRequest>) -> Result<Response<Self::AuditStream>, Status> {
        let r = req.into_inner();
        // Subscribed before the file is read: a record written meanwhile
        // may come twice, never not at all.
        let mut live = r.follow.then(|| self.audit.subscribe());
        let audit = self.audit.clone();
        let kept = tokio::task::spawn_blocking(move || audit.read(r.since_ms))
            .await
            .map_err(|e| Status::internal(format!("reading the audit log: {e}")))?;
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(async move {
            let mut last = 0;
            for rec in &kept {
                last = rec.time_ms;
                if tx.send(Ok(audit_to_proto(rec))).await.is_err() {
                    return;
                }
            }
            let Some(live) = live.as_mut() else { return };
            loop {
                match live.recv().await {
                    Ok(rec) if rec.time_ms >= last => {
                        if tx.send(Ok(audit_to_proto(&rec))).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        let msg = format!("the audit follower fell behind: {n} records not sent (see `orcctl audit`)");
                        let _ = tx.send(Err(Status::data_loss(msg))).await;
                        return;
                    }
                    Err(_) => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn logs(&self, req: Request<LogsRequest>) -> Result<Response<Self::LogsStream>, Status> {
        let r = req.into_inner();
        let service = if r.service.is_empty() { "init".to_string() } else { r.service };
        let path = logs::path_of(&self.state.config.run_dir.join("log"), &service)?;
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(logs::stream(path, service, r.tail as usize, r.follow, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx).map(|r| r.map_err(Status::from)))))
    }

    async fn restart_service(
        &self,
        req: Request<RestartServiceRequest>,
    ) -> Result<Response<RestartServiceResponse>, Status> {
        let service = req.into_inner().service;
        if service != "agent" {
            return Err(Status::invalid_argument(format!("{service:?} cannot be restarted; restartable: agent")));
        }
        tracing::info!("restart of the agent requested");
        tokio::spawn(async {
            // Let the answer reach the client first; PID 1 starts us again.
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            std::process::exit(0);
        });
        Ok(Response::new(RestartServiceResponse {}))
    }

    async fn join(&self, req: Request<JoinRequest>) -> Result<Response<JoinResponse>, Status> {
        let req = req.into_inner();
        tracing::info!(manager = %req.manager, "join requested");
        self.state.check_maintenance_token(&req.maintenance_token)?;
        let id = crate::cluster::join::join(&self.state, &req.token, &req.manager).await?;
        self.state.start_raft(false).await;
        Ok(Response::new(JoinResponse {
            node_id: id.meta.node_id,
            cluster_id: id.meta.cluster_id,
            role: id.meta.role.as_str().into(),
        }))
    }

    async fn services(&self, _: Request<ServicesRequest>) -> Result<Response<ServicesResponse>, Status> {
        Ok(Response::new(ServicesResponse { services: services::do_services(&self.state) }))
    }
}

/// The ESP is vfat, a late module: wait for those (at once when loaded).
async fn esp_ready(state: &NodeState) {
    crate::late_modules::loaded(&state.config.run_dir.join(orc_image::cmdline::LATE_MODULES_PENDING)).await;
}

/// The chunks of a client stream as one reader (for the blocking writer).
impl MachineService {
    /// The bundle in the upload `input` (its first message `first`) into
    /// the inactive slot: a bounded channel from the stream into the
    /// blocking writer.
    async fn stage_streamed(
        &self,
        first: UpgradeChunk,
        input: tonic::Streaming<UpgradeChunk>,
        opts: crate::upgrade::stage::Options,
    ) -> Result<crate::upgrade::stage::Staged, Status> {
        let reader = ChunkReader::of(first.data, input, |c| c.data);
        let state = self.state.clone();
        Ok(tokio::task::spawn_blocking(move || crate::upgrade::stage::stage(&state, reader, opts))
            .await
            .map_err(|e| Status::internal(format!("upgrade task: {e}")))??)
    }
}

struct ChunkReader {
    rx: mpsc::Receiver<Result<Vec<u8>, String>>,
    buf: Vec<u8>,
    at: usize,
}

impl ChunkReader {
    /// The bytes of a client stream as a reader for a blocking thread:
    /// `first`'s (already received), then each message's `data`.
    fn of<T: Send + 'static>(first: Vec<u8>, mut input: tonic::Streaming<T>, data: fn(T) -> Vec<u8>) -> ChunkReader {
        let (tx, rx) = mpsc::channel::<Result<Vec<u8>, String>>(8);
        tokio::spawn(async move {
            if tx.send(Ok(first)).await.is_err() {
                return;
            }
            loop {
                let next = match input.message().await {
                    Ok(Some(c)) => Ok(data(c)),
                    Ok(None) => return,
                    Err(e) => Err(e.message().to_string()),
                };
                let stop = next.is_err();
                if tx.send(next).await.is_err() || stop {
                    return;
                }
            }
        });
        ChunkReader { rx, buf: Vec::new(), at: 0 }
    }
}

impl std::io::Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.at >= self.buf.len() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Ok(b)) => (self.buf, self.at) = (b, 0),
                Some(Err(e)) => return Err(std::io::Error::other(format!("the upload broke off: {e}"))),
            }
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
