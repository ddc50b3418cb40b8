//! `orcctl network …`: networks tasks join (create, ls, inspect, rm), on
//! any manager.

use orc_proto::cluster::networks_client::NetworksClient;
use orc_proto::cluster::*;
use serde_json::json;

use super::status_err;
use crate::cli::{NetworkCommand, Output};
use crate::connect::{manager, Trust};
use crate::error::CliError;
use crate::output::{ago, table};
use crate::parse::key_value;

fn network_json(n: &Network) -> serde_json::Value {
    let leases: Vec<_> =
        n.leases.iter().map(|l| json!({"node_id": l.node_id, "node": l.node_hostname, "subnet": l.subnet})).collect();
    let tasks: Vec<_> = n
        .tasks
        .iter()
        .map(|t| {
            json!({"id": t.id, "service": t.service, "slot": t.slot, "node": t.node_hostname,
                "address": t.address, "state": t.state})
        })
        .collect();
    json!({"id": n.id, "name": n.name, "namespace": n.namespace, "vni": n.vni, "subnet": n.subnet, "subnet_size": n.subnet_size,
        "builtin": n.builtin, "encrypted": n.encrypted, "attachable": n.attachable, "labels": n.labels, "created_ms": n.created_ms, "services": n.services,
        "leases": leases, "tasks": tasks})
}

fn network_row(n: &Network) -> Vec<String> {
    let made = if n.builtin { "built-in".to_string() } else { ago(n.created_ms) };
    let services = if n.services.is_empty() { "-".to_string() } else { n.services.join(",") };
    let yes_no = |b: bool| if b { "yes" } else { "no" }.to_string();
    vec![
        n.name.clone(),
        n.vni.to_string(),
        format!("{} (/{} a node)", n.subnet, n.subnet_size),
        yes_no(n.encrypted),
        yes_no(n.attachable),
        services,
        made,
    ]
}

/// `network create|ls|inspect|rm`.
pub async fn run(cmd: NetworkCommand, candidates: &[String], trust: &Trust, out: Output) -> Result<(), CliError> {
    let (addr, channel) = manager(candidates, trust).await?;
    let mut c = NetworksClient::new(crate::connect::scoped(channel, trust)?);
    let e = status_err(&addr);
    match cmd {
        NetworkCommand::Create { name, subnet, subnet_size, encrypted, attachable, label } => {
            let labels = label.iter().map(|l| key_value(l, "label")).collect::<Result<_, _>>()?;
            let req = CreateNetworkRequest {
                name,
                subnet: subnet.unwrap_or_default(),
                subnet_size: subnet_size.map(u32::from).unwrap_or_default(),
                labels,
                encrypted,
                attachable,
            };
            let n = c.create(req).await.map_err(&e)?.into_inner();
            match out {
                Output::Json => println!("{}", network_json(&n)),
                Output::Table => {
                    let encrypted = if n.encrypted { ", encrypted" } else { "" };
                    let attachable = if n.attachable { ", attachable" } else { "" };
                    println!("{} (vni {}, {}{encrypted}{attachable})", n.name, n.vni, n.subnet)
                }
            }
        }
        NetworkCommand::Ls => {
            let list = c.list(ListNetworksRequest {}).await.map_err(&e)?.into_inner().networks;
            match out {
                Output::Json => println!("{}", json!(list.iter().map(network_json).collect::<Vec<_>>())),
                Output::Table => table(
                    &["NAME", "VNI", "SUBNET", "ENCRYPTED", "ATTACHABLE", "SERVICES", "CREATED"],
                    &list.iter().map(network_row).collect::<Vec<_>>(),
                ),
            }
        }
        NetworkCommand::Inspect { network } => {
            let n = c.inspect(InspectNetworkRequest { network }).await.map_err(&e)?.into_inner();
            println!("{}", serde_json::to_string_pretty(&network_json(&n)).unwrap_or_default());
        }
        NetworkCommand::Rm { network } => {
            let r = c.remove(RemoveNetworkRequest { network }).await.map_err(&e)?.into_inner();
            match out {
                Output::Json => println!("{}", json!({"removed": r.name})),
                Output::Table => println!("{} removed", r.name),
            }
        }
    }
    Ok(())
}
