//! A bundle published as a container image (`orcctl upgrade --image REF`):
//! an image whose layer holds the bundle file (`*.bundle`, anywhere in
//! it) — what `FROM scratch` and `COPY orc-0.2.0.bundle /` build and
//! `docker push` publishes, as Talos publishes its installer. The node
//! pulls that layer itself (the operator's link carries nothing) and the
//! bundle goes from the registry's stream straight into the slot: never
//! stored, trusted for its signature, not for where it came from.

use std::io::Read;
use std::sync::Arc;

use orc_proto::container::RegistryAuth;

use super::UpgradeError;
use crate::images::ImageStore;

/// What a bundle's file is called in its image.
const BUNDLE_SUFFIX: &str = ".bundle";

/// The layer of an image that holds the bundle, being pulled.
struct Layer {
    raw: Box<dyn Read + Send>,
    gzip: bool,
}

impl Layer {
    /// Its uncompressed tar. Blocks (reading starts here: call it on a
    /// blocking thread).
    fn tar(self) -> Box<dyn Read + Send> {
        if self.gzip {
            Box::new(flate2::read::GzDecoder::new(self.raw))
        } else {
            self.raw
        }
    }
}

/// The layer of image `name` that holds the bundle (its largest), opened
/// on the runtime, to be read on a blocking thread ([`Layer::tar`]).
async fn layer(store: &Arc<ImageStore>, name: &str, creds: Option<&RegistryAuth>) -> Result<Layer, UpgradeError> {
    let (blob, media_type) = crate::images::pull::largest_layer(store, name, creds).await?;
    let raw = Box::new(tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(blob.stream)));
    if media_type.ends_with("gzip") {
        Ok(Layer { raw, gzip: true })
    } else if media_type.ends_with("tar") {
        Ok(Layer { raw, gzip: false })
    } else {
        Err(UpgradeError::Image(format!(
            "{name}: its layer is {media_type}: a bundle image's layer must be a tar, plain or gzip'd (as docker build makes it)"
        )))
    }
}

/// The bundle in image `name`, pulled now, handed to `use_it` as a
/// reader on a blocking thread (an upgrade, an install, a probe: each
/// with its own error type).
pub async fn with_bundle<T: Send + 'static, E: From<UpgradeError> + Send + 'static>(
    store: &Arc<ImageStore>,
    name: &str,
    creds: Option<&RegistryAuth>,
    use_it: impl FnOnce(&mut dyn Read) -> Result<T, E> + Send + 'static,
) -> Result<T, E> {
    let layer = layer(store, name, creds).await?;
    let name = name.to_string();
    tokio::task::spawn_blocking(move || bundle_in(&name, layer.tar(), use_it))
        .await
        .map_err(|e| UpgradeError::Stream(format!("pull task: {e}")))?
}

/// The bundle file in the layer tar `layer`, handed to `use_it` as a
/// reader; an image without one is refused, naming it.
pub fn bundle_in<T, E: From<UpgradeError>>(
    name: &str,
    layer: impl Read,
    use_it: impl FnOnce(&mut dyn Read) -> Result<T, E>,
) -> Result<T, E> {
    let bad = |e: std::io::Error| E::from(UpgradeError::Image(format!("{name}: reading its layer: {e}")));
    let mut archive = tar::Archive::new(layer);
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let is_bundle = entry.header().entry_type().is_file()
            && entry.path().map_err(bad)?.to_string_lossy().ends_with(BUNDLE_SUFFIX);
        if is_bundle {
            return use_it(&mut entry);
        }
    }
    Err(E::from(UpgradeError::Image(format!(
        "{name} holds no *{BUNDLE_SUFFIX} file: publish the bundle as an image (FROM scratch, COPY orc-<version>.bundle /)"
    ))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, path, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn the_bundle_is_found_wherever_it_is_in_the_layer() {
        let layer = tar_of(&[("etc/motd", b"hello"), ("srv/orc-0.2.0.bundle", b"the bundle")]);
        let got = bundle_in::<_, UpgradeError>("r/orc:0.2.0", layer.as_slice(), |r| {
            let mut s = String::new();
            r.read_to_string(&mut s).map_err(|e| UpgradeError::Stream(e.to_string()))?;
            Ok(s)
        })
        .unwrap();
        assert_eq!(got, "the bundle");
    }

    #[test]
    fn an_image_without_a_bundle_is_refused_by_name() {
        let layer = tar_of(&[("bin/sh", b"#!")]);
        let e = bundle_in::<_, UpgradeError>("r/busybox:1", layer.as_slice(), |_| Ok(())).unwrap_err().to_string();
        assert!(e.contains("r/busybox:1 holds no *.bundle file"), "{e}");
        let e = bundle_in::<_, UpgradeError>(
            "r/x:1",
            &b"not a tar at all, just bytes that are long enough......"[..],
            |_| Ok(()),
        );
        assert!(e.is_err());
    }
}
