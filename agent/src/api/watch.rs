//! `orc.cluster.v1.Watch`, on any manager: a [`Watcher`]'s batches as a
//! stream of responses, the listing in parts.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use orc_proto::cluster as pb;
use orc_proto::cluster::watch_server::Watch;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::convert::{event_to_proto, service_to_proto, task_to_proto};
use super::nodes::node_proto;
use super::services::non_empty;
use crate::cluster::events;
use crate::cluster::watch::{Batch, Change, Filter, Watched, Watcher};
use crate::raft::RaftHandle;
use crate::state::NodeState;

/// Events per response: a listing of 100,000 tasks goes in parts that stay
/// far below gRPC's 4 MiB message limit.
const PART: usize = 1000;

/// Watches one manager serves at once: each holds a task and the state it
/// last told of (at worst a full copy of the state, if its client stalls
/// while everything changes).
const MAX_WATCHES: usize = 64;

pub struct WatchService {
    state: Arc<NodeState>,
    open: Arc<Semaphore>,
}

impl WatchService {
    pub fn new(state: Arc<NodeState>) -> Self {
        Self { state, open: Arc::new(Semaphore::new(MAX_WATCHES)) }
    }

    /// A place for one more watch or follower, held while it lasts.
    fn slot(&self) -> Result<OwnedSemaphorePermit, Status> {
        self.open.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "this manager serves {MAX_WATCHES} watches already; end some, or watch through another manager"
            ))
        })
    }
}

fn filter(req: &pb::WatchRequest) -> Result<Filter, Status> {
    let mut f = Filter::default();
    for k in &req.kinds {
        match pb::ObjectKind::try_from(*k) {
            Ok(pb::ObjectKind::Service) => f.services = true,
            Ok(pb::ObjectKind::Task) => f.tasks = true,
            Ok(pb::ObjectKind::Node) => f.nodes = true,
            _ => {
                return Err(Status::invalid_argument(format!(
                    "kinds: {k} is not a kind of object (service, task, node)"
                )))
            }
        }
    }
    if !(f.services || f.tasks || f.nodes) {
        return Err(Status::invalid_argument("kinds: name at least one kind of object to watch (service, task, node)"));
    }
    Ok(f)
}

fn event(raft: &RaftHandle, b: &Batch, change: Change, object: &Watched) -> pb::WatchEvent {
    let r#type = match change {
        Change::Added => pb::ChangeType::Added,
        Change::Modified => pb::ChangeType::Modified,
        Change::Deleted => pb::ChangeType::Deleted,
    };
    let object = match object {
        Watched::Service(s) => pb::watch_event::Object::Service(service_to_proto(&b.view, s)),
        Watched::Task(t) => pb::watch_event::Object::Task(task_to_proto(&b.view, t)),
        Watched::Node(n) => pb::watch_event::Object::Node(node_proto(raft, &b.view, n)),
    };
    pb::WatchEvent { r#type: r#type.into(), object: Some(object) }
}

/// The responses of one batch: the listing in parts, the last one marked.
fn responses(raft: &RaftHandle, b: &Batch) -> Vec<pb::WatchResponse> {
    let events: Vec<pb::WatchEvent> = b.events.iter().map(|e| event(raft, b, e.change, &e.object)).collect();
    let mut parts: Vec<Vec<pb::WatchEvent>> = Vec::new();
    let mut events = events.into_iter().peekable();
    while events.peek().is_some() {
        parts.push(events.by_ref().take(PART).collect());
    }
    if parts.is_empty() {
        parts.push(Vec::new());
    }
    let n = parts.len();
    parts
        .into_iter()
        .enumerate()
        .map(|(i, events)| pb::WatchResponse {
            version: b.view.version,
            events,
            listing: b.listing,
            listed: b.listing && i + 1 == n,
        })
        .collect()
}

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchResponse, Status>> + Send>>;
    type EventsStream = Pin<Box<dyn Stream<Item = Result<pb::Event, Status>> + Send>>;

    async fn events(&self, req: Request<pb::EventsRequest>) -> Result<Response<Self::EventsStream>, Status> {
        let ns = super::namespaces::of(&req)?;
        let scoped = !super::authz::scope(&req).whole_cluster();
        let req = req.into_inner();
        if scoped && req.service.is_empty() {
            return Err(Status::permission_denied(
                "the whole cluster's events are for people not limited to namespaces: name one of your services \
                 (`orcctl events --service NAME`)",
            ));
        }
        let raft = self.state.raft.clone();
        // Followers hold a place like watches do; a one-off read does not.
        let slot = if req.follow { Some(self.slot()?) } else { None };
        let mut r = events::Reader::start(raft, &ns, non_empty(&req.service), req.since_ms).await?;
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            let _slot = slot;
            loop {
                let next = tokio::select! {
                    b = r.next() => b,
                    _ = tx.closed() => return,
                };
                match next {
                    Ok(list) => {
                        for e in list {
                            if tx.send(Ok(event_to_proto(&e))).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(Status::from(e))).await;
                        return;
                    }
                }
                if !req.follow {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn watch(&self, req: Request<pb::WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        let ns = super::namespaces::of(&req)?;
        let whole_cluster = super::authz::scope(&req).whole_cluster();
        let req = req.into_inner();
        let mut f = filter(&req)?;
        if !whole_cluster {
            f.namespace = Some(crate::model::namespace::stored(&ns));
        }
        if f.nodes && !whole_cluster {
            return Err(Status::permission_denied(
                "nodes are the whole cluster's: a person limited to namespaces watches services and tasks only",
            ));
        }
        let raft = self.state.raft.clone();
        let slot = self.slot()?;
        let mut w = Watcher::start(raft.clone(), f, &ns, non_empty(&req.service), non_empty(&req.node)).await?;
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let _slot = slot;
            loop {
                let next = tokio::select! {
                    b = w.next() => b,
                    // The client went away while nothing changed.
                    _ = tx.closed() => return,
                };
                let sent = match next {
                    Ok(b) => {
                        let mut ok = true;
                        for r in responses(&raft, &b) {
                            ok = ok && tx.send(Ok(r)).await.is_ok();
                        }
                        ok
                    }
                    Err(e) => {
                        tracing::info!(error = %e, "watch ended");
                        let _ = tx.send(Err(Status::from(e))).await;
                        false
                    }
                };
                // Sent, or the watcher went away: nobody is left to tell.
                if !sent {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
