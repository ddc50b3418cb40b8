//! The node's containers: create, start (through a shim), watch, restart
//! per policy, stop, remove, and re-attach after an agent restart or a
//! reboot.
//!
//! ```text
//! <state>/containers/<id>/container.json   the record
//!                         bundle/           config.json, rootfs.json, rootfs/
//!                         upper/ work/      the overlay's writable part
//!                         log/              container.log[.1]
//!                         exit.json         written by the shim at exit
//! <run>/containers/<id>/shim.sock           the shim's socket (tmpfs)
//! <run>/runc/                                libcontainer's state root
//! ```

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Mutex};

use super::record::{ContainerRecord, ExitInfo, RunSpec, Status};
use super::shim_client;
use super::spec::{self, ImageDefaults};
use crate::error::AgentError;
use crate::images::ImageStore;
use crate::shim_contract::user;
use crate::shim_contract::{Overlay, ShimArgs, SOCKET};
use orc_proto::container as pb;
use orc_proto::shim as spb;

const RECORD: &str = "container.json";
const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_RESTART_DELAY: Duration = Duration::from_secs(10);

pub struct Runtime {
    dir: PathBuf,
    run: PathBuf,
    root: PathBuf,
    exe: PathBuf,
    /// Present while orc-init still loads the kernel modules containers use.
    modules_pending: PathBuf,
    pub images: Arc<ImageStore>,
    records: Mutex<HashMap<String, ContainerRecord>>,
    /// Bumped on every record change; waiters look again.
    changed: watch::Sender<u64>,
}

fn not_found(ident: &str) -> AgentError {
    AgentError::NotFound(format!("no container {ident:?} on this node (see `orcctl container ls -a`)"))
}

impl Runtime {
    pub fn open(state_dir: &Path, run_dir: &Path, images: Arc<ImageStore>) -> Result<Arc<Self>, AgentError> {
        let dir = state_dir.join("containers");
        std::fs::create_dir_all(&dir).map_err(|e| AgentError::io(&dir, e))?;
        let exe = std::env::current_exe().map_err(|e| AgentError::Io(format!("finding the agent binary: {e}")))?;
        let mut records = HashMap::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| AgentError::io(&dir, e))?.flatten() {
            let path = entry.path().join(RECORD);
            match std::fs::read(&path).map(|d| serde_json::from_slice::<ContainerRecord>(&d)) {
                Ok(Ok(r)) => {
                    records.insert(r.id.clone(), r);
                }
                Ok(Err(e)) => tracing::error!(path = %path.display(), error = %e, "corrupt container record; skipped"),
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "container directory without a record"),
            }
        }
        Ok(Arc::new(Self {
            dir,
            run: run_dir.join("containers"),
            root: run_dir.join("runc"),
            modules_pending: run_dir.join(orc_image::cmdline::LATE_MODULES_PENDING),
            exe,
            images,
            records: Mutex::new(records),
            changed: watch::channel(0).0,
        }))
    }

    fn container_dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    fn shim_args(&self, id: &str) -> ShimArgs {
        ShimArgs {
            id: id.to_string(),
            dir: self.container_dir(id),
            run: self.run.join(id),
            root: self.root.clone(),
            log_max_size: crate::shim_contract::log::MAX_SIZE,
        }
    }

    fn socket(&self, id: &str) -> PathBuf {
        self.run.join(id).join(SOCKET)
    }

    async fn save(&self, r: ContainerRecord) -> Result<(), AgentError> {
        let data = serde_json::to_vec_pretty(&r).map_err(|e| AgentError::Io(e.to_string()))?;
        crate::fsutil::write_atomic(&self.container_dir(&r.id).join(RECORD), &data)?;
        self.records.lock().await.insert(r.id.clone(), r);
        self.changed.send_modify(|n| *n += 1);
        Ok(())
    }

    async fn update(&self, id: &str, f: impl FnOnce(&mut ContainerRecord)) -> Result<ContainerRecord, AgentError> {
        let mut r = self.get(id).await?;
        f(&mut r);
        self.save(r.clone()).await?;
        Ok(r)
    }

    async fn get(&self, id: &str) -> Result<ContainerRecord, AgentError> {
        self.records.lock().await.get(id).cloned().ok_or_else(|| not_found(id))
    }

    /// The record of a container (by id, unique id prefix or name).
    pub async fn record(&self, ident: &str) -> Result<ContainerRecord, AgentError> {
        let id = self.resolve(ident).await?;
        self.get(&id).await
    }

    /// Wakes on every change of any container record.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Id of the container named by an id, a unique id prefix or a name.
    pub async fn resolve(&self, ident: &str) -> Result<String, AgentError> {
        use crate::lookup::{find, Found};
        let records = self.records.lock().await;
        let exact = records
            .get_key_value(ident)
            .map(|(k, _)| k)
            .or_else(|| records.values().find(|r| r.spec.name == ident).map(|r| &r.id));
        match find(exact, records.keys().filter(|id| !ident.is_empty() && id.starts_with(ident))) {
            Found::One(id) => Ok(id.clone()),
            Found::Nothing => Err(not_found(ident)),
            Found::Several(n) => {
                Err(AgentError::InvalidArgument(format!("{ident:?} matches {n} containers: give more of the id")))
            }
        }
    }

    /// Image and container ids and layers containers hold (for image GC).
    pub async fn in_use(&self) -> (Vec<(String, String)>, BTreeSet<String>, BTreeSet<String>) {
        let records = self.records.lock().await;
        let users = records.values().map(|r| (r.name().to_string(), r.image_id.clone())).collect();
        let layers = records.values().flat_map(|r| r.layers.iter().cloned()).collect();
        let ids = records.values().map(|r| r.image_id.clone()).collect();
        (users, layers, ids)
    }

    /// Creates and starts a container; pulls the image when the node lacks it.
    pub async fn run(self: &Arc<Self>, req: &pb::ContainerSpec) -> Result<ContainerRecord, AgentError> {
        let spec = RunSpec::from_proto(req).map_err(|e| AgentError::InvalidArgument(e.to_string()))?;
        self.run_spec(spec, req.auth.as_ref()).await
    }

    /// Refuses `name` when a container holds it (an empty name is free).
    pub async fn check_name_free(&self, name: &str) -> Result<(), AgentError> {
        if !name.is_empty() && self.records.lock().await.values().any(|r| r.spec.name == name) {
            return Err(AgentError::AlreadyExists(format!(
                "a container named {name:?} exists: remove it (`orcctl container rm {name}`) or pick another name"
            )));
        }
        Ok(())
    }

    /// Creates and starts a container from a validated spec.
    pub async fn run_spec(
        self: &Arc<Self>,
        spec: RunSpec,
        auth: Option<&pb::RegistryAuth>,
    ) -> Result<ContainerRecord, AgentError> {
        self.check_name_free(&spec.name).await?;
        let image = crate::images::pull::ensure(&self.images, &spec.image, auth).await?;
        let config = self.images.read_blob(&image.id)?;
        let defaults = ImageDefaults::from_config(&config)?;
        let lower: Vec<PathBuf> =
            image.layers.iter().rev().map(|l| self.images.layer_dir(l)).collect::<Result<_, _>>()?;
        let user_spec = if spec.process.user.is_empty() { defaults.user.clone() } else { spec.process.user.clone() };
        // Reads the image's files: off the async threads.
        let ids = {
            let lower = lower.clone();
            tokio::task::spawn_blocking(move || user::resolve(&user_spec, &lower))
                .await
                .map_err(|e| AgentError::Internal(format!("resolving the user: {e}")))??
        };

        let id = hex::encode(rand::random::<[u8; 32]>());
        let dir = self.container_dir(&id);
        let bundle = dir.join("bundle");
        let oci = spec::generate(&id, &bundle.join("rootfs"), &defaults, &spec, ids)?;
        for d in [&bundle, &dir.join("upper"), &dir.join("work"), &dir.join("log")] {
            std::fs::create_dir_all(d).map_err(|e| AgentError::io(d, e))?;
        }
        let oci_json = serde_json::to_vec_pretty(&oci).map_err(|e| AgentError::Io(e.to_string()))?;
        crate::fsutil::write_atomic(&bundle.join("config.json"), &oci_json)?;
        let overlay = Overlay { lower, upper: dir.join("upper"), work: dir.join("work") };
        overlay.save(&bundle)?;
        let record = ContainerRecord {
            id: id.clone(),
            spec,
            image: image.name.clone(),
            image_id: image.id.clone(),
            layers: image.layers.clone(),
            created: crate::clock::unix_secs(),
            ..Default::default()
        };
        self.save(record).await?;
        tracing::info!(%id, image = %image.name, "container created");
        self.start(&id).await
    }

    /// Starts the shim of a created or exited container and watches it.
    pub async fn start(self: &Arc<Self>, id: &str) -> Result<ContainerRecord, AgentError> {
        self.modules_loaded().await;
        let args = self.shim_args(id);
        let _ = std::fs::remove_dir_all(&args.run);
        let (pid, started) = shim_client::spawn(&self.exe, &args).await?;
        let r = self
            .update(id, |r| {
                r.status = Status::Running;
                r.pid = pid;
                r.started = started;
                r.exit = None;
            })
            .await?;
        tracing::info!(%id, pid, "container running");
        self.watch(id.to_string());
        Ok(r)
    }

    /// Waits while orc-init loads the kernel modules containers use (the
    /// overlay filesystem among them).
    async fn modules_loaded(&self) {
        crate::late_modules::loaded(&self.modules_pending).await;
    }

    /// Waits (in a task) for the container to exit, records it, and
    /// restarts it when its policy says so.
    fn watch(self: &Arc<Self>, id: String) {
        let rt = self.clone();
        tokio::spawn(async move {
            let exit = rt.wait_shim(&id).await;
            let Ok(r) = rt
                .update(&id, |r| {
                    r.status = Status::Exited;
                    r.exit = Some(exit);
                })
                .await
            else {
                return; // removed meanwhile
            };
            tracing::info!(id = %id, code = exit.code, signal = exit.signal, oom = exit.oom_killed, "container exited");
            if r.should_restart(&exit) {
                let delay = Duration::from_millis(100u64 << r.restart_count.min(7)).min(MAX_RESTART_DELAY);
                tokio::time::sleep(delay).await;
                // Stopped or removed while we slept: leave it.
                match rt.get(&id).await {
                    Ok(now) if now.status == Status::Exited && !now.stopped_by_user => {}
                    _ => return,
                }
                if rt.update(&id, |r| r.restart_count += 1).await.is_err() {
                    return;
                }
                tracing::info!(id = %id, restarts = r.restart_count + 1, "restarting per policy");
                if let Err(e) = rt.start(&id).await {
                    tracing::error!(id = %id, error = %e, "restart failed");
                }
            }
        });
    }

    /// The exit of the container behind the shim, however the shim ends.
    /// A broken Wait call is retried while the shim still answers.
    async fn wait_shim(&self, id: &str) -> ExitInfo {
        let socket = self.socket(id);
        let mut failures = 0;
        while let Ok(mut c) = shim_client::connect(&socket).await {
            match c.wait(spb::WaitRequest {}).await {
                Ok(e) => {
                    let e = e.into_inner();
                    return self.exit_file(id).unwrap_or(ExitInfo {
                        code: e.code,
                        signal: e.signal,
                        oom_killed: e.oom_killed,
                        finished: crate::clock::unix_secs(),
                    });
                }
                Err(s) => {
                    // A shim that recorded the exit and left broke the call: done.
                    if let Some(e) = self.exit_file(id) {
                        return e;
                    }
                    failures += 1;
                    tracing::warn!(%id, error = %s, failures, "waiting on the shim failed; asking again");
                    if failures > 10 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100 * failures)).await;
                }
            }
        }
        // The shim is gone: it left exit.json, or it died with the node.
        self.exit_file(id).unwrap_or(ExitInfo {
            code: 255,
            signal: 9,
            oom_killed: false,
            finished: crate::clock::unix_secs(),
        })
    }

    fn exit_file(&self, id: &str) -> Option<ExitInfo> {
        crate::shim_contract::recorded_exit(&self.container_dir(id))
    }

    /// After an agent restart: watch the shims still running; after a
    /// reboot (no shims): record the exits and restart per policy.
    pub async fn reattach(self: &Arc<Self>) {
        let running: Vec<String> =
            self.records.lock().await.values().filter(|r| r.status == Status::Running).map(|r| r.id.clone()).collect();
        for id in running {
            let alive = match shim_client::connect(&self.socket(&id)).await {
                Ok(mut c) => c.state(spb::StateRequest {}).await.is_ok(),
                Err(_) => false,
            };
            if alive {
                tracing::info!(%id, "re-attached to the running container");
            } else {
                tracing::info!(%id, "the container's shim is gone (node rebooted or shim died)");
            }
            self.watch(id);
        }
    }

    async fn signal(&self, id: &str, signal: i32, all: bool) -> Result<(), AgentError> {
        let mut c = shim_client::connect(&self.socket(id)).await?;
        c.kill(spb::KillRequest { signal, all })
            .await
            .map_err(|s| AgentError::Unavailable(format!("kill: {}", s.message())))?;
        Ok(())
    }

    /// Waits until the container is not running, up to `timeout`.
    async fn wait_exited(&self, id: &str, timeout: Duration) -> bool {
        let mut rx = self.changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self.get(id).await {
                Ok(r) if r.status == Status::Running => {}
                _ => return true,
            }
            if tokio::time::timeout_at(deadline, rx.changed()).await.is_err() {
                return false;
            }
        }
    }

    /// The container once it is not running: at once if it is not, else
    /// when its shim reports the exit.
    pub async fn wait(&self, ident: &str) -> Result<ContainerRecord, AgentError> {
        let id = self.resolve(ident).await?;
        let mut rx = self.changed.subscribe();
        loop {
            let r = self.get(&id).await?;
            if r.status != Status::Running {
                return Ok(r);
            }
            if rx.changed().await.is_err() {
                return Err(AgentError::Unavailable(format!("container {id}: the runtime is shutting down")));
            }
        }
    }

    pub async fn stop(&self, ident: &str, timeout: Option<Duration>) -> Result<ContainerRecord, AgentError> {
        self.stop_with(ident, libc::SIGTERM, timeout).await
    }

    /// `signal`, then SIGKILL after `timeout` (10 s when None).
    pub async fn stop_with(
        &self,
        ident: &str,
        signal: i32,
        timeout: Option<Duration>,
    ) -> Result<ContainerRecord, AgentError> {
        let id = self.resolve(ident).await?;
        let r = self.update(&id, |r| r.stopped_by_user = true).await?;
        if r.status != Status::Running {
            return Ok(r);
        }
        let timeout = timeout.unwrap_or(DEFAULT_STOP_TIMEOUT);
        tracing::info!(%id, ?timeout, signal, "stopping");
        if self.signal(&id, signal, false).await.is_ok() && self.wait_exited(&id, timeout).await {
            return self.get(&id).await;
        }
        let _ = self.signal(&id, libc::SIGKILL, true).await;
        if !self.wait_exited(&id, Duration::from_secs(10)).await {
            return Err(AgentError::Unavailable(format!("container {id} did not stop after SIGKILL")));
        }
        self.get(&id).await
    }

    pub async fn kill(&self, ident: &str, signal: i32) -> Result<ContainerRecord, AgentError> {
        let id = self.resolve(ident).await?;
        let r = self.update(&id, |r| r.stopped_by_user = true).await?;
        if r.status != Status::Running {
            return Err(AgentError::FailedPrecondition(format!("container {} is not running", r.name())));
        }
        self.signal(&id, signal, signal == libc::SIGKILL).await?;
        if signal == libc::SIGKILL {
            self.wait_exited(&id, Duration::from_secs(10)).await;
        }
        self.get(&id).await
    }

    pub async fn remove(&self, ident: &str, force: bool) -> Result<(), AgentError> {
        let id = self.resolve(ident).await?;
        let r = self.get(&id).await?;
        if r.status == Status::Running {
            if !force {
                return Err(AgentError::FailedPrecondition(format!(
                    "container {} is running: stop it first (`orcctl container stop`) or use --force",
                    r.name()
                )));
            }
            self.update(&id, |r| r.stopped_by_user = true).await?;
            let _ = self.signal(&id, libc::SIGKILL, true).await;
            if !self.wait_exited(&id, Duration::from_secs(10)).await {
                return Err(AgentError::Unavailable(format!("container {id} did not die; try again")));
            }
        }
        self.records.lock().await.remove(&id);
        self.changed.send_modify(|n| *n += 1);
        let dir = self.container_dir(&id);
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "removing the container directory");
        }
        let _ = std::fs::remove_dir_all(self.run.join(&id));
        tracing::info!(%id, "container removed");
        Ok(())
    }

    pub async fn list(&self, all: bool) -> Vec<ContainerRecord> {
        let mut v: Vec<_> =
            self.records.lock().await.values().filter(|r| all || r.status == Status::Running).cloned().collect();
        v.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
        v
    }

    pub async fn inspect(&self, ident: &str) -> Result<(ContainerRecord, String, Option<pb::Stats>), AgentError> {
        let id = self.resolve(ident).await?;
        let r = self.get(&id).await?;
        let spec = std::fs::read_to_string(self.container_dir(&id).join("bundle/config.json")).unwrap_or_default();
        let stats = if r.status == Status::Running {
            match shim_client::connect(&self.socket(&id)).await {
                Ok(mut c) => c.stats(spb::StatsRequest {}).await.ok().map(|s| s.into_inner()),
                Err(_) => None,
            }
        } else {
            None
        };
        Ok((r, spec, stats))
    }

    /// (log directory, a function telling whether the container still runs).
    pub async fn log_source(
        self: &Arc<Self>,
        ident: &str,
    ) -> Result<(PathBuf, impl Fn() -> bool + Send + 'static), AgentError> {
        let id = self.resolve(ident).await?;
        let dir = self.container_dir(&id).join("log");
        let rt = self.clone();
        let running = move || {
            rt.records.try_lock().map(|m| m.get(&id).is_some_and(|r| r.status == Status::Running)).unwrap_or(true)
        };
        Ok((dir, running))
    }

    /// Runs `args` in running container `ident`, its output dropped; its
    /// exit code (128 + the signal when a signal ended it).
    pub async fn exec_status(&self, ident: &str, args: &[String]) -> Result<i32, AgentError> {
        use orc_proto::container::exec_input::Input;
        use orc_proto::container::exec_output::Output;
        let mut shim = self.shim(ident).await?;
        let start = pb::ExecStart { container: ident.to_string(), args: args.to_vec(), ..Default::default() };
        let input = futures::stream::iter([
            pb::ExecInput { input: Some(Input::Start(start)) },
            pb::ExecInput { input: Some(Input::CloseStdin(true)) },
        ]);
        let fail = |e: tonic::Status| AgentError::Unavailable(format!("exec in {ident}: {}", e.message()));
        let mut out = shim.exec(input).await.map_err(fail)?.into_inner();
        while let Some(m) = out.message().await.map_err(fail)? {
            if let Some(Output::Exit(e)) = m.output {
                return Ok(if e.signal != 0 { 128 + e.signal } else { e.code });
            }
        }
        Err(AgentError::Unavailable(format!("exec in {ident}: the shim ended the stream without an exit status")))
    }

    /// The image config of `image` (a local image).
    pub async fn image_config(&self, image: &str) -> Option<Vec<u8>> {
        let record = self.images.get(image).await.ok()??;
        self.images.read_blob(&record.id).ok()
    }

    /// A shim client for exec into a running container.
    pub async fn shim(
        &self,
        ident: &str,
    ) -> Result<spb::shim_client::ShimClient<tonic::transport::Channel>, AgentError> {
        let id = self.resolve(ident).await?;
        let r = self.get(&id).await?;
        if r.status != Status::Running {
            return Err(AgentError::FailedPrecondition(format!("container {} is not running", r.name())));
        }
        shim_client::connect(&self.socket(&id)).await
    }
}
