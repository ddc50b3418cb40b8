//! The progress of an update or rollback, until it converges: a line each
//! time it moves (`updating: 3/6 tasks updated`), then how it ended. A
//! paused or rolled-back update is an error (exit 1) with its reason;
//! Ctrl-C leaves it running.

use std::time::Duration;

use orc_proto::cluster::services_client::ServicesClient;
use orc_proto::cluster::{InspectServiceRequest, Service};
use serde_json::json;

use super::service::update_line;
use crate::cli::Output;
use crate::error::CliError;

const POLL: Duration = Duration::from_millis(500);

/// Follows the update of `started` (as the update call answered).
pub async fn follow(
    c: &mut ServicesClient<crate::connect::Scoped>,
    e: &impl Fn(tonic::Status) -> CliError,
    started: &Service,
    out: Output,
) -> Result<(), CliError> {
    let name = started.spec.as_ref().map(|s| s.name.clone()).unwrap_or_else(|| started.id.clone());
    let rollback = started.update_status.as_ref().is_some_and(|u| u.state.starts_with("roll"));
    let mut last = String::new();
    loop {
        let s = c.inspect(InspectServiceRequest { service: started.id.clone() }).await.map_err(e)?.into_inner();
        let line = update_line(&s);
        let state = s.update_status.as_ref().map(|u| u.state.clone()).unwrap_or_default();
        if line != last {
            match out {
                Output::Json => println!(
                    "{}",
                    json!({"service": name, "state": state, "updated": s.updated_tasks, "desired": s.desired_tasks,
                        "message": s.update_status.as_ref().map(|u| u.message.clone()).unwrap_or_default()})
                ),
                Output::Table => println!("{name}: {line}"),
            }
            last = line.clone();
        }
        match state.as_str() {
            "completed" => return Ok(()),
            "rolled-back" if rollback => return Ok(()),
            "rolled-back" | "paused" | "rollback-paused" => {
                let hint = if state.ends_with("paused") {
                    format!(
                        "; fix the spec and `orcctl service update {name}`, or `orcctl service update --resume {name}`"
                    )
                } else {
                    String::new()
                };
                return Err(CliError::Update(format!("{name}: {line}{hint}")));
            }
            "" => return Ok(()),
            _ => {}
        }
        tokio::time::sleep(POLL).await;
    }
}
