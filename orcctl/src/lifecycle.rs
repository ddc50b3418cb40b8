//! The lifecycle parts of a service spec from flags and files: probes
//! (`--probe`, `healthcheck:`, `probes:`), update and rollback policies
//! (`--update-*`, `--rollback-*`, `deploy.update_config`,
//! `deploy.rollback_config`) and the stop policy.

use orc_proto::cluster::{
    probe, Autoscale, CronSchedule, ExecProbe, HealthChecks, HttpProbe, Probe, ServiceSpec, TcpProbe, UpdatePolicy,
};
use serde::Deserialize;

use crate::cli::ServiceFlags;
use crate::error::CliError;
use crate::parse::parse_duration;

fn usage(m: String) -> CliError {
    CliError::Usage(m)
}

/// The roles a probe plays.
pub const ROLES: [&str; 3] = ["startup", "liveness", "readiness"];

/// The probe of `role` in `h`.
pub fn slot<'a>(h: &'a mut HealthChecks, role: &str) -> Result<&'a mut Option<Probe>, CliError> {
    match role {
        "startup" => Ok(&mut h.startup),
        "liveness" => Ok(&mut h.liveness),
        "readiness" => Ok(&mut h.readiness),
        r => Err(usage(format!("probe role {r:?} is not one of {}", ROLES.join(", ")))),
    }
}

/// `[:]PORT[/PATH]`.
fn port_path(s: &str) -> Result<(u32, String), CliError> {
    let s = s.trim_start_matches(':');
    let (port, path) = match s.find('/') {
        Some(i) => (&s[..i], s[i..].to_string()),
        None => (s, "/".to_string()),
    };
    let port: u16 = port.parse().map_err(|_| usage(format!("{port:?} is not a port number (1-65535)")))?;
    Ok((u32::from(port), path))
}

/// `--probe 'ROLE KIND TARGET… [OPTION=VALUE…]'`: KIND is `exec CMD ARGS…`,
/// `shell SCRIPT`, `http [:]PORT[/PATH]` or `tcp [:]PORT`; options
/// `interval`, `timeout`, `failures`, `successes`, `start`.
pub fn parse_probe_flag(text: &str) -> Result<(String, Probe), CliError> {
    let help = "a probe is ROLE KIND TARGET [OPTION=VALUE…], e.g. 'readiness http :8080/ready interval=2s' or \
                'liveness exec cat /tmp/ok failures=5'";
    let mut words: Vec<&str> = text.split_whitespace().collect();
    let mut options = Vec::new();
    while let Some(w) = words.last() {
        match w.split_once('=') {
            Some((k, v)) if ["interval", "timeout", "failures", "successes", "start"].contains(&k) => {
                options.push((k.to_string(), v.to_string()));
                words.pop();
            }
            _ => break,
        }
    }
    let [role, kind, target @ ..] = words.as_slice() else { return Err(usage(format!("{text:?}: {help}"))) };
    if target.is_empty() {
        return Err(usage(format!("{text:?}: {help}")));
    }
    let action = match *kind {
        "exec" => probe::Action::Exec(ExecProbe { command: target.iter().map(|s| s.to_string()).collect() }),
        "shell" => probe::Action::Exec(ExecProbe { command: vec!["/bin/sh".into(), "-c".into(), target.join(" ")] }),
        "http" => {
            let (port, path) = port_path(target[0])?;
            probe::Action::Http(HttpProbe { port, path })
        }
        "tcp" => probe::Action::Tcp(TcpProbe { port: port_path(target[0])?.0 }),
        k => return Err(usage(format!("probe kind {k:?} is not exec, shell, http or tcp; {help}"))),
    };
    let mut p = Probe { action: Some(action), ..Default::default() };
    for (k, v) in options {
        let count = || v.parse::<u32>().map_err(|_| usage(format!("probe {k}={v}: not a whole number")));
        match k.as_str() {
            "interval" => p.interval_ms = Some(parse_duration(&v)?),
            "timeout" => p.timeout_ms = Some(parse_duration(&v)?),
            "start" => p.start_period_ms = parse_duration(&v)?,
            "failures" => p.failure_threshold = Some(count()?),
            _ => p.success_threshold = Some(count()?),
        }
    }
    slot(&mut HealthChecks::default(), role)?;
    Ok((role.to_string(), p))
}

/// Compose's `healthcheck:` (Docker's HEALTHCHECK): liveness and readiness.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Healthcheck {
    test: Option<Test>,
    interval: Option<String>,
    timeout: Option<String>,
    retries: Option<u32>,
    start_period: Option<String>,
    #[serde(default)]
    disable: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Test {
    Shell(String),
    List(Vec<String>),
}

/// A probe in `probes:`: one of exec, http, tcp, and its timing.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ProbeFile {
    exec: Option<Vec<String>>,
    http: Option<HttpFile>,
    tcp: Option<u16>,
    interval: Option<String>,
    timeout: Option<String>,
    failure_threshold: Option<u32>,
    success_threshold: Option<u32>,
    start_period: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct HttpFile {
    port: u16,
    #[serde(default)]
    path: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Probes {
    startup: Option<ProbeFile>,
    liveness: Option<ProbeFile>,
    readiness: Option<ProbeFile>,
}

fn duration(v: &Option<String>) -> Result<Option<u64>, CliError> {
    v.as_deref().map(parse_duration).transpose()
}

impl ProbeFile {
    fn to_proto(&self, role: &str) -> Result<Probe, CliError> {
        let action = match (&self.exec, &self.http, self.tcp) {
            (Some(c), None, None) => probe::Action::Exec(ExecProbe { command: c.clone() }),
            (None, Some(h), None) => probe::Action::Http(HttpProbe { port: h.port.into(), path: h.path.clone() }),
            (None, None, Some(p)) => probe::Action::Tcp(TcpProbe { port: p.into() }),
            _ => return Err(usage(format!("probes.{role}: give exactly one of exec, http or tcp"))),
        };
        Ok(Probe {
            action: Some(action),
            interval_ms: duration(&self.interval)?,
            timeout_ms: duration(&self.timeout)?,
            failure_threshold: self.failure_threshold,
            success_threshold: self.success_threshold,
            start_period_ms: duration(&self.start_period)?.unwrap_or(0),
        })
    }
}

/// The probes of a service file: `healthcheck:` as liveness and readiness,
/// `probes:` per role over it.
pub fn health_from_file(h: Option<Healthcheck>, p: Option<Probes>) -> Result<Option<HealthChecks>, CliError> {
    if h.is_none() && p.is_none() {
        return Ok(None);
    }
    let mut out = HealthChecks::default();
    if let Some(h) = h {
        out.ignore_image = h.disable;
        let command = match h.test {
            None => None,
            Some(Test::Shell(s)) => Some(vec!["/bin/sh".into(), "-c".into(), s]),
            Some(Test::List(l)) => match l.split_first() {
                Some((k, rest)) if k == "CMD" && !rest.is_empty() => Some(rest.to_vec()),
                Some((k, rest)) if k == "CMD-SHELL" && !rest.is_empty() => {
                    Some(vec!["/bin/sh".into(), "-c".into(), rest.join(" ")])
                }
                Some((k, _)) if k == "NONE" => {
                    out.ignore_image = true;
                    None
                }
                _ => {
                    return Err(usage(
                        "healthcheck.test: use [\"CMD\", …], [\"CMD-SHELL\", \"…\"] or [\"NONE\"]".into(),
                    ))
                }
            },
        };
        if let Some(command) = command.filter(|_| !h.disable) {
            let probe = Probe {
                action: Some(probe::Action::Exec(ExecProbe { command })),
                interval_ms: duration(&h.interval)?,
                timeout_ms: duration(&h.timeout)?,
                failure_threshold: h.retries,
                success_threshold: None,
                start_period_ms: duration(&h.start_period)?.unwrap_or(0),
            };
            out.liveness = Some(probe.clone());
            out.readiness = Some(probe);
        }
    }
    if let Some(p) = p {
        for (role, f) in [("startup", p.startup), ("liveness", p.liveness), ("readiness", p.readiness)] {
            if let Some(f) = f {
                *slot(&mut out, role)? = Some(f.to_proto(role)?);
            }
        }
    }
    Ok(Some(out))
}

/// `deploy.update_config` / `deploy.rollback_config`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    parallelism: Option<u64>,
    delay: Option<String>,
    order: Option<String>,
    monitor: Option<String>,
    max_failure_ratio: Option<f64>,
    failure_action: Option<String>,
}

impl PolicyFile {
    pub fn to_proto(&self) -> Result<UpdatePolicy, CliError> {
        Ok(UpdatePolicy {
            parallelism: self.parallelism,
            delay_ms: duration(&self.delay)?,
            order: self.order.clone().unwrap_or_default(),
            monitor_ms: duration(&self.monitor)?,
            max_failure_ratio: self.max_failure_ratio,
            failure_action: self.failure_action.clone().unwrap_or_default(),
        })
    }
}

/// The policy flags of one kind (update or rollback), as given.
#[derive(Default)]
pub struct PolicyFlags<'a> {
    pub parallelism: Option<u64>,
    pub delay: Option<&'a str>,
    pub order: Option<&'a str>,
    pub monitor: Option<&'a str>,
    pub max_failure_ratio: Option<f64>,
    pub failure_action: Option<&'a str>,
}

impl PolicyFlags<'_> {
    /// Sets on `p` what was given.
    pub fn apply(&self, p: &mut Option<UpdatePolicy>) -> Result<(), CliError> {
        let given = self.parallelism.is_some()
            || self.delay.is_some()
            || self.order.is_some()
            || self.monitor.is_some()
            || self.max_failure_ratio.is_some()
            || self.failure_action.is_some();
        if !given {
            return Ok(());
        }
        let p = p.get_or_insert_with(UpdatePolicy::default);
        if let Some(n) = self.parallelism {
            p.parallelism = Some(n);
        }
        if let Some(d) = self.delay {
            p.delay_ms = Some(parse_duration(d)?);
        }
        if let Some(o) = self.order {
            p.order = o.to_string();
        }
        if let Some(m) = self.monitor {
            p.monitor_ms = Some(parse_duration(m)?);
        }
        if let Some(r) = self.max_failure_ratio {
            p.max_failure_ratio = Some(r);
        }
        if let Some(a) = self.failure_action {
            p.failure_action = a.to_string();
        }
        Ok(())
    }
}

/// The schedule flags over `s`'s schedule (a new one when any is given).
pub fn apply_schedule(s: &mut ServiceSpec, f: &ServiceFlags) -> Result<(), CliError> {
    let given = f.schedule.is_some()
        || f.time_zone.is_some()
        || f.concurrency.is_some()
        || f.starting_deadline.is_some()
        || f.success_history.is_some()
        || f.failed_history.is_some()
        || f.suspend
        || f.unsuspend;
    if !given {
        return Ok(());
    }
    let c = s.cron.get_or_insert_with(CronSchedule::default);
    if let Some(v) = &f.schedule {
        c.schedule = v.clone();
    }
    if let Some(v) = &f.time_zone {
        c.time_zone = v.clone();
    }
    if let Some(v) = &f.concurrency {
        c.concurrency = v.clone();
    }
    if let Some(v) = &f.starting_deadline {
        c.starting_deadline_ms = parse_duration(v)?;
    }
    if let Some(v) = f.success_history {
        c.success_history = Some(v);
    }
    if let Some(v) = f.failed_history {
        c.failed_history = Some(v);
    }
    if f.suspend || f.unsuspend {
        c.suspend = f.suspend;
    }
    if c.schedule.is_empty() {
        return Err(usage("a schedule is needed: --schedule \"*/5 * * * *\"".into()));
    }
    Ok(())
}

/// The autoscaling flags over `s`'s autoscaling (new when any is given).
pub fn apply_autoscale(s: &mut ServiceSpec, f: &ServiceFlags) -> Result<(), CliError> {
    if f.no_autoscale {
        s.autoscale = None;
        return Ok(());
    }
    let given = f.autoscale_min.is_some()
        || f.autoscale_max.is_some()
        || f.autoscale_cpu.is_some()
        || f.autoscale_memory.is_some()
        || f.scale_down_window.is_some();
    if !given {
        return Ok(());
    }
    let a = s.autoscale.get_or_insert_with(|| Autoscale { min_replicas: 1, ..Default::default() });
    if let Some(v) = f.autoscale_min {
        a.min_replicas = v;
    }
    if let Some(v) = f.autoscale_max {
        a.max_replicas = v;
    }
    if let Some(v) = f.autoscale_cpu {
        a.cpu_percent = v;
    }
    if let Some(v) = f.autoscale_memory {
        a.memory_percent = v;
    }
    if let Some(v) = &f.scale_down_window {
        a.scale_down_window_ms = Some(parse_duration(v)?);
    }
    if a.max_replicas == 0 {
        return Err(usage("autoscaling needs --autoscale-max N (the most replicas)".into()));
    }
    Ok(())
}

/// `deploy.autoscale` of a service file.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AutoscaleFile {
    #[serde(default = "one")]
    min_replicas: u64,
    max_replicas: u64,
    /// Percent of the CPU reservation.
    #[serde(default)]
    cpu: u32,
    /// Percent of the memory reservation.
    #[serde(default)]
    memory: u32,
    scale_down_window: Option<String>,
}

fn one() -> u64 {
    1
}

impl AutoscaleFile {
    pub fn to_proto(&self) -> Result<Autoscale, CliError> {
        Ok(Autoscale {
            min_replicas: self.min_replicas,
            max_replicas: self.max_replicas,
            cpu_percent: self.cpu,
            memory_percent: self.memory,
            scale_down_window_ms: duration(&self.scale_down_window)?,
        })
    }
}

/// `deploy.schedule` of a service file.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ScheduleFile {
    cron: String,
    #[serde(default)]
    time_zone: String,
    #[serde(default)]
    concurrency: String,
    starting_deadline: Option<String>,
    success_history: Option<u32>,
    failed_history: Option<u32>,
    #[serde(default)]
    suspend: bool,
}

impl ScheduleFile {
    pub fn to_proto(&self) -> Result<CronSchedule, CliError> {
        Ok(CronSchedule {
            schedule: self.cron.clone(),
            time_zone: self.time_zone.clone(),
            concurrency: self.concurrency.clone(),
            starting_deadline_ms: duration(&self.starting_deadline)?.unwrap_or(0),
            success_history: self.success_history,
            failed_history: self.failed_history,
            suspend: self.suspend,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_flags() {
        let (role, p) = parse_probe_flag("readiness http :8080/ready interval=2s failures=1").unwrap();
        assert_eq!(role, "readiness");
        assert_eq!(p.action, Some(probe::Action::Http(HttpProbe { port: 8080, path: "/ready".into() })));
        assert_eq!((p.interval_ms, p.failure_threshold, p.timeout_ms), (Some(2000), Some(1), None));
        let (_, p) = parse_probe_flag("liveness exec cat /tmp/ok").unwrap();
        assert_eq!(p.action, Some(probe::Action::Exec(ExecProbe { command: vec!["cat".into(), "/tmp/ok".into()] })));
        let (_, p) = parse_probe_flag("startup shell test -f /a && test -f /b start=10s").unwrap();
        assert_eq!(p.start_period_ms, 10_000);
        let Some(probe::Action::Exec(e)) = p.action else { panic!() };
        assert_eq!(e.command[2], "test -f /a && test -f /b");
        assert!(parse_probe_flag("readiness tcp 5432").is_ok());
        for (bad, want) in [
            ("ready http 80", "probe role \"ready\""),
            ("readiness ftp 21", "not exec, shell, http or tcp"),
            ("readiness http", "ROLE KIND TARGET"),
            ("readiness tcp x", "not a port number"),
            ("liveness exec x failures=many", "not a whole number"),
        ] {
            let e = parse_probe_flag(bad).unwrap_err().to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }
}
