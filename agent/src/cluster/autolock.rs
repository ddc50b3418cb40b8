//! Autolock on the cluster's side: turning it on and off, showing and
//! rotating the unlock key, and every manager keeping its CA key on STATE
//! sealed as the settings say ([`crate::pki::autolock`]).
//!
//! The unlock key lives in the cluster settings sealed under the data key,
//! which is derived from the CA key: a manager holding the CA key reads it
//! (and re-seals its own CA key under it), a locked one cannot. The
//! operator holds it too, and gives it to a locked manager with
//! `orcctl cluster unlock`.

use std::sync::Arc;
use std::time::Duration;

use super::error::ClusterError;
use super::objects::Settings;
use super::payloads::data_key;
use crate::model::db::{Command, Object};
use crate::pki::autolock::{UnlockKey, SETTINGS_AAD};
use crate::pki::sealing::DataKey;
use crate::state::NodeState;

/// The unlock key `settings` hold, opened with `key` (none: autolock off).
fn key_of(settings: &Settings, key: &DataKey) -> Result<Option<UnlockKey>, ClusterError> {
    let Some(sealed) = &settings.autolock else { return Ok(None) };
    let plain = key.open(SETTINGS_AAD, sealed).map_err(|e| ClusterError::Internal(e.to_string()))?;
    UnlockKey::from_bytes(&plain).map(Some).map_err(|e| ClusterError::Internal(e.to_string()))
}

fn this_data_key(state: &NodeState) -> Result<DataKey, ClusterError> {
    data_key(state).ok_or_else(|| {
        ClusterError::FailedPrecondition("this node holds no CA key (a worker, or a locked manager)".into())
    })
}

async fn settings(state: &NodeState) -> Result<Settings, ClusterError> {
    let s = state.raft.linearizable().await?;
    let a = s.sm.applied.read().await;
    Ok(a.state.settings.clone())
}

/// Stores `key` (none: off) as the cluster's unlock key.
async fn store(state: &NodeState, mut settings: Settings, key: Option<&UnlockKey>) -> Result<(), ClusterError> {
    settings.autolock = match key {
        Some(k) => Some(
            this_data_key(state)?.seal(SETTINGS_AAD, k.bytes()).map_err(|e| ClusterError::Internal(e.to_string()))?,
        ),
        None => None,
    };
    state.raft.write(Command::put("", Object::Settings(settings))).await?;
    Ok(())
}

/// `cluster update --autolock=<on>`: a new unlock key when it turns on
/// (returned once, for the operator to keep); none when it was on already
/// (the key stays) or turns off.
pub async fn set(state: &NodeState, on: bool) -> Result<Option<UnlockKey>, ClusterError> {
    let current = settings(state).await?;
    match (on, current.autolock.is_some()) {
        (true, true) | (false, false) => Ok(None),
        (true, false) => {
            let key = UnlockKey::generate();
            store(state, current, Some(&key)).await?;
            tracing::info!("autolock on: managers seal their CA key under the new unlock key");
            Ok(Some(key))
        }
        (false, true) => {
            store(state, current, None).await?;
            tracing::info!("autolock off: managers keep their CA key plain");
            Ok(None)
        }
    }
}

/// `cluster unlock-key [--rotate]`: the current unlock key, or a new one.
pub async fn unlock_key(state: &NodeState, rotate: bool) -> Result<UnlockKey, ClusterError> {
    let current = settings(state).await?;
    let Some(key) = key_of(&current, &this_data_key(state)?)? else {
        return Err(ClusterError::FailedPrecondition(
            "autolock is off: there is no unlock key (turn it on with `orcctl cluster update --autolock`)".into(),
        ));
    };
    if !rotate {
        return Ok(key);
    }
    let key = UnlockKey::generate();
    store(state, current, Some(&key)).await?;
    tracing::info!("unlock key rotated: managers re-seal their CA key under the new one");
    Ok(key)
}

/// On a manager: keeps its CA key on STATE sealed under the cluster's
/// unlock key (or plain when autolock is off) as the Raft state is applied.
pub async fn follow(state: Arc<NodeState>) {
    // The sealed key last acted on: most changes are not to it.
    let mut last: Option<Option<Vec<u8>>> = None;
    loop {
        let Ok(s) = state.raft.get() else {
            // Not a manager now (or locked): a promotion hands over a plain CA key.
            last = None;
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        let mut changed = s.sm.changed.subscribe();
        let settings = {
            let a = s.sm.applied.read().await;
            (last.as_ref() != Some(&a.state.settings.autolock)).then(|| a.state.settings.clone())
        };
        if let Some(settings) = settings {
            // A key that could not be read is tried again at the next change.
            if follow_once(&state, &settings) {
                last = Some(settings.autolock);
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), changed.changed()).await;
    }
}

/// Whether the CA key on STATE is now as `settings` say.
fn follow_once(state: &NodeState, settings: &Settings) -> bool {
    let want = match settings.autolock {
        None => None,
        Some(_) => {
            let Some(dk) = data_key(state) else { return false };
            match key_of(settings, &dk) {
                Ok(k) => k.map(Arc::new),
                Err(e) => {
                    tracing::error!(error = %e, "the cluster's unlock key cannot be read; the CA key on STATE is left as it is");
                    return false;
                }
            }
        }
    };
    let on = want.is_some();
    match state.set_unlock_key(want) {
        Ok(true) if on => tracing::info!("autolock: the CA key on STATE is sealed under the cluster's unlock key"),
        Ok(true) => tracing::info!("autolock off: the CA key on STATE is plain again"),
        Ok(false) => {}
        Err(e) => {
            tracing::error!(error = %e, "autolock: the CA key on STATE could not be re-saved");
            return false;
        }
    }
    true
}
