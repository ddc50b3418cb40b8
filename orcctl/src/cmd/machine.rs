//! Machine commands on nodes (`--nodes` fans out): version, health,
//! services, reboot, shutdown, dmesg, logs, restart.

use std::future::Future;

use futures::StreamExt;
use orc_proto::machine::machine_client::MachineClient;
use orc_proto::machine::*;
use serde_json::json;
use tonic::transport::Channel;

use crate::cli::{Command, Output};
use crate::connect::{self, Trust};
use crate::error::CliError;
use crate::fanout::{call, done, fan, split};
use crate::output::{bytes, table};

pub type Client = MachineClient<Channel>;

/// A Machine client for `addr`.
pub async fn client(addr: &str, trust: &Trust) -> Result<Client, CliError> {
    Ok(MachineClient::new(connect::channel(addr, trust).await?))
}

/// Calls the Machine API of every node at once.
pub(crate) async fn each<T, F, Fut>(nodes: &[String], trust: &Trust, f: F) -> Vec<(String, Result<T, CliError>)>
where
    F: Fn(Client) -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    call(nodes, |n| async move { client(&n, trust).await }, f).await
}

/// Runs a machine command on every node of `nodes`.
pub async fn run(command: Command, nodes: &[String], trust: &Trust, out: Output) -> Result<(), CliError> {
    let (nodes, trust) = (nodes.to_vec(), trust.clone());
    match command {
        Command::Version => {
            let (ok, err) =
                split(each(&nodes, &trust, |mut c| async move { c.version(VersionRequest {}).await }).await);
            match out {
                Output::Json => println!(
                    "{}",
                    json!(ok
                        .iter()
                        .map(|(n, v)| json!({"node": n, "version": v.version,
                    "git_revision": v.git_revision, "kernel": v.kernel, "arch": v.arch, "hostname": v.hostname,
                    "node_id": v.node_id, "cluster_id": v.cluster_id, "ca_fingerprint": v.ca_fingerprint,
                    "maintenance": v.maintenance, "role": v.role, "boot_slot": v.boot_slot,
                    "boot_entries": v.boot_entries.iter().map(|e| json!({"version": e.version, "slot": e.slot,
                        "state": e.state, "tries_left": e.tries_left, "tries_done": e.tries_done, "file": e.file}))
                        .collect::<Vec<_>>(),
                    "boot_error": v.boot_error, "os_version": v.os_version, "boot_id": v.boot_id,
                    "upgrade": v.upgrade.as_ref().map(|u| json!({"version": u.version, "slot": u.slot, "stage": u.stage,
                        "message": u.message, "health_window_secs": u.health_window_secs})),
                    "failed_upgrades": v.failed_upgrades.iter().map(|f| json!({"version": f.version, "reason": f.reason,
                        "at_ms": f.at_ms})).collect::<Vec<_>>()}))
                        .collect::<Vec<_>>())
                ),
                Output::Table => {
                    table(
                        &["NODE", "HOSTNAME", "VERSION", "REVISION", "KERNEL", "SLOT", "NODE ID", "ROLE", "CLUSTER"],
                        &ok.iter()
                            .map(|(n, v)| {
                                vec![
                                    n.clone(),
                                    v.hostname.clone(),
                                    if v.os_version.is_empty() { v.version.clone() } else { v.os_version.clone() },
                                    v.git_revision.clone(),
                                    v.kernel.clone(),
                                    if v.boot_slot.is_empty() { "-".into() } else { v.boot_slot.clone() },
                                    v.node_id.clone(),
                                    v.role.clone(),
                                    v.cluster_id.clone(),
                                ]
                            })
                            .collect::<Vec<_>>(),
                    );
                    for (n, v) in ok.iter().filter(|(_, v)| !v.boot_entries.is_empty() || !v.boot_error.is_empty()) {
                        let entries: Vec<String> = v
                            .boot_entries
                            .iter()
                            .map(|e| {
                                let slot = if e.slot.is_empty() { "?" } else { e.slot.as_str() };
                                match e.state.as_str() {
                                    "trying" => {
                                        format!("{} (slot {slot}, trying: {} boots left)", e.version, e.tries_left)
                                    }
                                    state => format!("{} (slot {slot}, {state})", e.version),
                                }
                            })
                            .collect();
                        match v.boot_error.as_str() {
                            "" => println!("{n} boots: {}", entries.join(", ")),
                            why => println!("{n} boot entries unknown: {why}"),
                        }
                    }
                    for (n, v) in &ok {
                        if let Some(u) = &v.upgrade {
                            println!("{n} upgrade: {} to {} (slot {}): {}", u.stage, u.version, u.slot, u.message);
                        }
                        for f in &v.failed_upgrades {
                            println!("{n} failed upgrade: {}: {}", f.version, f.reason);
                        }
                    }
                }
            }
            done(err)
        }
        Command::Health => {
            let (ok, err) = split(each(&nodes, &trust, |mut c| async move { c.health(HealthRequest {}).await }).await);
            match out {
                Output::Json => println!("{}", json!(ok.iter().map(|(n, h)| json!({"node": n, "healthy": h.healthy,
                    "uptime_seconds": h.uptime_seconds, "checks": h.checks.iter().map(|c| json!({"name": c.name, "ok": c.ok, "message": c.message})).collect::<Vec<_>>(),
                    "clock": h.clock.as_ref().map(|c| json!({"synchronized": c.synchronized, "offset_seconds": c.offset_seconds,
                        "server": c.server, "last_sync_unix_ms": c.last_sync_unix_ms, "disciplined": c.disciplined, "servers": c.servers}))})).collect::<Vec<_>>())),
                Output::Table => table(
                    &["NODE", "CHECK", "OK", "MESSAGE"],
                    &ok.iter().flat_map(|(n, h)| h.checks.iter().map(move |c| vec![n.clone(), c.name.clone(), c.ok.to_string(), c.message.clone()])).collect::<Vec<_>>(),
                ),
            }
            let unhealthy: Vec<&str> = ok.iter().filter(|(_, h)| !h.healthy).map(|(n, _)| n.as_str()).collect();
            if err.is_none() && !unhealthy.is_empty() {
                return Err(CliError::Usage(format!("unhealthy: {}", unhealthy.join(", "))));
            }
            done(err)
        }
        Command::Services => {
            let (ok, err) =
                split(each(&nodes, &trust, |mut c| async move { c.services(ServicesRequest {}).await }).await);
            match out {
                Output::Json => println!(
                    "{}",
                    json!(ok
                        .iter()
                        .flat_map(|(n, r)| r.services.iter().map(move |s| json!({"node": n,
                    "name": s.name, "state": s.state, "pid": s.pid, "restarts": s.restarts, "started_at": s.started_at,
                    "rss_bytes": s.rss_bytes, "last_exit": s.last_exit})))
                        .collect::<Vec<_>>())
                ),
                Output::Table => table(
                    &["NODE", "SERVICE", "STATE", "PID", "RESTARTS", "RSS", "LAST EXIT"],
                    &ok.iter()
                        .flat_map(|(n, r)| {
                            r.services.iter().map(move |s| {
                                vec![
                                    n.clone(),
                                    s.name.clone(),
                                    s.state.clone(),
                                    s.pid.to_string(),
                                    s.restarts.to_string(),
                                    bytes(s.rss_bytes),
                                    s.last_exit.clone(),
                                ]
                            })
                        })
                        .collect::<Vec<_>>(),
                ),
            }
            done(err)
        }
        Command::Reboot | Command::Shutdown => {
            let reboot = matches!(command, Command::Reboot);
            let (ok, err) = split(
                each(&nodes, &trust, |mut c| async move {
                    if reboot {
                        c.reboot(RebootRequest {}).await.map(|r| r.map(|_| ()))
                    } else {
                        c.shutdown(ShutdownRequest {}).await.map(|r| r.map(|_| ()))
                    }
                })
                .await,
            );
            for (n, _) in ok {
                println!("{n}: {}", if reboot { "rebooting" } else { "powering off" });
            }
            done(err)
        }
        Command::Dmesg { follow } => {
            let results = fan(&nodes, |n| {
                let (trust, prefix) = (trust.clone(), nodes.len() > 1);
                async move {
                    let mut c = client(&n, &trust).await?;
                    let mut s = c.dmesg(DmesgRequest { follow }).await.map_err(|e| CliError::from_status(&n, e))?.into_inner();
                    while let Some(e) = s.next().await {
                        let e = e.map_err(|e| CliError::from_status(&n, e))?;
                        let line = format!("[{:>5}.{:06}] {}", e.timestamp_us / 1_000_000, e.timestamp_us % 1_000_000, e.message);
                        match (out, prefix) {
                            (Output::Json, _) => println!("{}", json!({"node": n, "seq": e.sequence, "timestamp_us": e.timestamp_us, "level": e.level, "facility": e.facility, "message": e.message})),
                            (Output::Table, true) => println!("{n}: {line}"),
                            (Output::Table, false) => println!("{line}"),
                        }
                    }
                    Ok::<(), CliError>(())
                }
            })
            .await;
            done(split(results).1)
        }
        Command::Logs { service, follow, tail } => {
            let results = fan(&nodes, |n| {
                let (trust, service, prefix) = (trust.clone(), service.clone(), nodes.len() > 1);
                async move {
                    let mut c = client(&n, &trust).await?;
                    let mut s = c
                        .logs(LogsRequest { service, follow, tail })
                        .await
                        .map_err(|e| CliError::from_status(&n, e))?
                        .into_inner();
                    while let Some(l) = s.next().await {
                        let l = l.map_err(|e| CliError::from_status(&n, e))?;
                        match (out, prefix) {
                            (Output::Json, _) => {
                                println!("{}", json!({"node": n, "service": l.service, "line": l.line}))
                            }
                            (Output::Table, true) => println!("{n}: {}", l.line),
                            (Output::Table, false) => println!("{}", l.line),
                        }
                    }
                    Ok::<(), CliError>(())
                }
            })
            .await;
            done(split(results).1)
        }
        Command::Restart { service } => {
            let (ok, err) = split(
                each(&nodes, &trust, |mut c| {
                    let service = service.clone();
                    async move { c.restart_service(RestartServiceRequest { service }).await }
                })
                .await,
            );
            for (n, _) in ok {
                println!("{n}: restarting {service}");
            }
            done(err)
        }
        _ => Ok(()),
    }
}
