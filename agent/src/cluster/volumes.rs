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
    new_id, now_ms, valid_volume_name, view, MountKind, Nfs, RemovedVolume, ServiceSpec, SlotOwner, Task, View, Volume,
};
use crate::model::db::{Command, Key, Kind, Object};
use crate::model::namespace::{scoped, stored};
use crate::raft::RaftHandle;

/// What `create` asks for.
#[derive(Debug, Clone, Default)]
pub struct VolumeRequest {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Its size limit, bytes (0: none).
    pub size: u64,
    /// Docker's local driver options (`type=nfs`, `o=…`, `device=…`).
    pub options: BTreeMap<String, String>,
}

/// The error for a volume that does not exist.
pub fn missing(name: &str) -> ClusterError {
    ClusterError::NotFound(format!(
        "volume {name:?} does not exist: create it with `orcctl volume create {name}` (or see `orcctl volume ls`)"
    ))
}

/// The named volumes `spec`'s tasks mount, as their keys: for a stateful
/// service, its templates (which need not exist; one that does, an NFS
/// volume, holds the slots' own as directories).
fn named(spec: &ServiceSpec) -> impl Iterator<Item = String> + '_ {
    spec.mounts.iter().filter(|m| m.kind == MountKind::Volume && !m.source.is_empty()).map(|m| spec.scoped(&m.source))
}

/// Refuses a spec that mounts a volume that does not exist.
pub fn check(v: &View, spec: &ServiceSpec) -> Result<(), ClusterError> {
    for m in spec.mounts.iter().filter(|m| m.kind == MountKind::Volume && !m.source.is_empty()) {
        match v.volumes.get(&spec.scoped(&m.source)) {
            None if !spec.stateful => return Err(missing(&m.source)),
            Some(x) if spec.stateful && x.nfs.is_some() && m.size > 0 => {
                return Err(ClusterError::InvalidArgument(format!(
                    "the slots' volumes of {} are directories of NFS volume {}: they take no size= (their room \
                     is the NFS server's)",
                    spec.name, m.source
                )))
            }
            _ => {}
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
    // A stateful service uses a template that exists only when the slots'
    // volumes are its directories (NFS).
    let nfs = v.volumes.get(key).is_some_and(|x| x.nfs.is_some());
    let mounts = |s: &ServiceSpec| (!s.stateful || nfs) && named(s).any(|n| n == key);
    let mut services: Vec<String> =
        v.services.values().filter(|s| mounts(&s.spec)).map(|s| s.spec.name.clone()).collect();
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
    super::namespaces::retried(|| create_once(raft, r.clone())).await
}

async fn create_once(raft: &RaftHandle, r: VolumeRequest) -> Result<Volume, ClusterError> {
    if !valid_volume_name(&r.name) {
        return Err(ClusterError::InvalidArgument(format!(
            "volume name {:?}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
            r.name
        )));
    }
    crate::fields::labels("labels", &r.labels).map_err(|e| ClusterError::InvalidArgument(e.to_string()))?;
    let nfs = Nfs::from_options(&r.options).map_err(|e| ClusterError::InvalidArgument(e.to_string()))?;
    if nfs.is_some() && r.size > 0 {
        return Err(ClusterError::InvalidArgument(
            "an NFS volume takes no --size: its room is the NFS server's (limit it there)".into(),
        ));
    }
    let v = view(raft).await?;
    let key = scoped(&r.namespace, &r.name);
    if v.volumes.contains_key(&key) {
        return Err(ClusterError::AlreadyExists(format!(
            "a volume named {:?} exists: see `orcctl volume inspect {}`",
            r.name, r.name
        )));
    }
    super::quota::check(&v, &r.namespace, &Default::default(), &super::quota::volume_claim(r.size, nfs.is_some()))?;
    let vol = Volume {
        id: new_id(),
        name: r.name,
        namespace: stored(&r.namespace),
        labels: r.labels,
        created_ms: now_ms(),
        size: r.size,
        nfs,
        ..Default::default()
    };
    let cmd = Command::Batch(vec![
        super::namespaces::guard(&v, &r.namespace),
        Command::put_if(key, Object::Volume(Arc::new(vol.clone())), 0),
    ]);
    let res = raft.write(cmd).await?;
    if let Some(c) = res.conflict {
        return Err(ClusterError::changed("creating the volume", &c));
    }
    let nfs = vol.nfs.as_ref().map(Nfs::source);
    tracing::info!(volume = %vol.name, id = %vol.id, size = vol.size, nfs = ?nfs, "volume created");
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

/// What placing a task decides of its volumes.
#[derive(Debug, Default, PartialEq)]
pub struct Placed {
    /// The named volumes it mounts, name → id (empty: removed meanwhile,
    /// which the node refuses, naming it).
    pub ids: BTreeMap<String, String>,
    /// Their size limits, where they have one.
    pub sizes: BTreeMap<String, u64>,
    /// Those on NFS.
    pub nfs: BTreeMap<String, Nfs>,
    /// Slot volumes to write: made on first placement, or moved to the node.
    pub writes: Vec<Volume>,
}

/// The volumes task `t` mounts when placed on `node`.
pub fn at_placement(v: &View, t: &Task, node: &str, now: i64) -> Placed {
    let mut p = Placed::default();
    for m in &t.spec.mounts {
        let Some(name) = m.volume_for(t.spec.stateful, &t.service, t.slot) else { continue };
        let x = match v.volumes.get(&t.spec.scoped(&name)) {
            // A slot's volume on NFS is wherever the slot runs.
            Some(x) if t.spec.stateful && x.nfs.is_none() && x.node != node => {
                p.writes.push(Volume { node: node.to_string(), ..Volume::clone(x) });
                Volume::clone(x)
            }
            Some(x) => Volume::clone(x),
            None if t.spec.stateful => {
                // On an NFS template: a directory of the template's export.
                let template = v.volumes.get(&t.spec.scoped(&m.source)).and_then(|x| x.nfs.clone());
                let nfs = template.map(|n| Nfs { dir: name.clone(), ..n });
                let x = Volume {
                    id: new_id(),
                    name: name.clone(),
                    namespace: t.spec.namespace.clone(),
                    created_ms: now,
                    slot: Some(SlotOwner { service: t.service_id.clone(), slot: t.slot }),
                    node: if nfs.is_some() { String::new() } else { node.to_string() },
                    size: if nfs.is_some() { 0 } else { m.size },
                    nfs,
                    ..Default::default()
                };
                p.writes.push(x.clone());
                x
            }
            None => Volume::default(),
        };
        if x.size > 0 {
            p.sizes.insert(name.clone(), x.size);
        }
        if let Some(n) = x.nfs {
            p.nfs.insert(name.clone(), n);
        }
        p.ids.insert(name, x.id);
    }
    p
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
        ServiceMount { kind: MountKind::Volume, source: source.into(), target: "/d".into(), read_only: false, size: 0 }
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
        let Placed { ids, writes, .. } = at_placement(&v, &t, "n1", 5);
        assert_eq!(writes.len(), 1);
        assert_eq!(writes[0].name, "tpl-web.2");
        assert_eq!((writes[0].node.as_str(), writes[0].slot.as_ref().map(|s| s.slot)), ("n1", Some(2)));
        assert_eq!(ids["tpl-web.2"], writes[0].id);
        v.apply(&Command::put("tpl-web.2", Object::Volume(Arc::new(writes[0].clone()))));
        assert_eq!(preferred_node(&v, &t).as_deref(), Some("n1"));
        let again = at_placement(&v, &t, "n1", 6);
        assert!(again.writes.is_empty(), "the slot's own volume, kept");
        assert_eq!(again.ids, ids);
        let moved = at_placement(&v, &t, "n2", 7).writes;
        assert_eq!(moved[0].node, "n2", "it follows the slot");

        let svc = Service { id: "s".into(), spec: ServiceSpec { replicas: 3, ..t.spec.clone() }, ..Default::default() };
        v.apply(&Command::put("s", Object::Service(Arc::new(svc))));
        assert_eq!(users(&v, "tpl-web.2").0, ["web"], "a slot volume is its service's while the slot exists");
        assert!(users(&v, "tpl").0.is_empty(), "a template that is no NFS volume is in no use");
    }

    #[test]
    fn slots_on_an_nfs_template_are_its_directories_and_follow_their_tasks() {
        let mut v = View::default();
        let opts = [("type", "nfs"), ("o", "addr=10.0.0.5"), ("device", ":/srv")];
        let nfs = Nfs::from_options(&opts.iter().map(|(k, x)| (k.to_string(), x.to_string())).collect()).unwrap();
        let shared = Volume { id: "v0".into(), name: "shared".into(), nfs, ..Default::default() };
        v.apply(&Command::put("shared", Object::Volume(Arc::new(shared))));
        let spec =
            ServiceSpec { name: "db".into(), stateful: true, mounts: vec![mount("shared")], ..Default::default() };
        let sized = ServiceSpec { mounts: vec![ServiceMount { size: 1, ..mount("shared") }], ..spec.clone() };
        assert!(check(&v, &sized).unwrap_err().to_string().contains("no size="));
        let t = Task { service: "db".into(), service_id: "s".into(), slot: 1, spec, ..Default::default() };
        let p = at_placement(&v, &t, "n1", 5);
        let slot = &p.writes[0];
        assert_eq!((slot.name.as_str(), slot.node.as_str()), ("shared-db.1", ""), "no node holds it");
        assert_eq!(p.nfs["shared-db.1"].dir, "shared-db.1");
        assert_eq!(p.nfs["shared-db.1"].source(), "10.0.0.5:/srv");
        v.apply(&Command::put("shared-db.1", Object::Volume(Arc::new(slot.clone()))));
        assert_eq!(preferred_node(&v, &t), None);
        assert!(at_placement(&v, &t, "n2", 6).writes.is_empty(), "nothing to move");
        let svc = Service { id: "s".into(), spec: t.spec.clone(), ..Default::default() };
        v.apply(&Command::put("s", Object::Service(Arc::new(svc))));
        assert_eq!(users(&v, "shared").0, ["db"], "an NFS template is in use while its service is");
    }
}
