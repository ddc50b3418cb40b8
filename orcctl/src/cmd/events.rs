//! `orcctl events`: the state changes the managers keep (services, tasks,
//! updates, probes, autoscaling, nodes), oldest first; `-f` then follows.

use orc_proto::cluster::watch_client::WatchClient;
use orc_proto::cluster::{Event, EventsRequest};
use serde_json::json;
use time::format_description::well_known::Rfc3339;

use crate::cli::Output;
use crate::connect::{manager, Trust};
use crate::error::CliError;
use crate::output::Columns;
use crate::parse::parse_duration;

const HEADER: &[&str] = &["TIME", "OBJECT", "NAME", "ACTION", "MESSAGE"];
/// Widths while following (later rows are not known yet).
const WIDTHS: &[usize] = &[24, 7, 16, 12];

/// `--since`: a duration back from now (10m, 2h) or an RFC 3339 time.
pub fn since_ms(text: &str, now_ms: i64) -> Result<i64, CliError> {
    if let Ok(t) = time::OffsetDateTime::parse(text, &Rfc3339) {
        return Ok((t.unix_timestamp_nanos() / 1_000_000) as i64);
    }
    match parse_duration(text) {
        Ok(ms) => Ok(now_ms - ms as i64),
        Err(_) => Err(CliError::Usage(format!(
            "--since {text:?}: give a duration back from now (10m, 2h) or a time (2026-12-03T10:00:00Z)"
        ))),
    }
}

/// An event's time as RFC 3339 in UTC, to the millisecond.
pub fn when(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let t = t.replace_nanosecond(t.millisecond() as u32 * 1_000_000).unwrap_or(t);
    t.format(&Rfc3339).unwrap_or_default()
}

pub fn row(e: &Event) -> Vec<String> {
    vec![when(e.time_ms), e.subject.clone(), e.name.clone(), e.action.clone(), e.message.clone()]
}

pub fn event_json(e: &Event) -> serde_json::Value {
    json!({"time_ms": e.time_ms, "time": when(e.time_ms), "subject": e.subject, "id": e.id, "name": e.name,
        "action": e.action, "message": e.message, "service_id": e.service_id, "version": e.version})
}

pub async fn run(
    candidates: &[String],
    trust: &Trust,
    out: Output,
    follow: bool,
    service: Option<String>,
    since: Option<String>,
) -> Result<(), CliError> {
    let now = crate::output::now_ms();
    let since_ms = since.as_deref().map(|s| since_ms(s, now)).transpose()?.unwrap_or(0);
    let (addr, channel) = manager(candidates, trust).await?;
    let e = super::status_err(&addr);
    let req = EventsRequest { service: service.unwrap_or_default(), since_ms, follow };
    let mut stream =
        WatchClient::new(crate::connect::scoped(channel, trust)?).events(req).await.map_err(&e)?.into_inner();
    let mut kept = Vec::new();
    // Following, rows go out as they come, under a header of fixed widths.
    let columns = (follow && out == Output::Table).then(|| Columns::print(HEADER, &[], WIDTHS));
    while let Some(ev) = stream.message().await.map_err(&e)? {
        match (out, &columns) {
            (Output::Json, _) => println!("{}", event_json(&ev)),
            (Output::Table, Some(c)) => c.line(&row(&ev)),
            (Output::Table, None) => kept.push(ev),
        }
        use std::io::Write;
        let _ = std::io::stdout().flush();
    }
    if columns.is_none() && out == Output::Table {
        Columns::print(HEADER, &kept.iter().map(row).collect::<Vec<_>>(), &[]);
    }
    if follow {
        return Err(CliError::Rpc {
            node: addr.to_string(),
            code: tonic::Code::Unavailable,
            msg: "the manager ended the stream (it stopped or left the quorum); run it again".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_a_duration_or_a_time() {
        assert_eq!(since_ms("10m", 1_000_000).unwrap(), 400_000);
        assert_eq!(since_ms("1970-01-01T00:00:01Z", 0).unwrap(), 1000);
        let e = since_ms("yesterday", 0).unwrap_err().to_string();
        assert!(e.contains("--since \"yesterday\""), "{e}");
        assert_eq!(when(1_500), "1970-01-01T00:00:01.5Z");
    }
}
