//! `orcctl namespace …`: namespaces and their quotas, on any manager.

use orc_proto::cluster::namespaces_client::NamespacesClient;
use orc_proto::cluster::{
    CreateNamespaceRequest, InspectNamespaceRequest, ListNamespacesRequest, Namespace, Quota, QuotaUse,
    RemoveNamespaceRequest, SetQuotaRequest,
};
use serde_json::json;

use super::status_err;
use crate::cli::{NamespaceCommand, Output, QuotaArgs};
use crate::connect::{manager, Trust};
use crate::error::CliError;
use crate::output::{ago, bytes, table};
use crate::parse::parse_bytes;

/// A cap as given: `none` lifts it, anything else is parsed by `parse`.
fn cap<T>(
    given: Option<&str>,
    current: Option<T>,
    parse: impl Fn(&str) -> Result<T, CliError>,
) -> Result<Option<T>, CliError> {
    match given {
        None => Ok(current),
        Some("none") => Ok(None),
        Some(v) => parse(v).map(Some),
    }
}

fn count(flag: &'static str) -> impl Fn(&str) -> Result<u64, CliError> {
    move |v| {
        v.parse().map_err(|_| CliError::Usage(format!("--{flag} {v:?}: give a whole number, or `none` to lift it")))
    }
}

fn cpus(v: &str) -> Result<f64, CliError> {
    match v.parse::<f64>() {
        Ok(n) if n.is_finite() && n >= 0.0 => Ok(n),
        _ => Err(CliError::Usage(format!("--cpus {v:?}: give a number of CPUs (e.g. 4, 0.5), or `none` to lift it"))),
    }
}

/// `current` with the caps `args` gives changed.
fn merged(args: &QuotaArgs, current: Quota) -> Result<Quota, CliError> {
    Ok(Quota {
        cpus: cap(args.cpus.as_deref(), current.cpus, cpus)?,
        memory: cap(args.memory.as_deref(), current.memory, parse_bytes)?,
        tasks: cap(args.tasks.as_deref(), current.tasks, count("tasks"))?,
        volumes: cap(args.volumes.as_deref(), current.volumes, count("volumes"))?,
        volume_size: cap(args.volume_size.as_deref(), current.volume_size, parse_bytes)?,
    })
}

/// `used/limit`, or just `used` without a limit.
fn of<T>(used: T, limit: Option<T>, show: impl Fn(T) -> String) -> String {
    match limit {
        Some(l) => format!("{}/{}", show(used), show(l)),
        None => show(used),
    }
}

fn cpus_shown(n: f64) -> String {
    format!("{}", (n * 1000.0).round() / 1000.0)
}

fn row(n: &Namespace) -> Vec<String> {
    let q = n.quota.unwrap_or_default();
    let u = n.used.unwrap_or_default();
    vec![
        n.name.clone(),
        n.services.to_string(),
        of(u.cpus, q.cpus, cpus_shown),
        of(u.memory, q.memory, bytes),
        of(u.tasks, q.tasks, |n| n.to_string()),
        of(u.volumes, q.volumes, |n| n.to_string()),
        of(u.volume_size, q.volume_size, bytes),
        if n.created_ms > 0 { ago(n.created_ms) } else { "-".into() },
    ]
}

fn namespace_json(n: &Namespace) -> serde_json::Value {
    let q = n.quota.unwrap_or_default();
    let u: QuotaUse = n.used.unwrap_or_default();
    json!({
        "name": n.name, "created_ms": n.created_ms,
        "services": n.services, "secrets": n.secrets, "configs": n.configs, "networks": n.networks,
        "quota": {"cpus": q.cpus, "memory": q.memory, "tasks": q.tasks, "volumes": q.volumes,
            "volume_size": q.volume_size},
        "used": {"cpus": u.cpus, "memory": u.memory, "tasks": u.tasks, "volumes": u.volumes,
            "volume_size": u.volume_size},
    })
}

fn print(n: &Namespace, out: Output, what: &str) {
    match out {
        Output::Json => println!("{}", namespace_json(n)),
        Output::Table => {
            println!("namespace {} {what}", n.name);
            table(HEADER, &[row(n)]);
        }
    }
}

const HEADER: &[&str] = &["NAME", "SERVICES", "CPUS", "MEMORY", "TASKS", "VOLUMES", "VOLUME SIZE", "CREATED"];

/// `namespace create|ls|inspect|quota|rm`.
pub async fn run(cmd: NamespaceCommand, candidates: &[String], trust: &Trust, out: Output) -> Result<(), CliError> {
    let (addr, channel) = manager(candidates, trust).await?;
    let mut c = NamespacesClient::new(channel);
    let e = status_err(&addr);
    match cmd {
        NamespaceCommand::Create { name, quota } => {
            let quota = merged(&quota, Quota::default())?;
            let n = c.create(CreateNamespaceRequest { name, quota: Some(quota) }).await.map_err(&e)?.into_inner();
            print(&n, out, "created");
        }
        NamespaceCommand::Ls => {
            let list = c.list(ListNamespacesRequest {}).await.map_err(&e)?.into_inner().namespaces;
            match out {
                Output::Json => println!("{}", json!(list.iter().map(namespace_json).collect::<Vec<_>>())),
                Output::Table => table(HEADER, &list.iter().map(row).collect::<Vec<_>>()),
            }
        }
        NamespaceCommand::Inspect { name } => {
            let n = c.inspect(InspectNamespaceRequest { name }).await.map_err(&e)?.into_inner();
            println!("{}", serde_json::to_string_pretty(&namespace_json(&n)).unwrap_or_default());
        }
        NamespaceCommand::Quota { name, quota } => {
            let cur = c.inspect(InspectNamespaceRequest { name: name.clone() }).await.map_err(&e)?.into_inner();
            let quota = merged(&quota, cur.quota.unwrap_or_default())?;
            let n = c.set_quota(SetQuotaRequest { name, quota: Some(quota) }).await.map_err(&e)?.into_inner();
            print(&n, out, "quota set");
        }
        NamespaceCommand::Rm { name } => {
            let r = c.remove(RemoveNamespaceRequest { name }).await.map_err(&e)?.into_inner();
            match out {
                Output::Json => println!("{}", json!({"removed": r.name})),
                Output::Table => println!("namespace {} removed", r.name),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_caps_change_and_none_lifts_one() {
        let cur = Quota { cpus: Some(2.0), memory: Some(1 << 30), tasks: Some(10), ..Default::default() };
        let args = QuotaArgs {
            memory: Some("2GiB".into()),
            tasks: Some("none".into()),
            volume_size: Some("10GiB".into()),
            ..Default::default()
        };
        let q = merged(&args, cur).unwrap();
        let want = Quota { cpus: Some(2.0), memory: Some(2 << 30), volume_size: Some(10 << 30), ..Default::default() };
        assert_eq!(q, want);
        let bad = QuotaArgs { tasks: Some("many".into()), ..Default::default() };
        let err = merged(&bad, Quota::default()).unwrap_err().to_string();
        assert!(err.contains("--tasks") && err.contains("none"), "{err}");
        assert!(merged(&QuotaArgs { cpus: Some("-1".into()), ..Default::default() }, Quota::default()).is_err());
    }
}
