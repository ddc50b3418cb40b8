//! The signed upgrade bundle `cargo xtask image` writes beside the disk
//! image, and the key it is signed with: the file `ORC_UPGRADE_KEY` names
//! (an ed25519 key, PKCS#8 DER), or a development key made once under
//! `target/orc/keys/` and kept. The image trusts the key's public half
//! (`/etc/orc/upgrade-keys` in its verified root).

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use orc_image::bundle::{self, BundleManifest};
use orc_image::manifest::Artifact;
use ring::signature::{Ed25519KeyPair, KeyPair};

/// Names the signing key file to use instead of the development key.
pub const KEY_ENV: &str = "ORC_UPGRADE_KEY";

/// The signing key and where it came from.
pub fn signing_key(out: &Path) -> anyhow::Result<(Ed25519KeyPair, PathBuf)> {
    let path = match std::env::var_os(KEY_ENV) {
        Some(p) => PathBuf::from(p),
        None => {
            let p = out.join("keys").join("upgrade-dev.pk8");
            if !p.exists() {
                eprintln!("xtask: no {KEY_ENV}: making a development signing key at {}", p.display());
                std::fs::create_dir_all(p.parent().unwrap_or(out))?;
                let pk8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
                    .map_err(|_| anyhow::anyhow!("generating an ed25519 key failed"))?;
                let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&p)?;
                std::io::Write::write_all(&mut f, pk8.as_ref())?;
            }
            p
        }
    };
    let der = std::fs::read(&path).with_context(|| format!("reading the signing key {}", path.display()))?;
    let key = Ed25519KeyPair::from_pkcs8(&der).map_err(|e| {
        anyhow::anyhow!(
            "{}: not an ed25519 key in PKCS#8 DER ({e}); unset {KEY_ENV} to use a development key",
            path.display()
        )
    })?;
    Ok((key, path))
}

/// The line of `/etc/orc/upgrade-keys` trusting `key`.
pub fn trusted_line(key: &Ed25519KeyPair) -> String {
    format!("{}\n", hex::encode(key.public_key().as_ref()))
}

/// Writes `orc-<version>.bundle` in `out` from the artifacts there.
pub fn write(out: &Path, m: &crate::image::Built, key: &Ed25519KeyPair) -> anyhow::Result<PathBuf> {
    let of = |n: &str| Artifact::of_file(&out.join(n));
    let manifest = BundleManifest {
        format: bundle::FORMAT,
        version: m.version.clone(),
        git_revision: m.git_revision.clone(),
        kernel_version: m.kernel_version.clone(),
        root_hash: m.root_hash.clone(),
        uki_a: of(bundle::UKI_A)?,
        uki_b: of(bundle::UKI_B)?,
        root: of(bundle::ROOT)?,
    };
    let path = out.join(format!("orc-{}.bundle", m.version));
    bundle::write(&manifest, out, key, &path)?;
    Ok(path)
}
