//! `orcctl volume …`: named storage that outlives tasks (create, ls,
//! inspect, rm), on any manager.

use orc_proto::cluster::volumes_client::VolumesClient;
use orc_proto::cluster::*;
use serde_json::json;

use super::status_err;
use crate::cli::{Output, VolumeCommand};
use crate::connect::{manager, Trust};
use crate::error::CliError;
use crate::output::{ago, bytes, table};
use crate::parse::{key_value, parse_bytes};

fn volume_json(v: &Volume) -> serde_json::Value {
    json!({"id": v.id, "name": v.name, "namespace": v.namespace, "labels": v.labels, "created_ms": v.created_ms,
        "slot_service": v.slot_service, "slot": v.slot, "node_id": v.node_id, "node": v.node_hostname,
        "services": v.services, "tasks": v.tasks, "size": v.size, "driver": v.driver,
        "nfs_source": v.nfs_source, "nfs_dir": v.nfs_dir, "nfs_options": v.nfs_options})
}

fn row(v: &Volume) -> Vec<String> {
    let dash = |s: String| if s.is_empty() { "-".to_string() } else { s };
    let slot = if v.slot > 0 { format!("{}.{}", v.slot_service, v.slot) } else { String::new() };
    let size = if v.size > 0 { bytes(v.size) } else { String::new() };
    vec![
        v.name.clone(),
        v.driver.clone(),
        dash(size),
        dash(slot),
        dash(v.node_hostname.clone()),
        dash(v.services.join(",")),
        ago(v.created_ms),
    ]
}

/// `volume create|ls|inspect|rm`.
pub async fn run(cmd: VolumeCommand, candidates: &[String], trust: &Trust, out: Output) -> Result<(), CliError> {
    let (addr, channel) = manager(candidates, trust).await?;
    let mut c = VolumesClient::new(crate::connect::scoped(channel, trust)?);
    let e = status_err(&addr);
    match cmd {
        VolumeCommand::Create { name, label, size, opt } => {
            let labels = label.iter().map(|l| key_value(l, "label")).collect::<Result<_, _>>()?;
            let options = opt.iter().map(|o| key_value(o, "opt")).collect::<Result<_, _>>()?;
            let size = size.as_deref().map(parse_bytes).transpose()?.unwrap_or(0);
            let req = CreateVolumeRequest { name, labels, size, options };
            let v = c.create(req).await.map_err(&e)?.into_inner();
            match out {
                Output::Json => println!("{}", volume_json(&v)),
                Output::Table => println!("volume {} created", v.name),
            }
        }
        VolumeCommand::Ls => {
            let list = c.list(ListVolumesRequest {}).await.map_err(&e)?.into_inner().volumes;
            match out {
                Output::Json => println!("{}", json!(list.iter().map(volume_json).collect::<Vec<_>>())),
                Output::Table => table(
                    &["NAME", "DRIVER", "SIZE", "SLOT", "NODE", "SERVICES", "CREATED"],
                    &list.iter().map(row).collect::<Vec<_>>(),
                ),
            }
        }
        VolumeCommand::Inspect { name } => {
            let v = c.inspect(InspectVolumeRequest { name }).await.map_err(&e)?.into_inner();
            println!("{}", serde_json::to_string_pretty(&volume_json(&v)).unwrap_or_default());
        }
        VolumeCommand::Rm { name } => {
            let r = c.remove(RemoveVolumeRequest { name }).await.map_err(&e)?.into_inner();
            match out {
                Output::Json => println!("{}", json!({"removed": r.name})),
                Output::Table => println!("volume {} removed", r.name),
            }
        }
    }
    Ok(())
}
