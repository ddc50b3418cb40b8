//! Conversions of the lifecycle parts of a service spec (probes, update
//! and rollback policies, stop policy) and of its update status. Unset
//! fields take their defaults here; ranges are checked by `cluster::spec`.

use orc_proto::cluster as pb;

use crate::cluster::objects::*;
use crate::cluster::ClusterError;

fn bad(m: String) -> ClusterError {
    ClusterError::InvalidArgument(m)
}

fn probe_from_proto(p: pb::Probe, role: ProbeRole) -> Result<Probe, ClusterError> {
    let port = |n: u32| {
        u16::try_from(n)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| bad(format!("{} probe: port {n} is not 1-65535", role.as_str())))
    };
    let action = match p.action {
        Some(pb::probe::Action::Exec(e)) => ProbeAction::Exec { command: e.command },
        Some(pb::probe::Action::Http(h)) => {
            let path = if h.path.is_empty() { "/".to_string() } else { h.path };
            ProbeAction::Http { port: port(h.port)?, path }
        }
        Some(pb::probe::Action::Tcp(t)) => ProbeAction::Tcp { port: port(t.port)? },
        None => return Err(bad(format!("{} probe: give exec, http or tcp", role.as_str()))),
    };
    Ok(Probe {
        action,
        interval_ms: p.interval_ms.unwrap_or(PROBE_INTERVAL_MS),
        timeout_ms: p.timeout_ms.unwrap_or(PROBE_TIMEOUT_MS),
        failure_threshold: p.failure_threshold.unwrap_or(PROBE_FAILURES),
        success_threshold: p.success_threshold.unwrap_or(PROBE_SUCCESSES),
        start_period_ms: p.start_period_ms,
    })
}

fn probe_to_proto(p: &Probe) -> pb::Probe {
    let action = match &p.action {
        ProbeAction::Exec { command } => pb::probe::Action::Exec(pb::ExecProbe { command: command.clone() }),
        ProbeAction::Http { port, path } => {
            pb::probe::Action::Http(pb::HttpProbe { port: u32::from(*port), path: path.clone() })
        }
        ProbeAction::Tcp { port } => pb::probe::Action::Tcp(pb::TcpProbe { port: u32::from(*port) }),
    };
    pb::Probe {
        action: Some(action),
        interval_ms: Some(p.interval_ms),
        timeout_ms: Some(p.timeout_ms),
        failure_threshold: Some(p.failure_threshold),
        success_threshold: Some(p.success_threshold),
        start_period_ms: p.start_period_ms,
    }
}

pub fn health_from_proto(h: Option<pb::HealthChecks>) -> Result<HealthChecks, ClusterError> {
    let h = h.unwrap_or_default();
    let one = |p: Option<pb::Probe>, role| p.map(|p| probe_from_proto(p, role)).transpose();
    Ok(HealthChecks {
        startup: one(h.startup, ProbeRole::Startup)?,
        liveness: one(h.liveness, ProbeRole::Liveness)?,
        readiness: one(h.readiness, ProbeRole::Readiness)?,
        ignore_image: h.ignore_image,
    })
}

pub fn health_to_proto(h: &HealthChecks) -> pb::HealthChecks {
    pb::HealthChecks {
        startup: h.startup.as_ref().map(probe_to_proto),
        liveness: h.liveness.as_ref().map(probe_to_proto),
        readiness: h.readiness.as_ref().map(probe_to_proto),
        ignore_image: h.ignore_image,
    }
}

/// An update (or, with `rollback`, a rollback) policy.
pub fn policy_from_proto(p: Option<pb::UpdatePolicy>, rollback: bool) -> Result<UpdatePolicy, ClusterError> {
    let what = if rollback { "rollback" } else { "update" };
    let p = p.unwrap_or_default();
    let d = UpdatePolicy::default();
    let order = match p.order.as_str() {
        "" => d.order,
        "stop-first" => UpdateOrder::StopFirst,
        "start-first" => UpdateOrder::StartFirst,
        o => return Err(bad(format!("{what} order {o:?} is not stop-first or start-first"))),
    };
    let failure_action = match p.failure_action.as_str() {
        "" => d.failure_action,
        "pause" => FailureAction::Pause,
        "continue" => FailureAction::Continue,
        "rollback" if !rollback => FailureAction::Rollback,
        a if rollback => return Err(bad(format!("rollback failure action {a:?} is not pause or continue"))),
        a => return Err(bad(format!("update failure action {a:?} is not pause, continue or rollback"))),
    };
    Ok(UpdatePolicy {
        parallelism: p.parallelism.unwrap_or(d.parallelism),
        delay_ms: p.delay_ms.unwrap_or(d.delay_ms),
        order,
        monitor_ms: p.monitor_ms.unwrap_or(d.monitor_ms),
        max_failure_ratio: p.max_failure_ratio.unwrap_or(d.max_failure_ratio),
        failure_action,
    })
}

pub fn policy_to_proto(p: &UpdatePolicy) -> pb::UpdatePolicy {
    pb::UpdatePolicy {
        parallelism: Some(p.parallelism),
        delay_ms: Some(p.delay_ms),
        order: p.order.as_str().into(),
        monitor_ms: Some(p.monitor_ms),
        max_failure_ratio: Some(p.max_failure_ratio),
        failure_action: p.failure_action.as_str().into(),
    }
}

pub fn stop_from_proto(grace_ms: Option<u64>, drain_ms: Option<u64>, signal: String) -> StopPolicy {
    let d = StopPolicy::default();
    StopPolicy {
        signal: if signal.trim().is_empty() { d.signal } else { signal.trim().to_string() },
        grace_ms: grace_ms.unwrap_or(d.grace_ms),
        drain_ms: drain_ms.unwrap_or(d.drain_ms),
    }
}

pub fn cron_from_proto(c: Option<pb::CronSchedule>) -> Result<Option<CronSchedule>, ClusterError> {
    let Some(c) = c else { return Ok(None) };
    let concurrency = match c.concurrency.as_str() {
        "" => Concurrency::Allow,
        x => Concurrency::parse(x)
            .ok_or_else(|| bad(format!("concurrency policy {x:?} is not allow, forbid or replace")))?,
    };
    Ok(Some(CronSchedule {
        schedule: c.schedule.trim().to_string(),
        time_zone: c.time_zone.trim().to_string(),
        concurrency,
        starting_deadline_ms: c.starting_deadline_ms,
        success_history: c.success_history.unwrap_or(SUCCESS_HISTORY),
        failed_history: c.failed_history.unwrap_or(FAILED_HISTORY),
        suspend: c.suspend,
    }))
}

pub fn cron_to_proto(c: &CronSchedule) -> pb::CronSchedule {
    pb::CronSchedule {
        schedule: c.schedule.clone(),
        time_zone: c.time_zone.clone(),
        concurrency: c.concurrency.as_str().into(),
        starting_deadline_ms: c.starting_deadline_ms,
        success_history: Some(c.success_history),
        failed_history: Some(c.failed_history),
        suspend: c.suspend,
    }
}

pub fn update_status_to_proto(u: &UpdateStatus) -> pb::UpdateStatus {
    pb::UpdateStatus {
        state: u.state.as_str().into(),
        started_ms: u.started_ms,
        completed_ms: u.completed_ms,
        message: u.message.clone(),
    }
}

pub fn autoscale_from_proto(a: Option<pb::Autoscale>) -> Option<Autoscale> {
    let a = a?;
    Some(Autoscale {
        min: a.min_replicas,
        max: a.max_replicas,
        cpu_percent: a.cpu_percent,
        memory_percent: a.memory_percent,
        scale_down_window_ms: a.scale_down_window_ms.unwrap_or(SCALE_DOWN_WINDOW_MS),
    })
}

pub fn autoscale_to_proto(a: &Autoscale) -> pb::Autoscale {
    pb::Autoscale {
        min_replicas: a.min,
        max_replicas: a.max,
        cpu_percent: a.cpu_percent,
        memory_percent: a.memory_percent,
        scale_down_window_ms: Some(a.scale_down_window_ms),
    }
}

pub fn autoscale_status_to_proto(s: &AutoscaleStatus) -> pb::AutoscaleStatus {
    pb::AutoscaleStatus {
        checked_ms: s.checked_ms,
        cpu_percent: s.cpu_percent,
        memory_percent: s.memory_percent,
        measured: s.measured,
        running: s.running,
        recommended: s.recommended,
        message: s.message.clone(),
        decisions: s
            .decisions
            .iter()
            .map(|d| pb::ScaleDecision { at_ms: d.at_ms, from: d.from, to: d.to, reason: d.reason.clone() })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_fields_take_the_defaults_and_set_ones_survive_the_round_trip() {
        let p = policy_from_proto(None, false).unwrap();
        assert_eq!(p, UpdatePolicy::default());
        let p = policy_from_proto(
            Some(pb::UpdatePolicy {
                parallelism: Some(0),
                order: "start-first".into(),
                failure_action: "rollback".into(),
                ..Default::default()
            }),
            false,
        )
        .unwrap();
        assert_eq!((p.parallelism, p.order, p.failure_action), (0, UpdateOrder::StartFirst, FailureAction::Rollback));
        assert_eq!(policy_from_proto(Some(policy_to_proto(&p)), false).unwrap(), p);
        let e =
            policy_from_proto(Some(pb::UpdatePolicy { failure_action: "rollback".into(), ..Default::default() }), true)
                .unwrap_err();
        assert!(e.to_string().contains("pause or continue"), "{e}");
        let e = policy_from_proto(Some(pb::UpdatePolicy { order: "random".into(), ..Default::default() }), false)
            .unwrap_err();
        assert!(e.to_string().contains("stop-first or start-first"), "{e}");

        let h = pb::HealthChecks {
            readiness: Some(pb::Probe {
                action: Some(pb::probe::Action::Http(pb::HttpProbe { port: 8080, path: String::new() })),
                ..Default::default()
            }),
            ..Default::default()
        };
        let got = health_from_proto(Some(h)).unwrap();
        let r = got.readiness.clone().unwrap();
        assert_eq!(r.action, ProbeAction::Http { port: 8080, path: "/".into() });
        assert_eq!((r.interval_ms, r.timeout_ms, r.failure_threshold), (10_000, 1_000, 3));
        assert_eq!(health_from_proto(Some(health_to_proto(&got))).unwrap(), got);
        let e =
            health_from_proto(Some(pb::HealthChecks { liveness: Some(pb::Probe::default()), ..Default::default() }))
                .unwrap_err();
        assert!(e.to_string().contains("liveness probe: give exec, http or tcp"), "{e}");
    }
}
