//! When a cron job runs: its schedule (croner) in its time zone
//! (chrono-tz), evaluated by the leader against the last scheduled time it
//! acted on, which lives in Raft with the service. Missed schedules (no
//! leader, a long pause) give at most one catch-up run, the latest one, and
//! none when it is more than the starting deadline late (Kubernetes' rule).
//! Pure: the unit tests drive the clock.

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;

use crate::cluster::objects::CronSchedule;

/// A parsed schedule.
pub struct Parsed {
    cron: croner::Cron,
    tz: Tz,
}

/// The schedule and time zone of `c`, or what is wrong with them.
pub fn parse(c: &CronSchedule) -> Result<Parsed, String> {
    let cron = croner::Cron::new(&c.schedule)
        .with_seconds_optional()
        .parse()
        .map_err(|e| format!("schedule {:?}: {e} (e.g. \"*/5 * * * *\": every five minutes)", c.schedule))?;
    let tz = match c.time_zone.as_str() {
        "" => Tz::UTC,
        z => z.parse::<Tz>().map_err(|_| format!("time zone {z:?} is not an IANA name (e.g. Europe/Berlin)"))?,
    };
    Ok(Parsed { cron, tz })
}

impl Parsed {
    /// The first scheduled time after `after_ms`.
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        let from = DateTime::<Utc>::from_timestamp_millis(after_ms)?.with_timezone(&self.tz);
        self.cron.find_next_occurrence(&from, false).ok().map(|t| t.timestamp_millis())
    }
}

/// What the schedule asks for at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Run for the schedule at this time.
    Run(i64),
    /// The schedule at this time came too late to run (past the deadline).
    Missed(i64),
}

/// What is due at `now`, the last schedule acted on being `last_ms`.
pub fn due(c: &CronSchedule, p: &Parsed, last_ms: i64, now: i64) -> Option<Due> {
    p.next_after(last_ms).filter(|t| *t <= now)?;
    // The latest time up to now, looked for in a window before now that
    // doubles until it holds one: a few steps however long it has been.
    let mut window = 1000i64;
    let latest = loop {
        let from = now.saturating_sub(window).max(last_ms);
        if let Some(mut latest) = p.next_after(from).filter(|t| *t <= now) {
            while let Some(t) = p.next_after(latest).filter(|t| *t <= now) {
                latest = t;
            }
            break latest;
        }
        if from == last_ms {
            return None;
        }
        window = window.saturating_mul(2);
    };
    if c.starting_deadline_ms > 0 && now - latest > c.starting_deadline_ms as i64 {
        return Some(Due::Missed(latest));
    }
    Some(Due::Run(latest))
}

/// `ms` as a time in the schedule's zone, for messages.
pub fn show(p: &Parsed, ms: i64) -> String {
    match p.tz.timestamp_millis_opt(ms).single() {
        Some(t) => t.format("%Y-%m-%d %H:%M:%S %Z").to_string(),
        None => ms.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::objects::Concurrency;

    fn sched(s: &str, tz: &str, deadline_ms: u64) -> CronSchedule {
        CronSchedule {
            schedule: s.into(),
            time_zone: tz.into(),
            concurrency: Concurrency::Allow,
            starting_deadline_ms: deadline_ms,
            success_history: 3,
            failed_history: 1,
            suspend: false,
        }
    }

    fn ms(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
    }

    #[test]
    fn runs_on_time_and_catches_up_once() {
        let c = sched("*/5 * * * *", "", 0);
        let p = parse(&c).unwrap();
        let last = ms("2026-01-01T00:00:00Z");
        assert_eq!(due(&c, &p, last, ms("2026-01-01T00:04:59Z")), None);
        assert_eq!(due(&c, &p, last, ms("2026-01-01T00:05:00Z")), Some(Due::Run(ms("2026-01-01T00:05:00Z"))));
        // Two hours without a leader: one run, for the latest schedule.
        assert_eq!(due(&c, &p, last, ms("2026-01-01T02:03:00Z")), Some(Due::Run(ms("2026-01-01T02:00:00Z"))));
        // ...and none when that is past the starting deadline.
        let strict = sched("*/5 * * * *", "", 60_000);
        assert_eq!(due(&strict, &p, last, ms("2026-01-01T02:03:00Z")), Some(Due::Missed(ms("2026-01-01T02:00:00Z"))));
        assert_eq!(due(&strict, &p, last, ms("2026-01-01T02:00:30Z")), Some(Due::Run(ms("2026-01-01T02:00:00Z"))));
        // Decades behind (a store from long ago): still the latest, at once.
        assert_eq!(due(&c, &p, 0, ms("2026-01-01T02:03:00Z")), Some(Due::Run(ms("2026-01-01T02:00:00Z"))));
    }

    #[test]
    fn time_zones_and_daylight_saving() {
        // 02:30 every day in Berlin: on 2026-03-29 02:30 does not exist
        // (clocks jump from 02:00 to 03:00); on 2026-10-25 it comes twice.
        let c = sched("30 2 * * *", "Europe/Berlin", 0);
        let p = parse(&c).unwrap();
        let before_spring = ms("2026-03-28T12:00:00Z");
        let next = p.next_after(before_spring).unwrap();
        assert!(next > ms("2026-03-29T00:00:00Z"), "{}", show(&p, next));
        let after = p.next_after(next).unwrap();
        assert!(after - next >= 23 * 3600 * 1000, "no run twice around the spring jump: {}", show(&p, after));
        // Winter time: 02:30 CET is 01:30 UTC.
        assert_eq!(p.next_after(ms("2026-12-01T00:00:00Z")), Some(ms("2026-12-01T01:30:00Z")));
        // Summer time: 02:30 CEST is 00:30 UTC.
        assert_eq!(p.next_after(ms("2026-07-01T00:00:00Z")), Some(ms("2026-07-01T00:30:00Z")));
    }

    #[test]
    fn mistakes_are_named() {
        let e = parse(&sched("every day", "", 0)).err().unwrap();
        assert!(e.contains("schedule \"every day\""), "{e}");
        let e = parse(&sched("* * * * *", "Mars/Olympus", 0)).err().unwrap();
        assert!(e.contains("not an IANA name"), "{e}");
    }
}
