//! `orcctl cluster …`: bootstrap (`init`, on a node in maintenance mode),
//! quorum status, recovery, settings, join tokens.

use orc_proto::machine::{BootstrapRequest, BootstrapResponse};
use serde_json::json;

use super::machine::client;
use crate::cli::{ClusterCommand, Output};
use crate::config::{Config, Context};
use crate::connect::{self, Trust};
use crate::error::CliError;
use crate::fanout::{done, fan, split};
use crate::output::table;

/// Bootstraps a cluster on `addr` and returns the context to reach it.
pub async fn bootstrap(
    addr: &str,
    trust: &Trust,
    cluster_name: &str,
    admin_name: &str,
) -> Result<(BootstrapResponse, Context), CliError> {
    bootstrap_with(
        addr,
        trust,
        BootstrapRequest {
            cluster_name: cluster_name.into(),
            admin_name: admin_name.into(),
            maintenance_token: String::new(),
            container_cidr: String::new(),
            subnet_size: 0,
        },
    )
    .await
}

/// [`bootstrap`] with every field of the request (a maintenance token).
pub async fn bootstrap_with(
    addr: &str,
    trust: &Trust,
    req: BootstrapRequest,
) -> Result<(BootstrapResponse, Context), CliError> {
    let mut c = client(addr, trust).await?;
    let r = c.bootstrap(req).await.map_err(|s| CliError::from_status(addr, s))?.into_inner();
    let ctx = Context {
        endpoints: vec![connect::with_port(addr)],
        ca: r.ca_cert_pem.clone(),
        cert: r.admin_cert_pem.clone(),
        key: r.admin_key_pem.clone(),
        namespace: None,
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

/// `cluster init`: bootstraps the node at `addr` and writes the context.
pub async fn init(cmd: ClusterCommand, path: &std::path::Path, out: Output) -> Result<(), CliError> {
    let ClusterCommand::Init {
        addr,
        fingerprint,
        insecure,
        context_name,
        cluster_name,
        admin_name,
        maintenance_token,
        container_cidr,
        subnet_size,
    } = cmd
    else {
        return Ok(());
    };
    let trust = Trust::maintenance(fingerprint, insecure)?;
    let req = BootstrapRequest {
        cluster_name: cluster_name.clone(),
        admin_name,
        maintenance_token,
        container_cidr,
        subnet_size,
    };
    let (r, ctx) = bootstrap_with(&addr, &trust, req).await?;
    let name = context_name.unwrap_or(cluster_name);
    save_context(path, &name, ctx)?;
    match out {
        Output::Json => {
            println!("{}", json!({"cluster_id": r.cluster_id, "node_id": r.node_id, "context": name, "config": path}))
        }
        Output::Table => println!(
            "cluster {} bootstrapped on {addr} (node {}); context {name:?} written to {}",
            r.cluster_id,
            r.node_id,
            path.display()
        ),
    }
    Ok(())
}

/// The unlock key from `file`, or from stdin (prompted on a terminal).
fn read_unlock_key(file: Option<&std::path::Path>) -> Result<String, CliError> {
    use std::io::{BufRead, IsTerminal};
    let text = match file {
        Some(f) => {
            std::fs::read_to_string(f).map_err(|e| CliError::Usage(format!("--key-file {}: {e}", f.display())))?
        }
        None => {
            if std::io::stdin().is_terminal() {
                eprint!("unlock key (ORC-KEY-…): ");
            }
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .map_err(|e| CliError::Usage(format!("reading the unlock key from stdin: {e}")))?;
            line
        }
    };
    match text.trim() {
        "" => Err(CliError::Usage(
            "no unlock key given: pipe it to stdin or pass --key-file (`orcctl cluster unlock-key` on an unlocked \
             manager shows it)"
                .into(),
        )),
        k => Ok(k.to_string()),
    }
}

/// The other cluster commands, on the managers.
pub async fn run(
    cmd: ClusterCommand,
    nodes: &[String],
    managers: &[String],
    trust: &Trust,
    out: Output,
) -> Result<(), CliError> {
    let (nodes, managers, trust) = (nodes.to_vec(), managers.to_vec(), trust.clone());
    match cmd {
        ClusterCommand::Status => {
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
        ClusterCommand::Recover { force_new_cluster } => {
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
        ClusterCommand::Update {
            cert_ttl,
            max_replicas,
            container_cidr,
            subnet_size,
            image_policy,
            no_image_policy,
            autolock,
        } => {
            let image_policy_json = image_policy.as_deref().map(read_policy).transpose()?.unwrap_or_default();
            use orc_proto::cluster::cluster_client::ClusterClient;
            let ttl = cert_ttl.as_deref().map(crate::parse::parse_ttl_secs).transpose()?.unwrap_or(0);
            let (n, ch) = crate::connect::manager(&managers, &trust).await?;
            let s = ClusterClient::new(ch)
                .update(orc_proto::cluster::UpdateClusterRequest {
                    node_cert_ttl_secs: ttl,
                    max_replicas: max_replicas.unwrap_or(0),
                    container_cidr: container_cidr.unwrap_or_default(),
                    subnet_size: subnet_size.unwrap_or(0),
                    image_policy_json,
                    clear_image_policy: no_image_policy,
                    autolock,
                })
                .await
                .map_err(|s| CliError::from_status(&n, s))?
                .into_inner();
            match out {
                Output::Json => println!(
                    "{}",
                    json!({"node_cert_ttl_secs": s.node_cert_ttl_secs, "max_replicas": s.max_replicas,
                           "container_cidr": s.container_cidr, "subnet_size": s.subnet_size,
                           "autolock": s.autolock, "unlock_key": s.unlock_key})
                ),
                Output::Table => {
                    println!("node certificates live {}s; nodes renew when half is left", s.node_cert_ttl_secs);
                    println!("a service may have up to {} replicas", s.max_replicas);
                    match s.container_cidr.as_str() {
                        "" => println!("no container CIDR: tasks have no network (set one with --container-cidr)"),
                        c => println!("tasks' addresses come from {c}, a /{} per node", s.subnet_size),
                    }
                    match s.image_policy_json.as_str() {
                        "" => println!("any image runs (no image policy)"),
                        _ => println!("only signed images run (image policy set)"),
                    }
                    match (autolock, s.unlock_key.as_str()) {
                        (_, "") if s.autolock => {
                            println!("autolock on (the unlock key stays: `orcctl cluster unlock-key`)")
                        }
                        (_, "") => println!("autolock off: managers keep their CA key plain"),
                        (_, key) => println!(
                            "autolock on. Keep this unlock key safe: a restarted manager serves nothing until \
                             `orcctl cluster unlock` is given it.\n\n    {key}\n"
                        ),
                    }
                }
            }
            Ok(())
        }
        ClusterCommand::Unlock { key_file } => {
            let key = read_unlock_key(key_file.as_deref())?;
            use orc_proto::cluster::cluster_client::ClusterClient;
            let results = fan(&nodes, |n| {
                let (trust, key) = (trust.clone(), key.clone());
                async move {
                    let mut c = ClusterClient::new(connect::channel(&n, &trust).await?);
                    c.unlock(orc_proto::cluster::UnlockRequest { key })
                        .await
                        .map_err(|s| CliError::from_status(&n, s))?;
                    Ok(())
                }
            })
            .await;
            let (ok, failed) = split(results);
            for (n, ()) in &ok {
                match out {
                    Output::Json => println!("{}", json!({"node": n, "unlocked": true})),
                    Output::Table => println!("{n}: unlocked"),
                }
            }
            done(failed)
        }
        ClusterCommand::UnlockKey { rotate, quiet } => {
            use orc_proto::cluster::cluster_client::ClusterClient;
            let (n, ch) = crate::connect::manager(&managers, &trust).await?;
            let key = ClusterClient::new(ch)
                .unlock_key(orc_proto::cluster::UnlockKeyRequest { rotate })
                .await
                .map_err(|s| CliError::from_status(&n, s))?
                .into_inner()
                .key;
            match out {
                Output::Json => println!("{}", json!({"unlock_key": key, "rotated": rotate})),
                Output::Table if quiet => println!("{key}"),
                Output::Table => {
                    if rotate {
                        println!(
                            "a new unlock key; the old one no longer opens a manager once it re-sealed (seconds):"
                        );
                    } else {
                        println!("the unlock key (give it to a locked manager with `orcctl cluster unlock`):");
                    }
                    println!("\n    {key}\n");
                }
            }
            Ok(())
        }
        ClusterCommand::JoinToken { role, rotate } => {
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
        ClusterCommand::Init { .. } => Ok(()),
    }
}

/// An image policy file (YAML: `rules: [{pattern, keys}]`, each key a PEM
/// or a file relative to the policy's) as the JSON the managers take.
fn read_policy(path: &std::path::Path) -> Result<String, CliError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        rules: Vec<Rule>,
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Rule {
        pattern: String,
        keys: Vec<String>,
    }
    let bad = |m: String| CliError::Usage(format!("{}: {m}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let f: File = serde_yaml_ng::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let mut rules = Vec::new();
    for r in f.rules {
        let mut keys = Vec::new();
        for k in r.keys {
            if k.trim_start().starts_with("-----BEGIN") {
                keys.push(k);
            } else {
                let p = dir.join(&k);
                keys.push(std::fs::read_to_string(&p).map_err(|e| bad(format!("key {}: {e}", p.display())))?);
            }
        }
        rules.push(json!({"pattern": r.pattern, "keys": keys}));
    }
    Ok(json!({"rules": rules}).to_string())
}
