//! The SNTP client's loop: ask the servers in order until one answers,
//! correct the clock when this agent owns it, and come back later (sooner
//! after a step, to confirm it, or while no server answers).

use std::sync::Arc;
use std::time::Duration;

use super::{adjust, Sample, TimeSync, STEP_THRESHOLD};

/// Between answers once synchronized (timesyncd's and chrony's default minimum).
const POLL: Duration = Duration::from_secs(64);
/// The first retry while no server answers; doubled up to [`POLL`].
const RETRY: Duration = Duration::from_secs(2);
/// How long each server has to answer.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Asks `servers` in order; the first answer wins.
async fn ask(servers: &[String]) -> Result<Sample, String> {
    let mut client = rsntp::AsyncSntpClient::new();
    client.set_timeout(TIMEOUT);
    let mut errors = Vec::new();
    for server in servers {
        match client.synchronize(server.as_str()).await {
            Ok(r) => {
                return Ok(Sample {
                    server: server.clone(),
                    offset: r.clock_offset().as_secs_f64(),
                    delay: r.round_trip_delay().as_secs_f64(),
                    stratum: r.stratum(),
                    at_ms: crate::clock::unix_ms(),
                    corrected: false,
                })
            }
            Err(e) => errors.push(format!("{server}: {e}")),
        }
    }
    Err(errors.join("; "))
}

/// Runs for the agent's life.
pub async fn run(sync: Arc<TimeSync>) {
    let mut retry = RETRY;
    loop {
        let servers = sync.servers();
        if servers.is_empty() {
            sync.update(|s| {
                s.servers.clear();
                s.polls += 1;
            });
            // DHCP may offer some later (a renewed lease).
            tokio::time::sleep(POLL).await;
            continue;
        }
        let next = match ask(&servers).await {
            Ok(mut sample) => {
                retry = RETRY;
                let (adjusted, stepped) = if sync.disciplines { correct(&sample) } else { (Ok(()), false) };
                sample.corrected = sync.disciplines && adjusted.is_ok();
                if stepped && sample.corrected {
                    // When it answered, on the clock as it is now.
                    sample.at_ms += (sample.offset * 1000.0) as i64;
                }
                tracing::info!(server = %sample.server, offset_s = sample.offset, delay_s = sample.delay,
                    corrected = sample.corrected, stepped, "NTP answer");
                sync.update(|s| {
                    s.servers = servers;
                    if stepped && sample.corrected {
                        s.stepped = Some((sample.offset, sample.at_ms));
                    }
                    s.adjust_error = adjusted.err().map(|e| e.to_string());
                    s.error = None;
                    s.last = Some(sample);
                    s.polls += 1;
                });
                // Confirm a step at once.
                if stepped {
                    RETRY
                } else {
                    POLL
                }
            }
            Err(e) => {
                tracing::warn!(servers = ?servers, error = %e, "no NTP server answered");
                sync.update(|s| {
                    s.servers = servers;
                    s.error = Some(e);
                    s.polls += 1;
                });
                let wait = retry;
                retry = (retry * 2).min(POLL);
                wait
            }
        };
        tokio::time::sleep(next).await;
    }
}

/// Steps or slews by the sample's offset: (what happened, whether stepped).
fn correct(sample: &Sample) -> (Result<(), adjust::AdjustError>, bool) {
    if sample.offset.abs() > STEP_THRESHOLD {
        let r = adjust::step(sample.offset);
        match &r {
            Ok(()) => tracing::warn!(offset_s = sample.offset, server = %sample.server, "stepped the clock"),
            Err(e) => tracing::error!(error = %e, "cannot step the clock"),
        }
        (r, true)
    } else {
        (adjust::slew(sample.offset), false)
    }
}
