//! `orcctl image keygen` and `orcctl image sign`: keys to sign images with,
//! and cosign-style signatures pushed beside an image in its registry
//! ([`orc_tls::image_sig`]), for clusters that run signed images only
//! (`orcctl cluster update --image-policy FILE`). Neither needs a cluster.

use std::collections::BTreeMap;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use orc_tls::image_sig;
use serde_json::json;

use crate::cli::{ImageCommand, Output};
use crate::error::CliError;

fn write_new(path: &Path, text: &str, mode: u32) -> Result<(), CliError> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(path).map_err(|e| {
        CliError::Usage(format!("writing {}: {e} (an existing key is never overwritten)", path.display()))
    })?;
    f.write_all(text.as_bytes()).map_err(|e| CliError::Usage(format!("writing {}: {e}", path.display())))
}

fn registry_err(what: &str) -> impl Fn(oci_client::errors::OciDistributionError) -> CliError + '_ {
    move |e| CliError::Usage(format!("{what}: {e}"))
}

/// `image keygen` and `image sign`.
pub async fn run(cmd: ImageCommand, out: Output) -> Result<(), CliError> {
    match cmd {
        ImageCommand::Keygen { out: prefix } => {
            let (private, public) = image_sig::keygen().map_err(|e| CliError::Usage(e.to_string()))?;
            let (key, pubf) = (prefix.with_extension("key"), prefix.with_extension("pub"));
            write_new(&key, &private, 0o600)?;
            write_new(&pubf, &public, 0o644)?;
            match out {
                Output::Json => println!("{}", json!({"private": key, "public": pubf})),
                Output::Table => println!(
                    "private key {} (keep it secret), public key {} (for the image policy)",
                    key.display(),
                    pubf.display()
                ),
            }
            Ok(())
        }
        ImageCommand::Sign { reference, key, insecure_registry, login } => {
            let key_pem = std::fs::read_to_string(&key)
                .map_err(|e| CliError::Usage(format!("reading the key {}: {e}", key.display())))?;
            let archive = Path::new(&reference);
            if archive.is_file() {
                for (name, digest) in super::sign_archive::sign(archive, &key_pem)? {
                    match out {
                        Output::Json => println!("{}", json!({"archive": archive, "image": name, "digest": digest})),
                        Output::Table => println!("signed {name} ({digest}) in {}", archive.display()),
                    }
                }
                return Ok(());
            }
            let r: Reference = reference
                .parse()
                .map_err(|e| CliError::Usage(format!("{reference:?} is not an image reference: {e}")))?;
            let _ = rustls::crypto::ring::default_provider().install_default();
            let protocol = match insecure_registry {
                true => ClientProtocol::Http,
                false => ClientProtocol::Https,
            };
            let client = Client::new(ClientConfig { protocol, ..Default::default() });
            let auth = match super::image::login(&login)? {
                Some(a) => RegistryAuth::Basic(a.username, a.password),
                None => RegistryAuth::Anonymous,
            };
            let digest = match r.digest() {
                Some(d) => d.to_string(),
                None => client.fetch_manifest_digest(&r, &auth).await.map_err(registry_err(&reference))?,
            };
            let repository = format!("{}/{}", r.resolve_registry(), r.repository());
            let payload = image_sig::payload(&repository, &digest);
            let (signature, public) =
                image_sig::sign(&key_pem, &payload).map_err(|e| CliError::Usage(format!("{}: {e}", key.display())))?;
            let annotations = BTreeMap::from([(image_sig::SIGNATURE_ANNOTATION.to_string(), signature)]);
            let layer = ImageLayer::new(payload, image_sig::PAYLOAD_MEDIA_TYPE.to_string(), Some(annotations));
            let sig_ref = Reference::with_tag(
                r.registry().to_string(),
                r.repository().to_string(),
                image_sig::signature_tag(&digest),
            );
            client
                .push(&sig_ref, &[layer], Config::oci_v1(b"{}".to_vec(), None), &auth, None)
                .await
                .map_err(registry_err(&sig_ref.whole()))?;
            match out {
                Output::Json => {
                    println!(
                        "{}",
                        json!({"image": repository, "digest": digest, "signature": sig_ref.whole(), "public_key": public})
                    )
                }
                Output::Table => println!("signed {repository}@{digest} ({})", sig_ref.whole()),
            }
            Ok(())
        }
        _ => Ok(()),
    }
}
