//! `orcctl image sign ARCHIVE.tar --key K`: signs every image of an OCI
//! image layout archive inside the archive itself, as cosign lays
//! signatures out in a registry (a manifest named `sha256-<hex>.sig` whose
//! payload layer carries the signature). Air-gapped nodes get the
//! signatures with the image (`orcctl image load`) and check them under the
//! cluster's image policy without a registry.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;

use orc_tls::image_sig;
use serde_json::{json, Value};

use crate::error::CliError;

const REF_NAME: &str = "org.opencontainers.image.ref.name";
const CONTAINERD_NAME: &str = "io.containerd.image.name";
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn bad(path: &Path, msg: impl std::fmt::Display) -> CliError {
    CliError::Usage(format!("{}: {msg}", path.display()))
}

fn sha256(data: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

fn blob_name(digest: &str) -> String {
    format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"))
}

/// An archive's small files (index.json, manifests, indexes) by path.
type SmallFiles = BTreeMap<String, Vec<u8>>;

/// The archive's small files, and every entry's path.
fn read_layout(path: &Path) -> Result<(SmallFiles, BTreeSet<String>), CliError> {
    let mut f = std::fs::File::open(path).map_err(|e| bad(path, e))?;
    let mut magic = [0u8; 2];
    if f.read(&mut magic).map_err(|e| bad(path, e))? == 2 && magic == [0x1f, 0x8b] {
        return Err(bad(path, "gzip'd: sign the uncompressed archive (gunzip it first; `image load` takes either)"));
    }
    let f = std::fs::File::open(path).map_err(|e| bad(path, e))?;
    let mut small = BTreeMap::new();
    let mut names = BTreeSet::new();
    for entry in tar::Archive::new(f).entries().map_err(|e| bad(path, e))? {
        let mut entry = entry.map_err(|e| bad(path, e))?;
        let name = entry.path().map_err(|e| bad(path, e))?.to_string_lossy().trim_start_matches("./").to_string();
        // Manifests, indexes and index.json are small; layers are not read.
        if entry.size() <= 1 << 20 {
            let mut data = Vec::new();
            entry.read_to_end(&mut data).map_err(|e| bad(path, e))?;
            small.insert(name.clone(), data);
        }
        names.insert(name);
    }
    Ok((small, names))
}

/// The manifest digest a node records for `desc` (an index: its
/// linux/amd64 manifest, which is what `image load` takes).
fn node_digest(path: &Path, small: &SmallFiles, desc: &Value) -> Result<String, CliError> {
    let digest = desc["digest"].as_str().unwrap_or_default().to_string();
    let media = desc["mediaType"].as_str().unwrap_or_default();
    if !(media.contains("index") || media.contains("list")) {
        return Ok(digest);
    }
    let data = small.get(&blob_name(&digest)).ok_or_else(|| bad(path, format!("{digest}: not in the archive")))?;
    let index: Value = serde_json::from_slice(data).map_err(|e| bad(path, format!("{digest}: {e}")))?;
    index["manifests"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["platform"]["os"] == "linux" && m["platform"]["architecture"] == "amd64"))
        .and_then(|m| m["digest"].as_str().map(str::to_string))
        .ok_or_else(|| bad(path, format!("{digest}: no linux/amd64 image in this index")))
}

/// Signs every image in the OCI layout archive at `path` with `key_pem`,
/// rewriting the archive (a new file renamed over it). Returns each
/// image's name and signed digest.
pub fn sign(path: &Path, key_pem: &str) -> Result<Vec<(String, String)>, CliError> {
    let (small, names) = read_layout(path)?;
    let index_data = small.get("index.json").ok_or_else(|| {
        bad(path, "not an OCI image layout (no index.json): signatures ride in OCI layouts; convert a `docker save` archive with `skopeo copy docker-archive:IN oci-archive:OUT`")
    })?;
    let mut index: Value = serde_json::from_slice(index_data).map_err(|e| bad(path, format!("index.json: {e}")))?;
    let descs: Vec<Value> = index["manifests"].as_array().cloned().unwrap_or_default();
    let mut added: Vec<(String, Vec<u8>)> = Vec::new();
    let mut signed = Vec::new();
    let mut new_descs = Vec::new();
    for desc in &descs {
        let ref_name = desc["annotations"][REF_NAME].as_str().unwrap_or_default();
        if ref_name.starts_with("sha256-") && ref_name.ends_with(".sig") {
            continue;
        }
        let name = desc["annotations"][CONTAINERD_NAME].as_str().unwrap_or(ref_name).to_string();
        let digest = node_digest(path, &small, desc)?;
        let repository = name
            .parse::<oci_client::Reference>()
            .map(|r| format!("{}/{}", r.resolve_registry(), r.repository()))
            .unwrap_or_default();
        let payload = image_sig::payload(&repository, &digest);
        let (signature, _) = image_sig::sign(key_pem, &payload).map_err(|e| CliError::Usage(e.to_string()))?;
        let config = b"{}".to_vec();
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&config), "size": config.len()},
            "layers": [{"mediaType": image_sig::PAYLOAD_MEDIA_TYPE, "digest": sha256(&payload), "size": payload.len(),
                        "annotations": {image_sig::SIGNATURE_ANNOTATION: signature}}],
        }))
        .map_err(|e| CliError::Usage(e.to_string()))?;
        new_descs.push(json!({"mediaType": MANIFEST, "digest": sha256(&manifest), "size": manifest.len(),
                              "annotations": {REF_NAME: image_sig::signature_tag(&digest)}}));
        for data in [config, payload, manifest] {
            added.push((blob_name(&sha256(&data)), data));
        }
        signed.push((name, digest));
    }
    if signed.is_empty() {
        return Err(bad(path, "holds no image to sign"));
    }
    if let Some(ms) = index["manifests"].as_array_mut() {
        ms.extend(new_descs);
    }
    let index_out = serde_json::to_vec(&index).map_err(|e| CliError::Usage(e.to_string()))?;
    write(path, &names, added, &index_out)?;
    Ok(signed)
}

/// The archive again with `added` blobs (those it lacks) and `index`.
fn write(path: &Path, names: &BTreeSet<String>, added: Vec<(String, Vec<u8>)>, index: &[u8]) -> Result<(), CliError> {
    let tmp = path.with_extension("signing");
    let result = (|| -> std::io::Result<()> {
        let out = std::fs::File::create(&tmp)?;
        let mut b = tar::Builder::new(std::io::BufWriter::new(out));
        let mut old = tar::Archive::new(std::fs::File::open(path)?);
        for entry in old.entries()? {
            let entry = entry?;
            let name = entry.path()?.to_string_lossy().trim_start_matches("./").to_string();
            // The root entry (`./`) and the index, which is written anew.
            if name.is_empty() || name == "index.json" {
                continue;
            }
            let mut h = entry.header().clone();
            b.append_data(&mut h, &name, entry)?;
        }
        let mut have = names.clone();
        for (name, data) in added.iter().chain(std::iter::once(&("index.json".to_string(), index.to_vec()))) {
            if name != "index.json" && !have.insert(name.clone()) {
                continue;
            }
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, name, &data[..])?;
        }
        b.into_inner()?.into_inner().map_err(|e| e.into_error())?.sync_all()
    })();
    match result {
        Ok(()) => std::fs::rename(&tmp, path).map_err(|e| bad(path, e)),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(bad(path, format!("writing the signed archive: {e} (the archive is unchanged)")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout_tar(dir: &Path) -> (std::path::PathBuf, String) {
        let config = br#"{"rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec();
        let manifest = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&config), "size": config.len()},
            "layers": []}))
        .unwrap();
        let digest = sha256(&manifest);
        let index = json!({"schemaVersion": 2, "manifests": [{"mediaType": MANIFEST, "digest": digest,
            "size": manifest.len(), "annotations": {REF_NAME: "reg:5000/team/app:1"}}]});
        let path = dir.join("app.tar");
        let mut b = tar::Builder::new(std::fs::File::create(&path).unwrap());
        for (name, data) in [
            ("./oci-layout".to_string(), br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
            (format!("./{}", blob_name(&sha256(&config))), config),
            (format!("./{}", blob_name(&digest)), manifest),
            ("./index.json".to_string(), serde_json::to_vec(&index).unwrap()),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, name, &data[..]).unwrap();
        }
        b.into_inner().unwrap();
        (path, digest)
    }

    #[test]
    fn every_image_is_signed_inside_the_archive_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let (path, digest) = layout_tar(dir.path());
        let (key, public) = image_sig::keygen().unwrap();
        let signed = sign(&path, &key).unwrap();
        assert_eq!(signed, vec![("reg:5000/team/app:1".to_string(), digest.clone())]);
        let (small, names) = read_layout(&path).unwrap();
        let index: Value = serde_json::from_slice(&small["index.json"]).unwrap();
        let ms = index["manifests"].as_array().unwrap();
        assert_eq!(ms.len(), 2);
        assert_eq!(ms[1]["annotations"][REF_NAME], image_sig::signature_tag(&digest));
        let sig_manifest: Value =
            serde_json::from_slice(&small[&blob_name(ms[1]["digest"].as_str().unwrap())]).unwrap();
        let layer = &sig_manifest["layers"][0];
        let payload = &small[&blob_name(layer["digest"].as_str().unwrap())];
        let signature = layer["annotations"][image_sig::SIGNATURE_ANNOTATION].as_str().unwrap();
        let keys = vec![image_sig::public_key(&public).unwrap()];
        assert_eq!(image_sig::verify(payload, signature, &digest, &keys).unwrap(), 0);
        assert!(names.contains("oci-layout") && !dir.path().join("app.signing").exists());
        // Signed again: a second signature, the same blobs not written twice.
        sign(&path, &key).unwrap();
        let (small, _) = read_layout(&path).unwrap();
        let index: Value = serde_json::from_slice(&small["index.json"]).unwrap();
        assert_eq!(index["manifests"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn what_is_not_an_oci_layout_is_refused_saying_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let gz = dir.path().join("a.tar.gz");
        std::fs::write(&gz, [0x1f, 0x8b, 8, 0]).unwrap();
        assert!(sign(&gz, "k").unwrap_err().to_string().contains("gunzip"));
        let empty = dir.path().join("e.tar");
        tar::Builder::new(std::fs::File::create(&empty).unwrap()).into_inner().unwrap();
        assert!(sign(&empty, "k").unwrap_err().to_string().contains("skopeo copy"));
    }
}
