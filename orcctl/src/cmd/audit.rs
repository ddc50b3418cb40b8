//! `orcctl audit`: the calls people made that changed something (or were
//! refused), from each node's audit log — by default every manager of the
//! context (cluster writes are recorded where they were taken), with
//! `--nodes` any node. Oldest first; `-f` then follows.

use futures::StreamExt;
use orc_proto::machine::machine_client::MachineClient;
use orc_proto::machine::{AuditRecord, AuditRequest};
use serde_json::json;

use super::events::{since_ms, when};
use crate::cli::Output;
use crate::connect::{self, Trust};
use crate::error::CliError;
use crate::output::Columns;

const HEADER: &[&str] = &["TIME", "NODE", "WHO", "ROLE", "METHOD", "TARGET", "RESULT"];
/// Widths while following (later rows are not known yet).
const WIDTHS: &[usize] = &[24, 15, 10, 8, 20, 12];

fn result(r: &AuditRecord) -> String {
    match (tonic::Code::from_i32(r.code), r.message.as_str()) {
        (tonic::Code::Ok, _) => "ok".into(),
        (code, "") => format!("{code:?}"),
        (code, m) => format!("{code:?}: {m}"),
    }
}

fn row(node: &str, r: &AuditRecord) -> Vec<String> {
    let who = if r.who.is_empty() { format!("(no certificate, {})", r.remote) } else { r.who.clone() };
    vec![when(r.time_ms), node.to_string(), who, r.role.clone(), r.method.clone(), r.target.clone(), result(r)]
}

fn record_json(node: &str, r: &AuditRecord) -> serde_json::Value {
    json!({"time_ms": r.time_ms, "time": when(r.time_ms), "node": node, "who": r.who, "role": r.role,
        "serial": r.serial, "remote": r.remote, "method": r.method, "target": r.target, "code": r.code,
        "result": result(r)})
}

pub async fn run(
    nodes: &[String],
    trust: &Trust,
    out: Output,
    follow: bool,
    since: Option<String>,
) -> Result<(), CliError> {
    let since_ms = since.as_deref().map(|s| since_ms(s, crate::output::now_ms())).transpose()?.unwrap_or(0);
    let mut streams = Vec::new();
    for n in nodes {
        let mut c = MachineClient::new(connect::channel(n, trust).await?);
        let s = c.audit(AuditRequest { follow, since_ms }).await.map_err(|s| CliError::from_status(n, s))?;
        let node = n.clone();
        streams.push(s.into_inner().map(move |r| (node.clone(), r)).boxed());
    }
    let columns = (follow && out == Output::Table).then(|| Columns::print(HEADER, &[], WIDTHS));
    let mut kept = Vec::new();
    let mut all = futures::stream::select_all(streams);
    while let Some((node, r)) = all.next().await {
        let r = r.map_err(|s| CliError::from_status(&node, s))?;
        match (out, &columns) {
            (Output::Json, _) if follow => println!("{}", record_json(&node, &r)),
            (Output::Table, Some(c)) => c.line(&row(&node, &r)),
            _ => kept.push((node, r)),
        }
        use std::io::Write;
        let _ = std::io::stdout().flush();
    }
    // Several nodes' logs, merged by time.
    kept.sort_by_key(|(_, r)| r.time_ms);
    match out {
        Output::Json => kept.iter().for_each(|(n, r)| println!("{}", record_json(n, r))),
        Output::Table if columns.is_none() => {
            Columns::print(HEADER, &kept.iter().map(|(n, r)| row(n, r)).collect::<Vec<_>>(), &[]);
        }
        Output::Table => {}
    }
    Ok(())
}
