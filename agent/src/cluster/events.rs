//! Reading the events this manager keeps ([`crate::model::events`]): the
//! matching ones, then — following — each new one as it is applied.

use std::sync::Arc;
use std::time::Duration;

use super::error::ClusterError;
use super::objects::View;
use crate::model::events::Event;
use crate::raft::RaftHandle;

/// Events a service's inspect shows.
pub const PER_SERVICE: usize = 20;

/// How long a follower waits for a change before looking at the Raft again.
const LOOK_AGAIN: Duration = Duration::from_secs(2);

/// Which events a reader wants.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this service (id) and its tasks.
    pub service: Option<String>,
    /// Only those at or after this time.
    pub since_ms: i64,
}

impl Filter {
    fn wants(&self, e: &Event) -> bool {
        e.time_ms >= self.since_ms && self.service.as_ref().is_none_or(|s| &e.service == s)
    }
}

/// The latest [`PER_SERVICE`] events of service `id` and its tasks, oldest first.
pub fn of_service(v: &View, id: &str) -> Vec<Arc<Event>> {
    v.events.latest(PER_SERVICE, |e| e.service == id)
}

/// One reader's place in the events.
pub struct Reader {
    raft: Arc<RaftHandle>,
    filter: Filter,
    /// The state version read up to (None: nothing read yet).
    read: Option<u64>,
}

impl Reader {
    /// A reader of `filter`, its service (name, id or prefix) resolved
    /// against a linearizable read.
    pub async fn start(
        raft: Arc<RaftHandle>,
        ns: &str,
        service: Option<&str>,
        since_ms: i64,
    ) -> Result<Self, ClusterError> {
        let v = super::objects::view(&raft).await?;
        let service = service.map(|s| v.find_service(ns, s).map(|s| s.id.clone())).transpose()?;
        Ok(Self { raft, filter: Filter { service, since_ms }, read: None })
    }

    /// The events kept that match (the first call), or the next ones
    /// (waits until there are some).
    pub async fn next(&mut self) -> Result<Vec<Arc<Event>>, ClusterError> {
        loop {
            let s = self.raft.get()?;
            let mut changed = s.sm.changed.subscribe();
            // Under the lock: no apply is half done, so the events end at
            // the version read.
            let (version, events) = {
                let a = s.sm.applied.read().await;
                (a.state.version, a.state.events.after(self.read.unwrap_or(0)))
            };
            let first = self.read.is_none();
            let events: Vec<Arc<Event>> = events.into_iter().filter(|e| self.filter.wants(e)).collect();
            self.read = Some(version);
            if first || !events.is_empty() {
                return Ok(events);
            }
            let _ = tokio::time::timeout(LOOK_AGAIN, changed.changed()).await;
        }
    }
}
