//! What the Services API does, as domain functions on this manager's Raft:
//! reads are linearizable, writes go to the leader (an update reads what
//! it changes locally first: its put is conditional).

use super::error::ClusterError;
use std::sync::Arc;

use super::objects::{
    new_id, now_ms, view, CronSchedule, CronStatus, Service, ServiceSpec, Task, TaskState, UpdateState, UpdateStatus,
    View,
};
use super::payloads;
use super::published;
use super::spec;
use super::vips;
use crate::model::db::{Command, CommandResult, Key, Kind, Object};
use crate::model::namespace::shown;
use crate::raft::RaftHandle;

fn committed(r: CommandResult, what: &str) -> Result<u64, ClusterError> {
    match r.conflict {
        None => Ok(r.version),
        Some(c) => Err(ClusterError::changed(what, &c)),
    }
}

/// Creates a service (its spec checked against the cluster's limits); the
/// name is claimed in the same entry, so two creates of one name cannot both win.
pub async fn create(raft: &RaftHandle, spec: ServiceSpec) -> Result<(View, Service), ClusterError> {
    super::namespaces::retried(|| create_once(raft, spec.clone())).await
}

async fn create_once(raft: &RaftHandle, mut spec: ServiceSpec) -> Result<(View, Service), ClusterError> {
    let v = view(raft).await?;
    spec::validate(&spec, v.settings.max_replicas())?;
    super::networks::check_joined(&v, &spec)?;
    payloads::resolve(&v, &mut spec)?;
    super::volumes::check(&v, &spec)?;
    if v.service_by_name(&spec.key()).is_some() {
        return Err(ClusterError::AlreadyExists(format!(
            "a service named {:?} exists in namespace {}: change it with `orcctl service update {}` or remove it \
             first",
            spec.name,
            shown(&spec.namespace),
            spec.name
        )));
    }
    super::quota::check_service(&v, None, &spec)?;
    let now = now_ms();
    let mut s = Service {
        id: new_id(),
        spec,
        spec_version: 1,
        previous_spec: None,
        created_ms: now,
        updated_ms: now,
        ..Default::default()
    };
    vips::give(&v, &mut s)?;
    published::check(&v, &s)?;
    let mut cmds = vec![
        super::namespaces::guard(&v, &s.spec.namespace),
        Command::put_if(s.spec.key(), Object::ServiceName(s.id.clone()), 0),
    ];
    cmds.extend(vips::claims(None, &s));
    cmds.extend(published::claims(None, &s));
    cmds.extend(payloads::expects(&v, &s.spec));
    cmds.extend(super::volumes::expects(&v, &s.spec));
    cmds.push(Command::put_if(s.id.clone(), Object::Service(Arc::new(s.clone())), 0));
    let r = raft.write(Command::Batch(cmds)).await?;
    committed(r, "creating the service")?;
    tracing::info!(service = %s.spec.name, id = %s.id, "service created");
    Ok((v, s))
}

/// Replaces the spec of `ident` (name, id or id prefix). With
/// `expect_version` (not 0), only if the service is still at that version.
/// Changes other than scale, labels and policies make a new spec version,
/// whose tasks replace the old ones per the update policy.
pub async fn update(
    raft: &RaftHandle,
    ns: &str,
    ident: &str,
    expect_version: u64,
    spec: ServiceSpec,
) -> Result<(View, Service), ClusterError> {
    change(raft, ns, ident, "updating the service", |v, old| {
        spec::validate(&spec, v.settings.max_replicas())?;
        super::networks::check_joined(v, &spec)?;
        if expect_version != 0 && expect_version != old.spec_version {
            return Err(ClusterError::Conflict(format!(
                "service {} is at version {}, not {}: someone changed it; look again",
                old.spec.name, old.spec_version, expect_version
            )));
        }
        if spec.name != old.spec.name {
            return Err(ClusterError::InvalidArgument(format!(
                "a service cannot be renamed ({:?} → {:?}): create a new one",
                old.spec.name, spec.name
            )));
        }
        super::quota::check_service(v, Some(&old.spec), &spec)?;
        let now = now_ms();
        let mut spec = spec.clone();
        payloads::resolve(v, &mut spec)?;
        super::volumes::check(v, &spec)?;
        let mut s = respec(old, spec.clone(), now);
        let schedule = |c: &Option<CronSchedule>| c.as_ref().map(|c| (c.schedule.clone(), c.time_zone.clone()));
        if schedule(&old.spec.cron) != schedule(&spec.cron) {
            // A new schedule counts from now: no catch-up for times before it.
            let run = old.cron_status.as_ref().map_or(0, |c| c.run);
            s.cron_status = Some(CronStatus { last_schedule_ms: now, run, message: "schedule changed".into() });
        }
        vips::give(v, &mut s)?;
        published::check(v, &s)?;
        Ok(s)
    })
    .await
    .inspect(|(_, s)| {
        tracing::info!(service = %s.spec.name, version = s.spec_version, replicas = s.spec.replicas, "service updated")
    })
}

/// `old` with `spec`: a new spec version (the old one kept for rollback)
/// and an update started when its tasks must be replaced.
pub(super) fn respec(old: &Service, spec: ServiceSpec, now: i64) -> Service {
    let mut s = old.clone();
    if spec::needs_new_tasks(&old.spec, &spec) {
        s.spec_version += 1;
        s.previous_spec = Some(old.spec.clone());
        // Jobs run again rather than roll.
        if !spec.mode.job() {
            s.update_status = Some(UpdateStatus::start(UpdateState::Updating, spec.update.clone(), now, ""));
        }
    }
    s.spec = spec;
    s.updated_ms = now;
    s
}

/// What `orcctl service update --pause|--resume` asks of an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Pause,
    Resume,
}

/// Pauses or resumes the update (or rollback) of `ident`.
pub async fn control(raft: &RaftHandle, ns: &str, ident: &str, c: Control) -> Result<(View, Service), ClusterError> {
    change(raft, ns, ident, "pausing or resuming the update", |_, old| {
        let name = &old.spec.name;
        let mut u = old.update_status.clone().ok_or_else(|| {
            ClusterError::FailedPrecondition(format!(
                "service {name} has never been updated: nothing to pause or resume"
            ))
        })?;
        u.state = match (c, u.state) {
            (Control::Pause, UpdateState::Updating) => UpdateState::Paused,
            (Control::Pause, UpdateState::RollingBack) => UpdateState::RollbackPaused,
            (Control::Resume, UpdateState::Paused) => UpdateState::Updating,
            (Control::Resume, UpdateState::RollbackPaused) => UpdateState::RollingBack,
            (_, state) => {
                return Err(ClusterError::FailedPrecondition(format!(
                    "the update of service {name} is {}: only an update or rollback under way can be paused, \
                     only a paused one resumed",
                    state.as_str()
                )))
            }
        };
        let now = now_ms();
        if c == Control::Resume {
            // Failures before the pause were seen: count afresh.
            u.started_ms = now;
        }
        u.message = match c {
            Control::Pause => "paused by request".into(),
            Control::Resume => "resumed by request".into(),
        };
        let mut s = old.clone();
        s.update_status = Some(u);
        s.updated_ms = now;
        Ok(s)
    })
    .await
}

/// Goes back to the previous spec of `ident` under its rollback policy.
pub async fn rollback(raft: &RaftHandle, ns: &str, ident: &str) -> Result<(View, Service), ClusterError> {
    change(raft, ns, ident, "rolling the service back", |v, old| {
        let back = super::orchestrator::rollout::rollback(old, now_ms(), "rollback requested");
        if let Some(b) = &back {
            super::quota::check_service(v, Some(&old.spec), &b.spec)?;
        }
        back.ok_or_else(|| {
            ClusterError::FailedPrecondition(format!(
                "service {} has no previous spec to roll back to (it was never updated)",
                old.spec.name
            ))
        })
    })
    .await
    .inspect(|(_, s)| tracing::info!(service = %s.spec.name, version = s.spec_version, "service rolling back"))
}

/// Writes what `f` makes of service `ident`, conditional on the version
/// read. On what this manager has applied, a stale read can only fail,
/// never overwrite; what a stale read fails with is then answered from a
/// linearizable read (one quorum round saved per write that goes
/// through); the Raft's own failures are final.
async fn change(
    raft: &RaftHandle,
    ns: &str,
    ident: &str,
    what: &str,
    f: impl Fn(&View, &Service) -> Result<Service, ClusterError>,
) -> Result<(View, Service), ClusterError> {
    match change_from(raft, Read::Applied, ns, ident, what, &f).await {
        Err(ClusterError::Raft(e)) => Err(ClusterError::Raft(e)),
        // Racing writes in a namespace with a quota conflict on it: read
        // again and check again, as creates do.
        Err(_) => super::namespaces::retried(|| change_from(raft, Read::Linearizable, ns, ident, what, &f)).await,
        done => done,
    }
}

/// Where a write reads what it changes.
#[derive(Clone, Copy)]
enum Read {
    /// What this manager has applied (maybe behind the leader).
    Applied,
    /// After a read index from the leader.
    Linearizable,
}

async fn change_from(
    raft: &RaftHandle,
    read: Read,
    ns: &str,
    ident: &str,
    what: &str,
    f: &impl Fn(&View, &Service) -> Result<Service, ClusterError>,
) -> Result<(View, Service), ClusterError> {
    let started = match read {
        Read::Applied => raft.get()?,
        Read::Linearizable => raft.linearizable().await?,
    };
    let (v, old, object_version) = {
        let v = started.sm.applied.read().await.state.clone();
        let old = v.find_service(ns, ident)?.clone();
        let ov = v.version_of(&Key::new(Kind::Service, old.id.as_str()));
        (v, old, ov)
    };
    let s = f(&v, &old)?;
    let mut cmds = vec![super::namespaces::guard(&v, &s.spec.namespace)];
    cmds.extend(vips::claims(Some(&old), &s));
    cmds.extend(published::claims(Some(&old), &s));
    cmds.extend(payloads::expects(&v, &s.spec));
    cmds.extend(super::volumes::expects(&v, &s.spec));
    cmds.push(Command::put_if(s.id.clone(), Object::Service(Arc::new(s.clone())), object_version));
    committed(raft.write(Command::Batch(cmds)).await?, what)?;
    Ok((v, s))
}

/// Removes a service (its tasks are shut down by the orchestrator).
pub async fn remove(raft: &RaftHandle, ns: &str, ident: &str) -> Result<Service, ClusterError> {
    let v = view(raft).await?;
    let s = v.find_service(ns, ident)?.clone();
    let mut cmds = vec![Command::delete(Kind::Service, s.id.clone()), Command::delete(Kind::ServiceName, s.spec.key())];
    cmds.extend(vips::releases(&s));
    cmds.extend(published::releases(&s));
    let cmd = Command::Batch(cmds);
    raft.write(cmd).await?;
    tracing::info!(service = %s.spec.name, id = %s.id, "service removed");
    Ok(s)
}

/// A service and the view it was read in.
pub async fn inspect(raft: &RaftHandle, ns: &str, ident: &str) -> Result<(View, Service), ClusterError> {
    let v = view(raft).await?;
    let s = v.find_service(ns, ident)?.clone();
    Ok((v, s))
}

/// Which tasks `service ps` / `node ps` show.
#[derive(Debug, Default)]
pub struct TaskFilter<'a> {
    /// The namespace a service is looked up in, and whose tasks are shown.
    pub namespace: &'a str,
    /// Every namespace's tasks instead (`node ps` of a person not limited
    /// to namespaces).
    pub every_namespace: bool,
    pub service: Option<&'a str>,
    pub node: Option<&'a str>,
    pub running_only: bool,
}

/// The tasks matching `f` and the view they were read in.
pub async fn tasks(raft: &RaftHandle, f: TaskFilter<'_>) -> Result<(View, Vec<Task>), ClusterError> {
    let v = view(raft).await?;
    let service = f.service.map(|s| v.find_service(f.namespace, s).map(|s| s.id.clone())).transpose()?;
    let node = f.node.map(|n| v.find_node(n).map(|n| n.id.clone())).transpose()?;
    let candidates: Box<dyn Iterator<Item = &Task>> = match (&service, &node) {
        (Some(s), _) => Box::new(v.tasks_of(s)),
        (None, Some(n)) => Box::new(v.tasks_on(n)),
        (None, None) => Box::new(v.tasks.values().map(|t| &**t)),
    };
    let tasks = candidates
        .filter(|t| service.as_ref().is_none_or(|s| &t.service_id == s))
        .filter(|t| node.as_ref().is_none_or(|n| &t.node == n))
        .filter(|t| !f.running_only || t.desired == TaskState::Running)
        .filter(|t| f.every_namespace || shown(&t.spec.namespace) == shown(f.namespace))
        .cloned()
        .collect();
    Ok((v, tasks))
}

/// Where a task's logs are: its label (`service.slot.task@host`), the node's
/// API address and the container.
pub struct LogSource {
    pub label: String,
    pub hostname: String,
    pub addr: String,
    pub container: String,
}

/// The log sources of every task of `ident` that has a container.
pub async fn log_sources(raft: &RaftHandle, ns: &str, ident: &str) -> Result<Vec<LogSource>, ClusterError> {
    let v = view(raft).await?;
    let s = v.find_service(ns, ident)?;
    Ok(v.tasks_of(&s.id)
        .filter(|t| !t.container.is_empty())
        .filter_map(|t| {
            let node = v.nodes.get(&t.node)?;
            let slot = if t.slot > 0 { t.slot.to_string() } else { "g".into() };
            Some(LogSource {
                label: format!("{}.{}.{}@{}", t.service, slot, t.id, node.hostname),
                hostname: node.hostname.clone(),
                addr: node.addr.clone(),
                container: t.container.clone(),
            })
        })
        .collect())
}
