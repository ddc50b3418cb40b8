//! `--watch` of `service ls|ps` and `node ls|ps`: the table as it is, then
//! a row each time an object changes, from the managers' watch stream. A
//! deleted object's row says so in its last column; with `-o json`, one
//! line per event: `{"type": "added|modified|deleted", "object": …}`, the
//! listing first (as added), in the table's order.

use std::cmp::Ordering;

use orc_proto::cluster::watch_client::WatchClient;
use orc_proto::cluster::{watch_event, ChangeType, WatchRequest};
use serde_json::json;

use crate::cli::Output;
use crate::error::CliError;
use crate::output::Columns;

/// How one kind of object is shown in a table and in JSON.
pub struct Shown<T: 'static> {
    pub header: &'static [&'static str],
    /// The least width of each column while watching (room for the
    /// longest state a later row may show).
    pub widths: &'static [usize],
    pub row: fn(&T) -> Vec<String>,
    pub json: fn(&T) -> serde_json::Value,
    /// The order of the first table.
    pub order: fn(&T, &T) -> Ordering,
    /// The object of this kind in an event.
    pub pick: fn(watch_event::Object) -> Option<T>,
}

/// Prints the objects `req` asks for, then each change, until the stream
/// ends (the manager went away: an error saying so) or the user stops it.
pub async fn follow<T>(
    addr: &str,
    channel: crate::connect::Scoped,
    req: WatchRequest,
    out: Output,
    shown: &Shown<T>,
) -> Result<(), CliError> {
    let e = super::status_err(addr);
    let mut stream = WatchClient::new(channel).watch(req).await.map_err(&e)?.into_inner();
    let mut listing: Vec<T> = Vec::new();
    let mut columns: Option<Columns> = None;
    while let Some(r) = stream.message().await.map_err(&e)? {
        for e in r.events {
            let change = ChangeType::try_from(e.r#type).unwrap_or(ChangeType::Unspecified);
            let Some(o) = e.object.and_then(shown.pick) else { continue };
            if r.listing {
                listing.push(o);
                continue;
            }
            print(&o, change, out, shown, columns.as_ref());
        }
        if r.listed {
            listing.sort_by(shown.order);
            match out {
                Output::Table => {
                    columns = Some(Columns::print(
                        shown.header,
                        &listing.iter().map(shown.row).collect::<Vec<_>>(),
                        shown.widths,
                    ))
                }
                Output::Json => listing.iter().for_each(|o| print(o, ChangeType::Added, out, shown, None)),
            }
            listing.clear();
        }
    }
    Err(CliError::Rpc {
        node: addr.to_string(),
        code: tonic::Code::Unavailable,
        msg: "the manager ended the watch (it stopped or left the quorum); run it again".into(),
    })
}

fn print<T>(o: &T, change: ChangeType, out: Output, shown: &Shown<T>, columns: Option<&Columns>) {
    use std::io::Write;
    let kind = match change {
        ChangeType::Added => "added",
        ChangeType::Modified => "modified",
        ChangeType::Deleted => "deleted",
        ChangeType::Unspecified => "unknown",
    };
    match (out, columns) {
        (Output::Json, _) => println!("{}", json!({"type": kind, "object": (shown.json)(o)})),
        (Output::Table, Some(c)) => {
            let mut row = (shown.row)(o);
            if change == ChangeType::Deleted {
                if let Some(last) = row.last_mut() {
                    last.push_str(if last.is_empty() { "(deleted)" } else { " (deleted)" });
                }
            }
            c.line(&row);
        }
        (Output::Table, None) => {}
    }
    let _ = std::io::stdout().flush();
}
