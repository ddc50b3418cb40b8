//! Namespaces' quotas: what a namespace's services and volumes claim,
//! and the refusal of a create, scale or update that would claim more
//! than its quota allows.
//!
//! A service claims what its spec asks for (replicas, or one task per
//! ready node when global, times its reservations), not what its tasks
//! hold at the moment: an update that briefly runs old and new tasks side
//! by side, or a task being rescheduled, neither blocks nor frees room.

use super::error::ClusterError;
use super::objects::{Mode, NodeStatus, ServiceSpec, View};
use crate::model::db::index::milli;
use crate::model::namespace::{show_bytes, shown, Use};
use crate::model::volume::MountKind;

/// Tasks `spec` runs at once, with `nodes` ready nodes.
fn tasks(spec: &ServiceSpec, nodes: u64) -> u64 {
    match spec.mode {
        Mode::Replicated => spec.replicas,
        Mode::ReplicatedJob if spec.max_concurrent > 0 => spec.max_concurrent.min(spec.replicas),
        Mode::ReplicatedJob => spec.replicas,
        Mode::Global | Mode::GlobalJob => nodes,
    }
}

/// Ready nodes: what a global service runs one task on each of.
fn ready_nodes(v: &View) -> u64 {
    v.nodes.values().filter(|n| n.status == NodeStatus::Ready).count() as u64
}

/// What `spec` claims in `v`, with `nodes` ready nodes.
pub fn claim(v: &View, spec: &ServiceSpec, nodes: u64) -> Use {
    let tasks = tasks(spec, nodes);
    let mut u = Use {
        milli_cpus: milli(spec.reserve_cpus) * tasks as i64,
        memory: spec.reserve_memory.saturating_mul(tasks),
        tasks,
        ..Default::default()
    };
    for m in spec.mounts.iter().filter(|m| m.kind == MountKind::Volume) {
        // A stateful service's named volumes are templates: one per slot;
        // an anonymous volume is one per task; a named one is claimed by
        // the volume itself.
        let copies = match (m.source.is_empty(), spec.stateful) {
            (true, _) => tasks,
            (false, true) => spec.replicas,
            (false, false) => continue,
        };
        if !m.source.is_empty() {
            u.volumes += copies;
        }
        // Slots' directories of an NFS template take the server's room.
        let nfs = spec.stateful && v.volumes.get(&spec.scoped(&m.source)).is_some_and(|x| x.nfs.is_some());
        match m.size {
            _ if nfs => {}
            0 => u.unsized_volumes += copies,
            size => u.volume_bytes = u.volume_bytes.saturating_add(size.saturating_mul(copies)),
        }
    }
    u
}

/// What namespace `ns` claims now.
pub fn used(v: &View, ns: &str) -> Use {
    let ns = shown(ns);
    let nodes = ready_nodes(v);
    let mut u = Use::default();
    for s in v.services.values().filter(|s| shown(&s.spec.namespace) == ns) {
        u.add(&claim(v, &s.spec, nodes));
    }
    // Slot volumes are claimed by their service's spec.
    for x in v.volumes.values().filter(|x| shown(&x.namespace) == ns && x.slot.is_none()) {
        u.add(&volume_claim(x.size, x.nfs.is_some()));
    }
    u
}

/// What a named volume of `size` bytes (0: unlimited) claims; one on NFS
/// takes the server's room, not the nodes'.
pub fn volume_claim(size: u64, nfs: bool) -> Use {
    Use { volumes: 1, volume_bytes: size, unsized_volumes: u64::from(size == 0 && !nfs), ..Default::default() }
}

/// Refuses a change of namespace `ns` from claiming `before` to claiming
/// `after` when it grows past a quota; an unknown namespace is refused too.
pub fn check(v: &View, ns: &str, before: &Use, after: &Use) -> Result<(), ClusterError> {
    let ns = shown(ns);
    let n = v.namespace(ns).ok_or_else(|| missing(ns))?;
    let more = after.beyond(before);
    if let (Some(limit), true) = (n.quota.volume_bytes, more.unsized_volumes > 0) {
        return Err(ClusterError::QuotaExceeded(format!(
            "namespace {ns} caps the size of its volumes ({} in all): every volume there needs a size limit: give \
             `--size` to `orcctl volume create`, or `size=` to the service's --mount",
            show_bytes(limit)
        )));
    }
    let over = n.quota.exceeded(&used(v, ns), &more);
    if over.is_empty() {
        return Ok(());
    }
    let what: Vec<String> = over.iter().map(ToString::to_string).collect();
    Err(ClusterError::QuotaExceeded(format!(
        "namespace {ns}: {}; ask for less, free some, or raise it with `orcctl namespace quota {ns}`",
        what.join("; ")
    )))
}

/// Refuses the spec change of a service from `old` to `new`.
pub fn check_service(v: &View, old: Option<&ServiceSpec>, new: &ServiceSpec) -> Result<(), ClusterError> {
    let nodes = ready_nodes(v);
    let before = old.map(|o| claim(v, o, nodes)).unwrap_or_default();
    check(v, &new.namespace, &before, &claim(v, new, nodes))
}

/// The most replicas `spec` may have without passing its namespace's
/// quotas (its current claim counted as its own): what the autoscaler
/// keeps to. `None`: no cap.
pub fn max_replicas(v: &View, spec: &ServiceSpec) -> Option<u64> {
    let n = v.namespace(shown(&spec.namespace))?;
    let q = &n.quota;
    if q.is_empty() || spec.mode != Mode::Replicated {
        return None;
    }
    let mut others = used(v, &spec.namespace);
    others.sub(&claim(v, spec, ready_nodes(v)));
    let one = claim(v, &ServiceSpec { replicas: 1, ..spec.clone() }, 0);
    let room = |limit: Option<u64>, used: u64, each: u64| match (limit, each) {
        (Some(l), e) if e > 0 => Some(l.saturating_sub(used) / e),
        _ => None,
    };
    let cpu_room = match q.milli_cpus {
        Some(l) if one.milli_cpus > 0 => Some((l - others.milli_cpus).max(0) as u64 / one.milli_cpus as u64),
        _ => None,
    };
    [
        cpu_room,
        room(q.memory, others.memory, one.memory),
        room(q.tasks, others.tasks, one.tasks),
        room(q.volumes, others.volumes, one.volumes),
        room(q.volume_bytes, others.volume_bytes, one.volume_bytes),
    ]
    .into_iter()
    .flatten()
    .min()
}

pub fn missing(ns: &str) -> ClusterError {
    ClusterError::NotFound(format!("no namespace {ns:?}: create it with `orcctl namespace create {ns}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_claims_its_replicas_reservations() {
        let spec = ServiceSpec { replicas: 3, reserve_cpus: 0.5, reserve_memory: 100, ..Default::default() };
        assert_eq!(
            claim(&View::default(), &spec, 9),
            Use { milli_cpus: 1500, memory: 300, tasks: 3, ..Default::default() }
        );
        let global = ServiceSpec { mode: Mode::Global, reserve_memory: 10, ..Default::default() };
        assert_eq!(claim(&View::default(), &global, 4), Use { memory: 40, tasks: 4, ..Default::default() });
        let job = ServiceSpec { mode: Mode::ReplicatedJob, replicas: 10, max_concurrent: 2, ..Default::default() };
        assert_eq!(claim(&View::default(), &job, 4).tasks, 2);
    }

    #[test]
    fn volumes_claim_their_sizes_per_slot_and_per_task() {
        use crate::model::volume::ServiceMount;
        let mount = |source: &str, size: u64| ServiceMount { source: source.into(), size, ..Default::default() };
        let spec = ServiceSpec {
            replicas: 3,
            stateful: true,
            mounts: vec![mount("data", 1 << 20), mount("", 0), mount("logs", 0)],
            ..Default::default()
        };
        let u = claim(&View::default(), &spec, 0);
        assert_eq!((u.volumes, u.volume_bytes, u.unsized_volumes), (6, 3 << 20, 6));
        let plain = ServiceSpec { stateful: false, ..spec };
        let u = claim(&View::default(), &plain, 0);
        assert_eq!((u.volumes, u.volume_bytes, u.unsized_volumes), (0, 0, 3), "named volumes claim for themselves");
        assert_eq!(volume_claim(0, false).unsized_volumes, 1);
        assert_eq!(volume_claim(0, true).unsized_volumes, 0, "an NFS volume's room is the server's");
        assert_eq!(volume_claim(5, false).volume_bytes, 5);
    }
}
