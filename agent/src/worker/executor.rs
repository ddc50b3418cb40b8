//! Makes a node's assigned tasks real: one container per task (named
//! `<service>.<slot>.<task>`, labelled `orc.task.id`), started when the task
//! is wanted running, stopped when it is wanted shut down, removed when the
//! managers forget the task. Task states follow the containers: accepted →
//! preparing (pulling) → starting → running → complete | failed | shutdown,
//! or rejected when the container cannot be made.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orc_proto::dispatcher::TaskStatus;
use tokio::sync::Notify;

use super::files::TaskFiles;
use super::runtime::{TaskRuntime, Trust};
use super::volumes::{TaskVolumes, VolumeError};
use crate::cluster::objects::{Health, NetworkMode, StopPolicy, Task, TaskState};
use crate::error::AgentError;
use crate::model::image_policy::ImagePolicy;
use crate::network::node::{Attachment, NodeNetwork};
use crate::runtime::record::{ContainerRecord, Limits, MountSpec, RestartCondition, RunSpec, Status};

pub const TASK_LABEL: &str = "orc.task.id";
pub const SERVICE_LABEL: &str = "orc.service.name";

struct Local {
    task: Task,
    status: TaskStatus,
    /// A start or stop is under way.
    busy: bool,
    /// The managers dropped the task while it was busy: remove its
    /// container once the start or stop is over.
    forgotten: bool,
}

/// A task's readiness as the node sees it ([`Executor::readiness`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskReadiness {
    pub service_id: String,
    pub service: String,
    pub spec_version: u64,
    pub running: bool,
    pub health: Health,
}

pub struct Executor {
    runtime: Arc<dyn TaskRuntime>,
    tasks: Mutex<HashMap<String, Local>>,
    /// Containers being removed.
    removing: Mutex<std::collections::HashSet<String>>,
    /// Notified when a task's status changed (the session reports at once).
    pub changed: Notify,
    /// When the managers last answered (the session tells; [`super::fence`] watches).
    pub contact: Arc<super::fence::Contact>,
    /// The node's container networking (none in unit tests: tasks then
    /// run on the node's network).
    pub network: Option<Arc<NodeNetwork>>,
    /// Its tasks' secrets and configs.
    pub files: TaskFiles,
    /// Its tasks' volumes.
    volumes: TaskVolumes,
    /// The cluster's image policy, as the session last said (None: any image runs).
    image_policy: Mutex<Option<ImagePolicy>>,
    /// Images verified under a rule (image, the rule's pattern and keys) →
    /// the digest reference they ran by: what a start runs when the
    /// registry cannot be reached to check again.
    verified: Mutex<HashMap<(String, String), String>>,
    /// A session delivered this node's tasks at least once.
    assigned: std::sync::atomic::AtomicBool,
}

fn status(id: &str, state: TaskState, message: impl Into<String>) -> TaskStatus {
    TaskStatus { id: id.to_string(), state: state.as_str().into(), message: message.into(), ..Default::default() }
}

fn container_name(t: &Task) -> String {
    let place = if t.slot > 0 { t.slot.to_string() } else { t.node.chars().take(12).collect() };
    format!("{}.{}.{}", t.service, place, t.id)
}

/// A task's hostname: `<service>.<slot>` for stateful services (a stable
/// identity), its id otherwise (as Docker names a container by its short id).
fn hostname(t: &Task) -> String {
    if t.spec.stateful {
        format!("{}.{}", t.service, t.slot)
    } else {
        t.id.chars().take(12).collect()
    }
}

/// What the runtime runs for `t` (its spec was validated by the managers),
/// in its namespace on the overlay when it has one.
fn run_spec(t: &Task, image: &str, net: Option<&Attachment>, files: Vec<MountSpec>) -> RunSpec {
    let s = &t.spec;
    let mut mounts = net.map(Attachment::mounts).unwrap_or_default();
    mounts.extend(files);
    RunSpec {
        name: container_name(t),
        image: image.to_string(),
        process: s.process.clone(),
        limits: Limits { cpus: s.limit_cpus, memory: s.limit_memory, pids: s.limit_pids },
        // The managers replace tasks; the node never restarts them itself.
        restart: RestartCondition::No,
        labels: [(TASK_LABEL.to_string(), t.id.clone()), (SERVICE_LABEL.to_string(), t.service.clone())].into(),
        hostname: if net.is_some() || s.stateful { hostname(t) } else { String::new() },
        netns: net.map(|a| a.netns.clone()),
        mounts,
        ..Default::default()
    }
}

/// The task status an exited container means.
fn exited(id: &str, r: &ContainerRecord, wanted_down: bool) -> TaskStatus {
    let e = r.exit.unwrap_or_default();
    let (state, message) = if wanted_down {
        (TaskState::Shutdown, "shut down".to_string())
    } else if e.oom_killed {
        (TaskState::Failed, format!("OOM killed (exit {})", e.code))
    } else if e.signal != 0 {
        (TaskState::Failed, format!("killed by signal {}", e.signal))
    } else if e.code != 0 {
        (TaskState::Failed, format!("exit code {}", e.code))
    } else {
        (TaskState::Complete, "finished".to_string())
    };
    TaskStatus { container: r.id.clone(), exit_code: Some(e.code), ..status(id, state, message) }
}

impl Executor {
    pub fn new(
        runtime: Arc<dyn TaskRuntime>,
        network: Option<Arc<NodeNetwork>>,
        files: TaskFiles,
        volumes: TaskVolumes,
    ) -> Arc<Self> {
        let ex = Arc::new(Self {
            runtime,
            files,
            volumes,
            image_policy: Mutex::default(),
            verified: Mutex::default(),
            tasks: Mutex::default(),
            removing: Mutex::default(),
            changed: Notify::new(),
            contact: Arc::default(),
            network,
            assigned: std::sync::atomic::AtomicBool::new(false),
        });
        let watcher = ex.clone();
        tokio::spawn(async move { watcher.follow_containers().await });
        tokio::spawn(super::fence::run(ex.clone(), ex.contact.clone()));
        ex
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Local>> {
        crate::sync::lock(&self.tasks)
    }

    pub fn runtime(&self) -> &dyn TaskRuntime {
        &*self.runtime
    }

    /// Whether task `id` still runs in `container` with nothing under way
    /// (its probes go on).
    pub fn probing(&self, id: &str, container: &str) -> bool {
        self.lock().get(id).is_some_and(|l| {
            !l.busy
                && !l.forgotten
                && l.task.desired == TaskState::Running
                && l.status.state == TaskState::Running.as_str()
                && l.status.container == container
        })
    }

    /// What the probes of task `id` say now.
    pub fn probed(&self, id: &str, health: Health, last_failure: &str) {
        let mut local = self.lock();
        let Some(l) = local.get_mut(id) else { return };
        if l.status.state != TaskState::Running.as_str() {
            return;
        }
        if l.status.health != health.as_str() || l.status.probe != last_failure {
            tracing::info!(task = %id, health = health.as_str(), probe = %last_failure, "task health");
            l.status.health = health.as_str().into();
            l.status.probe = last_failure.into();
            self.changed.notify_one();
        }
    }

    /// Starts the probes of task `t`, running in `container` (its
    /// service's, or its image's HEALTHCHECK); with none it is ready.
    async fn begin_probes(self: &Arc<Self>, t: &Task, container: &str) {
        let image = if t.spec.health.declared() || t.spec.health.ignore_image {
            None
        } else {
            self.runtime.image_probe(&t.spec.image).await
        };
        let checks = super::health::resolve(&t.spec.health, image);
        if !checks.declared() {
            self.probed(&t.id, Health::Ready, "");
            return;
        }
        self.probed(&t.id, Health::Starting, "");
        let first = t.spec.networks().first().map(|n| n.to_string());
        let addr = first.and_then(|n| self.lock().get(&t.id).and_then(|l| l.status.addresses.get(&n)?.parse().ok()));
        tokio::spawn(super::prober::watch(self.clone(), t.id.clone(), container.to_string(), addr, checks));
    }

    /// Running tasks whose spec `which` picks, and their containers.
    pub fn running(&self, which: impl Fn(&crate::cluster::objects::ServiceSpec) -> bool) -> Vec<(String, String)> {
        self.lock()
            .values()
            .filter(|l| which(&l.task.spec) && !l.busy && l.status.state == TaskState::Running.as_str())
            .map(|l| (l.task.id.clone(), l.status.container.clone()))
            .collect()
    }

    /// Stops task `id`'s container (with its stop policy, or `stop`) and
    /// reports the task failed for `why` (its probes failed, it was
    /// fenced): the managers replace it per its restart policy.
    pub async fn fail(self: &Arc<Self>, id: &str, container: &str, why: String, stop: Option<StopPolicy>) {
        let stop = {
            let mut local = self.lock();
            let Some(l) = local.get_mut(id).filter(|l| !l.busy) else { return };
            l.busy = true;
            stop.unwrap_or_else(|| l.task.spec.stop.clone())
        };
        let grace = Duration::from_millis(stop.grace_ms);
        let mut s = match self.runtime.stop(container, stop.signal_number(), grace).await {
            Ok(r) => exited(id, &r, false),
            Err(e) => TaskStatus { error: e.to_string(), ..status(id, TaskState::Failed, "") },
        };
        s.state = TaskState::Failed.as_str().into();
        s.message = why;
        self.set(s);
        if self.done(id) {
            self.remove_container(id.to_string(), container.to_string());
        }
    }

    fn set(&self, s: TaskStatus) {
        let mut tasks = self.lock();
        if let Some(l) = tasks.get_mut(&s.id) {
            if l.status != s {
                tracing::info!(task = %s.id, state = %s.state, message = %s.message, "task status");
                l.status = s;
                self.changed.notify_one();
            }
        }
    }

    /// The task's start or stop is over; true when the managers forgot the
    /// task meanwhile (it is dropped here, its container is the caller's to remove).
    fn done(&self, id: &str) -> bool {
        let mut local = self.lock();
        let forgotten = local.get(id).is_some_and(|l| l.forgotten);
        if forgotten {
            local.remove(id);
        } else if let Some(l) = local.get_mut(id) {
            l.busy = false;
        }
        forgotten
    }

    /// Removes a container in the background, once.
    fn remove_container(self: &Arc<Self>, task: String, container: String) {
        if !self.removing_lock().insert(container.clone()) {
            return;
        }
        let ex = self.clone();
        tokio::spawn(async move {
            tracing::info!(task = %task, %container, "removing the container of a finished task");
            if let Err(e) = ex.runtime.remove(&container).await {
                tracing::warn!(task = %task, error = %e, "removing a task container");
            }
            if let Some(n) = &ex.network {
                n.detach(&task);
            }
            ex.files.remove(&task);
            ex.volumes.remove_anonymous(&task);
            ex.removing_lock().remove(&container);
        });
    }

    pub fn set_image_policy(&self, p: Option<ImagePolicy>) {
        tracing::info!(rules = p.as_ref().map_or(0, |p| p.rules.len()), "image policy");
        *crate::sync::lock(&self.image_policy) = p;
    }

    /// The image task `t` runs: under the image policy, by digest once its
    /// signature verified.
    async fn image_for(&self, t: &Task) -> Result<String, AgentError> {
        let policy = crate::sync::lock(&self.image_policy).clone();
        let Some(policy) = policy else { return Ok(t.spec.image.clone()) };
        let repo = crate::images::signed::repository(&t.spec.image)?;
        let rule = policy.rule_for(&repo);
        let key = (
            t.spec.image.clone(),
            rule.map(|(_, r)| format!("{}\n{}", r.pattern, r.keys.join("\n"))).unwrap_or_default(),
        );
        let trust = rule.map(|(rule, r)| Trust { rule, pattern: &r.pattern, keys: &r.keys });
        match self.runtime.verified_image(&t.spec.image, trust).await {
            Ok(by_digest) => {
                crate::sync::lock(&self.verified).insert(key, by_digest.clone());
                Ok(by_digest)
            }
            // The registry is away: what this rule verified before still
            // runs (a task restart must not wait for the registry).
            Err(AgentError::Unavailable(why)) => match crate::sync::lock(&self.verified).get(&key) {
                Some(by_digest) => {
                    tracing::warn!(task = %t.id, image = %t.spec.image, %by_digest, error = %why, "registry unreachable: running the digest verified before");
                    Ok(by_digest.clone())
                }
                None => Err(AgentError::Unavailable(why)),
            },
            Err(e) => {
                crate::sync::lock(&self.verified).remove(&key);
                Err(e)
            }
        }
    }

    /// Deletes this node's copies of removed volumes (none a task here mounts).
    pub fn forget_volumes(&self, ids: &[String]) {
        let mounted: std::collections::HashSet<String> =
            self.lock().values().flat_map(|l| l.task.volumes.values().cloned()).collect();
        self.volumes.forget(ids, |id| mounted.contains(id));
    }

    pub fn statuses(&self) -> Vec<TaskStatus> {
        self.lock().values().map(|l| l.status.clone()).collect()
    }

    /// Each task here wanted running: its service (id, name), spec
    /// version, and whether it runs and is ready; None until a session
    /// delivered the node's tasks (an upgraded node is blessed only once
    /// they run again).
    pub fn readiness(&self) -> Option<Vec<TaskReadiness>> {
        if !self.assigned.load(std::sync::atomic::Ordering::Acquire) {
            return None;
        }
        let tasks = self
            .lock()
            .values()
            .filter(|l| l.task.desired == TaskState::Running)
            .map(|l| TaskReadiness {
                service_id: l.task.service_id.clone(),
                service: l.task.service.clone(),
                spec_version: l.task.spec_version,
                running: !l.busy && l.status.state == TaskState::Running.as_str(),
                health: Health::parse(&l.status.health).unwrap_or_default(),
            })
            .collect();
        Some(tasks)
    }

    /// The node's tasks as the leader sent them (all of them, each time).
    pub async fn assign(self: &Arc<Self>, tasks: Vec<Task>) {
        let wanted: std::collections::HashSet<String> = tasks.iter().map(|t| t.id.clone()).collect();
        self.files.retain(&tasks);
        {
            let mut local = self.lock();
            for t in tasks {
                let l = local.entry(t.id.clone()).or_insert_with(|| Local {
                    status: status(&t.id, TaskState::Accepted, "accepted"),
                    task: t.clone(),
                    busy: false,
                    forgotten: false,
                });
                l.task = t;
                l.forgotten = false;
            }
            // Dropped by the managers: forget now, or once the job under way ends.
            local.retain(|id, l| {
                l.forgotten = !wanted.contains(id);
                !l.forgotten || l.busy
            });
            self.assigned.store(true, std::sync::atomic::Ordering::Release);
            // Namespaces and addresses of tasks gone while the agent was down.
            let live: std::collections::HashSet<String> = local.keys().cloned().collect();
            if let Some(n) = &self.network {
                n.retain(&live);
            }
            self.files.sweep(|task| live.contains(task));
            self.volumes.sweep_anonymous(|task| live.contains(task));
        }
        for id in &wanted {
            self.step(id);
        }
        // Containers of tasks the managers forgot (also from before an agent
        // restart), removed in the background: the session keeps beating.
        for r in self.runtime.list().await {
            let Some(task) = r.spec.labels.get(TASK_LABEL).cloned() else { continue };
            let busy = self.lock().get(&task).is_some_and(|l| l.busy);
            if !wanted.contains(&task) && !busy {
                self.remove_container(task, r.id.clone());
            }
        }
    }

    fn removing_lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        crate::sync::lock(&self.removing)
    }

    /// Starts or stops the task if it needs it and nothing is under way.
    fn step(self: &Arc<Self>, id: &str) {
        let start = {
            let mut local = self.lock();
            let Some(l) = local.get_mut(id) else { return };
            let state = TaskState::parse(&l.status.state);
            if l.busy {
                return;
            }
            let start = if l.task.desired == TaskState::Running && state == TaskState::Accepted {
                true
            } else if l.task.desired == TaskState::Shutdown && !state.terminal() {
                false
            } else {
                return;
            };
            l.busy = true;
            (start, l.task.clone())
        };
        let ex = self.clone();
        tokio::spawn(async move {
            let (start, t) = start;
            let s = if start { ex.start(&t).await } else { ex.stop(&t).await };
            let running = (s.state == TaskState::Running.as_str()).then(|| s.container.clone());
            ex.set(s);
            if ex.done(&t.id) {
                if let Ok(r) = ex.runtime.record(&container_name(&t)).await {
                    ex.remove_container(t.id.clone(), r.id);
                }
                return;
            }
            if let Some(container) = running {
                ex.begin_probes(&t, &container).await;
            }
            // Wanted down while it was starting: stop it now.
            ex.step(&t.id);
        });
    }

    /// The node's networking, when task `t` runs on the overlay (its
    /// published ports reach it there through the node's rules).
    fn overlay(&self, t: &Task) -> Option<&Arc<NodeNetwork>> {
        self.network.as_ref().filter(|_| t.spec.network == NetworkMode::Overlay)
    }

    async fn start(&self, t: &Task) -> TaskStatus {
        let name = container_name(t);
        // After an agent restart the container may exist already.
        if let Ok(r) = self.runtime.record(&name).await {
            return match r.status {
                Status::Running => TaskStatus {
                    container: r.id.clone(),
                    addresses: self
                        .overlay(t)
                        .map(|n| n.addresses_of(&t.id).into_iter().map(|(n, a)| (n, a.to_string())).collect())
                        .unwrap_or_default(),
                    ..status(&t.id, TaskState::Running, "running")
                },
                _ => exited(&t.id, &r, false),
            };
        }
        let image = match self.image_for(t).await {
            Ok(i) => i,
            Err(e) => {
                return TaskStatus {
                    error: e.to_string(),
                    ..status(&t.id, TaskState::Rejected, "the image policy refused the image")
                }
            }
        };
        if !self.runtime.has_image(&image).await {
            self.set(status(&t.id, TaskState::Preparing, format!("pulling {image}")));
            if let Err(e) = self.runtime.ensure_image(&image).await {
                return TaskStatus {
                    error: e.to_string(),
                    ..status(&t.id, TaskState::Rejected, "pulling the image failed")
                };
            }
        }
        self.set(status(&t.id, TaskState::Starting, "starting"));
        let files = match self.files.prepare(t) {
            Ok(m) => m,
            Err(e) => {
                return TaskStatus {
                    error: e.to_string(),
                    ..status(&t.id, TaskState::Rejected, "its secrets and configs could not be mounted")
                }
            }
        };
        let mut mounts = files;
        // An NFS volume's mount waits on its server: off the runtime's threads.
        self.volumes.ready_for(t).await;
        let (volumes, task) = (self.volumes.clone(), t.clone());
        let prepared = tokio::task::spawn_blocking(move || volumes.prepare(&task)).await;
        match prepared.unwrap_or_else(|e| Err(VolumeError::Io { path: t.id.clone().into(), source: e.into() })) {
            Ok(m) => mounts.extend(m),
            Err(e) => {
                self.files.remove(&t.id);
                return TaskStatus {
                    error: e.to_string(),
                    ..status(&t.id, TaskState::Rejected, "its volumes could not be mounted")
                };
            }
        }
        let net = match self.overlay(t) {
            Some(n) => match n.attach(&t.id, &hostname(t), &t.spec.namespace, &t.spec.networks()).await {
                Ok(a) => Some(a),
                Err(e) => {
                    n.detach(&t.id);
                    self.files.remove(&t.id);
                    return TaskStatus {
                        error: e.to_string(),
                        ..status(&t.id, TaskState::Rejected, "attaching to the network failed")
                    };
                }
            },
            None => None,
        };
        let addresses = net
            .as_ref()
            .map(|a| a.addresses.iter().map(|(n, a)| (n.clone(), a.to_string())).collect())
            .unwrap_or_default();
        match self.runtime.run(run_spec(t, &image, net.as_ref(), mounts)).await {
            Ok(r) => TaskStatus { container: r.id.clone(), addresses, ..status(&t.id, TaskState::Running, "running") },
            Err(e) => {
                TaskStatus { error: e.to_string(), ..status(&t.id, TaskState::Rejected, "the container did not start") }
            }
        }
    }

    async fn stop(&self, t: &Task) -> TaskStatus {
        let name = container_name(t);
        let stop = &t.spec.stop;
        let grace = Duration::from_millis(stop.grace_ms);
        match self.runtime.record(&name).await {
            Ok(r) if r.status == Status::Running => {
                self.drain(t).await;
                match self.runtime.stop(&r.id, stop.signal_number(), grace).await {
                    Ok(r) => exited(&t.id, &r, true),
                    Err(e) => {
                        TaskStatus { error: e.to_string(), ..status(&t.id, TaskState::Shutdown, "stopping failed") }
                    }
                }
            }
            Ok(r) => exited(&t.id, &r, true),
            Err(_) => status(&t.id, TaskState::Shutdown, "never started"),
        }
    }

    /// Waits while a task of a service on the overlay drains: the managers
    /// took it out of the rotation as they decided to stop it, every node
    /// hears of that within the drain period, and its connections end.
    async fn drain(&self, t: &Task) {
        let on_overlay = self.network.as_ref().is_some_and(|n| !n.addresses_of(&t.id).is_empty());
        if on_overlay && !t.spec.mode.job() && t.spec.stop.drain_ms > 0 {
            tracing::debug!(task = %t.id, drain_ms = t.spec.stop.drain_ms, "draining before the stop signal");
            tokio::time::sleep(Duration::from_millis(t.spec.stop.drain_ms)).await;
        }
    }

    /// Running tasks whose container exited: complete or failed.
    async fn follow_containers(self: Arc<Self>) {
        let mut changes = self.runtime.subscribe();
        loop {
            if changes.changed().await.is_err() {
                return;
            }
            let running: Vec<(String, String)> = self
                .lock()
                .values()
                .filter(|l| !l.busy && l.status.state == TaskState::Running.as_str() && !l.status.container.is_empty())
                .map(|l| (l.task.id.clone(), l.status.container.clone()))
                .collect();
            for (task, container) in running {
                match self.runtime.record(&container).await {
                    Ok(r) if r.status == Status::Exited => self.set(exited(&task, &r, false)),
                    Ok(_) => {}
                    Err(_) => self.set(status(&task, TaskState::Failed, "its container was removed")),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::AgentError;
    use crate::runtime::record::ExitInfo;
    use std::path::Path;
    use tokio::sync::watch;

    /// A runtime that records what it was asked and whose containers exit
    /// when the test says.
    struct FakeRuntime {
        containers: Mutex<HashMap<String, ContainerRecord>>,
        images: Mutex<Vec<String>>,
        pulls: Mutex<Vec<String>>,
        changes: watch::Sender<u64>,
        stops: Mutex<Vec<(i32, Duration)>>,
        /// Exec probes that pass (their args joined).
        files: Mutex<Vec<String>>,
        /// Whether the registry answers signature checks.
        registry_down: Mutex<bool>,
    }

    impl FakeRuntime {
        fn new(images: &[&str]) -> Arc<Self> {
            Arc::new(Self {
                containers: Mutex::default(),
                images: Mutex::new(images.iter().map(|s| s.to_string()).collect()),
                pulls: Mutex::default(),
                changes: watch::channel(0).0,
                stops: Mutex::default(),
                files: Mutex::default(),
                registry_down: Mutex::default(),
            })
        }
        fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ContainerRecord>> {
            self.containers.lock().unwrap()
        }
        fn exit(&self, name: &str, code: i32) {
            for r in self.lock().values_mut().filter(|r| r.spec.name == name) {
                r.status = Status::Exited;
                r.exit = Some(ExitInfo { code, ..Default::default() });
            }
            self.changes.send_modify(|v| *v += 1);
        }
    }

    #[tonic::async_trait]
    impl TaskRuntime for Arc<FakeRuntime> {
        async fn record(&self, ident: &str) -> Result<ContainerRecord, AgentError> {
            self.lock()
                .values()
                .find(|r| r.id == ident || r.spec.name == ident)
                .cloned()
                .ok_or_else(|| AgentError::NotFound(ident.into()))
        }
        async fn has_image(&self, image: &str) -> bool {
            self.images.lock().unwrap().iter().any(|i| i == image)
        }
        async fn verified_image(
            &self,
            image: &str,
            trust: Option<super::super::runtime::Trust<'_>>,
        ) -> Result<String, AgentError> {
            if *self.registry_down.lock().unwrap() {
                return Err(AgentError::Unavailable("registry down".into()));
            }
            match trust {
                Some(_) => Ok(format!("{image}@sha256:1")),
                None => Err(AgentError::PermissionDenied(format!("{image}: no rule"))),
            }
        }
        async fn ensure_image(&self, image: &str) -> Result<(), AgentError> {
            if image.contains("missing") {
                return Err(AgentError::NotFound(format!("{image}: no such image")));
            }
            self.pulls.lock().unwrap().push(image.into());
            self.images.lock().unwrap().push(image.into());
            Ok(())
        }
        async fn run(&self, spec: RunSpec) -> Result<ContainerRecord, AgentError> {
            let r =
                ContainerRecord { id: format!("c-{}", spec.name), spec, status: Status::Running, ..Default::default() };
            self.lock().insert(r.id.clone(), r.clone());
            Ok(r)
        }
        async fn stop(&self, id: &str, signal: i32, grace: Duration) -> Result<ContainerRecord, AgentError> {
            self.stops.lock().unwrap().push((signal, grace));
            let mut c = self.lock();
            let r = c.get_mut(id).ok_or_else(|| AgentError::NotFound(id.into()))?;
            r.status = Status::Exited;
            r.exit = Some(ExitInfo { code: 128 + signal, ..Default::default() });
            Ok(r.clone())
        }
        async fn exec(&self, _: &str, args: &[String]) -> Result<i32, AgentError> {
            // `test -f X` passes while the test says X exists.
            let present = self.files.lock().unwrap().contains(&args.join(" "));
            Ok(if present { 0 } else { 1 })
        }
        async fn image_probe(&self, _: &str) -> Option<crate::cluster::objects::Probe> {
            None
        }
        async fn remove(&self, id: &str) -> Result<(), AgentError> {
            self.lock().remove(id);
            Ok(())
        }
        async fn list(&self) -> Vec<ContainerRecord> {
            self.lock().values().cloned().collect()
        }
        fn subscribe(&self) -> watch::Receiver<u64> {
            self.changes.subscribe()
        }
    }

    fn task(id: &str, image: &str, desired: TaskState) -> Task {
        let mut t = Task { id: id.into(), service: "web".into(), slot: 1, desired, ..Default::default() };
        t.spec.image = image.into();
        t.spec.process.env = vec!["A=1".into()];
        t.spec.limit_memory = 64 << 20;
        t
    }

    /// Waits until task `id` reports `state`; returns its status.
    async fn until(ex: &Executor, id: &str, state: TaskState) -> TaskStatus {
        for _ in 0..200 {
            if let Some(s) = ex.statuses().into_iter().find(|s| s.id == id && s.state == state.as_str()) {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("task {id} never reached {state:?}: {:?}", ex.statuses());
    }

    #[tokio::test]
    async fn tasks_become_containers_and_their_ends_become_states() {
        let rt = FakeRuntime::new(&["busybox"]);
        let ex = Executor::new(
            Arc::new(rt.clone()),
            None,
            TaskFiles::new(Path::new("/nonexistent")),
            TaskVolumes::new(Path::new("/nonexistent"), Path::new("/nonexistent")),
        );

        // Wanted running: a container named for the task, labelled, never restarted by the node.
        ex.assign(vec![task("t1", "busybox", TaskState::Running)]).await;
        let s = until(&ex, "t1", TaskState::Running).await;
        let r = rt.record(&s.container).await.unwrap();
        assert_eq!(r.spec.name, "web.1.t1");
        assert_eq!(r.spec.labels.get(TASK_LABEL).map(String::as_str), Some("t1"));
        assert_eq!(r.spec.restart, RestartCondition::No);
        assert_eq!((r.spec.process.env.clone(), r.spec.limits.memory), (vec!["A=1".to_string()], 64 << 20));
        assert!(rt.pulls.lock().unwrap().is_empty(), "the image was there: no pull");

        // It exits by itself with 3: failed, with the code.
        rt.exit("web.1.t1", 3);
        let s = until(&ex, "t1", TaskState::Failed).await;
        assert_eq!((s.message.as_str(), s.exit_code), ("exit code 3", Some(3)));

        // A missing image is pulled (preparing) once; an unpullable one rejects the task.
        ex.assign(vec![task("t2", "alpine", TaskState::Running), task("t3", "missing", TaskState::Running)]).await;
        until(&ex, "t2", TaskState::Running).await;
        let s = until(&ex, "t3", TaskState::Rejected).await;
        assert!(s.error.contains("no such image"), "{s:?}");
        assert_eq!(*rt.pulls.lock().unwrap(), vec!["alpine".to_string()]);

        // Wanted down: stopped, reported shut down.
        ex.assign(vec![task("t2", "alpine", TaskState::Shutdown)]).await;
        let s = until(&ex, "t2", TaskState::Shutdown).await;
        assert_eq!(s.message, "shut down");

        // Forgotten by the managers: every task container goes.
        ex.assign(vec![]).await;
        for _ in 0..200 {
            if rt.lock().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(rt.lock().is_empty(), "left: {:?}", rt.lock().keys().collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn under_an_image_policy_images_run_by_digest_also_while_the_registry_is_away() {
        use crate::model::image_policy::PolicyRule;
        let rt = FakeRuntime::new(&["busybox", "busybox@sha256:1"]);
        let ex = Executor::new(
            Arc::new(rt.clone()),
            None,
            TaskFiles::new(Path::new("/nonexistent")),
            TaskVolumes::new(Path::new("/nonexistent"), Path::new("/nonexistent")),
        );
        let rule = |pattern: &str| PolicyRule { pattern: pattern.into(), keys: vec!["k".into()] };
        ex.set_image_policy(Some(ImagePolicy { rules: vec![rule("*/busybox")] }));
        ex.assign(vec![task("t1", "busybox", TaskState::Running)]).await;
        let s = until(&ex, "t1", TaskState::Running).await;
        assert_eq!(rt.record(&s.container).await.unwrap().spec.image, "busybox@sha256:1", "by digest");
        // The registry away: the digest verified before runs.
        *rt.registry_down.lock().unwrap() = true;
        ex.assign(vec![task("t2", "busybox", TaskState::Running)]).await;
        let s = until(&ex, "t2", TaskState::Running).await;
        assert_eq!(rt.record(&s.container).await.unwrap().spec.image, "busybox@sha256:1");
        // Not under another rule, nor an image never verified.
        ex.set_image_policy(Some(ImagePolicy { rules: vec![rule("docker.io/*")] }));
        ex.assign(vec![task("t3", "busybox", TaskState::Running), task("t4", "alpine", TaskState::Running)]).await;
        for id in ["t3", "t4"] {
            let s = until(&ex, id, TaskState::Rejected).await;
            assert!(s.error.contains("registry down"), "{s:?}");
        }
        // Refused by the registry's answer: no fallback, and forgotten.
        *rt.registry_down.lock().unwrap() = false;
        ex.set_image_policy(Some(ImagePolicy { rules: vec![rule("nothing")] }));
        ex.assign(vec![task("t5", "busybox", TaskState::Running)]).await;
        let s = until(&ex, "t5", TaskState::Rejected).await;
        assert!(s.error.contains("no rule"), "{s:?}");
    }

    #[tokio::test]
    async fn probes_mark_readiness_and_a_failed_liveness_restarts_with_its_reason() {
        use crate::cluster::objects::{HealthChecks, Probe, ProbeAction};
        let rt = FakeRuntime::new(&["busybox"]);
        let ex = Executor::new(
            Arc::new(rt.clone()),
            None,
            TaskFiles::new(Path::new("/nonexistent")),
            TaskVolumes::new(Path::new("/nonexistent"), Path::new("/nonexistent")),
        );
        let probe = |file: &str| Probe {
            interval_ms: 10,
            timeout_ms: 10,
            failure_threshold: 2,
            ..Probe::new(ProbeAction::Exec { command: vec!["test".into(), "-f".into(), file.into()] })
        };
        let mut t = task("p1", "busybox", TaskState::Running);
        t.spec.health =
            HealthChecks { liveness: Some(probe("/alive")), readiness: Some(probe("/ready")), ..Default::default() };
        t.spec.stop = crate::cluster::objects::StopPolicy { signal: "SIGQUIT".into(), grace_ms: 1234, drain_ms: 0 };
        rt.files.lock().unwrap().push("test -f /alive".into());
        ex.assign(vec![t.clone()]).await;
        until(&ex, "p1", TaskState::Running).await;
        let health = |want: &str| {
            let ex = &ex;
            let want = want.to_string();
            async move {
                for _ in 0..200 {
                    if ex.statuses().iter().any(|s| s.id == "p1" && s.health == want) {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                panic!("never {want}: {:?}", ex.statuses());
            }
        };
        health("not-ready").await;
        let s = ex.statuses().into_iter().find(|s| s.id == "p1").unwrap();
        assert!(s.probe.starts_with("readiness: test -f /ready exited with 1"), "{s:?}");
        rt.files.lock().unwrap().push("test -f /ready".into());
        health("ready").await;
        // Alive no more: stopped with its own signal and grace, failed with the reason.
        rt.files.lock().unwrap().retain(|f| f != "test -f /alive");
        let s = until(&ex, "p1", TaskState::Failed).await;
        assert!(s.message.contains("liveness probe failed 2 times"), "{s:?}");
        assert_eq!(*rt.stops.lock().unwrap(), vec![(3, Duration::from_millis(1234))]);

        // No probes: ready as soon as it runs.
        ex.assign(vec![task("p2", "busybox", TaskState::Running)]).await;
        let s = until(&ex, "p2", TaskState::Running).await;
        for _ in 0..100 {
            if ex.statuses().iter().any(|s| s.id == "p2" && s.health == "ready") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("never ready: {s:?}");
    }
}
