//! One function per command. Node commands fan out over `--nodes`
//! concurrently and report per node.

use std::future::Future;

use futures::StreamExt;
use orc_proto::machine::machine_client::MachineClient;
use orc_proto::machine::*;
use serde_json::json;
use tonic::transport::Channel;

use crate::cli::{Cli, ClusterCommand, Command, ConfigCommand, NodeCommand, Output};
use crate::config::{self, Config, Context};
use crate::connect::{self, Trust};
use crate::error::CliError;
use crate::fanout::{done, fan, split};
use crate::output::{bytes, table};

pub type Client = MachineClient<Channel>;

/// A Machine client for `addr`.
pub async fn client(addr: &str, trust: &Trust) -> Result<Client, CliError> {
    Ok(MachineClient::new(connect::channel(addr, trust).await?))
}

/// Bootstraps a cluster on `addr` and returns the context to reach it.
pub async fn bootstrap(
    addr: &str,
    trust: &Trust,
    cluster_name: &str,
    admin_name: &str,
) -> Result<(BootstrapResponse, Context), CliError> {
    let mut c = client(addr, trust).await?;
    let req = BootstrapRequest { cluster_name: cluster_name.into(), admin_name: admin_name.into() };
    let r = c.bootstrap(req).await.map_err(|s| CliError::from_status(addr, s))?.into_inner();
    let ctx = Context {
        endpoints: vec![connect::with_port(addr)],
        ca: r.ca_cert_pem.clone(),
        cert: r.admin_cert_pem.clone(),
        key: r.admin_key_pem.clone(),
    };
    Ok((r, ctx))
}

/// Writes `ctx` as `name` into the config at `path` and makes it current.
pub fn save_context(path: &std::path::Path, name: &str, ctx: Context) -> Result<(), CliError> {
    let mut cfg = Config::load_or_default(path)?;
    cfg.contexts.insert(name.to_string(), ctx);
    cfg.current_context = name.to_string();
    cfg.save(path)?;
    Ok(())
}

/// Calls the Machine API of every node at once.
async fn each<T, F, Fut>(nodes: &[String], trust: &Trust, f: F) -> Vec<(String, Result<T, CliError>)>
where
    F: Fn(Client) -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let f = &f;
    fan(nodes, |n| async move {
        let c = client(&n, trust).await?;
        f(c).await.map(|r| r.into_inner()).map_err(|s| CliError::from_status(&n, s))
    })
    .await
}

pub async fn run(cli: Cli) -> Result<(), CliError> {
    let path = config::path(cli.config.as_deref());
    let out = cli.output;
    match cli.command {
        Command::Cluster(ClusterCommand::Init {
            addr,
            fingerprint,
            insecure,
            context_name,
            cluster_name,
            admin_name,
        }) => {
            let trust = match (fingerprint, insecure) {
                (Some(fp), _) => Trust::Pinned(fp),
                (None, true) => Trust::Insecure,
                (None, false) => {
                    return Err(CliError::Usage(
                        "pass --fingerprint sha256:... (printed on the node's console) or --insecure".into(),
                    ))
                }
            };
            let (r, ctx) = bootstrap(&addr, &trust, &cluster_name, &admin_name).await?;
            let name = context_name.unwrap_or(cluster_name);
            save_context(&path, &name, ctx)?;
            match out {
                Output::Json => println!(
                    "{}",
                    json!({"cluster_id": r.cluster_id, "node_id": r.node_id, "context": name, "config": path})
                ),
                Output::Table => println!(
                    "cluster {} bootstrapped on {addr} (node {}); context {name:?} written to {}",
                    r.cluster_id,
                    r.node_id,
                    path.display()
                ),
            }
            return Ok(());
        }
        Command::Config(cmd) => return config_command(&path, cmd, out),
        Command::Node(NodeCommand::Join { addr, token, manager, fingerprint, insecure }) => {
            let trust = match (fingerprint, insecure) {
                (Some(fp), _) => Trust::Pinned(fp),
                (None, true) => Trust::Insecure,
                (None, false) => {
                    return Err(CliError::Usage(
                        "pass --fingerprint sha256:... (printed on the node's console) or --insecure".into(),
                    ))
                }
            };
            let mut c = client(&addr, &trust).await?;
            let r = c
                .join(JoinRequest { token, manager: manager.clone() })
                .await
                .map_err(|s| CliError::from_status(&addr, s))?
                .into_inner();
            match out {
                Output::Json => println!(
                    "{}",
                    json!({"node": addr, "node_id": r.node_id, "cluster_id": r.cluster_id, "role": r.role})
                ),
                Output::Table => println!(
                    "{addr}: joined cluster {} through {manager} as {} (node {})",
                    r.cluster_id, r.role, r.node_id
                ),
            }
            return Ok(());
        }
        _ => {}
    }
    let cfg = Config::load_or_default(&path)?;
    let (_, ctx) = cfg.context(&path, cli.context.as_deref())?;
    let nodes = if cli.nodes.is_empty() {
        vec![ctx
            .endpoints
            .first()
            .cloned()
            .ok_or_else(|| CliError::Usage("the context has no endpoints; pass --nodes".into()))?]
    } else {
        cli.nodes.clone()
    };
    let trust = Trust::Cluster(ctx.clone());
    // Cluster-wide commands try the managers in turn.
    let managers = if cli.nodes.is_empty() { ctx.endpoints.clone() } else { cli.nodes.clone() };
    match cli.command {
        Command::Service(cmd) => crate::services::service(cmd, &managers, &trust, out).await,
        Command::Node(cmd) => crate::services::node(cmd, &managers, &trust, out).await,
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
                    "maintenance": v.maintenance, "role": v.role}))
                        .collect::<Vec<_>>())
                ),
                Output::Table => table(
                    &["NODE", "HOSTNAME", "VERSION", "REVISION", "KERNEL", "NODE ID", "ROLE", "CLUSTER"],
                    &ok.iter()
                        .map(|(n, v)| {
                            vec![
                                n.clone(),
                                v.hostname.clone(),
                                v.version.clone(),
                                v.git_revision.clone(),
                                v.kernel.clone(),
                                v.node_id.clone(),
                                v.role.clone(),
                                v.cluster_id.clone(),
                            ]
                        })
                        .collect::<Vec<_>>(),
                ),
            }
            done(err)
        }
        Command::Health => {
            let (ok, err) = split(each(&nodes, &trust, |mut c| async move { c.health(HealthRequest {}).await }).await);
            match out {
                Output::Json => println!("{}", json!(ok.iter().map(|(n, h)| json!({"node": n, "healthy": h.healthy,
                    "uptime_seconds": h.uptime_seconds, "checks": h.checks.iter().map(|c| json!({"name": c.name, "ok": c.ok, "message": c.message})).collect::<Vec<_>>()})).collect::<Vec<_>>())),
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
            let reboot = matches!(cli.command, Command::Reboot);
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
        Command::Cluster(ClusterCommand::Status) => {
            use orc_proto::cluster::cluster_client::ClusterClient;
            let results = fan(&nodes, |n| {
                let trust = trust.clone();
                async move {
                    let mut c = ClusterClient::new(connect::channel(&n, &trust).await?);
                    c.status(orc_proto::cluster::StatusRequest {})
                        .await
                        .map(|r| r.into_inner())
                        .map_err(|s| CliError::from_status(&n, s))
                }
            })
            .await;
            let (ok, err) = split(results);
            match out {
                Output::Json => println!("{}", json!(ok.iter().map(|(n, s)| json!({"node": n, "id": format!("{:016x}", s.id),
                    "state": s.state, "leader": format!("{:016x}", s.leader), "term": s.term, "last_log_index": s.last_log_index,
                    "last_applied": s.last_applied, "store_version": s.store_version,
                    "members": s.members.iter().map(|m| json!({"node_id": m.node_id, "addr": m.addr, "voter": m.voter})).collect::<Vec<_>>()})).collect::<Vec<_>>())),
                Output::Table => table(
                    &["NODE", "MEMBER", "ADDRESS", "VOTER", "LEADER", "TERM", "LOG", "APPLIED"],
                    &ok.iter().flat_map(|(n, s)| s.members.iter().map(move |m| vec![n.clone(), m.node_id.clone(), m.addr.clone(),
                        m.voter.to_string(), (m.id == s.leader).to_string(), s.term.to_string(), s.last_log_index.to_string(),
                        s.last_applied.to_string()])).collect::<Vec<_>>(),
                ),
            }
            done(err)
        }
        Command::Cluster(ClusterCommand::Recover { force_new_cluster }) => {
            use orc_proto::cluster::cluster_client::ClusterClient;
            let n = &nodes[0];
            let r = ClusterClient::new(connect::channel(n, &trust).await?)
                .recover(orc_proto::cluster::RecoverRequest { force_new_cluster })
                .await
                .map_err(|s| CliError::from_status(n, s))?
                .into_inner();
            match out {
                Output::Json => println!("{}", json!({"node": n, "log_index": r.log_index, "demoted": r.demoted})),
                Output::Table => {
                    println!("{n}: now the only manager (membership at log index {}); the state is kept", r.log_index);
                    if !r.demoted.is_empty() {
                        println!("demoted (they rejoin as workers if they come back): {}", r.demoted.join(", "));
                    }
                    println!("rebuild the quorum with `orcctl node promote NODE` (an odd number of managers, 3 or 5)");
                }
            }
            Ok(())
        }
        Command::Cluster(ClusterCommand::Update { cert_ttl }) => {
            use orc_proto::cluster::cluster_client::ClusterClient;
            let ttl = match cert_ttl.as_deref() {
                None => 0,
                Some(t) => {
                    let t = t.trim();
                    match t.strip_suffix('d') {
                        Some(days) => {
                            days.parse::<u64>().map_err(|_| CliError::Usage(format!("{t:?} is not a duration")))?
                                * 86_400
                        }
                        None => crate::service_file::parse_duration(t)? / 1000,
                    }
                }
            };
            let (n, ch) = crate::services::manager(&managers, &trust).await?;
            let s = ClusterClient::new(ch)
                .update(orc_proto::cluster::UpdateClusterRequest { node_cert_ttl_secs: ttl })
                .await
                .map_err(|s| CliError::from_status(&n, s))?
                .into_inner();
            match out {
                Output::Json => println!("{}", json!({"node_cert_ttl_secs": s.node_cert_ttl_secs})),
                Output::Table => {
                    println!("node certificates live {}s; nodes renew when half is left", s.node_cert_ttl_secs)
                }
            }
            Ok(())
        }
        Command::Cluster(ClusterCommand::JoinToken { role, rotate }) => {
            use orc_proto::cluster::cluster_client::ClusterClient;
            let n = &nodes[0];
            let mut c = ClusterClient::new(connect::channel(n, &trust).await?);
            let t = c
                .join_token(orc_proto::cluster::JoinTokenRequest { role: role.clone(), rotate })
                .await
                .map_err(|s| CliError::from_status(n, s))?
                .into_inner()
                .token;
            match out {
                Output::Json => println!("{}", json!({"role": role, "token": t})),
                Output::Table => println!("{t}"),
            }
            Ok(())
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
        Command::Image(cmd) => crate::runtime::image(cmd, &nodes, &trust, out).await,
        Command::Container(cmd) => crate::runtime::container(cmd, &nodes, &trust, out).await,
        Command::Cluster(_) | Command::Config(_) => Ok(()),
    }
}

fn config_command(path: &std::path::Path, cmd: ConfigCommand, out: Output) -> Result<(), CliError> {
    let mut cfg = Config::load_or_default(path)?;
    match cmd {
        ConfigCommand::Contexts => {
            match out {
                Output::Json => println!(
                    "{}",
                    json!({"current": cfg.current_context, "contexts": cfg.contexts.iter().map(|(n, c)| json!({"name": n, "endpoints": c.endpoints})).collect::<Vec<_>>()})
                ),
                Output::Table => table(
                    &["CURRENT", "NAME", "ENDPOINTS"],
                    &cfg.contexts
                        .iter()
                        .map(|(n, c)| {
                            vec![
                                if *n == cfg.current_context { "*".into() } else { String::new() },
                                n.clone(),
                                c.endpoints.join(","),
                            ]
                        })
                        .collect::<Vec<_>>(),
                ),
            }
            Ok(())
        }
        ConfigCommand::UseContext { name } => {
            cfg.context(path, Some(&name))?;
            cfg.current_context = name;
            cfg.save(path)?;
            Ok(())
        }
    }
}
