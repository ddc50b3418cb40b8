//! `orcctl node …`: the cluster's nodes on any manager (ls, inspect, ps,
//! update, promote, demote, rm), and `node join` of a node in maintenance mode.

use orc_proto::cluster::nodes_client::NodesClient;
use orc_proto::cluster::services_client::ServicesClient;
use orc_proto::cluster::*;
use orc_proto::machine::JoinRequest;
use serde_json::json;

use super::machine::client;
use super::service::{print_tasks, TASKS};
use super::status_err;
use super::watch::Shown;
use crate::cli::{NodeCommand, Output};
use crate::connect::{manager, Trust};
use crate::error::CliError;
use crate::output::{bytes, table};
use crate::parse::key_value;

fn node_json(n: &Node) -> serde_json::Value {
    json!({"id": n.id, "hostname": n.hostname, "role": n.role, "addr": n.addr, "availability": n.availability,
        "status": n.status, "message": n.message, "labels": n.labels, "cpus": n.cpus, "memory": n.memory,
        "agent_version": n.agent_version, "tasks": n.tasks, "manager_status": n.manager_status, "updated_ms": n.updated_ms,
        "wg_key": n.wg_key, "os_version": n.os_version,
        "failed_upgrades": n.failed_upgrades.iter().map(|f| json!({"version": f.version, "reason": f.reason, "at_ms": f.at_ms})).collect::<Vec<_>>()})
}

/// `node ls` (and its `--watch`).
const NODES: Shown<Node> = Shown {
    header: &["ID", "HOSTNAME", "ROLE", "STATUS", "AVAILABILITY", "MANAGER", "TASKS", "CPUS", "MEMORY", "ADDRESS"],
    widths: &[16, 0, 7, 7, 12, 11, 5, 4, 9],
    row: node_row,
    json: node_json,
    order: |a, b| a.hostname.cmp(&b.hostname).then(a.id.cmp(&b.id)),
    pick: |o| match o {
        watch_event::Object::Node(n) => Some(n),
        _ => None,
    },
};

fn node_row(n: &Node) -> Vec<String> {
    vec![
        n.id.clone(),
        n.hostname.clone(),
        n.role.clone(),
        n.status.clone(),
        n.availability.clone(),
        n.manager_status.clone(),
        n.tasks.to_string(),
        n.cpus.to_string(),
        bytes(n.memory),
        n.addr.clone(),
    ]
}

/// `node ls|inspect|update|rm` (join: [`join`]).
pub async fn run(cmd: NodeCommand, candidates: &[String], trust: &Trust, out: Output) -> Result<(), CliError> {
    let (addr, channel) = manager(candidates, trust).await?;
    let mut c = NodesClient::new(channel.clone());
    let e = status_err(&addr);
    let promote = matches!(cmd, NodeCommand::Promote { .. });
    match cmd {
        NodeCommand::Ls { watch: true } => {
            let req = WatchRequest { kinds: vec![ObjectKind::Node.into()], ..Default::default() };
            super::watch::follow(&addr, crate::connect::scoped(channel.clone(), trust)?, req, out, &NODES).await?;
        }
        NodeCommand::Ls { watch: false } => {
            let nodes = c.list(ListNodesRequest {}).await.map_err(&e)?.into_inner().nodes;
            match out {
                Output::Json => println!("{}", json!(nodes.iter().map(node_json).collect::<Vec<_>>())),
                Output::Table => table(NODES.header, &nodes.iter().map(node_row).collect::<Vec<_>>()),
            }
        }
        NodeCommand::Ps { node, running: _, watch: true } => {
            let req = WatchRequest { kinds: vec![ObjectKind::Task.into()], node, ..Default::default() };
            super::watch::follow(&addr, crate::connect::scoped(channel.clone(), trust)?, req, out, &TASKS).await?;
        }
        NodeCommand::Ps { node, running, watch: false } => {
            let req = TasksRequest { service: String::new(), running_only: running, node };
            let tasks = ServicesClient::new(crate::connect::scoped(channel.clone(), trust)?)
                .tasks(req)
                .await
                .map_err(&e)?
                .into_inner()
                .tasks;
            print_tasks(&tasks, out);
        }
        NodeCommand::Inspect { node } => {
            let n = c.inspect(InspectNodeRequest { node }).await.map_err(&e)?.into_inner();
            println!("{}", serde_json::to_string_pretty(&node_json(&n)).unwrap_or_default());
        }
        NodeCommand::Promote { ids } | NodeCommand::Demote { ids } => {
            let role = if promote { "manager" } else { "worker" };
            for node in ids {
                let req = UpdateNodeRequest { node: node.clone(), role: role.into(), ..Default::default() };
                let n = c.update(req).await.map_err(&e)?.into_inner();
                match out {
                    Output::Json => println!("{}", node_json(&n)),
                    Output::Table => println!(
                        "{} ({}) is now a {role}; it renews its certificate and {} the quorum",
                        n.hostname,
                        n.id,
                        if role == "manager" { "joins" } else { "leaves" }
                    ),
                }
            }
        }
        NodeCommand::Update { node, availability, label_add, label_rm } => {
            let label_add = label_add.iter().map(|l| key_value(l, "label")).collect::<Result<_, _>>()?;
            let req = UpdateNodeRequest {
                node: node.clone(),
                availability: availability.unwrap_or_default(),
                label_add,
                label_rm,
                role: String::new(),
            };
            let n = c.update(req).await.map_err(&e)?.into_inner();
            match out {
                Output::Json => println!("{}", node_json(&n)),
                Output::Table => println!("{} ({}): {}, labels {:?}", n.hostname, n.id, n.availability, n.labels),
            }
        }
        NodeCommand::Rm { node, force } => {
            let r = c.remove(RemoveNodeRequest { node: node.clone(), force }).await.map_err(&e)?.into_inner();
            match out {
                Output::Json => println!("{}", json!({"removed": r.id})),
                Output::Table => println!("{node} ({}) removed", r.id),
            }
        }
        NodeCommand::Join { .. } | NodeCommand::Install { .. } => {
            return Err(CliError::Usage("node join and node install talk to the node itself, not to a manager".into()))
        }
    }
    Ok(())
}

/// `node join`: a node in maintenance mode joins through `manager` with `token`.
pub async fn join(cmd: NodeCommand, out: Output) -> Result<(), CliError> {
    let NodeCommand::Join {
        addr,
        token,
        manager,
        access: crate::cli::MaintenanceAccess { fingerprint, insecure, maintenance_token },
    } = cmd
    else {
        return Ok(());
    };
    let trust = Trust::maintenance(fingerprint, insecure)?;
    let mut c = client(&addr, &trust).await?;
    let r = c
        .join(JoinRequest { token, manager: manager.clone(), maintenance_token })
        .await
        .map_err(|s| CliError::from_status(&addr, s))?
        .into_inner();
    match out {
        Output::Json => {
            println!("{}", json!({"node": addr, "node_id": r.node_id, "cluster_id": r.cluster_id, "role": r.role}))
        }
        Output::Table => {
            println!("{addr}: joined cluster {} through {manager} as {} (node {})", r.cluster_id, r.role, r.node_id)
        }
    }
    Ok(())
}
