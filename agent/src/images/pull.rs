//! Pulling from a registry with oci-client: resolve the manifest (lists to
//! linux/amd64), fetch and check the config, stream each missing layer
//! through [`super::layer::unpack`] (three at a time), report progress.

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use oci_client::client::{linux_amd64_resolver, ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use tokio::sync::mpsc;

use super::{layer, reference, ImageRecord, ImageStore};
use crate::error::AgentError;
use orc_proto::container as pb;

/// Layers fetched at once.
const PARALLEL_LAYERS: usize = 3;

pub type Progress = mpsc::Sender<pb::PullProgress>;

pub(super) fn client(store: &ImageStore) -> Client {
    // reqwest panics without a process-wide rustls provider; ours is ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::new(ClientConfig {
        protocol: ClientProtocol::HttpsExcept(store.insecure_registries.clone()),
        platform_resolver: Some(Box::new(linux_amd64_resolver)),
        connect_timeout: Some(Duration::from_secs(10)),
        read_timeout: Some(Duration::from_secs(60)),
        ..Default::default()
    })
}

fn auth(creds: Option<&pb::RegistryAuth>) -> RegistryAuth {
    match creds {
        Some(a) if !a.username.is_empty() => RegistryAuth::Basic(a.username.clone(), a.password.clone()),
        _ => RegistryAuth::Anonymous,
    }
}

/// A registry error in words that say what to do.
pub(super) fn registry_error(r: &Reference, insecure: bool, with_creds: bool, e: OciDistributionError) -> AgentError {
    let what = r.whole();
    let unauthorized = |detail: &str| {
        if with_creds {
            AgentError::FailedPrecondition(format!(
                "{what}: the registry refused these credentials ({detail}); check the user name and password"
            ))
        } else {
            AgentError::FailedPrecondition(format!(
                "{what}: not authorized ({detail}): the image is private or does not exist; pass --username and --password-stdin"
            ))
        }
    };
    match e {
        OciDistributionError::ImageManifestNotFoundError(_) => {
            AgentError::NotFound(format!("{what}: no such image or tag in the registry"))
        }
        OciDistributionError::AuthenticationFailure(m) => unauthorized(&m),
        OciDistributionError::UnauthorizedError { .. } => unauthorized("401"),
        OciDistributionError::RegistryError { envelope, .. } => {
            let text = envelope.errors.iter().map(|e| e.message.clone()).collect::<Vec<_>>().join("; ");
            let code = envelope.errors.first().map(|e| format!("{:?}", e.code)).unwrap_or_default();
            if code.contains("Unknown") {
                AgentError::NotFound(format!("{what}: no such image or tag in the registry ({text})"))
            } else if code.contains("Unauthorized") || code.contains("Denied") {
                unauthorized(&text)
            } else {
                AgentError::Unavailable(format!("{what}: registry error: {text}"))
            }
        }
        OciDistributionError::RequestError(e) => {
            let mut chain = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                chain.push_str(": ");
                chain.push_str(&s.to_string());
                src = s.source();
            }
            // TLS spoken to a plain-HTTP registry fails with a corrupt record.
            let tls_to_http =
                ["corrupt", "InvalidContentType", "wrong version number"].iter().any(|s| chain.contains(s));
            let hint = if tls_to_http && !insecure {
                " (this registry seems to speak plain HTTP: list it in the node's insecure registries, \
                 kernel argument orc.insecure_registries=host:port)"
            } else {
                ""
            };
            AgentError::Unavailable(format!(
                "{what}: cannot reach the registry {}: {chain}{hint}",
                r.resolve_registry()
            ))
        }
        OciDistributionError::DigestError(e) => {
            AgentError::InvalidArgument(format!("{what}: {e}: the registry sent corrupt data"))
        }
        e => AgentError::Unavailable(format!("{what}: {e}")),
    }
}

fn layer_event(digest: &str, current: u64, total: u64, state: &str) -> pb::PullProgress {
    pb::PullProgress {
        event: Some(pb::pull_progress::Event::Layer(pb::LayerProgress {
            digest: digest.to_string(),
            current,
            total,
            state: state.to_string(),
        })),
    }
}

/// The image `name` as the node has it, pulled first when it has not (the
/// one place containers and tasks get their images from).
pub async fn ensure(
    store: &Arc<ImageStore>,
    name: &str,
    creds: Option<&pb::RegistryAuth>,
) -> Result<ImageRecord, AgentError> {
    if let Some(i) = store.get(name).await? {
        return Ok(i);
    }
    let _one = store.ensuring.lock().await;
    if let Some(i) = store.get(name).await? {
        return Ok(i);
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    pull(store, name, creds, tx).await
}

/// Pulls `name` and records it. Progress goes to `progress` (a dropped
/// receiver does not stop the pull).
pub async fn pull(
    store: &Arc<ImageStore>,
    name: &str,
    creds: Option<&pb::RegistryAuth>,
    progress: Progress,
) -> Result<ImageRecord, AgentError> {
    let r = reference::parse(name)?;
    let full = reference::normalize(name)?;
    let insecure = store.insecure_registries.iter().any(|h| h == r.resolve_registry());
    let client = client(store);
    let auth = auth(creds);
    let with_creds = creds.is_some_and(|c| !c.username.is_empty());
    let err = |e| registry_error(&r, insecure, with_creds, e);
    let (manifest, digest) = client.pull_image_manifest(&r, &auth).await.map_err(err)?;
    tracing::info!(image = %full, %digest, layers = manifest.layers.len(), "pulling");

    let mut config = Vec::new();
    client.pull_blob(&r, &manifest.config, &mut config).await.map_err(err)?;
    store.put_blob(&manifest.config.digest, &config)?;
    let diff_ids = diff_ids(&config).map_err(|e| AgentError::InvalidArgument(format!("{full}: image config: {e}")))?;
    if diff_ids.len() != manifest.layers.len() {
        return Err(AgentError::InvalidArgument(format!(
            "{full}: the manifest has {} layers but the config {} diff ids",
            manifest.layers.len(),
            diff_ids.len()
        )));
    }
    // What is missing, counted by its compressed size: a lower bound of
    // what unpacking it takes.
    let mut needed = 0u64;
    for (l, d) in manifest.layers.iter().zip(&diff_ids) {
        if !store.layer_dir(d)?.exists() {
            needed = needed.saturating_add(l.size.max(0) as u64);
        }
    }
    store.check_space(&full, needed)?;
    for l in &manifest.layers {
        let _ = progress.send(layer_event(&l.digest, 0, l.size.max(0) as u64, "waiting")).await;
    }

    let jobs: Vec<_> = manifest
        .layers
        .iter()
        .cloned()
        .zip(diff_ids.iter().cloned())
        .map(|(desc, diff_id)| {
            fetch_layer(&client, &r, store.clone(), desc, diff_id, progress.clone(), (insecure, with_creds))
        })
        .collect();
    futures::stream::iter(jobs).buffer_unordered(PARALLEL_LAYERS).try_collect::<Vec<()>>().await?;

    let mut size = 0;
    for d in &diff_ids {
        size += crate::fsutil::du(&store.layer_dir(d)?);
    }
    if size > store.max_image_bytes {
        // Its layers stay until garbage collection: another image may share them.
        return Err(store.too_large(&full, size));
    }
    let record = ImageRecord {
        name: full,
        id: manifest.config.digest.clone(),
        digest,
        layers: diff_ids,
        size,
        created: crate::clock::unix_secs(),
    };
    store.tag(record.clone()).await?;
    Ok(record)
}

/// The largest layer of image `name`, as a stream, with its media type:
/// where an OS upgrade image carries its bundle
/// ([`crate::upgrade::pull`]). Nothing is stored.
pub async fn largest_layer(
    store: &Arc<ImageStore>,
    name: &str,
    creds: Option<&pb::RegistryAuth>,
) -> Result<(oci_client::client::SizedStream, String), AgentError> {
    let r = reference::parse(name)?;
    let insecure = store.insecure_registries.iter().any(|h| h == r.resolve_registry());
    let client = client(store);
    let with_creds = creds.is_some_and(|c| !c.username.is_empty());
    let err = |e| registry_error(&r, insecure, with_creds, e);
    let (manifest, digest) = client.pull_image_manifest(&r, &auth(creds)).await.map_err(err)?;
    let layer = manifest
        .layers
        .iter()
        .max_by_key(|l| l.size)
        .cloned()
        .ok_or_else(|| AgentError::InvalidArgument(format!("{}: the image has no layers", r.whole())))?;
    tracing::info!(image = %r.whole(), %digest, layer = %layer.digest, size = layer.size, "pulling an upgrade");
    let blob = client.pull_blob_stream(&r, &layer).await.map_err(err)?;
    Ok((blob, layer.media_type))
}

/// The diff ids an image config lists.
pub fn diff_ids(config: &[u8]) -> Result<Vec<String>, String> {
    let c: oci_spec::image::ImageConfiguration = serde_json::from_slice(config).map_err(|e| e.to_string())?;
    Ok(c.rootfs().diff_ids().clone())
}

async fn fetch_layer(
    client: &Client,
    r: &Reference,
    store: Arc<ImageStore>,
    desc: oci_client::manifest::OciDescriptor,
    diff_id: String,
    progress: Progress,
    (insecure, with_creds): (bool, bool),
) -> Result<(), AgentError> {
    let total = desc.size.max(0) as u64;
    if store.layer_dir(&diff_id)?.exists() {
        let _ = progress.send(layer_event(&desc.digest, total, total, "exists")).await;
        return Ok(());
    }
    let blob = client.pull_blob_stream(r, &desc).await.map_err(|e| registry_error(r, insecure, with_creds, e))?;
    let reader = tokio_util::io::StreamReader::new(blob.stream.map_err(std::io::Error::other));
    let reader = tokio_util::io::SyncIoBridge::new(reader);
    let digest = desc.digest.clone();
    let p = progress.clone();
    let mut last = 0u64;
    let on_read = Box::new(move |n: u64| {
        if n - last >= 256 * 1024 || n == total {
            last = n;
            let _ = p.try_send(layer_event(&digest, n, total, "downloading"));
        }
    });
    let (d, s) = (desc.digest.clone(), store.clone());
    let unpacked = tokio::task::spawn_blocking(move || layer::unpack(&s, reader, Some(&d), Some(&diff_id), on_read))
        .await
        .map_err(|e| AgentError::Io(format!("unpack task: {e}")))??;
    tracing::info!(layer = %desc.digest, bytes = unpacked.compressed_size, unpacked = unpacked.size, "layer ready");
    let _ = progress.send(layer_event(&desc.digest, total, total, "done")).await;
    Ok(())
}
