//! Namespaces (`orcctl namespace create|ls|rm|quota`): what the Namespaces
//! API does on this manager's Raft.
//!
//! Every write that puts an object into a namespace carries an expect on
//! the namespace's version ([`expect`]), so a create racing the removal of
//! its namespace fails rather than leave an object in none. A write that
//! may claim more of a namespace with a quota rewrites the namespace
//! instead ([`guard`]): two such writes read at one version cannot both
//! commit, so two creates checked against the same free room cannot both
//! take it (the loser reads again and is checked again).

use std::sync::Arc;

use super::error::ClusterError;
use super::objects::{now_ms, view, View};
use crate::model::db::{Command, Key, Kind, Object};
use crate::model::namespace::{shown, valid_namespace_name, Namespace, Quota, Use, DEFAULT_NAMESPACE};
use crate::raft::RaftHandle;

/// A namespace, what it claims and how many objects it holds.
#[derive(Debug, Clone)]
pub struct Listed {
    pub namespace: Namespace,
    pub used: Use,
    pub services: usize,
    pub secrets: usize,
    pub configs: usize,
    pub networks: usize,
}

/// Fails the batch it is in unless namespace `ns` is still as read in `v`.
pub fn expect(v: &View, ns: &str) -> Command {
    let ns = shown(ns);
    Command::expect(Kind::Namespace, ns, v.version_of(&Key::new(Kind::Namespace, ns)))
}

/// For a write that may claim more of namespace `ns`: fails the batch it
/// is in unless `ns` is still as read in `v`, and when `ns` has a quota,
/// moves its version on, so that any other such write read at the same
/// version fails.
pub fn guard(v: &View, ns: &str) -> Command {
    let ns = shown(ns);
    let at = v.version_of(&Key::new(Kind::Namespace, ns));
    match v.namespaces.get(ns).filter(|n| !n.quota.is_empty()) {
        Some(n) => Command::put_if(ns, Object::Namespace(n.clone()), at),
        None => Command::expect(Kind::Namespace, ns, at),
    }
}

/// Runs `write` (a read, checks and a conditional write) again when it
/// failed on a conflict, up to three times: what changed meanwhile is then
/// read and checked afresh (a name taken, a quota filled), and a write
/// that still conflicts says so.
pub async fn retried<T, F>(mut write: impl FnMut() -> F) -> Result<T, ClusterError>
where
    F: std::future::Future<Output = Result<T, ClusterError>>,
{
    let mut tries = 0;
    loop {
        match write().await {
            Err(ClusterError::Conflict(why)) if tries < 3 => {
                tries += 1;
                tracing::debug!(%why, tries, "write conflicted: reading again");
            }
            done => return done,
        }
    }
}

/// Creates namespace `name` with `quota`.
pub async fn create(raft: &RaftHandle, name: &str, quota: Quota) -> Result<Namespace, ClusterError> {
    if !valid_namespace_name(name) {
        return Err(ClusterError::InvalidArgument(format!(
            "namespace name {name:?}: use 1-63 lowercase letters, digits or '-', starting and ending with a letter \
             or digit"
        )));
    }
    let v = view(raft).await?;
    if v.namespace(name).is_some() {
        return Err(ClusterError::AlreadyExists(format!(
            "namespace {name} exists: change its quota with `orcctl namespace quota {name}`"
        )));
    }
    let n = Namespace { name: name.to_string(), quota, created_ms: now_ms() };
    let res = raft.write(Command::put_if(name, Object::Namespace(Arc::new(n.clone())), 0)).await?;
    if let Some(c) = res.conflict {
        return Err(ClusterError::changed("creating the namespace", &c));
    }
    tracing::info!(namespace = %name, "namespace created");
    Ok(n)
}

/// Namespace `ns` in `v`, with what it holds.
pub fn listed(v: &View, ns: &str) -> Result<Listed, ClusterError> {
    let namespace = v.namespace(ns).ok_or_else(|| super::quota::missing(ns))?;
    let here = |stored: &str| shown(stored) == ns;
    Ok(Listed {
        used: super::quota::used(v, ns),
        services: v.services.values().filter(|s| here(&s.spec.namespace)).count(),
        secrets: v.secrets.values().filter(|p| here(&p.namespace)).count(),
        configs: v.configs.values().filter(|p| here(&p.namespace)).count(),
        networks: v.networks.values().filter(|n| here(&n.namespace)).count(),
        namespace,
    })
}

/// Every namespace (`default` first), with what each holds.
pub fn list(v: &View) -> Vec<Listed> {
    let names = std::iter::once(DEFAULT_NAMESPACE)
        .chain(v.namespaces.keys().map(String::as_str).filter(|n| *n != DEFAULT_NAMESPACE));
    names.filter_map(|n| listed(v, n).ok()).collect()
}

/// Replaces the quota of `ns` (lowering it below what it claims is allowed:
/// what is there stays, only growth is refused).
pub async fn set_quota(raft: &RaftHandle, ns: &str, quota: Quota) -> Result<Namespace, ClusterError> {
    let v = view(raft).await?;
    let mut n = v.namespace(ns).ok_or_else(|| super::quota::missing(ns))?;
    n.quota = quota;
    if n.created_ms == 0 {
        n.created_ms = now_ms();
    }
    let at = v.version_of(&Key::new(Kind::Namespace, ns));
    let res = raft.write(Command::put_if(ns, Object::Namespace(Arc::new(n.clone())), at)).await?;
    if let Some(c) = res.conflict {
        return Err(ClusterError::changed("setting the quota", &c));
    }
    tracing::info!(namespace = %ns, quota = ?n.quota, "namespace quota set");
    Ok(n)
}

/// Removes an empty namespace (`default` stays).
pub async fn remove(raft: &RaftHandle, ns: &str) -> Result<Namespace, ClusterError> {
    if ns == DEFAULT_NAMESPACE {
        return Err(ClusterError::FailedPrecondition(
            "namespace default cannot be removed: it is where objects go that name no namespace".into(),
        ));
    }
    let v = view(raft).await?;
    let l = listed(&v, ns)?;
    let volumes = v.volumes.values().filter(|x| shown(&x.namespace) == ns).count();
    let held = [
        (l.services, "services"),
        (l.secrets, "secrets"),
        (l.configs, "configs"),
        (volumes, "volumes"),
        (l.networks, "networks"),
    ];
    let held: Vec<String> = held.iter().filter(|(n, _)| *n > 0).map(|(n, what)| format!("{n} {what}")).collect();
    if !held.is_empty() {
        return Err(ClusterError::FailedPrecondition(format!(
            "namespace {ns} still holds {}: remove them first (`orcctl -N {ns} service ls`, `secret ls`, \
             `config ls`, `volume ls`, `network ls`)",
            held.join(", ")
        )));
    }
    let key = Key::new(Kind::Namespace, ns);
    let cmd = Command::Batch(vec![Command::expect(Kind::Namespace, ns, v.version_of(&key)), Command::Delete { key }]);
    let res = raft.write(cmd).await?;
    if let Some(c) = res.conflict {
        return Err(ClusterError::changed("removing the namespace", &c));
    }
    tracing::info!(namespace = %ns, "namespace removed");
    Ok(l.namespace)
}
