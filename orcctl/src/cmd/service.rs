//! `orcctl service …`: services on any manager (the first of `--nodes`, or
//! of the context's endpoints, that answers); writes go to the leader.

use futures::StreamExt;
use orc_proto::cluster::services_client::ServicesClient;
use orc_proto::cluster::*;
use serde_json::json;

use super::status_err;
use super::watch::Shown;
use crate::cli::{Output, ServiceCommand, ServiceCreate, ServiceFlags, ServiceUpdate};
use crate::connect::{manager, Trust};
use crate::error::CliError;
use crate::lifecycle::{self, PolicyFlags};
use crate::output::{ago, table};
use crate::parse::{key_value, parse_bytes, parse_duration, parse_file_ref, parse_mount, parse_port};
use crate::service_file;

/// Mounts `f`, in place of a mount of the same name.
fn put_file(list: &mut Vec<FileRef>, f: FileRef) {
    match list.iter_mut().find(|x| x.name == f.name) {
        Some(x) => *x = f,
        None => list.push(f),
    }
}

fn apply_flags(s: &mut ServiceSpec, f: &ServiceFlags) -> Result<(), CliError> {
    if let Some(e) = &f.entrypoint {
        s.command = e.split_whitespace().map(str::to_string).collect();
    }
    if let Some(m) = &f.mode {
        s.mode = m.clone();
    }
    if let Some(r) = f.replicas {
        s.replicas = r;
    }
    if let Some(m) = f.max_concurrent {
        s.max_concurrent = m;
    }
    if let Some(st) = f.stateful {
        s.stateful = st;
    }
    match f.network.as_slice() {
        [] => {}
        [host] if host == "host" => {
            s.network = "host".into();
            s.networks.clear();
        }
        nets if nets.iter().any(|n| n == "host") => {
            return Err(CliError::Usage("--network host is the node's own network: it joins no other".into()))
        }
        nets => {
            s.network = "overlay".into();
            // `overlay` was the name of the default network's mode.
            s.networks = nets.iter().map(|n| if n == "overlay" { "default".into() } else { n.clone() }).collect();
        }
    }
    for m in &f.mount {
        let m = parse_mount(m)?;
        match s.mounts.iter_mut().find(|x| x.target == m.target) {
            Some(x) => *x = m,
            None => s.mounts.push(m),
        }
    }
    for spec in &f.secret {
        put_file(&mut s.secrets, parse_file_ref(spec, "secret")?);
    }
    for spec in &f.config {
        put_file(&mut s.configs, parse_file_ref(spec, "config")?);
    }
    lifecycle::apply_schedule(s, f)?;
    lifecycle::apply_autoscale(s, f)?;
    if let Some(u) = &f.user {
        s.user = u.clone();
    }
    if let Some(w) = &f.workdir {
        s.workdir = w.clone();
    }
    if let Some(c) = f.reserve_cpu {
        s.reserve_cpus = c;
    }
    if let Some(m) = &f.reserve_memory {
        s.reserve_memory = parse_bytes(m)?;
    }
    if let Some(c) = f.limit_cpu {
        s.limit_cpus = c;
    }
    if let Some(m) = &f.limit_memory {
        s.limit_memory = parse_bytes(m)?;
    }
    if let Some(p) = f.limit_pids {
        s.limit_pids = p;
    }
    for r in &f.probe_rm {
        let h = s.health.get_or_insert_with(Default::default);
        *lifecycle::slot(h, r)? = None;
    }
    for text in &f.probe {
        let (role, p) = lifecycle::parse_probe_flag(text)?;
        let h = s.health.get_or_insert_with(Default::default);
        *lifecycle::slot(h, &role)? = Some(p);
    }
    if f.no_healthcheck {
        s.health.get_or_insert_with(Default::default).ignore_image = true;
    }
    let update = PolicyFlags {
        parallelism: f.update_parallelism,
        delay: f.update_delay.as_deref(),
        order: f.update_order.as_deref(),
        monitor: f.update_monitor.as_deref(),
        max_failure_ratio: f.update_max_failure_ratio,
        failure_action: f.update_failure_action.as_deref(),
    };
    update.apply(&mut s.update)?;
    let rollback = PolicyFlags {
        parallelism: f.rollback_parallelism,
        delay: f.rollback_delay.as_deref(),
        order: f.rollback_order.as_deref(),
        monitor: f.rollback_monitor.as_deref(),
        max_failure_ratio: f.rollback_max_failure_ratio,
        failure_action: f.rollback_failure_action.as_deref(),
    };
    rollback.apply(&mut s.rollback)?;
    if let Some(g) = &f.stop_grace_period {
        s.stop_grace_ms = Some(parse_duration(g)?);
    }
    if let Some(d) = &f.stop_drain {
        s.stop_drain_ms = Some(parse_duration(d)?);
    }
    if let Some(sig) = &f.stop_signal {
        s.stop_signal = sig.clone();
    }
    let any = f.restart_condition.is_some()
        || f.restart_delay.is_some()
        || f.restart_max_attempts.is_some()
        || f.restart_window.is_some();
    if !any {
        return Ok(());
    }
    // Fields not given keep their value (or the 5 s default delay).
    let r = s.restart.get_or_insert_with(|| ServiceRestartPolicy { delay_ms: 5_000, ..Default::default() });
    if let Some(c) = &f.restart_condition {
        r.condition = c.clone();
    }
    if let Some(d) = &f.restart_delay {
        r.delay_ms = parse_duration(d)?;
    }
    if let Some(n) = f.restart_max_attempts {
        r.max_attempts = n;
    }
    if let Some(w) = &f.restart_window {
        r.window_ms = parse_duration(w)?;
    }
    Ok(())
}

fn read_file(path: &std::path::Path) -> Result<ServiceSpec, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?;
    service_file::parse(&text, &path.display().to_string())
}

fn create_spec(a: &ServiceCreate) -> Result<ServiceSpec, CliError> {
    let mut s = match &a.file {
        Some(f) => read_file(f)?,
        None => ServiceSpec { replicas: 1, ..Default::default() },
    };
    if let Some(n) = &a.name {
        s.name = n.clone();
    }
    if let Some(i) = &a.image {
        s.image = i.clone();
    }
    if !a.args.is_empty() {
        s.args = a.args.clone();
    }
    s.env.extend(a.env.iter().cloned());
    s.constraints.extend(a.constraint.iter().cloned());
    for p in &a.publish {
        s.ports.push(parse_port(p)?);
    }
    for l in &a.label {
        let (k, v) = key_value(l, "label")?;
        s.labels.insert(k, v);
    }
    apply_flags(&mut s, &a.flags)?;
    if s.name.is_empty() {
        return Err(CliError::Usage("a service needs a name: --name NAME (or name: in the file)".into()));
    }
    if s.image.is_empty() {
        return Err(CliError::Usage("a service needs an image: orcctl service create --name web IMAGE".into()));
    }
    Ok(s)
}

fn update_spec(mut s: ServiceSpec, a: &ServiceUpdate) -> Result<ServiceSpec, CliError> {
    if let Some(f) = &a.file {
        let mut new = read_file(f)?;
        if new.name.is_empty() {
            new.name = s.name.clone();
        }
        s = new;
    }
    if let Some(i) = &a.image {
        s.image = i.clone();
    }
    if let Some(args) = &a.args {
        s.args = args.clone();
    }
    for k in &a.env_rm {
        s.env.retain(|e| e.split('=').next() != Some(k.as_str()));
    }
    for e in &a.env_add {
        let (k, _) = key_value(e, "environment entry")?;
        s.env.retain(|x| x.split('=').next() != Some(k.as_str()));
        s.env.push(e.clone());
    }
    s.constraints.retain(|c| !a.constraint_rm.contains(c));
    s.constraints.extend(a.constraint_add.iter().cloned());
    s.ports.retain(|p| !a.publish_rm.iter().any(|r| u32::from(*r) == p.published));
    for p in &a.publish_add {
        s.ports.push(parse_port(p)?);
    }
    for k in &a.label_rm {
        s.labels.remove(k);
    }
    for l in &a.label_add {
        let (k, v) = key_value(l, "label")?;
        s.labels.insert(k, v);
    }
    s.mounts.retain(|m| !a.mount_rm.contains(&m.target));
    s.secrets.retain(|f| !a.secret_rm.contains(&f.name));
    s.configs.retain(|f| !a.config_rm.contains(&f.name));
    apply_flags(&mut s, &a.flags)?;
    Ok(s)
}

fn mode_text(s: &Service) -> (String, String) {
    let spec = s.spec.clone().unwrap_or_default();
    let mut replicas = format!("{}/{}", s.running_tasks, s.desired_tasks);
    if spec.mode.ends_with("-job") {
        replicas.push_str(&format!(" ({}/{} completed)", s.completed_tasks, s.desired_tasks));
    }
    (spec.mode, replicas)
}

fn service_json(s: &Service) -> serde_json::Value {
    let spec = s.spec.clone().unwrap_or_default();
    json!({"id": s.id, "name": spec.name, "namespace": spec.namespace, "image": spec.image, "mode": spec.mode, "replicas": spec.replicas,
        "running": s.running_tasks, "desired": s.desired_tasks, "completed": s.completed_tasks,
        "max_concurrent": spec.max_concurrent, "stateful": spec.stateful, "network": spec.network, "networks": spec.networks, "spec_version": s.spec_version,
        "created_ms": s.created_ms, "updated_ms": s.updated_ms, "vips": s.vips,
        "spec": spec_json(&spec),
        "autoscale_status": s.autoscale_status.as_ref().map(autoscale_status_json),
        "cron_status": s.cron_status.as_ref().map(|c| json!({"last_schedule_ms": c.last_schedule_ms, "run": c.run,
            "message": c.message, "next_ms": c.next_ms})),
        "update_status": s.update_status.as_ref().map(|u| json!({"state": u.state, "started_ms": u.started_ms,
            "completed_ms": u.completed_ms, "message": u.message})),
        "updated_tasks": s.updated_tasks,
        "events": s.events.iter().map(super::events::event_json).collect::<Vec<_>>()})
}

fn autoscale_status_json(a: &AutoscaleStatus) -> serde_json::Value {
    json!({"checked_ms": a.checked_ms, "cpu_percent": a.cpu_percent, "memory_percent": a.memory_percent,
        "measured": a.measured, "running": a.running, "recommended": a.recommended, "message": a.message,
        "decisions": a.decisions.iter().map(|d| json!({"at_ms": d.at_ms, "from": d.from, "to": d.to,
            "reason": d.reason})).collect::<Vec<_>>()})
}

fn file_json(f: &FileRef) -> serde_json::Value {
    json!({"name": f.name, "version": f.version, "target": f.target, "uid": f.uid, "gid": f.gid,
        "mode": format!("{:04o}", if f.mode == 0 { 0o444 } else { f.mode })})
}

fn spec_json(spec: &ServiceSpec) -> serde_json::Value {
    let r = spec.restart.clone().unwrap_or_default();
    let mut v = json!({"autoscale": spec.autoscale.as_ref().map(|a| json!({"min_replicas": a.min_replicas,
        "max_replicas": a.max_replicas, "cpu_percent": a.cpu_percent, "memory_percent": a.memory_percent,
        "scale_down_window_ms": a.scale_down_window_ms}))});
    let rest = json!({"command": spec.command, "args": spec.args, "env": spec.env, "user": spec.user, "workdir": spec.workdir,
        "reserve_cpus": spec.reserve_cpus, "reserve_memory": spec.reserve_memory, "limit_cpus": spec.limit_cpus,
        "limit_memory": spec.limit_memory, "limit_pids": spec.limit_pids, "constraints": spec.constraints,
        "restart": {"condition": r.condition, "delay_ms": r.delay_ms, "max_attempts": r.max_attempts, "window_ms": r.window_ms},
        "ports": spec.ports.iter().map(|p| json!({"published": p.published, "target": p.target, "protocol": p.protocol, "mode": p.mode})).collect::<Vec<_>>(),
        "labels": spec.labels,
        "secrets": spec.secrets.iter().map(file_json).collect::<Vec<_>>(),
        "configs": spec.configs.iter().map(file_json).collect::<Vec<_>>(),
        "mounts": spec.mounts.iter().map(|m| json!({"type": m.r#type, "source": m.source, "target": m.target,
            "read_only": m.read_only, "size": m.size})).collect::<Vec<_>>(),
        "health": spec.health.as_ref().map(health_json),
        "update": spec.update.as_ref().map(policy_json), "rollback": spec.rollback.as_ref().map(policy_json),
        "stop_grace_ms": spec.stop_grace_ms, "stop_signal": spec.stop_signal, "stop_drain_ms": spec.stop_drain_ms,
        "cron": spec.cron.as_ref().map(|c| json!({"schedule": c.schedule, "time_zone": c.time_zone,
            "concurrency": c.concurrency, "starting_deadline_ms": c.starting_deadline_ms,
            "success_history": c.success_history, "failed_history": c.failed_history, "suspend": c.suspend}))});
    if let (Some(v), serde_json::Value::Object(rest)) = (v.as_object_mut(), rest) {
        v.extend(rest);
    }
    v
}

fn probe_json(p: &Probe) -> serde_json::Value {
    let action = match &p.action {
        Some(probe::Action::Exec(e)) => json!({"exec": e.command}),
        Some(probe::Action::Http(h)) => json!({"http": {"port": h.port, "path": h.path}}),
        Some(probe::Action::Tcp(t)) => json!({"tcp": t.port}),
        None => json!({}),
    };
    json!({"action": action, "interval_ms": p.interval_ms, "timeout_ms": p.timeout_ms,
        "failure_threshold": p.failure_threshold, "success_threshold": p.success_threshold,
        "start_period_ms": p.start_period_ms})
}

fn health_json(h: &HealthChecks) -> serde_json::Value {
    json!({"startup": h.startup.as_ref().map(probe_json), "liveness": h.liveness.as_ref().map(probe_json),
        "readiness": h.readiness.as_ref().map(probe_json), "ignore_image": h.ignore_image})
}

fn policy_json(p: &UpdatePolicy) -> serde_json::Value {
    json!({"parallelism": p.parallelism, "delay_ms": p.delay_ms, "order": p.order, "monitor_ms": p.monitor_ms,
        "max_failure_ratio": p.max_failure_ratio, "failure_action": p.failure_action})
}

/// `updating: 3/6 tasks updated` and the reason when there is one.
pub fn update_line(s: &Service) -> String {
    match &s.update_status {
        None => "never updated".into(),
        Some(u) => {
            let mut line = format!("{}: {}/{} tasks updated", u.state, s.updated_tasks, s.desired_tasks);
            if !u.message.is_empty() {
                line.push_str(&format!(" ({})", u.message));
            }
            line
        }
    }
}

fn task_json(t: &Task) -> serde_json::Value {
    json!({"id": t.id, "service": t.service, "namespace": t.namespace, "slot": t.slot, "node_id": t.node_id, "node": t.node_hostname,
        "desired": t.desired, "state": t.state, "message": t.message, "error": t.error, "container": t.container,
        "exit_code": t.exit_code, "spec_version": t.spec_version, "created_ms": t.created_ms, "updated_ms": t.updated_ms,
        "health": t.health, "probe": t.probe, "run": t.run, "address": t.address, "addresses": t.addresses,
        "ready_ms": t.ready_ms})
}

fn ports_text(spec: &ServiceSpec) -> String {
    let port = |p: &orc_proto::cluster::Port| {
        let target = if p.target == p.published { String::new() } else { format!("->{}", p.target) };
        let mode = if p.mode.is_empty() || p.mode == "ingress" { String::new() } else { format!(" ({})", p.mode) };
        format!("{}{target}/{}{mode}", p.published, p.protocol)
    };
    spec.ports.iter().map(port).collect::<Vec<_>>().join(",")
}

pub async fn run(cmd: ServiceCommand, candidates: &[String], trust: &Trust, out: Output) -> Result<(), CliError> {
    let (addr, channel) = manager(candidates, trust).await?;
    let mut c = ServicesClient::new(crate::connect::scoped(channel.clone(), trust)?);
    let e = status_err(&addr);
    match cmd {
        ServiceCommand::Create(a) => {
            let spec = create_spec(&a)?;
            let s = c.create(CreateServiceRequest { spec: Some(spec) }).await.map_err(&e)?.into_inner();
            match out {
                Output::Json => println!("{}", service_json(&s)),
                Output::Table => println!("{}", s.id),
            }
        }
        ServiceCommand::Update(a) if a.pause || a.resume => {
            let control = if a.pause { UpdateControl::Pause } else { UpdateControl::Resume };
            let req =
                UpdateServiceRequest { service: a.service.clone(), control: control.into(), ..Default::default() };
            let s = c.update(req).await.map_err(&e)?.into_inner();
            match out {
                Output::Json => println!("{}", service_json(&s)),
                Output::Table => println!("{}: {}", a.service, update_line(&s)),
            }
            if a.resume && !a.detach {
                super::rollout::follow(&mut c, &e, &s, out).await?;
            }
        }
        ServiceCommand::Update(a) => {
            let cur = c.inspect(InspectServiceRequest { service: a.service.clone() }).await.map_err(&e)?.into_inner();
            let spec = update_spec(cur.spec.clone().unwrap_or_default(), &a)?;
            let req = UpdateServiceRequest {
                service: cur.id.clone(),
                spec: Some(spec),
                expect_version: cur.spec_version,
                ..Default::default()
            };
            let s = c.update(req).await.map_err(&e)?.into_inner();
            match out {
                Output::Json => println!("{}", service_json(&s)),
                Output::Table => println!("{} updated (version {})", a.service, s.spec_version),
            }
            if s.spec_version != cur.spec_version && !a.detach {
                super::rollout::follow(&mut c, &e, &s, out).await?;
            }
        }
        ServiceCommand::Rollback { service, detach } => {
            let s = c.rollback(RollbackServiceRequest { service: service.clone() }).await.map_err(&e)?.into_inner();
            match out {
                Output::Json => println!("{}", service_json(&s)),
                Output::Table => println!("{service} rolling back (version {})", s.spec_version),
            }
            if !detach {
                super::rollout::follow(&mut c, &e, &s, out).await?;
            }
        }
        ServiceCommand::Scale { pairs } => {
            for p in &pairs {
                let (name, n) = p
                    .split_once('=')
                    .and_then(|(n, r)| r.parse::<u64>().ok().map(|r| (n, r)))
                    .ok_or_else(|| CliError::Usage(format!("{p:?} is not SERVICE=REPLICAS")))?;
                let cur = c.inspect(InspectServiceRequest { service: name.into() }).await.map_err(&e)?.into_inner();
                let mut spec = cur.spec.clone().unwrap_or_default();
                if spec.mode.starts_with("global") {
                    return Err(CliError::Usage(format!(
                        "{name} is a global service: it runs one task per node and cannot be scaled"
                    )));
                }
                if let Some(a) = &spec.autoscale {
                    eprintln!(
                        "warning: {name} is autoscaled between {} and {} replicas: the autoscaler sets its count at its next look",
                        a.min_replicas, a.max_replicas
                    );
                }
                spec.replicas = n;
                let req = UpdateServiceRequest {
                    service: cur.id.clone(),
                    spec: Some(spec),
                    expect_version: cur.spec_version,
                    ..Default::default()
                };
                c.update(req).await.map_err(&e)?;
                if out == Output::Table {
                    println!("{name} scaled to {n}");
                }
            }
        }
        ServiceCommand::Rm { services } => {
            for s in services {
                let r = c.remove(RemoveServiceRequest { service: s.clone() }).await.map_err(&e)?.into_inner();
                match out {
                    Output::Json => println!("{}", json!({"removed": s, "id": r.id})),
                    Output::Table => println!("{s}"),
                }
            }
        }
        ServiceCommand::Ls { watch: true } => {
            let req = WatchRequest { kinds: vec![ObjectKind::Service.into()], ..Default::default() };
            super::watch::follow(&addr, crate::connect::scoped(channel.clone(), trust)?, req, out, &SERVICES).await?;
        }
        ServiceCommand::Ls { watch: false } => {
            let list = c.list(ListServicesRequest {}).await.map_err(&e)?.into_inner().services;
            match out {
                Output::Json => println!("{}", json!(list.iter().map(service_json).collect::<Vec<_>>())),
                Output::Table => table(SERVICES.header, &list.iter().map(service_row).collect::<Vec<_>>()),
            }
        }
        ServiceCommand::Ps { service, running: _, watch: true } => {
            let req = WatchRequest { kinds: vec![ObjectKind::Task.into()], service, ..Default::default() };
            super::watch::follow(&addr, crate::connect::scoped(channel.clone(), trust)?, req, out, &TASKS).await?;
        }
        ServiceCommand::Ps { service, running, watch: false } => {
            let tasks = c
                .tasks(TasksRequest { service, running_only: running, node: String::new() })
                .await
                .map_err(&e)?
                .into_inner()
                .tasks;
            print_tasks(&tasks, out);
        }
        ServiceCommand::Inspect { service } => {
            let s = c.inspect(InspectServiceRequest { service }).await.map_err(&e)?.into_inner();
            println!("{}", serde_json::to_string_pretty(&service_json(&s)).unwrap_or_default());
        }
        ServiceCommand::Logs { service, follow, tail, timestamps } => {
            let mut stream = c.logs(ServiceLogsRequest { service, follow, tail }).await.map_err(&e)?.into_inner();
            let mut lines = Vec::new();
            while let Some(entry) = stream.next().await {
                let entry = entry.map_err(&e)?;
                if follow {
                    print_line(&entry, timestamps, out);
                } else {
                    lines.push(entry);
                }
            }
            // Without -f: all of it, in time order across tasks.
            lines.sort_by(|a, b| a.time.cmp(&b.time));
            for l in &lines {
                print_line(l, timestamps, out);
            }
        }
    }
    Ok(())
}

fn print_line(e: &ServiceLogEntry, timestamps: bool, out: Output) {
    use std::io::Write;
    let line = String::from_utf8_lossy(&e.line);
    let line = line.trim_end_matches('\n');
    match out {
        Output::Json => println!("{}", json!({"task": e.task, "time": e.time, "stream": e.stream, "line": line})),
        Output::Table if timestamps => println!("{} {} | {line}", e.time, e.task),
        Output::Table => println!("{} | {line}", e.task),
    }
    let _ = std::io::stdout().flush();
}

/// The task table of `service ps` and `node ps`.
pub fn print_tasks(tasks: &[Task], out: Output) {
    match out {
        Output::Json => println!("{}", json!(tasks.iter().map(task_json).collect::<Vec<_>>())),
        Output::Table => table(TASKS.header, &tasks.iter().map(task_row).collect::<Vec<_>>()),
    }
}

/// `service ls` (and its `--watch`).
pub const SERVICES: Shown<Service> = Shown {
    header: &["ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS"],
    widths: &[12, 0, 14, 9],
    row: service_row,
    json: service_json,
    order: |a, b| a.spec.as_ref().map(|s| &s.name).cmp(&b.spec.as_ref().map(|s| &s.name)),
    pick: |o| match o {
        watch_event::Object::Service(s) => Some(s),
        _ => None,
    },
};

/// `service ps` and `node ps` (and their `--watch`).
pub const TASKS: Shown<Task> = Shown {
    header: &["ID", "NAME", "NODE", "ADDRESS", "DESIRED", "STATE", "SINCE", "MESSAGE"],
    widths: &[12, 0, 0, 15, 9, 19, 8],
    row: task_row,
    json: task_json,
    order: |a, b| {
        (&a.service, a.slot, &a.node_hostname, std::cmp::Reverse(a.created_ms)).cmp(&(
            &b.service,
            b.slot,
            &b.node_hostname,
            std::cmp::Reverse(b.created_ms),
        ))
    },
    pick: |o| match o {
        watch_event::Object::Task(t) => Some(t),
        _ => None,
    },
};

fn service_row(s: &Service) -> Vec<String> {
    let spec = s.spec.clone().unwrap_or_default();
    let (mode, replicas) = mode_text(s);
    vec![s.id.clone(), spec.name.clone(), mode, replicas, spec.image.clone(), ports_text(&spec)]
}

fn task_row(t: &Task) -> Vec<String> {
    // Outside `default` (as `node ps` shows every namespace's): `team-a/web.1`.
    let service = match t.namespace.as_str() {
        "" | orc_proto::DEFAULT_NAMESPACE => t.service.clone(),
        ns => format!("{ns}/{}", t.service),
    };
    let name = if t.slot > 0 { format!("{service}.{}", t.slot) } else { format!("{service}.{}", &t.node_id) };
    let mut msg = if t.error.is_empty() { t.message.clone() } else { format!("{}: {}", t.message, t.error) };
    let state = if t.health.is_empty() { t.state.clone() } else { format!("{} ({})", t.state, t.health) };
    if t.health != "ready" && !t.probe.is_empty() {
        msg = if msg.is_empty() || msg == "running" { t.probe.clone() } else { format!("{msg}; {}", t.probe) };
    }
    let address = if t.address.is_empty() { "-".to_string() } else { t.address.clone() };
    vec![t.id.clone(), name, t.node_hostname.clone(), address, t.desired.clone(), state, ago(t.updated_ms), msg]
}
