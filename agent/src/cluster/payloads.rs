//! Secrets and configs (`orcctl secret|config create|update|ls|inspect|rm`):
//! what their APIs do on this manager's Raft, and what services and the
//! dispatcher ask of them.
//!
//! A secret's data is sealed with the cluster's data key
//! ([`crate::pki::sealing`]) before it is proposed, so the Raft log and
//! snapshots hold only ciphertext; the leader opens a version only to send
//! it down the session of a node that runs a task mounting it. Versions
//! are immutable: `update` adds one and moves every service mounting the
//! payload to it in the same entry, so a rotation is a rolling update
//! under each service's update policy.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::error::ClusterError;
use super::objects::{
    new_id, now_ms, valid_payload_name, view, Delivered, FileRef, Payload, PayloadKind, PayloadVersion, Service,
    ServiceSpec, View, MAX_PAYLOAD_BYTES,
};
use crate::model::db::{Command, Key, Kind, Object, Table};
use crate::model::namespace::{scoped, stored};
use crate::pki::sealing::DataKey;
use crate::raft::RaftHandle;

/// The cluster's data key, on a manager (derived from its CA key; None
/// on a worker or when the key cannot be read, said in the log).
pub fn data_key(state: &crate::state::NodeState) -> Option<DataKey> {
    let pem = state.identity()?.ca_key_pem?;
    DataKey::from_ca_key(&pem).inspect_err(|e| tracing::error!(error = %e, "no data key")).ok()
}

/// What `create` asks for.
#[derive(Clone, Default)]
pub struct PayloadRequest {
    pub kind: PayloadKind,
    pub namespace: String,
    pub name: String,
    pub data: zeroize::Zeroizing<Vec<u8>>,
    pub labels: BTreeMap<String, String>,
}

fn kind_of(k: PayloadKind) -> Kind {
    match k {
        PayloadKind::Secret => Kind::Secret,
        PayloadKind::Config => Kind::Config,
    }
}

fn object(p: Payload) -> Object {
    match p.kind {
        PayloadKind::Secret => Object::Secret(Arc::new(p)),
        PayloadKind::Config => Object::Config(Arc::new(p)),
    }
}

/// The payloads of kind `k`, by name.
pub fn table(v: &View, k: PayloadKind) -> &Table<Payload> {
    match k {
        PayloadKind::Secret => &v.secrets,
        PayloadKind::Config => &v.configs,
    }
}

/// What a sealed version is bound to: the object it belongs to (`key`:
/// its name scoped to its namespace).
fn sealed_for(k: PayloadKind, key: &str, version: u64) -> String {
    format!("{k}/{key}/{version}")
}

/// The error for a payload that does not exist.
pub fn missing(k: PayloadKind, name: &str) -> ClusterError {
    ClusterError::NotFound(format!(
        "{k} {name:?} does not exist: create it with `orcctl {k} create {name} FILE` (or see `orcctl {k} ls`)"
    ))
}

/// Payload `name` of kind `k` in namespace `ns`, or the error saying how to make it.
pub fn get<'a>(v: &'a View, k: PayloadKind, ns: &str, name: &str) -> Result<&'a Arc<Payload>, ClusterError> {
    table(v, k).get(&scoped(ns, name)).ok_or_else(|| missing(k, name))
}

/// Whether `spec` mounts the payload at `key` (`f` one of its references).
fn mounts(spec: &ServiceSpec, f: &FileRef, key: &str) -> bool {
    spec.scoped(&f.name) == key
}

/// The names of the services whose spec mounts the payload of kind `k` at `key`.
pub fn users(v: &View, k: PayloadKind, key: &str) -> Vec<String> {
    let mut out: Vec<String> = v
        .services
        .values()
        .filter(|s| s.spec.files(k).iter().any(|f| mounts(&s.spec, f, key)))
        .map(|s| s.spec.name.clone())
        .collect();
    out.sort();
    out
}

/// Sets the version of every reference that names none (0) to the
/// latest, and refuses one that names a payload or version not there.
pub fn resolve(v: &View, spec: &mut ServiceSpec) -> Result<(), ClusterError> {
    let ns = spec.namespace.clone();
    for k in PayloadKind::ALL {
        for f in spec.files_mut(k) {
            let p = get(v, k, &ns, &f.name)?;
            if f.version == 0 {
                f.version = p.latest();
            } else if !p.versions.contains_key(&f.version) {
                let kept: Vec<String> = p.versions.keys().map(u64::to_string).collect();
                return Err(ClusterError::FailedPrecondition(format!(
                    "{k} {} has no version {} (kept: {}): leave the version out for the latest",
                    f.name,
                    f.version,
                    kept.join(", ")
                )));
            }
        }
    }
    Ok(())
}

/// Checks that keep what `spec` mounts there until the write that names
/// it commits (a concurrent `rm` or `update` fails one of the two).
pub fn expects(v: &View, spec: &ServiceSpec) -> Vec<Command> {
    let mut seen = BTreeSet::new();
    PayloadKind::ALL
        .into_iter()
        .flat_map(|k| spec.files(k).iter().map(move |f| (k, spec.scoped(&f.name))))
        .filter(|x| seen.insert(x.clone()))
        .map(|(k, name)| {
            let version = v.version_of(&Key::new(kind_of(k), name.as_str()));
            Command::expect(kind_of(k), name, version)
        })
        .collect()
}

fn check_data(k: PayloadKind, name: &str, data: &[u8]) -> Result<(), ClusterError> {
    if data.len() > MAX_PAYLOAD_BYTES {
        return Err(ClusterError::InvalidArgument(format!(
            "{k} {name} is {} bytes: the most is {MAX_PAYLOAD_BYTES} (500 KiB); keep larger files in a volume or image",
            data.len()
        )));
    }
    Ok(())
}

/// A version of `data` as the state keeps it (sealed for a secret).
fn version(
    key: Option<&DataKey>,
    k: PayloadKind,
    name: &str,
    n: u64,
    data: &[u8],
) -> Result<PayloadVersion, ClusterError> {
    let stored = match (k.sealed(), key) {
        (false, _) => data.to_vec(),
        (true, Some(key)) => {
            key.seal(&sealed_for(k, name, n), data).map_err(|e| ClusterError::Internal(e.to_string()))?
        }
        (true, None) => {
            return Err(ClusterError::FailedPrecondition(
                "this manager has no CA key to seal secrets with: ask another manager".into(),
            ))
        }
    };
    Ok(PayloadVersion { data: stored, size: data.len() as u64, created_ms: now_ms() })
}

/// Creates a payload at version 1; its name is claimed in the same entry.
pub async fn create(raft: &RaftHandle, key: Option<&DataKey>, r: PayloadRequest) -> Result<Payload, ClusterError> {
    let k = r.kind;
    if !valid_payload_name(&r.name) {
        return Err(ClusterError::InvalidArgument(format!(
            "{k} name {:?}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
            r.name
        )));
    }
    crate::fields::labels("labels", &r.labels).map_err(|e| ClusterError::InvalidArgument(e.to_string()))?;
    check_data(k, &r.name, &r.data)?;
    let v = view(raft).await?;
    let at = scoped(&r.namespace, &r.name);
    if table(&v, k).contains_key(&at) {
        return Err(ClusterError::AlreadyExists(format!(
            "a {k} named {:?} exists: add a version with `orcctl {k} update {} FILE` (its services roll to it)",
            r.name, r.name
        )));
    }
    let now = now_ms();
    let p = Payload {
        id: new_id(),
        name: r.name.clone(),
        namespace: stored(&r.namespace),
        kind: k,
        versions: [(1, version(key, k, &at, 1, &r.data)?)].into(),
        labels: r.labels,
        created_ms: now,
        updated_ms: now,
    };
    let cmd =
        Command::Batch(vec![super::namespaces::expect(&v, &r.namespace), Command::put_if(at, object(p.clone()), 0)]);
    let res = raft.write(cmd).await?;
    if let Some(c) = res.conflict {
        return Err(ClusterError::changed(&format!("creating the {k}"), &c));
    }
    tracing::info!(kind = %k, name = %p.name, size = r.data.len(), "payload created");
    Ok(p)
}

/// The versions of `p` still needed once services moved to `latest`:
/// it, those the services' specs and previous specs mount, and those of
/// tasks not over yet.
fn kept(v: &View, services: &[Service], p: &Payload, latest: u64) -> BTreeSet<u64> {
    let mut keep = BTreeSet::from([latest]);
    let key = scoped(&p.namespace, &p.name);
    let refs = |spec: &ServiceSpec| -> Vec<u64> {
        spec.files(p.kind).iter().filter(|f| mounts(spec, f, &key)).map(|f| f.version).collect()
    };
    let moved: BTreeMap<&str, &Service> = services.iter().map(|s| (s.id.as_str(), s)).collect();
    for s in v.services.values() {
        let s = moved.get(s.id.as_str()).copied().unwrap_or(s);
        keep.extend(refs(&s.spec));
        keep.extend(s.previous_spec.as_ref().map(refs).unwrap_or_default());
    }
    keep.extend(v.tasks.values().filter(|t| !t.state.terminal()).flat_map(|t| refs(&t.spec)));
    keep
}

/// Adds a version of `name` with `data` and moves every service mounting
/// it there (a new spec version each: they roll), all in one entry.
pub async fn update(
    raft: &RaftHandle,
    key: Option<&DataKey>,
    k: PayloadKind,
    ns: &str,
    name: &str,
    data: &[u8],
) -> Result<(Payload, Vec<String>), ClusterError> {
    check_data(k, name, data)?;
    let v = view(raft).await?;
    let old = get(&v, k, ns, name)?;
    let at = scoped(ns, name);
    let n = old.latest() + 1;
    let now = now_ms();
    let mut moved = Vec::new();
    for s in v.services.values().filter(|s| s.spec.files(k).iter().any(|f| mounts(&s.spec, f, &at))) {
        let mut spec = s.spec.clone();
        // The service is in namespace `ns` (it mounts `at`): its references by name are ours.
        for f in spec.files_mut(k).iter_mut().filter(|f| f.name == name) {
            f.version = n;
        }
        moved.push(super::services::respec(s, spec, now));
    }
    let mut p = Payload::clone(old);
    p.versions.insert(n, version(key, k, &at, n, data)?);
    let keep = kept(&v, &moved, &p, n);
    p.versions.retain(|n, _| keep.contains(n));
    p.updated_ms = now;
    let object_key = Key::new(kind_of(k), at.as_str());
    let mut cmds = vec![Command::put_if(at.clone(), object(p.clone()), v.version_of(&object_key))];
    for s in &moved {
        let at = v.version_of(&Key::new(Kind::Service, s.id.as_str()));
        cmds.push(Command::put_if(s.id.clone(), Object::Service(Arc::new(s.clone())), at));
    }
    let res = raft.write(Command::Batch(cmds)).await?;
    if let Some(c) = res.conflict {
        return Err(ClusterError::changed(&format!("updating the {k}"), &c));
    }
    let services: Vec<String> = moved.iter().map(|s| s.spec.name.clone()).collect();
    tracing::info!(kind = %k, %name, version = n, size = data.len(), services = ?services, "payload updated");
    Ok((p, services))
}

/// Payload `name` of namespace `ns` and the view it was read in.
pub async fn inspect(
    raft: &RaftHandle,
    k: PayloadKind,
    ns: &str,
    name: &str,
) -> Result<(View, Arc<Payload>), ClusterError> {
    let v = view(raft).await?;
    let p = get(&v, k, ns, name)?.clone();
    Ok((v, p))
}

/// Removes `name` unless a service mounts it or a task mounting it is
/// still being stopped.
pub async fn remove(raft: &RaftHandle, k: PayloadKind, ns: &str, name: &str) -> Result<Payload, ClusterError> {
    let v = view(raft).await?;
    let p = get(&v, k, ns, name)?.clone();
    let at = scoped(ns, name);
    let services = users(&v, k, &at);
    if !services.is_empty() {
        return Err(ClusterError::FailedPrecondition(format!(
            "{k} {name} is in use by services {}: remove it from them first (`orcctl service update SERVICE \
             --{k}-rm {name}`)",
            services.join(", ")
        )));
    }
    let tasks =
        v.tasks.values().filter(|t| !t.state.terminal() && t.spec.files(k).iter().any(|f| mounts(&t.spec, f, &at)));
    if let Some(n) = std::num::NonZeroUsize::new(tasks.count()) {
        return Err(ClusterError::FailedPrecondition(format!(
            "{k} {name} is still mounted by {n} tasks being stopped: try again in a few seconds"
        )));
    }
    let key = Key::new(kind_of(k), at.as_str());
    let cmd =
        Command::Batch(vec![Command::expect(kind_of(k), at.clone(), v.version_of(&key)), Command::Delete { key }]);
    let res = raft.write(cmd).await?;
    if let Some(c) = res.conflict {
        return Err(ClusterError::changed(&format!("removing the {k}"), &c));
    }
    tracing::info!(kind = %k, %name, "payload removed");
    Ok(Payload::clone(&p))
}

/// Why a version could not be delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliverError {
    #[error("{kind} {name} version {version} is not in the cluster state")]
    Missing { kind: PayloadKind, name: String, version: u64 },
    #[error("this manager has no CA key to open secrets with")]
    NoKey,
    #[error(transparent)]
    Sealed(#[from] crate::pki::sealing::SealError),
}

/// The plaintext of a version, as the leader sends it to a node (`name`:
/// the payload's key, its name scoped to its namespace).
pub fn deliver(v: &View, key: Option<&DataKey>, k: PayloadKind, name: &str, n: u64) -> Result<Delivered, DeliverError> {
    let missing = || DeliverError::Missing { kind: k, name: name.into(), version: n };
    let stored = table(v, k).get(name).and_then(|p| p.versions.get(&n)).ok_or_else(missing)?;
    let data = match k.sealed() {
        false => stored.data.clone(),
        true => key.ok_or(DeliverError::NoKey)?.open(&sealed_for(k, name, n), &stored.data)?.to_vec(),
    };
    Ok(Delivered { kind: k, name: name.into(), version: n, data })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::objects::{FileRef, Task, TaskState};

    fn key() -> DataKey {
        DataKey::from_ca_key(&crate::pki::ca::new_ca("c", "t").unwrap().key_pem).unwrap()
    }

    fn put(v: &mut View, key: &DataKey, k: PayloadKind, name: &str, versions: &[(u64, &[u8])]) {
        let versions = versions.iter().map(|(n, d)| (*n, version(Some(key), k, name, *n, d).unwrap())).collect();
        let p = Payload { id: "x".into(), name: name.into(), kind: k, versions, ..Default::default() };
        v.apply(&Command::put(name, object(p)));
    }

    fn service(v: &mut View, id: &str, secrets: &[(&str, u64)]) -> Service {
        let secrets =
            secrets.iter().map(|(n, ver)| FileRef { name: n.to_string(), version: *ver, ..Default::default() });
        let spec = ServiceSpec { name: id.into(), secrets: secrets.collect(), ..Default::default() };
        let s = Service { id: id.into(), spec, spec_version: 1, ..Default::default() };
        v.apply(&Command::put(id, Object::Service(Arc::new(s.clone()))));
        s
    }

    #[test]
    fn secrets_are_sealed_in_the_state_and_open_for_delivery() {
        let (mut v, k) = (View::default(), key());
        put(&mut v, &k, PayloadKind::Secret, "db", &[(1, b"hunter2")]);
        put(&mut v, &k, PayloadKind::Config, "app.toml", &[(1, b"port = 80")]);
        let image = rmp_serde::to_vec(&v.image()).unwrap();
        assert!(!image.windows(7).any(|w| w == b"hunter2"), "no plaintext secret in a snapshot");
        assert!(image.windows(9).any(|w| w == b"port = 80"), "configs are kept as given");
        let d = deliver(&v, Some(&k), PayloadKind::Secret, "db", 1).unwrap();
        assert_eq!(d.data, b"hunter2");
        assert_eq!(deliver(&v, Some(&k), PayloadKind::Config, "app.toml", 1).unwrap().data, b"port = 80");
        assert!(matches!(deliver(&v, Some(&key()), PayloadKind::Secret, "db", 1), Err(DeliverError::Sealed(_))));
        assert!(matches!(deliver(&v, None, PayloadKind::Secret, "db", 1), Err(DeliverError::NoKey)));
        assert!(matches!(deliver(&v, Some(&k), PayloadKind::Secret, "db", 2), Err(DeliverError::Missing { .. })));
    }

    #[test]
    fn references_resolve_to_the_latest_and_refuse_what_is_not_there() {
        let (mut v, k) = (View::default(), key());
        put(&mut v, &k, PayloadKind::Secret, "db", &[(2, b"a"), (3, b"b")]);
        let mut spec =
            ServiceSpec { secrets: vec![FileRef { name: "db".into(), ..Default::default() }], ..Default::default() };
        resolve(&v, &mut spec).unwrap();
        assert_eq!(spec.secrets[0].version, 3);
        spec.secrets[0].version = 1;
        let e = resolve(&v, &mut spec).unwrap_err().to_string();
        assert!(e.contains("no version 1 (kept: 2, 3)"), "{e}");
        spec.secrets[0].name = "nope".into();
        let e = resolve(&v, &mut spec).unwrap_err().to_string();
        assert!(e.contains("orcctl secret create nope FILE"), "{e}");
        let mut spec =
            ServiceSpec { configs: vec![FileRef { name: "db".into(), ..Default::default() }], ..Default::default() };
        let e = resolve(&v, &mut spec).unwrap_err().to_string();
        assert!(e.contains("config \"db\" does not exist"), "secrets and configs are apart: {e}");
        // The checks a write carries fail once the secret changes.
        let spec =
            ServiceSpec { secrets: vec![FileRef { name: "db".into(), ..Default::default() }], ..Default::default() };
        let checks = expects(&v, &spec);
        put(&mut v, &k, PayloadKind::Secret, "db", &[(4, b"c")]);
        let r = v.apply(&Command::Batch(checks));
        assert!(r.conflict.is_some_and(|c| c.contains("secret/db")));
    }

    #[test]
    fn an_update_keeps_the_versions_still_mounted() {
        let (mut v, k) = (View::default(), key());
        put(&mut v, &k, PayloadKind::Secret, "db", &[(1, b"a"), (2, b"b"), (3, b"c")]);
        let web = service(&mut v, "web", &[("db", 3)]);
        let mut old = service(&mut v, "old", &[("db", 1)]);
        old.spec.secrets.clear();
        v.apply(&Command::put("old", Object::Service(Arc::new(old))));
        let t = Task {
            id: "t".into(),
            state: TaskState::Running,
            spec: ServiceSpec {
                secrets: vec![FileRef { name: "db".into(), version: 1, ..Default::default() }],
                ..Default::default()
            },
            ..Default::default()
        };
        v.apply(&Command::put("t", Object::Task(Arc::new(t))));
        let moved = super::super::services::respec(
            &web,
            {
                let mut s = web.spec.clone();
                s.secrets[0].version = 4;
                s
            },
            0,
        );
        assert_eq!(moved.spec_version, 2, "a rotation is a new spec version");
        let p = Payload::clone(v.secrets.get("db").unwrap());
        // 4: the new one; 3: web's previous spec (rollback); 1: a running task; 2: nothing.
        assert_eq!(kept(&v, &[moved], &p, 4), BTreeSet::from([1, 3, 4]));
        assert_eq!(users(&v, PayloadKind::Secret, "db"), ["web"]);
        assert!(users(&v, PayloadKind::Config, "db").is_empty());
    }
}
