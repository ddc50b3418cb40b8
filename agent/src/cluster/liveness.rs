//! Node liveness on the leader: when each node was last heard of, and the
//! nodes that went silent too long (down: their tasks go elsewhere).
//!
//! Liveness is leader memory, not replicated: a new leader gives every node
//! a full grace period from its election before calling it down. And a
//! leader that did not run for a while itself (a loaded VM, a stopped
//! process, a host under swap) heard nobody meanwhile: that silence is its
//! own, so it is forgiven ([`watch_stalls`]) rather than blamed on the nodes.
//!
//! The leader also hears its own node, whose heartbeats cross no network.
//! When those are late too, the leader's dispatch path is what is slow (a
//! starved process that still ticks): nobody is judged while its own node
//! is silent, and once it is heard again that silence is forgiven to all,
//! as Kubernetes' node controller stops evicting when every node of a zone
//! goes quiet at once. Bounded by [`SELF_HOLD_MAX`], so a leader whose own
//! session is broken still judges the others.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::objects::{NodeStatus, View};
use crate::model::db::Command;
use crate::model::patch::NodePatch;

/// A node silent this long is down and its tasks go elsewhere.
pub const GRACE: Duration = Duration::from_secs(5);
/// Added to the grace right after an election: nodes still waiting on the
/// old leader (heartbeat timeout) and reconnecting (session open) must not
/// be called down.
const ELECTION_EXTRA: Duration = Duration::from_secs(15);
/// The leader's own node silent this long: its dispatch path is slow.
const SELF_LATE: Duration = Duration::from_millis(2500);
/// At most this long is judgement held for the leader's own silence.
const SELF_HOLD_MAX: Duration = Duration::from_secs(30);
/// How often [`watch_stalls`] looks at the clock.
const STALL_TICK: Duration = Duration::from_millis(250);
/// Later than this past its tick, this process was not running.
const STALL_MIN: Duration = Duration::from_secs(1);

/// When each node was last heard of.
#[derive(Default)]
pub struct Liveness {
    seen: Mutex<HashMap<String, Instant>>,
    /// When this process last looked at the clock ([`Self::catch_up`]).
    ticked: Mutex<Option<Instant>>,
    /// The leader's own node (set at [`Self::reset`]).
    me: Mutex<Option<String>>,
}

impl Liveness {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        crate::sync::lock(&self.seen)
    }

    pub fn heard(&self, node: &str) {
        let now = Instant::now();
        let mine = crate::sync::lock(&self.me).as_deref() == Some(node);
        let late = {
            let mut seen = self.lock();
            match seen.get_mut(node) {
                Some(t) => std::mem::replace(t, now),
                None => {
                    seen.insert(node.to_string(), now);
                    now
                }
            }
        };
        let own_silence = now.saturating_duration_since(late);
        if mine && (SELF_LATE..SELF_HOLD_MAX).contains(&own_silence) {
            tracing::warn!(
                silent_ms = own_silence.as_millis() as u64,
                "the leader's own node was silent too: node silence over that time is forgiven"
            );
            self.forgive(own_silence.saturating_sub(super::dispatcher::HEARTBEAT));
        }
    }

    /// On election: everyone gets a full grace period, plus the time to
    /// notice the old leader is gone and find the new one. `me` is the
    /// leader's own node.
    pub fn reset(&self, nodes: impl Iterator<Item = String>, me: Option<String>) {
        let now = Instant::now() + ELECTION_EXTRA;
        let mut seen = self.lock();
        seen.clear();
        seen.extend(nodes.map(|n| (n, now)));
        *crate::sync::lock(&self.me) = me;
    }

    /// Whether the leader's own node is silent long enough that nobody
    /// should be judged now.
    fn holding(&self, seen: &HashMap<String, Instant>) -> bool {
        let me = crate::sync::lock(&self.me);
        let silent = me.as_ref().and_then(|m| seen.get(m)).map(|t| t.elapsed()).unwrap_or_default();
        (SELF_LATE..SELF_HOLD_MAX).contains(&silent)
    }

    /// This process did not run for `stalled`: nobody's silence over that
    /// time counts (each last-heard moves forward by it, up to now).
    pub fn forgive(&self, stalled: Duration) {
        let now = Instant::now();
        for t in self.lock().values_mut() {
            *t = (*t + stalled).min(now.max(*t));
        }
    }

    /// Forgives the time since the last look at the clock beyond
    /// [`STALL_TICK`], when that is a stall ([`STALL_MIN`] or more).
    fn catch_up(&self) {
        let now = Instant::now();
        let late = match crate::sync::lock(&self.ticked).replace(now) {
            Some(t) => now.duration_since(t).saturating_sub(STALL_TICK),
            None => Duration::ZERO,
        };
        if late >= STALL_MIN {
            tracing::warn!(
                stalled_ms = late.as_millis() as u64,
                "this agent did not run for a while: node silence over that time is forgiven"
            );
            self.forgive(late);
        }
    }

    /// Status patches for nodes whose liveness changed. Whichever runs
    /// first after a stall, this or [`watch_stalls`], forgives it.
    pub fn check(&self, v: &View) -> Vec<Command> {
        self.catch_up();
        let seen = self.lock();
        let mut out = Vec::new();
        if self.holding(&seen) {
            return out;
        }
        for n in v.nodes.values() {
            let silent = seen.get(&n.id).map(|t| t.elapsed()).unwrap_or(GRACE);
            let alive = silent < GRACE;
            if n.status == NodeStatus::Ready && !alive {
                tracing::warn!(node = %n.id, hostname = %n.hostname, silent_ms = silent.as_millis() as u64, "node missed its heartbeats: down");
                let message = format!("no heartbeat for {}s", silent.as_secs());
                out.push(NodePatch::status(NodeStatus::Down, message).command(&n.id));
            }
        }
        out
    }
}

/// Looks at the clock every [`STALL_TICK`] so that [`Liveness`] knows
/// when this process stalled, for as long as it runs.
pub async fn watch_stalls(liveness: Arc<Liveness>) {
    loop {
        liveness.catch_up();
        tokio::time::sleep(STALL_TICK).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_look_at_the_clock_forgives_the_stall() {
        let l = Liveness::default();
        // Heard of four seconds ago; the last look was two seconds ago: a stall of 1.75 s.
        let heard = Instant::now() - Duration::from_secs(4);
        l.lock().insert("a".into(), heard);
        *crate::sync::lock(&l.ticked) = Some(Instant::now() - Duration::from_secs(2));
        l.catch_up();
        assert!(l.lock()["a"] >= heard + Duration::from_millis(1700));
        // A look on time forgives nothing.
        let now = l.lock()["a"];
        l.catch_up();
        assert_eq!(l.lock()["a"], now);
    }

    #[test]
    fn the_leaders_own_silence_holds_judgement_then_is_forgiven() {
        let l = Liveness::default();
        l.reset(["me".to_string(), "a".to_string()].into_iter(), Some("me".into()));
        let ago = |s| Instant::now() - Duration::from_secs(s);
        l.lock().insert("me".into(), ago(4));
        l.lock().insert("a".into(), ago(6));
        assert!(l.holding(&l.lock()), "its own node silent 4 s: nobody is judged");
        // Heard again: the 4 s (less a heartbeat) are forgiven to all.
        l.heard("me");
        let a = l.lock()["a"];
        assert!(a > ago(4) && a < ago(2), "a moved forward by about 3 s");
        assert!(!l.holding(&l.lock()));
        // A silence past the bound is not the leader's: others are judged.
        l.lock().insert("me".into(), ago(60));
        assert!(!l.holding(&l.lock()));
        l.heard("me");
        assert!(l.lock()["a"] == a, "nothing forgiven past the bound");
    }

    #[test]
    fn a_stall_is_forgiven_up_to_now() {
        let l = Liveness::default();
        l.heard("a");
        let before = l.lock()["a"];
        l.forgive(Duration::from_secs(3600));
        let after = l.lock()["a"];
        // Moved forward, but never into the future.
        assert!(after >= before && after <= Instant::now());
    }
}
