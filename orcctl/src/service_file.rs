//! Service files: YAML in the spirit of a compose service.
//!
//! ```yaml
//! name: web
//! image: registry:5000/web:1
//! entrypoint: ["httpd"]            # replaces the image's entrypoint
//! command: ["-f", "-p", "8080"]     # replaces the image's cmd
//! environment: {MODE: prod}         # or ["MODE=prod"]
//! user: www
//! working_dir: /srv
//! ports: ["8080:80", "53/udp", {target: 80, published: 8081, mode: local}]
//! labels: {team: web}
//! deploy:
//!   mode: replicated                # global, replicated-job, global-job
//!   max_concurrent: 2               # replicated jobs: tasks at once
//!   stateful: true                  # replicated: identity per slot, ordered, exclusive
//!   schedule: {cron: "0 3 * * *", time_zone: Europe/Berlin, concurrency: forbid,
//!              starting_deadline: 10m, success_history: 3, failed_history: 1}
//!   replicas: 3
//!   autoscale: {min_replicas: 2, max_replicas: 10, cpu: 70, memory: 80, scale_down_window: 5m}
//!   resources:
//!     limits: {cpus: 0.5, memory: 64m, pids: 100}
//!     reservations: {cpus: 0.25, memory: 32m}
//!   placement:
//!     constraints: ["node.labels.zone==eu"]
//!   restart_policy: {condition: on-failure, delay: 5s, max_attempts: 3, window: 2m}
//!   update_config: {parallelism: 2, delay: 10s, order: start-first, monitor: 5s,
//!                   max_failure_ratio: 0, failure_action: rollback}
//!   rollback_config: {parallelism: 0, order: stop-first}
//! healthcheck:                      # compose: liveness and readiness
//!   test: ["CMD", "wget", "-q", "-O-", "http://127.0.0.1:8080/health"]
//!   interval: 10s
//!   timeout: 2s
//!   retries: 3
//!   start_period: 5s
//! probes:                           # per role, over healthcheck
//!   startup: {exec: ["cat", "/tmp/started"], failure_threshold: 30}
//!   readiness: {http: {port: 8080, path: /ready}, interval: 2s}
//!   liveness: {tcp: 8080}
//! network_mode: host                # the node's network (admins); default: the overlay
//! networks: [front, back]           # networks joined, in order; default: [default]
//! secrets: [db, {source: tls, target: /etc/tls/key.pem, uid: "100", gid: "100", mode: 0400}]
//! configs: [{source: nginx.conf, target: /etc/nginx/nginx.conf}]   # read-only
//! volumes: ["data:/data", "logs:/var/log:ro", "/cache"]   # named, or anonymous
//! tmpfs: [/tmp]
//! stop_grace_period: 30s
//! stop_drain_period: 2s
//! stop_signal: SIGINT
//! ```

use std::collections::BTreeMap;

use orc_proto::cluster::{FileRef, ServiceMount, ServiceRestartPolicy, ServiceSpec};
use serde::Deserialize;

use crate::error::CliError;
use crate::lifecycle::{health_from_file, AutoscaleFile, Healthcheck, PolicyFile, Probes, ScheduleFile};
use crate::parse::{parse_bytes, parse_duration, parse_port};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct File {
    name: Option<String>,
    image: Option<String>,
    entrypoint: Option<StringOrList>,
    command: Option<StringOrList>,
    #[serde(default)]
    environment: Env,
    user: Option<String>,
    working_dir: Option<String>,
    #[serde(default)]
    ports: Vec<PortText>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    deploy: Deploy,
    healthcheck: Option<Healthcheck>,
    probes: Option<Probes>,
    stop_grace_period: Option<String>,
    /// orc's: how long a task is out of the rotation before its stop signal.
    stop_drain_period: Option<String>,
    stop_signal: Option<String>,
    /// Compose's `network_mode: host` (the default: the overlay).
    network_mode: Option<String>,
    /// Compose's `networks` (a list of names).
    #[serde(default)]
    networks: Vec<String>,
    /// Compose's `secrets` and `configs` (short and long syntax).
    #[serde(default)]
    secrets: Vec<FileMount>,
    #[serde(default)]
    configs: Vec<FileMount>,
    /// Compose's short syntax: `NAME:/PATH[:ro]`, or `/PATH` (anonymous).
    #[serde(default)]
    volumes: Vec<String>,
    #[serde(default)]
    tmpfs: Vec<String>,
}

/// A compose `volumes` entry as a mount.
fn volume_entry(s: &str) -> Result<ServiceMount, CliError> {
    let parts: Vec<&str> = s.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [t] => ("", *t, ""),
        [src, t] => (*src, *t, ""),
        [src, t, m] => (*src, *t, *m),
        _ => return Err(CliError::Usage(format!("volumes: {s:?} is not NAME:/PATH[:ro] or /PATH"))),
    };
    if source.starts_with('/') || source.starts_with('.') {
        return Err(CliError::Usage(format!(
            "volumes: {s:?} names a host path: services mount volumes (`orcctl volume create NAME`)"
        )));
    }
    let read_only = match mode {
        "" | "rw" => false,
        "ro" => true,
        m => return Err(CliError::Usage(format!("volumes: {s:?}: mode {m:?} is not ro or rw"))),
    };
    Ok(ServiceMount { r#type: "volume".into(), source: source.into(), target: target.into(), read_only, size: 0 })
}

#[derive(Deserialize)]
#[serde(untagged)]
enum FileMount {
    Name(String),
    Long(LongFileMount),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LongFileMount {
    source: String,
    target: Option<String>,
    uid: Option<Number>,
    gid: Option<Number>,
    /// Octal: `0400` (as YAML 1.1 and compose read it) or `"0400"`.
    mode: Option<Number>,
}

impl FileMount {
    fn to_proto(&self, what: &str) -> Result<FileRef, CliError> {
        let l = match self {
            Self::Name(n) => return Ok(FileRef { name: n.clone(), ..Default::default() }),
            Self::Long(l) => l,
        };
        let id = |n: &Option<Number>, k: &str| -> Result<u32, CliError> {
            let text = match n {
                None => return Ok(0),
                Some(Number::Float(f)) => f.to_string(),
                Some(Number::Text(t)) => t.clone(),
            };
            let radix = if k == "mode" { 8 } else { 10 };
            u32::from_str_radix(text.trim_start_matches("0o"), radix)
                .map_err(|_| CliError::Usage(format!("{what} {}: {k} {text:?} is not a number", l.source)))
        };
        Ok(FileRef {
            name: l.source.clone(),
            target: l.target.clone().unwrap_or_default(),
            uid: id(&l.uid, "uid")?,
            gid: id(&l.gid, "gid")?,
            mode: id(&l.mode, "mode")?,
            version: 0,
        })
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StringOrList {
    One(String),
    List(Vec<String>),
}

#[derive(Deserialize, Default)]
#[serde(untagged)]
enum Env {
    #[default]
    None,
    List(Vec<String>),
    Map(BTreeMap<String, serde_yaml_ng::Value>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum PortText {
    Text(String),
    Number(u16),
    /// Compose's long syntax.
    Long(LongPort),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LongPort {
    target: u16,
    published: Option<u16>,
    protocol: Option<String>,
    mode: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Deploy {
    mode: Option<String>,
    replicas: Option<u64>,
    max_concurrent: Option<u64>,
    #[serde(default)]
    stateful: bool,
    #[serde(default)]
    resources: Resources,
    #[serde(default)]
    placement: Placement,
    restart_policy: Option<Restart>,
    update_config: Option<PolicyFile>,
    rollback_config: Option<PolicyFile>,
    schedule: Option<ScheduleFile>,
    autoscale: Option<AutoscaleFile>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Resources {
    #[serde(default)]
    limits: Amounts,
    #[serde(default)]
    reservations: Amounts,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Amounts {
    cpus: Option<Number>,
    memory: Option<Number>,
    pids: Option<i64>,
}

/// `0.5` or `"0.5"`; `64m` or `67108864`.
#[derive(Deserialize)]
#[serde(untagged)]
enum Number {
    Float(f64),
    Text(String),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Placement {
    #[serde(default)]
    constraints: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Restart {
    condition: Option<String>,
    delay: Option<String>,
    max_attempts: Option<u32>,
    window: Option<String>,
}

fn list(v: Option<StringOrList>) -> Vec<String> {
    match v {
        None => vec![],
        Some(StringOrList::One(s)) => s.split_whitespace().map(str::to_string).collect(),
        Some(StringOrList::List(l)) => l,
    }
}

fn cpus(n: Option<Number>) -> Result<f64, CliError> {
    match n {
        None => Ok(0.0),
        Some(Number::Float(f)) => Ok(f),
        Some(Number::Text(t)) => t.trim().parse().map_err(|_| CliError::Usage(format!("cpus {t:?} is not a number"))),
    }
}

fn memory(n: Option<Number>) -> Result<u64, CliError> {
    match n {
        None => Ok(0),
        Some(Number::Float(f)) => Ok(f as u64),
        Some(Number::Text(t)) => parse_bytes(&t),
    }
}

/// Parses the service file `text` read from `origin`; every error names `origin`.
pub fn parse(text: &str, origin: &str) -> Result<ServiceSpec, CliError> {
    parse_named(text, origin).map_err(|e| match e {
        CliError::Usage(m) if !m.starts_with(origin) => CliError::Usage(format!("{origin}: {m}")),
        e => e,
    })
}

fn parse_named(text: &str, origin: &str) -> Result<ServiceSpec, CliError> {
    let f: File = serde_yaml_ng::from_str(text).map_err(|e| CliError::Usage(format!("{origin}: {e}")))?;
    let env = match f.environment {
        Env::None => vec![],
        Env::List(l) => l,
        Env::Map(m) => m
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    serde_yaml_ng::Value::String(s) => s,
                    serde_yaml_ng::Value::Null => String::new(),
                    other => serde_yaml_ng::to_string(&other).unwrap_or_default().trim().to_string(),
                };
                format!("{k}={v}")
            })
            .collect(),
    };
    let ports = f
        .ports
        .iter()
        .map(|p| match p {
            PortText::Text(t) => parse_port(t),
            PortText::Number(n) => parse_port(&n.to_string()),
            PortText::Long(l) => {
                let mut text = format!("target={}", l.target);
                for (k, v) in [
                    ("published", l.published.map(|p| p.to_string())),
                    ("protocol", l.protocol.clone()),
                    ("mode", l.mode.clone()),
                ] {
                    if let Some(v) = v {
                        text.push_str(&format!(",{k}={v}"));
                    }
                }
                parse_port(&text)
            }
        })
        .collect::<Result<_, _>>()?;
    let d = f.deploy;
    let restart = match d.restart_policy {
        None => None,
        Some(r) => Some(ServiceRestartPolicy {
            condition: r.condition.unwrap_or_default(),
            // Compose's default delay.
            delay_ms: r.delay.as_deref().map(parse_duration).transpose()?.unwrap_or(5_000),
            max_attempts: r.max_attempts.unwrap_or(0),
            window_ms: r.window.as_deref().map(parse_duration).transpose()?.unwrap_or(0),
        }),
    };
    let health = health_from_file(f.healthcheck, f.probes)?;
    let update = d.update_config.as_ref().map(|p| p.to_proto()).transpose()?;
    let rollback = d.rollback_config.as_ref().map(|p| p.to_proto()).transpose()?;
    Ok(ServiceSpec {
        namespace: String::new(),
        health,
        update,
        rollback,
        stop_grace_ms: f.stop_grace_period.as_deref().map(parse_duration).transpose()?,
        stop_drain_ms: f.stop_drain_period.as_deref().map(parse_duration).transpose()?,
        stop_signal: f.stop_signal.unwrap_or_default(),
        network: f.network_mode.unwrap_or_default(),
        networks: f.networks,
        secrets: f.secrets.iter().map(|s| s.to_proto("secret")).collect::<Result<_, _>>()?,
        configs: f.configs.iter().map(|s| s.to_proto("config")).collect::<Result<_, _>>()?,
        mounts: f
            .volumes
            .iter()
            .map(|v| volume_entry(v))
            .chain(
                f.tmpfs
                    .iter()
                    .map(|t| Ok(ServiceMount { r#type: "tmpfs".into(), target: t.clone(), ..Default::default() })),
            )
            .collect::<Result<_, _>>()?,
        name: f.name.unwrap_or_default(),
        image: f.image.unwrap_or_default(),
        command: list(f.entrypoint),
        args: list(f.command),
        env,
        user: f.user.unwrap_or_default(),
        workdir: f.working_dir.unwrap_or_default(),
        mode: d.mode.unwrap_or_default(),
        replicas: d.replicas.unwrap_or(1),
        max_concurrent: d.max_concurrent.unwrap_or(0),
        stateful: d.stateful,
        cron: d.schedule.as_ref().map(|c| c.to_proto()).transpose()?,
        autoscale: d.autoscale.as_ref().map(|a| a.to_proto()).transpose()?,
        reserve_cpus: cpus(d.resources.reservations.cpus)?,
        reserve_memory: memory(d.resources.reservations.memory)?,
        limit_cpus: cpus(d.resources.limits.cpus)?,
        limit_memory: memory(d.resources.limits.memory)?,
        limit_pids: d.resources.limits.pids.unwrap_or(0),
        constraints: d.placement.constraints,
        restart,
        ports,
        labels: f.labels.into_iter().collect(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn secrets_and_configs_in_short_and_long_syntax() {
        let spec = parse(
            "name: w\nimage: i\nsecrets: [db, {source: tls, target: /k, uid: \"100\", gid: 7, mode: 0400}]\n\
             configs: [{source: c, mode: \"0440\"}]\n",
            "f.yaml",
        )
        .unwrap();
        assert_eq!(spec.secrets[0].name, "db");
        let t = &spec.secrets[1];
        assert_eq!((t.name.as_str(), t.target.as_str(), t.uid, t.gid, t.mode), ("tls", "/k", 100, 7, 0o400));
        assert_eq!(spec.configs[0].mode, 0o440);
        let e = parse("name: w\nimage: i\nsecrets: [{source: x, mode: 9}]\n", "f.yaml").unwrap_err().to_string();
        assert!(e.contains("mode \"9\" is not a number"), "{e}");
    }

    use super::*;

    #[test]
    fn a_compose_like_file() {
        let s = parse(
            r#"
name: web
image: registry:5000/web:1
entrypoint: httpd
command: ["-f", "-p", "8080"]
environment: {MODE: prod, N: 3}
ports: ["8080:8080", "53/udp", 9000, {target: 80, published: 8081, mode: local}]
deploy:
  replicas: 3
  resources:
    limits: {cpus: 0.5, memory: 64m, pids: 100}
    reservations: {cpus: "0.25", memory: 33554432}
  placement: {constraints: ["node.labels.zone==eu"]}
  restart_policy: {condition: on-failure, delay: 5s, max_attempts: 3, window: 2m}
"#,
            "web.yaml",
        )
        .unwrap();
        assert_eq!(s.command, ["httpd"]);
        assert_eq!(s.args, ["-f", "-p", "8080"]);
        assert_eq!(s.env, ["MODE=prod", "N=3"]);
        assert_eq!(s.ports.len(), 4);
        assert_eq!((s.ports[1].published, s.ports[1].protocol.as_str()), (53, "udp"));
        assert_eq!((s.ports[3].published, s.ports[3].target, s.ports[3].mode.as_str()), (8081, 80, "local"));
        assert_eq!((s.replicas, s.limit_cpus, s.limit_memory, s.limit_pids), (3, 0.5, 64 << 20, 100));
        assert_eq!((s.reserve_cpus, s.reserve_memory), (0.25, 32 << 20));
        let r = s.restart.unwrap();
        assert_eq!((r.condition.as_str(), r.delay_ms, r.max_attempts, r.window_ms), ("on-failure", 5000, 3, 120_000));
    }

    #[test]
    fn lifecycle_fields() {
        let s = parse(
            r#"
name: web
image: web:1
healthcheck: {test: "cat /tmp/ok", interval: 3s, retries: 2}
probes:
  readiness: {http: {port: 8080, path: /ready}, interval: 2s, success_threshold: 2}
stop_grace_period: 30s
stop_signal: SIGINT
deploy:
  update_config: {parallelism: 2, delay: 10s, order: start-first, failure_action: rollback}
  rollback_config: {parallelism: 0}
"#,
            "web.yaml",
        )
        .unwrap();
        let h = s.health.unwrap();
        let live = h.liveness.unwrap();
        assert_eq!((live.interval_ms, live.failure_threshold), (Some(3000), Some(2)));
        let ready = h.readiness.unwrap();
        assert_eq!((ready.interval_ms, ready.success_threshold), (Some(2000), Some(2)), "probes: wins");
        let u = s.update.unwrap();
        assert_eq!((u.parallelism, u.delay_ms, u.order.as_str()), (Some(2), Some(10_000), "start-first"));
        assert_eq!(u.failure_action, "rollback");
        assert_eq!(s.rollback.unwrap().parallelism, Some(0));
        assert_eq!((s.stop_grace_ms, s.stop_signal.as_str()), (Some(30_000), "SIGINT"));
        let s = parse(
            "name: c\ndeploy: {mode: replicated-job, schedule: {cron: \"0 3 * * *\", time_zone: Europe/Berlin, \
             concurrency: forbid, starting_deadline: 10m, success_history: 5}}\n",
            "c.yaml",
        )
        .unwrap();
        let c = s.cron.unwrap();
        assert_eq!(
            (c.schedule.as_str(), c.time_zone.as_str(), c.concurrency.as_str()),
            ("0 3 * * *", "Europe/Berlin", "forbid")
        );
        assert_eq!((c.starting_deadline_ms, c.success_history, c.failed_history), (600_000, Some(5), None));
        let s = parse("name: w\ndeploy: {autoscale: {max_replicas: 8, cpu: 70, scale_down_window: 1m}}\n", "a.yaml")
            .unwrap();
        let a = s.autoscale.unwrap();
        assert_eq!((a.min_replicas, a.max_replicas, a.cpu_percent, a.memory_percent), (1, 8, 70, 0));
        assert_eq!(a.scale_down_window_ms, Some(60_000));
        let e = parse("name: w\nprobes: {liveness: {tcp: 80, http: {port: 80}}}\n", "p.yaml").unwrap_err().to_string();
        assert!(e.contains("probes.liveness: give exactly one"), "{e}");
        let e = parse("name: w\ndeploy: {update_config: {paralelism: 2}}\n", "u.yaml").unwrap_err().to_string();
        assert!(e.contains("paralelism"), "{e}");
    }

    #[test]
    fn mistakes_name_the_file_and_field() {
        let e = parse("name: web\nimage: x\nreplicas: 3\n", "web.yaml").unwrap_err().to_string();
        assert!(e.contains("web.yaml") && e.contains("replicas"), "{e}");
        let e = parse("name: web\ndeploy: {restart_policy: {delay: soon}}\n", "f.yaml").unwrap_err().to_string();
        assert!(e.contains("not a duration") && e.starts_with("f.yaml: "), "{e}");
        let e = parse("name: web\nports: [\"80:x\"]\n", "p.yaml").unwrap_err().to_string();
        assert!(e.starts_with("p.yaml: ") && e.contains("not a port number"), "{e}");
        assert!(parse_port("80:x").is_err());
    }
}
