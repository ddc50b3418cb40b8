//! Loading images from archives, for sites without a registry: an OCI image
//! layout (`index.json` + `blobs/`) or a `docker save` archive
//! (`manifest.json`), as a tar, optionally gzip'd. The archive is unpacked
//! with the same safe unpacker as layers, then every blob is checked against
//! its digest before use.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::fcntl::ResolveFlag;
use serde::Deserialize;

use orc_tls::image_sig;

use super::signatures::KeptSignature;
use super::{layer, reference, ImageRecord, ImageStore};
use crate::error::AgentError;

const REF_NAME: &str = "org.opencontainers.image.ref.name";
const CONTAINERD_NAME: &str = "io.containerd.image.name";

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifest {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// One image found in an archive, before its layers are unpacked.
struct Found {
    names: Vec<String>,
    config: Vec<u8>,
    manifest_digest: String,
    /// Layer files (relative to the archive) and, for OCI layouts, their blob digests.
    layers: Vec<(String, Option<String>)>,
}

fn bad(msg: impl std::fmt::Display) -> AgentError {
    AgentError::InvalidArgument(format!("image archive: {msg}"))
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(data)))
}

/// Loads every image in the archive at `archive`; `default_name` names
/// images the archive leaves unnamed.
pub async fn load(
    store: &Arc<ImageStore>,
    archive: PathBuf,
    default_name: String,
) -> Result<Vec<ImageRecord>, AgentError> {
    let s = store.clone();
    let records = tokio::task::spawn_blocking(move || -> Result<Vec<ImageRecord>, AgentError> {
        let dir = s.tmp_dir().join(format!("load-{:016x}", rand::random::<u64>()));
        std::fs::create_dir(&dir).map_err(|e| AgentError::io(&dir, e))?;
        let result = (|| {
            extract(&s, &archive, &dir)?;
            let (found, signatures) = find(&dir, &default_name)?;
            let mut records = Vec::new();
            for f in &found {
                records.extend(import(&s, &dir, f)?);
            }
            for (digest, sigs) in &signatures {
                s.keep_signatures(digest, sigs)?;
            }
            Ok(records)
        })();
        let _ = std::fs::remove_dir_all(&dir);
        result
    })
    .await
    .map_err(|e| AgentError::Io(format!("load task: {e}")))??;
    for r in &records {
        store.tag(r.clone()).await?;
    }
    Ok(records)
}

fn extract(store: &ImageStore, archive: &Path, dir: &Path) -> Result<(), AgentError> {
    let f = std::fs::File::open(archive).map_err(|e| AgentError::io(archive, e))?;
    // Unpacked once here and once into layers: twice its size at least.
    let len = f.metadata().map_err(|e| AgentError::io(archive, e))?.len();
    store.check_space(&archive.display().to_string(), len.saturating_mul(2))?;
    let mut r = BufReader::new(f);
    let gzip = r.fill_buf().map(|b| b.starts_with(&[0x1f, 0x8b])).unwrap_or(false);
    let reader: Box<dyn Read> = if gzip { Box::new(flate2::read::GzDecoder::new(r)) } else { Box::new(r) };
    let limits = orc_layer::Limits { max_bytes: store.max_image_bytes.saturating_mul(2) };
    orc_layer::unpack_limited(reader, dir, limits).map_err(|e| match e {
        orc_layer::Error::Write { source, path } => AgentError::io(path, source),
        e => bad(e),
    })?;
    Ok(())
}

/// Metadata files (manifests, configs, indexes) are small.
const MAX_METADATA: u64 = 16 << 20;

/// The archive's file `rel` (a path the archive itself names): confined
/// to the unpacked archive, no symlink followed, a regular file only.
fn archive_file(dir: &Path, rel: &str) -> Result<std::fs::File, AgentError> {
    crate::fsutil::open_regular_in(dir, Path::new(rel), CONFINED)
        .map_err(|e| bad(format!("{rel:?}: {e} (paths in an archive must name regular files inside it)")))
}

fn archive_read(dir: &Path, rel: &str) -> Result<Vec<u8>, AgentError> {
    crate::fsutil::read_regular_in(dir, Path::new(rel), CONFINED, MAX_METADATA)
        .map_err(|e| bad(format!("{rel:?}: {e} (paths in an archive must name regular files inside it)")))
}

/// Beneath the archive's root; its symlinks are not followed.
const CONFINED: ResolveFlag = ResolveFlag::RESOLVE_BENEATH.union(ResolveFlag::RESOLVE_NO_SYMLINKS);

fn read_json<T: for<'de> Deserialize<'de>>(dir: &Path, rel: &str) -> Result<T, AgentError> {
    serde_json::from_slice(&archive_read(dir, rel)?).map_err(|e| bad(format!("{rel}: {e}")))
}

/// A blob of an OCI layout, read and checked against its digest.
fn blob(dir: &Path, digest: &str) -> Result<Vec<u8>, AgentError> {
    let hex = super::digest_hex(digest)?;
    let data = archive_read(dir, &format!("blobs/sha256/{hex}"))?;
    if sha256(&data) != digest {
        return Err(bad(format!("blob {digest} does not match its digest: the archive is corrupt")));
    }
    Ok(data)
}

/// Signatures an OCI layout carries, by the manifest digest they sign.
type Signatures = std::collections::BTreeMap<String, Vec<KeptSignature>>;

/// The digest a signature manifest's ref name (`sha256-<hex>.sig`) signs.
fn signed_digest(ref_name: &str) -> Option<String> {
    let hex = ref_name.strip_prefix("sha256-")?.strip_suffix(".sig")?;
    let digest = format!("sha256:{hex}");
    let valid = super::digest_hex(&digest).is_ok();
    valid.then_some(digest)
}

/// The signatures in signature manifest `data` (cosign's layout: a payload
/// layer per signature, the signature in its annotation).
fn signatures_in(dir: &Path, data: &[u8]) -> Result<Vec<KeptSignature>, AgentError> {
    let manifest: oci_spec::image::ImageManifest = serde_json::from_slice(data).map_err(bad)?;
    let mut out = Vec::new();
    for l in manifest.layers().iter().filter(|l| l.media_type().to_string() == image_sig::PAYLOAD_MEDIA_TYPE) {
        let Some(sig) = l.annotations().as_ref().and_then(|a| a.get(image_sig::SIGNATURE_ANNOTATION)) else {
            continue;
        };
        if l.size() > MAX_SIGNATURE_PAYLOAD {
            return Err(bad(format!("a signature payload of {} bytes (at most {MAX_SIGNATURE_PAYLOAD})", l.size())));
        }
        out.push(KeptSignature { payload: blob(dir, l.digest().as_ref())?, signature: sig.clone() });
    }
    Ok(out)
}

/// A signature's payload is small: a larger layer is not one.
const MAX_SIGNATURE_PAYLOAD: u64 = 64 << 10;

fn find(dir: &Path, default_name: &str) -> Result<(Vec<Found>, Signatures), AgentError> {
    if dir.join("manifest.json").symlink_metadata().is_ok() {
        let manifests: Vec<DockerManifest> = read_json(dir, "manifest.json")?;
        let found = manifests
            .into_iter()
            .map(|m| {
                let config = archive_read(dir, &m.config)?;
                let mut names = m.repo_tags.unwrap_or_default();
                if names.is_empty() && !default_name.is_empty() {
                    names.push(default_name.to_string());
                }
                Ok(Found {
                    names,
                    config,
                    manifest_digest: String::new(),
                    layers: m.layers.iter().map(|l| (l.clone(), None)).collect(),
                })
            })
            .collect::<Result<_, AgentError>>()?;
        return Ok((found, Signatures::new()));
    }
    if dir.join("index.json").symlink_metadata().is_err() {
        return Err(bad("neither an OCI image layout (index.json) nor a `docker save` archive (manifest.json)"));
    }
    let index: oci_spec::image::ImageIndex = read_json(dir, "index.json")?;
    let mut out = Vec::new();
    let mut signatures = Signatures::new();
    for desc in index.manifests() {
        let mut digest = desc.digest().to_string();
        let mut data = blob(dir, &digest)?;
        let ref_name = desc.annotations().as_ref().and_then(|a| a.get(REF_NAME)).cloned().unwrap_or_default();
        if let Some(signed) = signed_digest(&ref_name) {
            signatures.entry(signed).or_default().extend(signatures_in(dir, &data)?);
            continue;
        }
        if desc.media_type().to_string().contains("index") || desc.media_type().to_string().contains("list") {
            let nested: oci_spec::image::ImageIndex = serde_json::from_slice(&data).map_err(bad)?;
            let Some(m) = nested.manifests().iter().find(|m| {
                m.platform().as_ref().is_some_and(|p| {
                    p.os() == &oci_spec::image::Os::Linux && p.architecture() == &oci_spec::image::Arch::Amd64
                })
            }) else {
                return Err(bad(format!("{digest}: no linux/amd64 image in this index")));
            };
            digest = m.digest().to_string();
            data = blob(dir, &digest)?;
        }
        let manifest: oci_spec::image::ImageManifest = serde_json::from_slice(&data).map_err(bad)?;
        let config = blob(dir, manifest.config().digest().as_ref())?;
        let annotations = desc.annotations().clone().unwrap_or_default();
        let name = annotations.get(CONTAINERD_NAME).or(annotations.get(REF_NAME)).cloned().unwrap_or_default();
        let name = if name.is_empty() {
            default_name.to_string()
        } else if !name.contains(['/', ':']) && !default_name.is_empty() {
            // A bare tag: it belongs to the name the user gave.
            let base = default_name.rsplit_once(':').map(|(b, _)| b).unwrap_or(default_name);
            format!("{base}:{name}")
        } else {
            name
        };
        let layers = manifest
            .layers()
            .iter()
            .map(|l| {
                let d = l.digest().to_string();
                Ok((format!("blobs/sha256/{}", super::digest_hex(&d)?), Some(d)))
            })
            .collect::<Result<_, AgentError>>()?;
        out.push(Found {
            names: vec![name].into_iter().filter(|n| !n.is_empty()).collect(),
            config,
            manifest_digest: digest,
            layers,
        });
    }
    Ok((out, signatures))
}

fn import(store: &ImageStore, dir: &Path, f: &Found) -> Result<Vec<ImageRecord>, AgentError> {
    if f.names.is_empty() {
        return Err(bad("the archive does not name its image: pass a name (`orcctl image load --name app:1 FILE`)"));
    }
    let id = sha256(&f.config);
    let diff_ids = super::pull::diff_ids(&f.config).map_err(|e| bad(format!("image config: {e}")))?;
    if diff_ids.len() != f.layers.len() {
        return Err(bad(format!("{} layers but the config lists {} diff ids", f.layers.len(), diff_ids.len())));
    }
    store.put_blob(&id, &f.config)?;
    let mut size = 0;
    for ((path, blob_digest), diff_id) in f.layers.iter().zip(&diff_ids) {
        let target = store.layer_dir(diff_id)?;
        if !target.exists() {
            let file = archive_file(dir, path)?;
            layer::unpack(store, file, blob_digest.as_deref(), Some(diff_id), Box::new(|_| {}))?;
        }
        size += crate::fsutil::du(&target);
    }
    if size > store.max_image_bytes {
        return Err(store.too_large(&f.names.join(", "), size));
    }
    f.names
        .iter()
        .map(|n| {
            Ok(ImageRecord {
                name: reference::normalize(n)?,
                id: id.clone(),
                digest: f.manifest_digest.clone(),
                layers: diff_ids.clone(),
                size,
                created: crate::clock::unix_secs(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docker_archive(config: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let manifest = serde_json::json!([{"Config": config, "RepoTags": ["x:1"], "Layers": ["l/layer.tar"]}]);
        std::fs::write(dir.path().join("manifest.json"), manifest.to_string()).unwrap();
        std::fs::write(dir.path().join("config.json"), b"{}").unwrap();
        dir
    }

    #[test]
    fn signature_manifests_are_kept_apart_from_images() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = dir.path().join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        let put = |data: &[u8]| {
            let d = sha256(data);
            std::fs::write(blobs.join(d.trim_start_matches("sha256:")), data).unwrap();
            (d, data.len())
        };
        let manifest = |config: (String, usize), layers: serde_json::Value| {
            serde_json::to_vec(&serde_json::json!({"schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.0, "size": config.1},
                "layers": layers}))
            .unwrap()
        };
        let config = put(br#"{"rootfs":{"type":"layers","diff_ids":[]}}"#);
        let image = put(&manifest(config.clone(), serde_json::json!([])));
        let payload = put(b"payload");
        let sig_layer = serde_json::json!([{"mediaType": image_sig::PAYLOAD_MEDIA_TYPE, "digest": payload.0,
            "size": payload.1, "annotations": {image_sig::SIGNATURE_ANNOTATION: "c2ln"}}]);
        let sig = put(&manifest(config, sig_layer));
        let desc = |d: &(String, usize), name: &str| {
            serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d.0,
                "size": d.1, "annotations": {REF_NAME: name}})
        };
        let index = serde_json::json!({"schemaVersion": 2,
            "manifests": [desc(&image, "reg/x:1"), desc(&sig, &image_sig::signature_tag(&image.0))]});
        std::fs::write(dir.path().join("index.json"), index.to_string()).unwrap();
        let (found, sigs) = find(dir.path(), "").unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(
            (found[0].names.clone(), found[0].manifest_digest.clone()),
            (vec!["reg/x:1".into()], image.0.clone())
        );
        assert_eq!(sigs[&image.0], vec![KeptSignature { payload: b"payload".to_vec(), signature: "c2ln".into() }]);
        assert_eq!(signed_digest("sha256-abc.sig"), None);
        assert_eq!(signed_digest(&image_sig::signature_tag(&image.0)), Some(image.0));
    }

    #[test]
    fn paths_an_archive_names_stay_inside_it() {
        let ok = docker_archive("config.json");
        assert_eq!(find(ok.path(), "").unwrap().0[0].config, b"{}");
        for escape in ["/etc/passwd", "../../../../etc/passwd", "config.json/../../x"] {
            let d = docker_archive(escape);
            let e = find(d.path(), "").err().unwrap().to_string();
            assert!(e.contains("inside it"), "{escape}: {e}");
        }
        // A symlink the archive created is not followed.
        let d = docker_archive("link");
        std::os::unix::fs::symlink("/etc/passwd", d.path().join("link")).unwrap();
        assert!(find(d.path(), "").err().unwrap().to_string().contains("inside it"));
        // Nor a FIFO read (it would block the load forever).
        let d = docker_archive("fifo");
        nix::unistd::mkfifo(&d.path().join("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        assert!(find(d.path(), "").err().unwrap().to_string().contains("not a regular file"));
        // The layer files too.
        std::fs::create_dir(ok.path().join("l")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", ok.path().join("l/layer.tar")).unwrap();
        assert!(archive_file(ok.path(), "l/layer.tar").is_err());
    }
}
