//! A node cut off from the managers stops its stateful tasks by itself
//! after [`FENCE_AFTER`] without a heartbeat answered: by the time the
//! managers give a stateful task's slot to a replacement (the node's grace
//! after it was marked down, [`crate::cluster::orchestrator::stateful::GRACE`],
//! itself at least 5 s after the last heartbeat), the old one is gone, so
//! a slot never has two tasks alive even when the node is only cut off.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::executor::Executor;
use crate::cluster::objects::StopPolicy;

/// No heartbeat answered for this long: stateful tasks stop.
pub const FENCE_AFTER: Duration = Duration::from_secs(20);

/// When the managers last answered this node.
#[derive(Debug)]
pub struct Contact(Mutex<Instant>);

impl Default for Contact {
    fn default() -> Self {
        // An agent that starts cut off (its stateful containers reattached)
        // counts from its start.
        Self(Mutex::new(Instant::now()))
    }
}

impl Contact {
    pub fn heard(&self) {
        *crate::sync::lock(&self.0) = Instant::now();
    }

    pub fn silent_for(&self) -> Duration {
        crate::sync::lock(&self.0).elapsed()
    }
}

/// Watches the contact and fences stateful tasks once it is lost.
pub async fn run(ex: Arc<Executor>, contact: Arc<Contact>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let silent = contact.silent_for();
        if silent < FENCE_AFTER {
            continue;
        }
        for (id, container) in ex.running(|s| s.stateful) {
            let why = format!("fenced: no answer from the managers for {} s", silent.as_secs());
            tracing::warn!(task = %id, %why, "stopping a stateful task");
            let kill = StopPolicy { signal: "SIGKILL".into(), grace_ms: 0, drain_ms: 0 };
            ex.fail(&id, &container, why, Some(kill)).await;
        }
    }
}
