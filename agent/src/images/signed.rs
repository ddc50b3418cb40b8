//! Signed images only: before a node runs an image under the cluster's
//! image policy, it resolves the image's manifest digest, fetches the
//! cosign-style signature stored beside it in the registry
//! (`<repository>:sha256-<hex>.sig`) and checks it against the trusted
//! keys of the rule that matches ([`orc_tls::image_sig`]). A verified image
//! runs by digest: a tag that moves does not change what runs.

use orc_tls::image_sig;

use super::{pull, reference, ImageStore};
use crate::error::AgentError;

/// The payload of a signature is small: a larger layer is not one.
const MAX_PAYLOAD: i64 = 64 << 10;

/// The rule of the policy that applies to an image (the caller matched it).
pub struct Trust<'a> {
    /// Its number in the policy, from 1.
    pub rule: usize,
    pub pattern: &'a str,
    /// Trusted Ed25519 public keys (PEM).
    pub keys: &'a [String],
}

/// A loaded image whose archive carried signatures: checked against them,
/// with no registry asked (air-gapped nodes). `Ok(None)`: not such an image.
async fn loaded(
    store: &ImageStore,
    name: &str,
    repo: &str,
    keys: &[Vec<u8>],
    rule: &str,
    rule_no: usize,
) -> Result<Option<String>, AgentError> {
    let Some(record) = store.get(name).await? else { return Ok(None) };
    if record.digest.is_empty() {
        return Ok(None);
    }
    let kept = store.signatures(&record.digest)?;
    if kept.is_empty() {
        return Ok(None);
    }
    let mut why = String::new();
    for s in &kept {
        match image_sig::verify(&s.payload, &s.signature, &record.digest, keys) {
            Ok(key) => {
                let digest = &record.digest;
                tracing::info!(image = %name, %digest, rule = rule_no, key = key + 1, "loaded image's signature verified");
                // Run by digest: a later load moving the name changes nothing that runs.
                let by_digest = format!("{repo}@{digest}");
                store.tag(super::ImageRecord { name: reference::normalize(&by_digest)?, ..record.clone() }).await?;
                return Ok(Some(by_digest));
            }
            Err(e) => why = e.to_string(),
        }
    }
    Err(AgentError::PermissionDenied(format!(
        "image {name} ({}) is refused by the image policy, {rule}: none of the {} signatures its archive carried \
         verifies: {why}",
        record.digest,
        kept.len()
    )))
}

/// `registry/repository` of image `name`: what policy patterns match.
pub fn repository(name: &str) -> Result<String, AgentError> {
    let r = reference::parse(name)?;
    Ok(format!("{}/{}", r.resolve_registry(), r.repository()))
}

/// Checks image `name` against `trust` (None: no rule matches it); the
/// reference by digest to run.
pub async fn verify(store: &ImageStore, name: &str, trust: Option<Trust<'_>>) -> Result<String, AgentError> {
    let repo = repository(name)?;
    let Some(trust) = trust else {
        return Err(AgentError::PermissionDenied(format!(
            "image {name}: no rule of the cluster's image policy matches {repo}: add one with its key \
             (`orcctl cluster update --image-policy FILE`)"
        )));
    };
    let rule = format!("rule {} ({})", trust.rule, trust.pattern);
    let keys: Vec<Vec<u8>> = trust.keys.iter().filter_map(|k| image_sig::public_key(k).ok()).collect();
    if let Some(by_digest) = loaded(store, name, &repo, &keys, &rule, trust.rule).await? {
        return Ok(by_digest);
    }
    let r = reference::parse(name)?;
    let client = pull::client(store);
    let auth = oci_client::secrets::RegistryAuth::Anonymous;
    let insecure = store.insecure_registries.iter().any(|h| h == r.resolve_registry());
    let digest = match r.digest() {
        Some(d) => d.to_string(),
        None => match client.fetch_manifest_digest(&r, &auth).await {
            Ok(d) => d,
            Err(e) => match (pull::registry_error(&r, insecure, false, e), store.get(name).await?) {
                // Loaded from an archive that carried no signature, and in no registry.
                (AgentError::NotFound(_), Some(local)) => {
                    return Err(AgentError::PermissionDenied(format!(
                        "image {name} ({}) is refused by the image policy, {rule}: it is not signed (its archive \
                         carried no signature, and the registry does not have it): sign the archive with \
                         `orcctl image sign ARCHIVE --key …` and load it again",
                        local.digest
                    )))
                }
                (e, _) => return Err(e),
            },
        },
    };
    let sig_ref = oci_client::Reference::with_tag(
        r.registry().to_string(),
        r.repository().to_string(),
        image_sig::signature_tag(&digest),
    );
    let refused = |why: String| {
        AgentError::PermissionDenied(format!("image {name} ({digest}) is refused by the image policy, {rule}: {why}"))
    };
    let (manifest, _) = client.pull_image_manifest(&sig_ref, &auth).await.map_err(|e| {
        match pull::registry_error(&sig_ref, insecure, false, e) {
            AgentError::NotFound(_) => {
                refused(format!("it is not signed (no {}); sign it with `orcctl image sign`", sig_ref.whole()))
            }
            other => other,
        }
    })?;
    let mut why = format!("{} holds no signature payload", sig_ref.whole());
    for layer in manifest.layers.iter().filter(|l| l.media_type == image_sig::PAYLOAD_MEDIA_TYPE) {
        let Some(sig) = layer.annotations.as_ref().and_then(|a| a.get(image_sig::SIGNATURE_ANNOTATION)) else {
            continue;
        };
        if layer.size > MAX_PAYLOAD {
            why = format!("a signature payload of {} bytes (at most {MAX_PAYLOAD})", layer.size);
            continue;
        }
        let mut payload = Vec::new();
        client
            .pull_blob(&sig_ref, layer, &mut payload)
            .await
            .map_err(|e| pull::registry_error(&sig_ref, insecure, false, e))?;
        match image_sig::verify(&payload, sig, &digest, &keys) {
            Ok(key) => {
                tracing::info!(image = %name, %digest, rule = trust.rule, key = key + 1, "image signature verified");
                return Ok(format!("{}/{}@{digest}", r.registry(), r.repository()));
            }
            Err(e) => why = e.to_string(),
        }
    }
    Err(refused(why))
}
