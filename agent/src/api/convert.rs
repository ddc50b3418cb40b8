//! Conversions between the cluster's objects and `orc.cluster.v1` messages.

use crate::model::network::key_parts;
use orc_proto::cluster as pb;

use super::convert_lifecycle::*;
use crate::cluster::objects::*;
use crate::cluster::ClusterError;
use crate::pki::role::Role;
use crate::raft::handle::Status as RaftStatus;
use crate::runtime::record::Process;

/// A service spec from the API (checked against the cluster's limits by `cluster::services`).
pub fn spec_from_proto(p: pb::ServiceSpec) -> Result<ServiceSpec, ClusterError> {
    let bad = ClusterError::InvalidArgument;
    let mode = match p.mode.as_str() {
        "" => Mode::Replicated,
        m => Mode::parse(m)
            .ok_or_else(|| bad(format!("mode {m:?} is not replicated, global, replicated-job or global-job")))?,
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
            let protocol = match q.protocol.as_str() {
                "" => Protocol::Tcp,
                p => Protocol::parse(p).ok_or_else(|| bad(format!("port protocol {p:?} is not tcp or udp")))?,
            };
            let mode = match q.mode.as_str() {
                "" => PublishMode::Ingress,
                m => PublishMode::parse(m)
                    .ok_or_else(|| bad(format!("port mode {m:?} is not ingress, local or host")))?,
            };
            Ok(Port { published: port(q.published)?, target: port(q.target)?, protocol, mode })
        })
        .collect::<Result<_, ClusterError>>()?;
    let network = match p.network.as_str() {
        "" => NetworkMode::Overlay,
        n => NetworkMode::parse(n).ok_or_else(|| bad(format!("network {n:?} is not overlay or host")))?,
    };
    // The namespace is the request's (its header), set by the handler.
    let s = ServiceSpec {
        name: p.name,
        namespace: String::new(),
        image: p.image.trim().to_string(),
        process: Process { command: p.command, args: p.args, env: p.env, user: p.user, workdir: p.workdir },
        replicas: if mode.global() { 0 } else { p.replicas },
        max_concurrent: p.max_concurrent,
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
        health: health_from_proto(p.health)?,
        update: policy_from_proto(p.update, false)?,
        rollback: policy_from_proto(p.rollback, true)?,
        stop: stop_from_proto(p.stop_grace_ms, p.stop_drain_ms, p.stop_signal),
        cron: cron_from_proto(p.cron)?,
        stateful: p.stateful,
        autoscale: autoscale_from_proto(p.autoscale),
        network,
        networks: networks_from_proto(&p.networks),
        secrets: p.secrets.into_iter().map(file_from_proto).collect(),
        configs: p.configs.into_iter().map(file_from_proto).collect(),
        mounts: p.mounts.into_iter().map(mount_from_proto).collect::<Result<_, _>>()?,
    };
    Ok(s)
}

/// The networks a spec names, kept as the state keeps them: `default`
/// alone is no list (what `spec_to_proto` shows comes back unchanged, so
/// an update that does not touch networks makes no new spec version).
fn networks_from_proto(names: &[String]) -> Vec<String> {
    let names: Vec<String> = names.iter().map(|n| n.trim().to_string()).collect();
    if names.len() == 1 && names[0] == DEFAULT_NETWORK {
        return Vec::new();
    }
    names
}

fn file_from_proto(f: pb::FileRef) -> FileRef {
    FileRef {
        name: f.name.trim().to_string(),
        version: f.version,
        target: f.target,
        uid: f.uid,
        gid: f.gid,
        mode: f.mode,
    }
}

fn mount_from_proto(m: pb::ServiceMount) -> Result<ServiceMount, ClusterError> {
    let kind = match m.r#type.as_str() {
        "" => MountKind::Volume,
        t => MountKind::parse(t).ok_or_else(|| {
            ClusterError::InvalidArgument(format!(
                "mount type {t:?} is not volume or tmpfs (bind mounts: not in services)"
            ))
        })?,
    };
    Ok(ServiceMount {
        kind,
        source: m.source.trim().to_string(),
        target: m.target,
        read_only: m.read_only,
        size: m.size,
    })
}

fn file_to_proto(f: &FileRef) -> pb::FileRef {
    pb::FileRef {
        name: f.name.clone(),
        version: f.version,
        target: f.target.clone(),
        uid: f.uid,
        gid: f.gid,
        mode: f.mode,
    }
}

pub fn spec_to_proto(s: &ServiceSpec) -> pb::ServiceSpec {
    pb::ServiceSpec {
        name: s.name.clone(),
        image: s.image.clone(),
        command: s.process.command.clone(),
        args: s.process.args.clone(),
        env: s.process.env.clone(),
        user: s.process.user.clone(),
        workdir: s.process.workdir.clone(),
        mode: s.mode.as_str().into(),
        max_concurrent: s.max_concurrent,
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
            .map(|p| pb::Port {
                published: p.published.into(),
                target: p.target.into(),
                protocol: p.protocol.as_str().into(),
                mode: p.mode.as_str().into(),
            })
            .collect(),
        labels: s.labels.clone().into_iter().collect(),
        health: Some(health_to_proto(&s.health)),
        update: Some(policy_to_proto(&s.update)),
        rollback: Some(policy_to_proto(&s.rollback)),
        stop_grace_ms: Some(s.stop.grace_ms),
        stop_drain_ms: Some(s.stop.drain_ms),
        stop_signal: s.stop.signal.clone(),
        cron: s.cron.as_ref().map(cron_to_proto),
        stateful: s.stateful,
        autoscale: s.autoscale.as_ref().map(autoscale_to_proto),
        network: s.network.as_str().into(),
        // As its namespace names them (`back`, not the key `team-a/back`).
        networks: s.networks().iter().map(|k| key_parts(k).1.to_string()).collect(),
        secrets: s.secrets.iter().map(file_to_proto).collect(),
        configs: s.configs.iter().map(file_to_proto).collect(),
        mounts: s
            .mounts
            .iter()
            .map(|m| pb::ServiceMount {
                r#type: m.kind.as_str().into(),
                source: m.source.clone(),
                target: m.target.clone(),
                read_only: m.read_only,
                size: m.size,
            })
            .collect(),
        namespace: crate::model::namespace::shown(&s.namespace).into(),
    }
}

pub fn service_to_proto(v: &View, s: &Service) -> pb::Service {
    let counts = v.index.counts(&s.id);
    pb::Service {
        id: s.id.clone(),
        spec: Some(spec_to_proto(&s.spec)),
        spec_version: s.spec_version,
        created_ms: s.created_ms,
        updated_ms: s.updated_ms,
        desired_tasks: match s.spec.mode {
            Mode::Replicated | Mode::ReplicatedJob => s.spec.replicas,
            Mode::Global => u64::from(counts.wanted),
            Mode::GlobalJob => u64::from(counts.wanted) + completed(v, s),
        },
        completed_tasks: if s.spec.mode.job() { completed(v, s) } else { 0 },
        running_tasks: u64::from(counts.running),
        update_status: s.update_status.as_ref().map(update_status_to_proto),
        updated_tasks: 0,
        has_previous: s.previous_spec.is_some(),
        cron_status: s.spec.cron.as_ref().map(|c| cron_status(s, c)),
        autoscale_status: s.autoscale_status.as_ref().map(autoscale_status_to_proto),
        events: Vec::new(),
        vips: s.vips.iter().map(|(k, ip)| (key_parts(k).1.to_string(), ip.to_string())).collect(),
    }
}

/// Where `s`'s schedule stands, with its next time.
fn cron_status(s: &Service, c: &CronSchedule) -> pb::CronStatus {
    let st = s.cron_status.clone().unwrap_or(CronStatus { last_schedule_ms: s.created_ms, ..Default::default() });
    let next = match crate::cluster::orchestrator::cron::parse(c) {
        Ok(p) if !c.suspend => p.next_after(st.last_schedule_ms.max(now_ms())).unwrap_or(0),
        _ => 0,
    };
    pb::CronStatus { last_schedule_ms: st.last_schedule_ms, run: st.run, message: st.message, next_ms: next }
}

/// Tasks of job `s`'s current spec that completed (a walk over its tasks:
/// jobs only).
fn completed(v: &View, s: &Service) -> u64 {
    let run = s.cron_status.as_ref().map_or(0, |c| c.run);
    let current = |t: &Task| if s.spec.cron.is_some() { t.run == run } else { t.spec_version == s.spec_version };
    v.tasks_of(&s.id).filter(|t| current(t) && t.state == TaskState::Complete).count() as u64
}

/// [`service_to_proto`] with the progress of its update (a walk over its
/// tasks: for inspect, not for lists).
pub fn service_with_progress(v: &View, s: &Service) -> pb::Service {
    let updated = v.tasks_of(&s.id).filter(|t| t.live() && t.spec.runs_like(&s.spec) && t.ready()).count();
    pb::Service { updated_tasks: updated as u64, ..service_to_proto(v, s) }
}

/// What `service inspect` shows: [`service_with_progress`] and the latest
/// events of the service and its tasks.
pub fn service_inspected(v: &View, s: &Service) -> pb::Service {
    let events = crate::cluster::events::of_service(v, &s.id).iter().map(|e| event_to_proto(e)).collect();
    pb::Service { events, ..service_with_progress(v, s) }
}

pub fn event_to_proto(e: &crate::model::events::Event) -> pb::Event {
    pb::Event {
        time_ms: e.time_ms,
        subject: e.subject.as_str().into(),
        id: e.id.clone(),
        name: e.name.clone(),
        action: e.action.as_str().into(),
        message: e.message.clone(),
        version: e.version,
        service_id: e.service.clone(),
    }
}

pub fn task_to_proto(v: &View, t: &Task) -> pb::Task {
    pb::Task {
        id: t.id.clone(),
        service: t.service.clone(),
        namespace: crate::model::namespace::shown(&t.spec.namespace).into(),
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
        health: t.health.as_str().into(),
        probe: t.probe.clone(),
        run: t.run,
        address: t.address().map(|a| a.to_string()).unwrap_or_default(),
        addresses: t.addresses.iter().map(|(k, a)| (key_parts(k).1.to_string(), a.to_string())).collect(),
        ready_ms: t.ready_ms,
    }
}

/// A node as `node ls` shows it; `manager_status` from this manager's Raft.
pub fn node_to_proto(v: &View, n: &Node, manager_status: &str) -> pb::Node {
    pb::Node {
        id: n.id.clone(),
        hostname: n.hostname.clone(),
        role: n.role.as_str().into(),
        addr: n.addr.clone(),
        availability: enum_str(n.availability),
        status: enum_str(n.status),
        message: n.message.clone(),
        labels: n.labels.clone().into_iter().collect(),
        cpus: n.cpus,
        memory: n.memory,
        agent_version: n.agent_version.clone(),
        tasks: v.live_tasks_on(&n.id) as u64,
        manager_status: if n.role == Role::Manager { manager_status.into() } else { String::new() },
        updated_ms: n.updated_ms,
        wg_key: n.wg_key.clone(),
        os_version: n.os_version.clone(),
        failed_upgrades: n
            .failed_upgrades
            .iter()
            .map(|f| pb::FailedUpgrade { version: f.version.clone(), reason: f.reason.clone(), at_ms: f.at_ms })
            .collect(),
    }
}

/// The serde name of a unit enum variant (`drain`, `ready`).
fn enum_str<T: serde::Serialize>(v: T) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

pub fn status_to_proto(s: RaftStatus) -> pb::StatusResponse {
    pb::StatusResponse {
        id: s.id,
        state: s.state,
        leader: s.leader,
        term: s.term,
        last_log_index: s.last_log_index,
        last_applied: s.last_applied,
        members: s
            .members
            .into_iter()
            .map(|m| pb::Member { id: m.id, node_id: format!("{:016x}", m.id), addr: m.addr, voter: m.voter })
            .collect(),
        store_version: s.store_version,
    }
}

pub fn person_cert_to_proto(c: &PersonCert) -> pb::PersonCert {
    pb::PersonCert {
        serial: c.serial.clone(),
        name: c.name.clone(),
        role: c.role.as_str().into(),
        issued_ms: c.issued_ms,
        expires_ms: c.expires_ms,
        issued_by: c.issued_by.clone(),
        revoked_ms: c.revoked_ms.unwrap_or(0),
        namespaces: c.namespaces.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_shown_and_sent_back_is_the_same_spec() {
        let lists = [vec![], vec!["back".to_string()], vec!["default".to_string(), "back".to_string()]];
        for (networks, namespace) in lists.into_iter().flat_map(|n| [(n.clone(), ""), (n, "team-a")]) {
            let s = ServiceSpec {
                name: "web".into(),
                namespace: namespace.into(),
                image: "busybox".into(),
                networks,
                ..Default::default()
            };
            let mut back = spec_from_proto(spec_to_proto(&s)).unwrap();
            back.namespace = s.namespace.clone();
            assert!(
                back.runs_like(&s) && back.networks == s.networks,
                "{:?} came back as {:?}",
                s.networks,
                back.networks
            );
        }
    }
}
