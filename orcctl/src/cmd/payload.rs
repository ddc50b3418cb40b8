//! `orcctl secret …` and `orcctl config …`: files with versions the
//! cluster mounts into tasks (create, update, ls, inspect, rm), on any
//! manager. A secret's content is sent once and never shown again.

use std::io::Read;

use orc_proto::cluster::configs_client::ConfigsClient;
use orc_proto::cluster::secrets_client::SecretsClient;
use orc_proto::cluster::services_client::ServicesClient;
use orc_proto::cluster::*;
use serde_json::json;

use super::status_err;
use crate::cli::{Output, PayloadCommand};
use crate::connect::{manager, Trust};
use crate::error::CliError;
use crate::output::{ago, bytes, table};
use crate::parse::key_value;

/// The largest secret or config the managers take (500 KiB).
const MAX_BYTES: u64 = 500 * 1024;

/// Which of the two the command is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadKind {
    Secret,
    Config,
}

impl PayloadKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Secret => "secret",
            Self::Config => "config",
        }
    }
}

/// The API of one kind (the two services take the same messages).
enum Client {
    Secrets(SecretsClient<crate::connect::Scoped>),
    Configs(ConfigsClient<crate::connect::Scoped>),
}

impl Client {
    async fn create(&mut self, r: CreatePayloadRequest) -> Result<Payload, tonic::Status> {
        Ok(match self {
            Self::Secrets(c) => c.create(r).await?,
            Self::Configs(c) => c.create(r).await?,
        }
        .into_inner())
    }

    async fn update(&mut self, r: UpdatePayloadRequest) -> Result<UpdatePayloadResponse, tonic::Status> {
        Ok(match self {
            Self::Secrets(c) => c.update(r).await?,
            Self::Configs(c) => c.update(r).await?,
        }
        .into_inner())
    }

    async fn list(&mut self) -> Result<Vec<Payload>, tonic::Status> {
        Ok(match self {
            Self::Secrets(c) => c.list(ListPayloadsRequest {}).await?,
            Self::Configs(c) => c.list(ListPayloadsRequest {}).await?,
        }
        .into_inner()
        .payloads)
    }

    async fn inspect(&mut self, name: String) -> Result<Payload, tonic::Status> {
        let r = InspectPayloadRequest { name };
        Ok(match self {
            Self::Secrets(c) => c.inspect(r).await?,
            Self::Configs(c) => c.inspect(r).await?,
        }
        .into_inner())
    }

    async fn remove(&mut self, name: String) -> Result<RemovePayloadResponse, tonic::Status> {
        let r = RemovePayloadRequest { name };
        Ok(match self {
            Self::Secrets(c) => c.remove(r).await?,
            Self::Configs(c) => c.remove(r).await?,
        }
        .into_inner())
    }
}

/// The content of FILE, or of standard input for `-`.
fn read(kind: PayloadKind, file: &std::path::Path) -> Result<Vec<u8>, CliError> {
    let mut data = Vec::new();
    let what = if file.as_os_str() == "-" { "standard input".to_string() } else { file.display().to_string() };
    let res = if file.as_os_str() == "-" {
        std::io::stdin().lock().take(MAX_BYTES + 1).read_to_end(&mut data)
    } else {
        std::fs::File::open(file).and_then(|f| f.take(MAX_BYTES + 1).read_to_end(&mut data))
    };
    res.map_err(|e| CliError::Usage(format!("reading the {} from {what}: {e}", kind.as_str())))?;
    if data.len() as u64 > MAX_BYTES {
        return Err(CliError::Usage(format!(
            "{what} is larger than 500 KiB, the most a {} holds: keep larger files in a volume or the image",
            kind.as_str()
        )));
    }
    Ok(data)
}

fn payload_json(kind: PayloadKind, p: &Payload) -> serde_json::Value {
    let versions: Vec<_> =
        p.versions.iter().map(|v| json!({"version": v.version, "size": v.size, "created_ms": v.created_ms})).collect();
    let mut j = json!({"id": p.id, "name": p.name, "namespace": p.namespace, "version": p.version, "versions": versions, "labels": p.labels,
        "created_ms": p.created_ms, "updated_ms": p.updated_ms, "services": p.services});
    if kind == PayloadKind::Config {
        j["data"] = json!(String::from_utf8_lossy(&p.data));
    }
    j
}

fn row(p: &Payload) -> Vec<String> {
    let size = p.versions.iter().find(|v| v.version == p.version).map(|v| bytes(v.size)).unwrap_or_default();
    let services = if p.services.is_empty() { "-".to_string() } else { p.services.join(",") };
    vec![p.name.clone(), p.version.to_string(), size, services, ago(p.created_ms), ago(p.updated_ms)]
}

/// `secret|config create|update|ls|inspect|rm`.
pub async fn run(
    kind: PayloadKind,
    cmd: PayloadCommand,
    candidates: &[String],
    trust: &Trust,
    out: Output,
) -> Result<(), CliError> {
    let (addr, channel) = manager(candidates, trust).await?;
    let mut c = match kind {
        PayloadKind::Secret => Client::Secrets(SecretsClient::new(crate::connect::scoped(channel.clone(), trust)?)),
        PayloadKind::Config => Client::Configs(ConfigsClient::new(crate::connect::scoped(channel.clone(), trust)?)),
    };
    let e = status_err(&addr);
    let k = kind.as_str();
    match cmd {
        PayloadCommand::Create { name, file, label } => {
            let labels = label.iter().map(|l| key_value(l, "label")).collect::<Result<_, _>>()?;
            let data = read(kind, &file)?;
            let p = c.create(CreatePayloadRequest { name, data, labels }).await.map_err(&e)?;
            match out {
                Output::Json => println!("{}", payload_json(kind, &p)),
                Output::Table => println!("{k} {} created (version {})", p.name, p.version),
            }
        }
        PayloadCommand::Update { name, file, detach } => {
            let data = read(kind, &file)?;
            let r = c.update(UpdatePayloadRequest { name: name.clone(), data }).await.map_err(&e)?;
            let version = r.payload.as_ref().map_or(0, |p| p.version);
            match out {
                Output::Json => {
                    println!("{}", json!({"name": name, "version": version, "services": r.services}))
                }
                Output::Table if r.services.is_empty() => println!("{k} {name} version {version} stored"),
                Output::Table => {
                    println!("{k} {name} version {version} stored; rolling {}", r.services.join(", "))
                }
            }
            if !detach {
                let mut services = ServicesClient::new(crate::connect::scoped(channel, trust)?);
                for s in &r.services {
                    let cur =
                        services.inspect(InspectServiceRequest { service: s.clone() }).await.map_err(&e)?.into_inner();
                    super::rollout::follow(&mut services, &e, &cur, out).await?;
                }
            }
        }
        PayloadCommand::Ls => {
            let list = c.list().await.map_err(&e)?;
            match out {
                Output::Json => println!("{}", json!(list.iter().map(|p| payload_json(kind, p)).collect::<Vec<_>>())),
                Output::Table => table(
                    &["NAME", "VERSION", "SIZE", "SERVICES", "CREATED", "UPDATED"],
                    &list.iter().map(row).collect::<Vec<_>>(),
                ),
            }
        }
        PayloadCommand::Inspect { name } => {
            let p = c.inspect(name).await.map_err(&e)?;
            println!("{}", serde_json::to_string_pretty(&payload_json(kind, &p)).unwrap_or_default());
        }
        PayloadCommand::Rm { name } => {
            let r = c.remove(name).await.map_err(&e)?;
            match out {
                Output::Json => println!("{}", json!({"removed": r.name})),
                Output::Table => println!("{k} {} removed", r.name),
            }
        }
        // `config`'s old spellings are handled before a manager is needed (`super::run`).
        PayloadCommand::Contexts | PayloadCommand::UseContext { .. } | PayloadCommand::Renew => {
            return Err(CliError::Usage(format!("`orcctl {k}` has create, update, ls, inspect and rm")));
        }
    }
    Ok(())
}
