//! Volumes (`orcctl volume create|ls|inspect|rm`): what the Volumes API
//! does on this manager's Raft, and what services and the orchestrator ask
//! of them.
//!
//! A volume is named storage that outlives tasks. Its data is local to
//! each node that ran a task mounting it (on STATE, made on first use), as
//! Docker's local driver keeps it. A stateful service's named mount is a
//! template: each slot gets a volume of its own (`data-web.1`), made by the
//! leader when the slot is first placed and recording the node holding it,
//! which the scheduler then prefers. A removed volume leaves a tombstone
//! (its id) that tells every node to delete its copy.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::error::ClusterError;
use super::objects::{
    new_id, now_ms, valid_volume_name, view, MountKind, RemovedVolume, ServiceSpec, SlotOwner, Task, View, Volume,
};
use crate::model::db::{Command, Key, Kind, Object};
use crate::model::namespace::{scoped, stored, Use};
use crate::raft::RaftHandle;

/// What `create` asks for.
#[derive(Debug, Clone, Default)]
pub struct VolumeRequest {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// The error for a volume that does not exist.
pub fn missing(name: &str) -> ClusterError {
    ClusterError::NotFound(format!(
        "volume {name:?} does not exist: create it with `orcctl volume create {name}` (or see `orcctl volume ls`)"
    ))
}

/// The named volumes `spec`'s tasks mount, as their keys (a stateful
/// service's templates are not volumes themselves).
fn named(spec: &ServiceSpec) -> impl Iterator<Item = String> + '_ {
    spec.mounts
        .iter()
        .filter(|m| !spec.stateful && m.kind == MountKind::Volume && !m.source.is_empty())
        .map(|m| spec.scoped(&m.source))
}

/// Refuses a spec that mounts a volume that does not exist.
pub fn check(v: &View, spec: &ServiceSpec) -> Result<(), ClusterError> {
    for m in spec.mounts.iter().filter(|m| !spec.stateful && m.kind == MountKind::Volume && !m.source.is_empty()) {
        if !v.volumes.contains_key(&spec.scoped(&m.source)) {
            return Err(missing(&m.source));
        }
    }
    Ok(())
}

/// Checks that keep the volumes `spec` mounts there until the write
/// naming them commits (a concurrent `rm` fails one of the two).
pub fn expects(v: &View, spec: &ServiceSpec) -> Vec<Command> {
    let names: BTreeSet<String> = named(spec).collect();
    names
        .into_iter()
        .map(|n| {
            let version = v.version_of(&Key::new(Kind::Volume, n.as_str()));
            Command::expect(Kind::Volume, n, version)
        })
        .collect()
}

/// What uses the volume at `key`: the services whose spec mounts it (or,
/// for a slot volume, its service), and the tasks not over that mount it.
pub fn users(v: &View, key: &str) -> (Vec<String>, usize) {
    let mut services: Vec<String> =
        v.services.values().filter(|s| named(&s.spec).any(|n| n == key)).map(|s| s.spec.name.clone()).collect();
    if let Some(owner) = v.volumes.get(key).and_then(|x| x.slot.clone()) {
        if let Some(s) = v.services.get(&owner.service).filter(|s| s.spec.replicas >= owner.slot) {
            services.push(s.spec.name.clone());
        }
    }
    services.sort();
    services.dedup();
    let tasks =
        v.tasks.values().filter(|t| !t.state.terminal() && t.volumes.keys().any(|n| t.spec.scoped(n) == key)).count();
    (services, tasks)
}

/// Creates a volume; its name is claimed by the conditional put.
pub async fn create(raft: &RaftHandle, r: VolumeRequest) -> Result<Volume, ClusterError> {
    if !valid_volume_name(&r.name) {
        return Err(ClusterError::InvalidArgument(format!(
            "volume name {:?}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
            r.name
        )));
    }
    crate::fields::labels("labels", &r.labels).map_err(|e| ClusterError::InvalidArgument(e.to_string()))?;
    let v = view(raft).await?;
    let key = scoped(&r.namespace, &r.name);
    if v.volumes.contains_key(&key) {
        return Err(ClusterError::AlreadyExists(format!(
            "a volume named {:?} exists: see `orcctl volume inspect {}`",
            r.name, r.name
        )));
    }
    super::quota::check(&v, &r.namespace, &Use::default(), &Use { volumes: 1, ..Default::default() })?;
    let vol = Volume {
        id: new_id(),
        name: r.name,
        namespace: stored(&r.namespace),
        labels: r.labels,
        created_ms: now_ms(),
        ..Default::default()
    };
    let cmd = Command::Batch(vec![
        super::namespaces::expect(&v, &r.namespace),
        Command::put_if(key, Object::Volume(Arc::new(vol.clone())), 0),
    ]);
    let res = raft.write(cmd).await?;
    if let Some(c) = res.conflict {
        return Err(ClusterError::changed("creating the volume", &c));
    }
    tracing::info!(volume = %vol.name, id = %vol.id, "volume created");
    Ok(vol)
}

/// Volume `name` of namespace `ns` and the view it was read in.
pub async fn inspect(raft: &RaftHandle, ns: &str, name: &str) -> Result<(View, Arc<Volume>), ClusterError> {
    let v = view(raft).await?;
    let x = v.volumes.get(&scoped(ns, name)).cloned().ok_or_else(|| missing(name))?;
    Ok((v, x))
}

/// Removes `name` unless it is in use; its tombstone tells every node to
/// delete its copy.
pub async fn remove(raft: &RaftHandle, ns: &str, name: &str) -> Result<Volume, ClusterError> {
    let v = view(raft).await?;
    let key = scoped(ns, name);
    let x = v.volumes.get(&key).cloned().ok_or_else(|| missing(name))?;
    let (services, tasks) = users(&v, &key);
    if !services.is_empty() {
        return Err(ClusterError::FailedPrecondition(format!(
            "volume {name} is in use by services {}: remove it from them first (`orcctl service update SERVICE \
             --mount-rm TARGET`), or scale the stateful service below its slot",
            services.join(", ")
        )));
    }
    if tasks > 0 {
        return Err(ClusterError::FailedPrecondition(format!(
            "volume {name} is still mounted by {tasks} tasks being stopped: try again in a few seconds"
        )));
    }
    let key = Key::new(Kind::Volume, key);
    let gone = RemovedVolume { name: name.to_string(), removed_ms: now_ms() };
    let cmd = Command::Batch(vec![
        Command::expect(Kind::Volume, key.id.clone(), v.version_of(&key)),
        Command::Delete { key },
        Command::put(x.id.clone(), Object::RemovedVolume(Arc::new(gone))),
    ]);
    let res = raft.write(cmd).await?;
    if let Some(c) = res.conflict {
        return Err(ClusterError::changed("removing the volume", &c));
    }
    tracing::info!(volume = %name, id = %x.id, "volume removed");
    Ok(Volume::clone(&x))
}

/// The volumes task `t`, placed on `node`, mounts (name → id), and the
/// slot volumes to write: made on first placement, or moved to `node`.
pub fn at_placement(v: &View, t: &Task, node: &str, now: i64) -> (BTreeMap<String, String>, Vec<Volume>) {
    let mut ids = BTreeMap::new();
    let mut writes = Vec::new();
    for m in &t.spec.mounts {
        let Some(name) = m.volume_for(t.spec.stateful, &t.service, t.slot) else { continue };
        match v.volumes.get(&t.spec.scoped(&name)) {
            Some(x) if t.spec.stateful && x.node != node => {
                writes.push(Volume { node: node.to_string(), ..Volume::clone(x) });
                ids.insert(name, x.id.clone());
            }
            Some(x) => {
                ids.insert(name, x.id.clone());
            }
            None if t.spec.stateful => {
                let x = Volume {
                    id: new_id(),
                    name: name.clone(),
                    namespace: t.spec.namespace.clone(),
                    created_ms: now,
                    slot: Some(SlotOwner { service: t.service_id.clone(), slot: t.slot }),
                    node: node.to_string(),
                    ..Default::default()
                };
                ids.insert(name, x.id.clone());
                writes.push(x);
            }
            // Removed meanwhile: the node refuses the task, naming it.
            None => {
                ids.insert(name, String::new());
            }
        }
    }
    (ids, writes)
}

/// The node holding the data of the first slot volume task `t` mounts
/// (the scheduler prefers it).
pub fn preferred_node(v: &View, t: &Task) -> Option<String> {
    if !t.spec.stateful {
        return None;
    }
    t.spec
        .mounts
        .iter()
        .filter_map(|m| m.volume_for(true, &t.service, t.slot))
        .find_map(|n| v.volumes.get(&t.spec.scoped(&n)).map(|x| x.node.clone()).filter(|n| !n.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::objects::{Service, ServiceMount};

    fn mount(source: &str) -> ServiceMount {
        ServiceMount { kind: MountKind::Volume, source: source.into(), target: "/d".into(), read_only: false }
    }

    #[test]
    fn named_volumes_must_exist_and_slots_get_their_own_on_first_placement() {
        let mut v = View::default();
        let spec = ServiceSpec { name: "web".into(), mounts: vec![mount("data")], ..Default::default() };
        let e = check(&v, &spec).unwrap_err().to_string();
        assert!(e.contains("orcctl volume create data"), "{e}");
        let data = Volume { id: "v1".into(), name: "data".into(), ..Default::default() };
        v.apply(&Command::put("data", Object::Volume(Arc::new(data))));
        check(&v, &spec).unwrap();
        // Anonymous volumes and templates of a stateful service need nothing.
        check(&v, &ServiceSpec { mounts: vec![mount("")], ..Default::default() }).unwrap();
        let stateful = ServiceSpec { stateful: true, mounts: vec![mount("tpl")], ..spec.clone() };
        check(&v, &stateful).unwrap();

        let t = Task { service: "web".into(), service_id: "s".into(), slot: 2, spec: stateful, ..Default::default() };
        let (ids, writes) = at_placement(&v, &t, "n1", 5);
        assert_eq!(writes.len(), 1);
        assert_eq!(writes[0].name, "tpl-web.2");
        assert_eq!((writes[0].node.as_str(), writes[0].slot.as_ref().map(|s| s.slot)), ("n1", Some(2)));
        assert_eq!(ids["tpl-web.2"], writes[0].id);
        v.apply(&Command::put("tpl-web.2", Object::Volume(Arc::new(writes[0].clone()))));
        assert_eq!(preferred_node(&v, &t).as_deref(), Some("n1"));
        let (again, writes) = at_placement(&v, &t, "n1", 6);
        assert!(writes.is_empty(), "the slot's own volume, kept");
        assert_eq!(again, ids);
        let (_, moved) = at_placement(&v, &t, "n2", 7);
        assert_eq!(moved[0].node, "n2", "it follows the slot");

        let svc = Service { id: "s".into(), spec: ServiceSpec { replicas: 3, ..t.spec.clone() }, ..Default::default() };
        v.apply(&Command::put("s", Object::Service(Arc::new(svc))));
        assert_eq!(users(&v, "tpl-web.2").0, ["web"], "a slot volume is its service's while the slot exists");
    }
}
