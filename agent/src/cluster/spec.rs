//! Checking a service spec before it enters the cluster state: every
//! mistake named with how to fix it.

use super::objects::{
    signal_number, valid_payload_name, valid_volume_name, Autoscale, FailureAction, HealthChecks, Mode, MountKind,
    NetworkMode, PayloadKind, ProbeAction, ProbeRole, Protocol, PublishMode, ServiceSpec, StopPolicy, UpdateOrder,
    UpdatePolicy, STOP_SIGNALS,
};
use super::scheduler::{Constraint, ConstraintError};
use crate::fields;

pub fn valid_service_name(n: &str) -> bool {
    n.len() <= 63
        && n.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The longest restart delay and window: a day.
pub const MAX_RESTART_MS: u64 = 24 * 3600 * 1000;

/// What is wrong with a service spec, and how to put it right.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    #[error("service name {0:?}: use 1-63 letters, digits, '-' or '_', starting with a letter or digit")]
    BadName(String),
    #[error("an image is required (e.g. --image registry:5000/web:1)")]
    NoImage,
    #[error(transparent)]
    Field(#[from] crate::fields::FieldError),
    #[error("{replicas} replicas is above the cluster's limit of {max} per service (raise it with `orcctl cluster update --max-replicas N`)")]
    TooManyReplicas { replicas: u64, max: u64 },
    #[error(transparent)]
    Constraint(#[from] ConstraintError),
    #[error("{what} {value} must be a positive number")]
    BadCpus { what: &'static str, value: f64 },
    #[error("memory limit {0} bytes is below the minimum of 6 MiB")]
    MemoryTooSmall(u64),
    #[error("the memory reservation is above the memory limit")]
    ReservationAboveLimit,
    #[error("pids limit {0} must not be negative")]
    NegativePids(i64),
    #[error("port {published}:{target}: ports are 1-65535")]
    PortZero { published: u16, target: u16 },
    #[error(
        "port {published}:{target}: a task on the node's own network (--network host) listens on the node itself, \
         so the published port is the task's own: use published={target},target={target},mode=host"
    )]
    HostStackPort { published: u16, target: u16 },
    #[error("port {port}/{protocol} is published twice")]
    PublishedTwice { port: u16, protocol: Protocol },
    #[error("port {port}/{protocol} is the node's own ({what}): publish another port")]
    NodePort { port: u16, protocol: Protocol, what: &'static str },
    #[error("{kind} name {name:?}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")]
    FileName { kind: PayloadKind, name: String },
    #[error(
        "{kind} {name}: target {target:?} must be a file path without '..' (absolute, or for a secret relative \
         to /run/secrets)"
    )]
    FileTarget { kind: PayloadKind, name: String, target: String },
    #[error("{kind} {name}: mode {mode:o} is not a permission (0-7777, e.g. mode=0400)")]
    FileMode { kind: PayloadKind, name: String, mode: u32 },
    #[error("two mounts (volumes, secrets or configs) are at {0}: give one of them another target (target=PATH)")]
    FileTargetTwice(String),
    #[error("mount target {0:?} must be an absolute path without '..' (e.g. target=/data)")]
    MountTarget(String),
    #[error("volume name {0:?}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")]
    VolumeName(String),
    #[error("the tmpfs mount at {0} takes no source: drop source=")]
    TmpfsSource(String),
    #[error("the tmpfs mount at {0} takes no size= (a tmpfs counts against the task's memory limit): drop it")]
    TmpfsSize(String),
    #[error(
        "the mount of volume {0} has size=, but a named volume has its own size: drop size= (set it with \
         `orcctl volume create {0} --size`; on a stateful service, size= sizes each slot's volume)"
    )]
    NamedVolumeSize(String),
    #[error("at most {max} mounts per service")]
    TooManyMounts { max: usize },
    #[error("at most {max} secrets and configs per service")]
    TooManyFiles { max: usize },
    #[error("a global service runs one task per node: drop --replicas or use --mode replicated")]
    GlobalWithReplicas,
    #[error("--max-concurrent is for replicated jobs (--mode replicated-job)")]
    MaxConcurrentNotJob,
    #[error("a schedule is for jobs: use --mode replicated-job or global-job")]
    ScheduleNotJob,
    #[error("a stateful service is replicated (--mode replicated)")]
    StatefulNotReplicated,
    #[error(
        "a stateful service never runs two tasks of a slot at once: use --update-order and --rollback-order stop-first"
    )]
    StatefulStartFirst,
    #[error("{0}")]
    BadSchedule(String),
    #[error("autoscaling is for replicated services (--mode replicated)")]
    AutoscaleNotReplicated,
    #[error("autoscale: min replicas {min} and max {max}: need 1 ≤ min ≤ max")]
    AutoscaleBounds { min: u64, max: u64 },
    #[error("autoscale: name a target: --autoscale-cpu PERCENT (of --reserve-cpu) and/or --autoscale-memory PERCENT (of --reserve-memory)")]
    AutoscaleNoTarget,
    #[error("autoscale: a {resource} target is a percentage of the {resource} reservation: set {flag}")]
    AutoscaleNoReservation { resource: &'static str, flag: &'static str },
    #[error("autoscale: target {resource} {percent}% must be 1-1000 (percent of the reservation)")]
    AutoscaleTarget { resource: &'static str, percent: u32 },
    #[error("{role} probe: {problem}")]
    Probe { role: &'static str, problem: String },
    #[error("{what} policy: {problem}")]
    Policy { what: &'static str, problem: String },
    #[error("stop signal {0:?} is not one of {list}", list = STOP_SIGNALS.join(", "))]
    BadStopSignal(String),
    #[error("stop grace period {0} ms is above the limit of an hour")]
    StopGraceTooLong(u64),
    #[error("stop drain period {0} ms is above the limit of an hour")]
    StopDrainTooLong(u64),
    #[error("a service on the node's own network (--network host) joins no other network: drop the other --network")]
    HostWithNetworks,
    #[error("network {0:?} is named twice")]
    NetworkTwice(String),
    #[error("network {0:?}: a service joins networks of its own namespace by name (a DNS label: lowercase letters, digits, '-')")]
    BadNetwork(String),
    #[error("at most {MAX_SERVICE_NETWORKS} networks per service")]
    TooManyNetworks,
}

/// Ports every node answers on itself: a published port cannot take them.
pub const NODE_PORTS: [(u16, Protocol, &str); 4] = [
    (crate::config::API_PORT, Protocol::Tcp, "its API"),
    (crate::network::links::VXLAN_PORT, Protocol::Udp, "the overlay's VXLAN"),
    (53, Protocol::Udp, "the DNS server on each network's bridge"),
    (53, Protocol::Tcp, "the DNS server on each network's bridge"),
];

/// The most networks one service's tasks join (a veth each).
pub const MAX_SERVICE_NETWORKS: usize = 8;

/// The longest probe interval, timeout and start period, update delay and
/// monitor window: an hour.
pub const MAX_LIFECYCLE_MS: u64 = 3600 * 1000;
/// The most failures or successes in a row a probe may ask for.
pub const MAX_THRESHOLD: u32 = 100;

fn probes(h: &HealthChecks) -> Result<(), SpecError> {
    for role in ProbeRole::ALL {
        let Some(p) = h.get(role) else { continue };
        let bad = |problem: String| SpecError::Probe { role: role.as_str(), problem };
        match &p.action {
            ProbeAction::Exec { command } if command.is_empty() => {
                return Err(bad("exec needs a command (e.g. [\"cat\", \"/tmp/ready\"])".into()))
            }
            ProbeAction::Exec { command } => fields::list("command", command).map_err(|e| bad(e.to_string()))?,
            ProbeAction::Http { port: 0, .. } | ProbeAction::Tcp { port: 0 } => return Err(bad("port 0".into())),
            ProbeAction::Http { path, .. } if !path.starts_with('/') => {
                return Err(bad(format!("path {path:?} must start with /")))
            }
            ProbeAction::Http { path, .. } => fields::text("path", path, 1024).map_err(|e| bad(e.to_string()))?,
            ProbeAction::Tcp { .. } => {}
        }
        if !(1000..=MAX_LIFECYCLE_MS).contains(&p.interval_ms) {
            return Err(bad(format!("interval {} ms: use 1s to 1h", p.interval_ms)));
        }
        if p.timeout_ms == 0 || p.timeout_ms > p.interval_ms {
            return Err(bad(format!("timeout {} ms: use 1ms up to the interval ({} ms)", p.timeout_ms, p.interval_ms)));
        }
        if p.start_period_ms > MAX_LIFECYCLE_MS {
            return Err(bad(format!("start period {} ms is above an hour", p.start_period_ms)));
        }
        for (what, n) in [("failure threshold", p.failure_threshold), ("success threshold", p.success_threshold)] {
            if !(1..=MAX_THRESHOLD).contains(&n) {
                return Err(bad(format!("{what} {n}: use 1 to {MAX_THRESHOLD}")));
            }
        }
        if role != ProbeRole::Readiness && p.success_threshold != 1 {
            return Err(bad(format!(
                "success threshold {}: must be 1 (only readiness may ask for more)",
                p.success_threshold
            )));
        }
    }
    Ok(())
}

fn policy(what: &'static str, p: &UpdatePolicy) -> Result<(), SpecError> {
    let bad = |problem: String| SpecError::Policy { what, problem };
    if !(0.0..=1.0).contains(&p.max_failure_ratio) {
        return Err(bad(format!("max failure ratio {} must be between 0 and 1", p.max_failure_ratio)));
    }
    if p.delay_ms > MAX_LIFECYCLE_MS || p.monitor_ms > MAX_LIFECYCLE_MS {
        return Err(bad("delay and monitor are at most an hour".into()));
    }
    if what == "rollback" && p.failure_action == FailureAction::Rollback {
        return Err(bad("a rollback's failure action is pause or continue".into()));
    }
    Ok(())
}

fn stop(s: &StopPolicy) -> Result<(), SpecError> {
    if signal_number(&s.signal).is_none() {
        return Err(SpecError::BadStopSignal(s.signal.clone()));
    }
    if s.grace_ms > MAX_LIFECYCLE_MS {
        return Err(SpecError::StopGraceTooLong(s.grace_ms));
    }
    if s.drain_ms > MAX_LIFECYCLE_MS {
        return Err(SpecError::StopDrainTooLong(s.drain_ms));
    }
    Ok(())
}

/// The secrets and configs named are well formed and land on distinct
/// paths (whether they exist is the state's to say: [`super::payloads`]).
fn files(s: &ServiceSpec) -> Result<(), SpecError> {
    if s.secrets.len() + s.configs.len() > super::objects::MAX_FILES_PER_SERVICE {
        return Err(SpecError::TooManyFiles { max: super::objects::MAX_FILES_PER_SERVICE });
    }
    let mut seen = std::collections::BTreeSet::new();
    for kind in PayloadKind::ALL {
        for f in s.files(kind) {
            let name = f.name.clone();
            if !valid_payload_name(&f.name) {
                return Err(SpecError::FileName { kind, name });
            }
            let target = kind.target(&f.name, &f.target);
            let bad_part = target.split('/').any(|p| p == ".." || p == ".");
            if bad_part || target.ends_with('/') || target.len() > 4096 || target.contains('\0') {
                return Err(SpecError::FileTarget { kind, name, target: f.target.clone() });
            }
            if f.mode > 0o7777 {
                return Err(SpecError::FileMode { kind, name, mode: f.mode });
            }
            if !seen.insert(target.clone()) {
                return Err(SpecError::FileTargetTwice(target));
            }
        }
    }
    Ok(())
}

/// Volume and tmpfs mounts are well formed and at paths of their own
/// (whether named volumes exist is the state's to say: [`super::volumes`]).
fn mounts(s: &ServiceSpec) -> Result<(), SpecError> {
    if s.mounts.len() > fields::MAX_LIST {
        return Err(SpecError::TooManyMounts { max: fields::MAX_LIST });
    }
    let mut seen: std::collections::BTreeSet<String> = PayloadKind::ALL
        .into_iter()
        .flat_map(|k| s.files(k).iter().map(move |f| k.target(&f.name, &f.target)))
        .collect();
    for m in &s.mounts {
        let bad = !m.target.starts_with('/') || m.target.split('/').any(|p| p == ".." || p == ".");
        if bad || m.target.len() > 4096 || m.target.contains('\0') {
            return Err(SpecError::MountTarget(m.target.clone()));
        }
        match m.kind {
            MountKind::Volume if !m.source.is_empty() && !valid_volume_name(&m.source) => {
                return Err(SpecError::VolumeName(m.source.clone()))
            }
            MountKind::Volume if !m.source.is_empty() && !s.stateful && m.size > 0 => {
                return Err(SpecError::NamedVolumeSize(m.source.clone()))
            }
            MountKind::Tmpfs if !m.source.is_empty() => return Err(SpecError::TmpfsSource(m.target.clone())),
            MountKind::Tmpfs if m.size > 0 => return Err(SpecError::TmpfsSize(m.target.clone())),
            _ => {}
        }
        let target = m.target.trim_end_matches('/').to_string();
        if !seen.insert(if target.is_empty() { "/".into() } else { target }) {
            return Err(SpecError::FileTargetTwice(m.target.clone()));
        }
    }
    Ok(())
}

/// The networks named are well formed (whether they exist is the state's
/// to say: [`super::networks::check_joined`]).
fn networks(s: &ServiceSpec) -> Result<(), SpecError> {
    if s.network == super::objects::NetworkMode::Host && !s.networks.is_empty() {
        return Err(SpecError::HostWithNetworks);
    }
    if s.networks.len() > MAX_SERVICE_NETWORKS {
        return Err(SpecError::TooManyNetworks);
    }
    let mut seen = std::collections::BTreeSet::new();
    for n in &s.networks {
        // A name, never a key: `team-a/back` would reach into a namespace
        // from another (or from default, where keys are bare).
        if !super::networks::valid_name(n) {
            return Err(SpecError::BadNetwork(n.clone()));
        }
        if !seen.insert(n) {
            return Err(SpecError::NetworkTwice(n.clone()));
        }
    }
    Ok(())
}

/// Checks `s`; `max_replicas` is the cluster's limit per service.
pub fn validate(s: &ServiceSpec, max_replicas: u64) -> Result<(), SpecError> {
    if !valid_service_name(&s.name) {
        return Err(SpecError::BadName(s.name.clone()));
    }
    if s.image.trim().is_empty() {
        return Err(SpecError::NoImage);
    }
    fields::text("image", &s.image, fields::MAX_STRING)?;
    s.process.validate()?;
    fields::labels("labels", &s.labels)?;
    fields::list("constraints", &s.constraints)?;
    if s.ports.len() > fields::MAX_LIST {
        return Err(fields::FieldError::new("ports", format!("at most {} ports", fields::MAX_LIST)).into());
    }
    if s.replicas > max_replicas {
        return Err(SpecError::TooManyReplicas { replicas: s.replicas, max: max_replicas });
    }
    networks(s)?;
    files(s)?;
    mounts(s)?;
    fields::duration_ms("restart delay", s.restart.delay_ms, MAX_RESTART_MS)?;
    fields::duration_ms("restart window", s.restart.window_ms, MAX_RESTART_MS)?;
    for c in &s.constraints {
        Constraint::parse(c)?;
    }
    for (what, v) in [("reserved CPUs", s.reserve_cpus), ("CPU limit", s.limit_cpus)] {
        if !v.is_finite() || v < 0.0 {
            return Err(SpecError::BadCpus { what, value: v });
        }
    }
    if s.limit_memory != 0 && s.limit_memory < 6 << 20 {
        return Err(SpecError::MemoryTooSmall(s.limit_memory));
    }
    if s.limit_memory != 0 && s.reserve_memory > s.limit_memory {
        return Err(SpecError::ReservationAboveLimit);
    }
    if s.limit_pids < 0 {
        return Err(SpecError::NegativePids(s.limit_pids));
    }
    let mut seen = std::collections::BTreeSet::new();
    for p in &s.ports {
        if p.published == 0 || p.target == 0 {
            return Err(SpecError::PortZero { published: p.published, target: p.target });
        }
        if s.network == NetworkMode::Host && (p.mode != PublishMode::Host || p.published != p.target) {
            return Err(SpecError::HostStackPort { published: p.published, target: p.target });
        }
        if !seen.insert((p.published, p.protocol)) {
            return Err(SpecError::PublishedTwice { port: p.published, protocol: p.protocol });
        }
        if let Some((_, _, what)) =
            NODE_PORTS.iter().find(|(port, proto, _)| *port == p.published && *proto == p.protocol)
        {
            return Err(SpecError::NodePort { port: p.published, protocol: p.protocol, what });
        }
        if p.protocol == Protocol::Udp && super::objects::wg_ports().contains(&p.published) {
            let what = "the WireGuard ports of encrypted networks, 51820-52075";
            return Err(SpecError::NodePort { port: p.published, protocol: p.protocol, what });
        }
    }
    if s.mode.global() && s.replicas > 1 {
        return Err(SpecError::GlobalWithReplicas);
    }
    if s.mode != Mode::ReplicatedJob && s.max_concurrent != 0 {
        return Err(SpecError::MaxConcurrentNotJob);
    }
    if s.stateful && s.mode != Mode::Replicated {
        return Err(SpecError::StatefulNotReplicated);
    }
    if s.stateful && (s.update.order == UpdateOrder::StartFirst || s.rollback.order == UpdateOrder::StartFirst) {
        return Err(SpecError::StatefulStartFirst);
    }
    if let Some(c) = &s.cron {
        if !s.mode.job() {
            return Err(SpecError::ScheduleNotJob);
        }
        super::orchestrator::cron::parse(c).map_err(SpecError::BadSchedule)?;
        fields::duration_ms("starting deadline", c.starting_deadline_ms, MAX_RESTART_MS)?;
    }
    if let Some(a) = &s.autoscale {
        autoscale(s, a, max_replicas)?;
    }
    probes(&s.health)?;
    policy("update", &s.update)?;
    policy("rollback", &s.rollback)?;
    stop(&s.stop)?;
    Ok(())
}

fn autoscale(s: &ServiceSpec, a: &Autoscale, max_replicas: u64) -> Result<(), SpecError> {
    if s.mode != Mode::Replicated {
        return Err(SpecError::AutoscaleNotReplicated);
    }
    if a.min == 0 || a.min > a.max {
        return Err(SpecError::AutoscaleBounds { min: a.min, max: a.max });
    }
    if a.max > max_replicas {
        return Err(SpecError::TooManyReplicas { replicas: a.max, max: max_replicas });
    }
    if a.cpu_percent == 0 && a.memory_percent == 0 {
        return Err(SpecError::AutoscaleNoTarget);
    }
    for (resource, percent, reserved, flag) in [
        ("CPU", a.cpu_percent, s.reserve_cpus > 0.0, "--reserve-cpu"),
        ("memory", a.memory_percent, s.reserve_memory > 0, "--reserve-memory"),
    ] {
        if percent > 1000 {
            return Err(SpecError::AutoscaleTarget { resource, percent });
        }
        if percent > 0 && !reserved {
            return Err(SpecError::AutoscaleNoReservation { resource, flag });
        }
    }
    fields::duration_ms("autoscale scale-down window", a.scale_down_window_ms, MAX_LIFECYCLE_MS)?;
    Ok(())
}

/// Whether going from `old` to `new` needs new tasks: anything the tasks
/// run changed (not the replica count, the service's own labels, or the
/// update and rollback policies).
pub fn needs_new_tasks(old: &ServiceSpec, new: &ServiceSpec) -> bool {
    !old.runs_like(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::objects::{Port, Probe};
    use crate::runtime::record::Process;

    fn spec(f: impl FnOnce(&mut ServiceSpec)) -> Result<(), String> {
        let mut s = ServiceSpec { name: "web".into(), image: "busybox".into(), replicas: 1, ..Default::default() };
        f(&mut s);
        validate(&s, 1000).map_err(|e| e.to_string())
    }

    #[test]
    fn mistakes_are_named() {
        assert!(spec(|_| {}).is_ok());
        type Case = (Box<dyn FnOnce(&mut ServiceSpec)>, &'static str);
        let cases: Vec<Case> = vec![
            (Box::new(|s| s.name = "we b".into()), "service name"),
            (Box::new(|s| s.name = "-web".into()), "starting with a letter"),
            (Box::new(|s| s.image = " ".into()), "an image is required"),
            (Box::new(|s| s.process.env = vec!["NOEQUALS".into()]), "KEY=VALUE"),
            (Box::new(|s| s.constraints = vec!["node.labels.zone=eu".into()]), "no == or !="),
            (Box::new(|s| s.limit_memory = 1 << 20), "minimum of 6 MiB"),
            (
                Box::new(|s| {
                    s.network = NetworkMode::Host;
                    s.ports = vec![Port { published: 8080, target: 80, mode: PublishMode::Host, ..Default::default() }];
                }),
                "use published=80,target=80,mode=host",
            ),
            (
                Box::new(|s| {
                    s.network = NetworkMode::Host;
                    s.ports = vec![Port { published: 80, target: 80, ..Default::default() }];
                }),
                "mode=host",
            ),
            (
                Box::new(|s| s.ports = vec![Port { published: 7443, target: 80, ..Default::default() }]),
                "7443/tcp is the node's own (its API)",
            ),
            (
                Box::new(|s| {
                    s.ports = vec![Port { published: 4789, target: 80, protocol: Protocol::Udp, ..Default::default() }]
                }),
                "4789/udp is the node's own",
            ),
            (
                Box::new(|s| {
                    s.ports = vec![Port { published: 51821, target: 80, protocol: Protocol::Udp, ..Default::default() }]
                }),
                "51821/udp is the node's own (the WireGuard ports",
            ),
            (
                Box::new(|s| {
                    let p = Port { published: 80, target: 80, ..Default::default() };
                    s.ports = vec![p.clone(), Port { target: 81, mode: PublishMode::Local, ..p }];
                }),
                "80/tcp is published twice",
            ),
            (Box::new(|s| s.replicas = 1_000_000_000), "limit of 1000 per service"),
            (Box::new(|s| s.process.env = vec!["A=\0".into()]), "env[0]: contains a NUL"),
            (Box::new(|s| s.process.args = vec!["x".into(); 2000]), "args: 2000 entries is too many"),
            (Box::new(|s| s.process.workdir = "srv".into()), "absolute"),
            (Box::new(|s| s.labels = [("a b".to_string(), String::new())].into()), "labels: key \"a b\""),
            (Box::new(|s| s.image = "x".repeat(5000)), "image: 5000 bytes"),
            (Box::new(|s| s.restart.delay_ms = u64::MAX), "restart delay"),
            (
                Box::new(|s| s.health.liveness = Some(Probe::new(ProbeAction::Exec { command: vec![] }))),
                "liveness probe: exec needs a command",
            ),
            (
                Box::new(|s| {
                    let mut p = Probe::new(ProbeAction::Tcp { port: 80 });
                    p.timeout_ms = 20_000;
                    s.health.readiness = Some(p);
                }),
                "readiness probe: timeout 20000 ms",
            ),
            (
                Box::new(|s| {
                    let mut p = Probe::new(ProbeAction::Tcp { port: 80 });
                    p.success_threshold = 2;
                    s.health.startup = Some(p);
                }),
                "only readiness may ask for more",
            ),
            (Box::new(|s| s.update.max_failure_ratio = 1.5), "update policy: max failure ratio 1.5"),
            (Box::new(|s| s.rollback.failure_action = FailureAction::Rollback), "rollback's failure action"),
            (Box::new(|s| s.stop.signal = "SIGSTOP".into()), "stop signal \"SIGSTOP\" is not one of SIGTERM"),
            (
                Box::new(|s| {
                    s.mode = Mode::Global;
                    s.replicas = 3;
                }),
                "one task per node",
            ),
            (
                Box::new(|s| s.autoscale = Some(Autoscale { min: 3, max: 2, cpu_percent: 50, ..Default::default() })),
                "min replicas 3 and max 2",
            ),
            (Box::new(|s| s.autoscale = Some(Autoscale { min: 1, max: 2, ..Default::default() })), "name a target"),
            (
                Box::new(|s| s.autoscale = Some(Autoscale { min: 1, max: 2, cpu_percent: 50, ..Default::default() })),
                "set --reserve-cpu",
            ),
            (
                Box::new(|s| {
                    s.mode = Mode::Global;
                    s.autoscale = Some(Autoscale { min: 1, max: 2, cpu_percent: 50, ..Default::default() });
                }),
                "autoscaling is for replicated services",
            ),
        ];
        for (f, want) in cases {
            let e = spec(f).unwrap_err();
            assert!(e.contains(want), "{want:?} not in {e:?}");
        }
    }

    #[test]
    fn scaling_keeps_tasks_other_changes_replace_them() {
        let a = ServiceSpec { name: "web".into(), image: "busybox".into(), replicas: 1, ..Default::default() };
        assert!(!needs_new_tasks(&a, &ServiceSpec { replicas: 7, ..a.clone() }));
        let labelled = ServiceSpec { labels: [("team".to_string(), "web".to_string())].into(), ..a.clone() };
        assert!(!needs_new_tasks(&a, &labelled));
        let policy = ServiceSpec { update: UpdatePolicy { parallelism: 4, ..Default::default() }, ..a.clone() };
        assert!(!needs_new_tasks(&a, &policy), "a new update policy replaces nothing");
        let probed = ServiceSpec {
            health: HealthChecks { readiness: Some(Probe::new(ProbeAction::Tcp { port: 80 })), ..Default::default() },
            ..a.clone()
        };
        assert!(needs_new_tasks(&a, &probed), "tasks run their probes");
        assert!(needs_new_tasks(
            &a,
            &ServiceSpec { process: Process { env: vec!["A=1".into()], ..a.process.clone() }, ..a.clone() }
        ));
    }
}
