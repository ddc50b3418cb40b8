//! The leader's autoscaler: every [`SYNC`], each autoscaled service's
//! count is decided ([`super::autoscale::decide`]) from its tasks'
//! measurements ([`super::usage`]) and written, with the status, as a
//! conditional put of the service (the orchestrator then scales as for
//! `service scale`). The scale-down window's recommendations are leader
//! memory: a new leader starts each window with the count it finds, so it
//! scales nothing down before a window has passed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::autoscale::{self, Seen};
use super::objects::{AutoscaleStatus, Service, View};
use super::usage::Measurements;
use crate::model::db::{Command, Key, Kind, Object};

/// How often services are looked at (Kubernetes' default).
pub const SYNC: Duration = Duration::from_secs(15);
/// A status that differs only in when it was checked is written this often.
const REFRESH_MS: i64 = 60_000;

#[derive(Debug, Default)]
pub struct Autoscaler {
    last: Option<Instant>,
    /// Service id → the recommendations of its scale-down window.
    windows: HashMap<String, Vec<(i64, u64)>>,
}

/// Whether `a` and `b` say different things (the time of the check aside).
fn differs(a: &AutoscaleStatus, b: &AutoscaleStatus) -> bool {
    AutoscaleStatus { checked_ms: 0, ..a.clone() } != AutoscaleStatus { checked_ms: 0, ..b.clone() }
}

/// Keeps a scale-up within the namespace's quota: the count grows only as
/// far as the quota allows (never shrinks for it), and the status says so.
fn hold_to_quota(d: &mut autoscale::Decision, v: &View, spec: &crate::model::objects::ServiceSpec) {
    if d.replicas <= spec.replicas {
        return;
    }
    let Some(cap) = super::quota::max_replicas(v, spec) else { return };
    if d.replicas <= cap {
        return;
    }
    let held = cap.max(spec.replicas);
    let why = format!(
        "held at {held} (asked {}) by the quota of namespace {}",
        d.replicas,
        crate::model::namespace::shown(&spec.namespace)
    );
    match d.status.decisions.last_mut() {
        // Nothing changes after all: the decision did not happen.
        Some(last) if held == spec.replicas && last.to == d.replicas => {
            d.status.decisions.pop();
        }
        Some(_) if held == spec.replicas => {}
        Some(last) => {
            last.to = held;
            last.reason = format!("{}; {why}", last.reason);
        }
        None => {}
    }
    d.status.message = why;
    d.replicas = held;
}

impl Autoscaler {
    /// Leadership began: nothing of the windows is known.
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// The writes of this sync (none until [`SYNC`] passed since the last).
    pub fn pass(&mut self, v: &View, m: &Measurements, now: i64) -> Vec<Command> {
        if self.last.is_some_and(|t| t.elapsed() < SYNC) {
            return Vec::new();
        }
        self.last = Some(Instant::now());
        m.prune();
        self.windows.retain(|id, _| v.services.get(id).is_some_and(|s| s.spec.autoscale.is_some()));
        let mut cmds = Vec::new();
        for s in v.services.values() {
            let Some(a) = &s.spec.autoscale else { continue };
            let window = self.windows.entry(s.id.clone()).or_insert_with(|| vec![(now, s.spec.replicas)]);
            window.retain(|(t, _)| *t > now - a.scale_down_window_ms as i64);
            let tasks: Vec<Seen> = v
                .tasks_of(&s.id)
                .filter(|t| t.live())
                .map(|t| {
                    let sample = m.get(&t.id);
                    Seen {
                        ready: t.ready(),
                        cpu_millis: sample.map(|x| x.cpu_millis),
                        memory: sample.and_then(|x| x.memory),
                    }
                })
                .collect();
            let mut d = autoscale::decide(&s.spec, a, s.autoscale_status.as_ref(), &tasks, window, now);
            hold_to_quota(&mut d, v, &s.spec);
            if let Some(r) = d.recommendation {
                window.push((now, r));
            }
            let scaled = d.replicas != s.spec.replicas;
            let worth = scaled
                || s.autoscale_status
                    .as_ref()
                    .is_none_or(|o| differs(o, &d.status) || now - o.checked_ms >= REFRESH_MS);
            if !worth {
                continue;
            }
            if scaled {
                tracing::info!(service = %s.spec.name, from = s.spec.replicas, to = d.replicas, reason = %d.status.message, "autoscaling");
            }
            let mut new = Service::clone(s);
            new.spec.replicas = d.replicas;
            new.autoscale_status = Some(d.status);
            let version = v.version_of(&Key::new(Kind::Service, s.id.as_str()));
            cmds.push(Command::put_if(s.id.clone(), Object::Service(Arc::new(new)), version));
        }
        cmds
    }
}
