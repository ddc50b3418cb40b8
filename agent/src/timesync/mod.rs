//! The node's clock: an SNTP client that keeps it right, and what `health`
//! and joining know of it.
//!
//! TLS, leases, heartbeats and cron all read the wall clock, and a node has
//! no battery-backed guarantee that its clock is right. The servers come
//! from `orc.ntp=` (the agent's `--ntp-server`), else from DHCP option 42
//! (orc-init writes them to `<run>/ntp-servers`). The node's agent (started
//! by orc-init) steps the clock when it is off by more than
//! [`STEP_THRESHOLD`] and slews it otherwise; an agent started by hand
//! (tests, development) only measures. A node whose clock stays wildly off
//! ([`MAX_JOIN_OFFSET`]) refuses to join a cluster and says so.
//!
//! # Layout
//! - [`poll`]: the loop asking the servers.
//! - [`adjust`]: stepping and slewing the system clock.

pub mod adjust;
pub mod poll;

use std::path::PathBuf;
use std::sync::RwLock;
use std::time::Duration;

use crate::sync::{read, write};

/// Offsets above this are stepped, below it slewed (ntpd's choice).
pub const STEP_THRESHOLD: f64 = 0.128;
/// A node whose clock is further off than this (and not corrected) does
/// not join: its certificates, leases and timestamps would be wrong.
pub const MAX_JOIN_OFFSET: f64 = 10.0;
/// How long joining waits for a first answer when servers are known.
const FIRST_ANSWER_WAIT: Duration = Duration::from_secs(10);

/// One answer of an NTP server.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub server: String,
    /// Server time minus ours, in seconds, when it answered.
    pub offset: f64,
    /// Round trip, in seconds.
    pub delay: f64,
    pub stratum: u8,
    /// Unix milliseconds of the answer.
    pub at_ms: i64,
    /// The offset was corrected (stepped or slewed) after the answer.
    pub corrected: bool,
}

impl Sample {
    /// How far off the clock still is after what was done about it.
    pub fn residual(&self) -> f64 {
        if self.corrected {
            0.0
        } else {
            self.offset
        }
    }
}

/// What the client knows right now.
#[derive(Debug, Clone, Default)]
pub struct Status {
    pub servers: Vec<String>,
    /// The last answer.
    pub last: Option<Sample>,
    /// Why the last poll got no answer (cleared by an answer).
    pub error: Option<String>,
    /// Why the clock could not be set (cleared when it could).
    pub adjust_error: Option<String>,
    /// The last step, in seconds, and when (Unix ms).
    pub stepped: Option<(f64, i64)>,
    pub polls: u64,
}

pub struct TimeSync {
    /// From `orc.ntp=`; these come first.
    servers: Vec<String>,
    /// Written by orc-init from DHCP option 42, one per line.
    servers_file: PathBuf,
    /// This agent owns the node's clock (it was started by orc-init).
    pub disciplines: bool,
    status: RwLock<Status>,
    /// Polls done so far (joining waits for the first).
    polled: tokio::sync::watch::Sender<u64>,
}

impl TimeSync {
    pub fn new(servers: Vec<String>, servers_file: PathBuf, disciplines: bool) -> Self {
        Self { servers, servers_file, disciplines, status: RwLock::default(), polled: tokio::sync::watch::channel(0).0 }
    }

    /// The servers to ask: `orc.ntp=`'s, else DHCP's (re-read each poll,
    /// as leases change).
    pub fn servers(&self) -> Vec<String> {
        if !self.servers.is_empty() {
            return self.servers.clone();
        }
        std::fs::read_to_string(&self.servers_file)
            .map(|t| t.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect())
            .unwrap_or_default()
    }

    pub fn status(&self) -> Status {
        read(&self.status).clone()
    }

    pub(crate) fn update(&self, f: impl FnOnce(&mut Status)) {
        let polls = {
            let mut s = write(&self.status);
            f(&mut s);
            s.polls
        };
        self.polled.send_replace(polls);
    }

    /// The `clock` line of `health`: (ok, what it says).
    pub fn health(&self) -> (bool, String) {
        let s = self.status();
        let now = crate::clock::unix_ms();
        health_of(&s, self.disciplines, now)
    }

    /// Whether this node may join a cluster as far as its clock goes:
    /// waits briefly for a first answer when servers are known; refuses
    /// when the clock is known to be wildly off.
    pub async fn check_for_join(&self) -> Result<(), String> {
        let mut rx = self.polled.subscribe();
        if !self.servers().is_empty() {
            let _ = tokio::time::timeout(FIRST_ANSWER_WAIT, rx.wait_for(|n| *n > 0)).await;
        }
        join_verdict(&self.status())
    }
}

/// Seconds with a sign and millisecond precision.
fn secs(x: f64) -> String {
    format!("{x:+.3} s")
}

/// The `clock` health line of status `s` (`disciplines`: the agent sets
/// the clock), at Unix ms `now`.
pub fn health_of(s: &Status, disciplines: bool, now: i64) -> (bool, String) {
    if s.servers.is_empty() {
        return (
            true,
            "no NTP server: the clock is not checked (boot with orc.ntp=host[:port] or have DHCP offer option 42)"
                .into(),
        );
    }
    let Some(last) = &s.last else {
        let why = s.error.as_deref().unwrap_or("no poll yet");
        return (false, format!("not synchronized: no answer from {} ({why})", s.servers.join(", ")));
    };
    let ago = (now - last.at_ms).max(0) / 1000;
    let mut msg = format!(
        "offset {} from {} (stratum {}, delay {:.1} ms) {ago}s ago",
        secs(last.offset),
        last.server,
        last.stratum,
        last.delay * 1000.0
    );
    if let Some((step, _)) = s.stepped {
        msg.push_str(&format!("; stepped the clock by {}", secs(step)));
    }
    if !disciplines {
        msg.push_str("; measured only: this agent does not own the node's clock");
    }
    if let Some(e) = &s.adjust_error {
        msg.push_str(&format!("; cannot set the clock: {e}"));
    }
    if let Some(e) = &s.error {
        msg.push_str(&format!("; last poll failed: {e}"));
    }
    let off = last.residual().abs() > MAX_JOIN_OFFSET;
    let synchronized = s.error.is_none() && !off;
    let state = if synchronized {
        "synchronized"
    } else if off {
        "wildly off"
    } else {
        "not synchronized"
    };
    (synchronized, format!("{state}: {msg}"))
}

/// Refuses joining when the last answer says the clock is wildly off and
/// it could not be corrected.
pub fn join_verdict(s: &Status) -> Result<(), String> {
    let Some(last) = &s.last else { return Ok(()) };
    let residual = last.residual();
    if residual.abs() <= MAX_JOIN_OFFSET {
        return Ok(());
    }
    let why = match &s.adjust_error {
        Some(e) => format!("setting it failed: {e}"),
        None => "this agent does not own the node's clock".to_string(),
    };
    Err(format!(
        "this node's clock is {} off from the NTP server {} (more than {MAX_JOIN_OFFSET} s), and {why}: fix the \
         clock, or the NTP servers (orc.ntp=), and join again",
        secs(residual),
        last.server
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(offset: f64, corrected: bool) -> Sample {
        Sample { server: "10.0.2.2:123".into(), offset, delay: 0.001, stratum: 2, at_ms: 1_000, corrected }
    }

    #[test]
    fn health_says_what_it_knows() {
        let none = Status::default();
        let (ok, msg) = health_of(&none, true, 0);
        assert!(ok && msg.contains("orc.ntp="), "{msg}");

        let mut s = Status { servers: vec!["a:123".into()], error: Some("timed out".into()), ..Default::default() };
        let (ok, msg) = health_of(&s, true, 0);
        assert!(!ok && msg.contains("no answer from a:123 (timed out)"), "{msg}");

        s.error = None;
        s.last = Some(sample(0.0021, true));
        let (ok, msg) = health_of(&s, true, 13_000);
        assert!(ok && msg.starts_with("synchronized: offset +0.002 s") && msg.contains("12s ago"), "{msg}");

        s.last = Some(sample(3600.0, false));
        let (ok, msg) = health_of(&s, false, 1_000);
        assert!(!ok && msg.starts_with("wildly off") && msg.contains("measured only"), "{msg}");

        s.last = Some(sample(3600.0, true));
        s.stepped = Some((3600.0, 1_000));
        let (ok, msg) = health_of(&s, true, 1_000);
        assert!(ok && msg.contains("stepped the clock by +3600.000 s"), "{msg}");
    }

    #[test]
    fn joining_is_refused_only_when_the_clock_stays_wildly_off() {
        let mut s = Status { servers: vec!["a".into()], ..Default::default() };
        assert!(join_verdict(&s).is_ok(), "nothing known: nothing refused");
        s.last = Some(sample(-9.5, false));
        assert!(join_verdict(&s).is_ok());
        s.last = Some(sample(-3600.0, true));
        assert!(join_verdict(&s).is_ok(), "corrected");
        s.last = Some(sample(-3600.0, false));
        s.adjust_error = Some("EPERM".into());
        let e = join_verdict(&s).unwrap_err();
        assert!(e.contains("-3600.000 s off") && e.contains("EPERM") && e.contains("orc.ntp="), "{e}");
    }
}
