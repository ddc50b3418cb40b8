//! People's certificates: issued by an admin, renewed by their holder
//! (same name, role and lifetime), revoked by serial or by name; and the
//! deny list every manager derives from the state (revoked serials,
//! removed nodes, nodes that are workers now).

use std::sync::Arc;
use std::time::Duration;

use super::error::ClusterError;
use super::objects::{now_ms, PersonCert, RevokedCert};
use crate::model::db::{ClusterState, Command, Object};
use crate::pki::ca::{self, CertKey, PERSON_TTL};
use crate::pki::deny::DenyList;
use crate::pki::role::{identity_of, PeerIdentity, Role};
use crate::raft::RaftHandle;
use crate::state::NodeState;

/// The shortest lifetime of a person's certificate.
pub const MIN_PERSON_TTL: Duration = Duration::from_secs(60);

/// The deny list the state `s` implies: revoked serials, removed nodes,
/// and workers that have held a manager certificate (only those could
/// present one; listing every worker would send every node a list as long
/// as the cluster whenever one joins).
pub fn deny_list(s: &ClusterState) -> DenyList {
    DenyList {
        serials: s.revoked_certs.keys().cloned().collect(),
        removed_nodes: s.removed_nodes.keys().cloned().collect(),
        workers: s.nodes.values().filter(|n| n.role != Role::Manager && n.was_manager).map(|n| n.id.clone()).collect(),
    }
}

/// On a manager: keeps the node's deny list in line with the Raft state as
/// it is applied (a no-op loop on workers, which get it from the leader).
pub async fn follow(state: Arc<NodeState>) {
    loop {
        let Ok(s) = state.raft.get() else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        let mut changed = s.sm.changed.subscribe();
        let list = {
            let a = s.sm.applied.read().await;
            deny_list(&a.state)
        };
        state.set_deny(list);
        let _ = tokio::time::timeout(Duration::from_secs(5), changed.changed()).await;
    }
}

fn valid_name(n: &str) -> bool {
    !n.is_empty() && n.len() <= 63 && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
}

/// The CA (with its key) of this manager.
fn ca_of(state: &NodeState) -> Result<(CertKey, String), ClusterError> {
    let id =
        state.identity().ok_or_else(|| ClusterError::FailedPrecondition("this node is not in a cluster".into()))?;
    let key = id.ca_key_pem.ok_or_else(|| ClusterError::FailedPrecondition("this node is not a manager".into()))?;
    Ok((CertKey { cert_pem: id.ca_cert_pem, key_pem: key }, id.meta.cluster_id))
}

/// Signs `csr_pem` for `name` with `role` and records the certificate.
async fn sign(
    state: &NodeState,
    name: &str,
    role: Role,
    namespaces: &[String],
    ttl: Duration,
    csr_pem: &str,
    issued_by: &str,
) -> Result<(String, String, PersonCert), ClusterError> {
    let (ca, cluster_id) = ca_of(state)?;
    let cert_pem = ca::sign_csr(&ca, &cluster_id, name, role, namespaces, ttl, csr_pem)
        .map_err(|e| ClusterError::InvalidArgument(format!("the certificate request: {e}")))?;
    let record = record_of(&cert_pem, issued_by)?;
    state.raft.write(Command::put(record.serial.clone(), Object::PersonCert(Arc::new(record.clone())))).await?;
    tracing::info!(person = %name, role = %role, namespaces = ?namespaces, serial = %record.serial, by = %issued_by, "person certificate issued");
    Ok((cert_pem, ca.cert_pem, record))
}

/// The record of an issued certificate.
pub fn record_of(cert_pem: &str, issued_by: &str) -> Result<PersonCert, ClusterError> {
    let der = crate::cluster::join::pem_der(cert_pem)?;
    let who = identity_of(&der).map_err(|e| ClusterError::Internal(format!("the issued certificate: {e}")))?;
    Ok(PersonCert {
        serial: who.serial,
        name: who.name,
        role: who.role,
        issued_ms: now_ms(),
        expires_ms: who.not_after.saturating_mul(1000),
        issued_by: issued_by.to_string(),
        revoked_ms: None,
        namespaces: who.namespaces,
    })
}

/// `user cert create` (admin): a certificate for `name` with `role`.
pub async fn issue(
    state: &NodeState,
    by: &PeerIdentity,
    name: &str,
    role: &str,
    namespaces: &[String],
    ttl_secs: u64,
    csr_pem: &str,
) -> Result<(String, String, PersonCert), ClusterError> {
    if !valid_name(name) {
        return Err(ClusterError::InvalidArgument(format!(
            "name {name:?}: use 1-63 letters, digits, '-', '_', '.' or '@'"
        )));
    }
    let role: Role = role.parse().ok().filter(|r: &Role| r.is_person()).ok_or_else(|| {
        ClusterError::InvalidArgument(format!("role {role:?}: a person is an admin, an operator or a reader"))
    })?;
    let ttl = if ttl_secs == 0 { PERSON_TTL } else { Duration::from_secs(ttl_secs) };
    if ttl < MIN_PERSON_TTL || ttl > ca::MAX_TTL {
        return Err(ClusterError::InvalidArgument(format!(
            "--ttl {ttl_secs}s: a person's certificate lives {} s to {} days",
            MIN_PERSON_TTL.as_secs(),
            ca::MAX_TTL.as_secs() / 86_400
        )));
    }
    if !namespaces.is_empty() {
        if role == Role::Admin {
            return Err(ClusterError::InvalidArgument(
                "an admin is the whole cluster's: limit an operator or a reader to namespaces, not an admin".into(),
            ));
        }
        let v = crate::cluster::objects::view(&state.raft).await?;
        for ns in namespaces {
            v.namespace(ns).ok_or_else(|| super::quota::missing(ns))?;
        }
    }
    sign(state, name, role, namespaces, ttl, csr_pem, &by.name).await
}

/// `config renew`: the caller's own certificate again, same name and role,
/// for as long as the one it replaces was issued for.
pub async fn renew(
    state: &NodeState,
    caller: &PeerIdentity,
    csr_pem: &str,
) -> Result<(String, String, PersonCert), ClusterError> {
    if !caller.role.is_person() {
        return Err(ClusterError::PermissionDenied("nodes renew with `Cluster.Renew`".into()));
    }
    let v = state.raft.linearizable().await?;
    let previous = {
        let a = v.sm.applied.read().await;
        a.state.person_certs.get(&caller.serial).map(|c| PersonCert::clone(c))
    };
    let ttl = previous
        .map(|p| Duration::from_millis(u64::try_from(p.expires_ms - p.issued_ms).unwrap_or(0)))
        .filter(|t| *t >= MIN_PERSON_TTL && *t <= ca::MAX_TTL)
        .unwrap_or(PERSON_TTL);
    sign(state, &caller.name, caller.role, &caller.namespaces, ttl, csr_pem, &caller.name).await
}

/// `user cert revoke SERIAL|NAME` (admin): the certificate with that
/// serial, or every unexpired one of that person on record.
pub async fn revoke(raft: &RaftHandle, by: &PeerIdentity, target: &str) -> Result<Vec<PersonCert>, ClusterError> {
    let target = target.trim().to_ascii_lowercase();
    if target.is_empty() {
        return Err(ClusterError::InvalidArgument("name a certificate serial or a person".into()));
    }
    let started = raft.linearizable().await?;
    let on_record: Vec<PersonCert> =
        started.sm.applied.read().await.state.person_certs.values().map(|c| PersonCert::clone(c)).collect();
    let now = now_ms();
    let mut chosen: Vec<PersonCert> = on_record.iter().filter(|c| c.serial == target).cloned().collect();
    if chosen.is_empty() {
        chosen = on_record
            .iter()
            .filter(|c| c.name.to_ascii_lowercase() == target && c.revoked_ms.is_none() && c.expires_ms > now)
            .cloned()
            .collect();
    }
    if chosen.is_empty() {
        let is_serial = target.len() >= 16 && target.len() <= 40 && target.bytes().all(|b| b.is_ascii_hexdigit());
        if !is_serial {
            return Err(ClusterError::NotFound(format!(
                "no live certificate of {target:?} on record (see `orcctl user cert ls`); a serial is revoked as given"
            )));
        }
        // A serial the cluster has no record of (it still is refused).
        chosen.push(PersonCert { serial: target.clone(), ..Default::default() });
    }
    if chosen.iter().any(|c| c.serial == by.serial) {
        return Err(ClusterError::FailedPrecondition(
            "that would revoke the certificate you are calling with: use another admin's".into(),
        ));
    }
    let mut cmds = Vec::new();
    for c in &mut chosen {
        c.revoked_ms = Some(now);
        let entry = RevokedCert { name: c.name.clone(), expires_ms: c.expires_ms, revoked_ms: now };
        cmds.push(Command::put(c.serial.clone(), Object::RevokedCert(Arc::new(entry))));
        if !c.name.is_empty() {
            cmds.push(Command::put(c.serial.clone(), Object::PersonCert(Arc::new(c.clone()))));
        }
    }
    raft.write(Command::Batch(cmds)).await?;
    for c in &chosen {
        tracing::warn!(serial = %c.serial, person = %c.name, by = %by.name, "certificate revoked");
    }
    Ok(chosen)
}

/// People's certificates on record, newest first.
pub async fn list(raft: &RaftHandle) -> Result<Vec<PersonCert>, ClusterError> {
    let started = raft.linearizable().await?;
    let mut all: Vec<PersonCert> =
        started.sm.applied.read().await.state.person_certs.values().map(|c| PersonCert::clone(c)).collect();
    all.sort_by(|a, b| b.issued_ms.cmp(&a.issued_ms).then(a.serial.cmp(&b.serial)));
    Ok(all)
}

/// Records the first admin's certificate (made at `cluster init`, before
/// the Raft existed), so it can be listed and revoked by name.
pub async fn record_bootstrap_admin(raft: &RaftHandle, cert_pem: &str) {
    let record = match record_of(cert_pem, "cluster init") {
        Ok(r) => r,
        Err(e) => return tracing::warn!(error = %e, "the first admin's certificate is not on record"),
    };
    for _ in 0..60 {
        match raft.write(Command::put(record.serial.clone(), Object::PersonCert(Arc::new(record.clone())))).await {
            Ok(_) => return,
            Err(e) => tracing::debug!(error = %e, "recording the first admin's certificate; retrying"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tracing::warn!(serial = %record.serial, "the first admin's certificate could not be recorded; revoke it by serial");
}
