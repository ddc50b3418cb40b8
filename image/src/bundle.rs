//! The signed upgrade bundle: one uncompressed tar whose entries are, in
//! this order, `bundle.json` (the manifest), `bundle.sig` (an ed25519
//! signature over the manifest's bytes), the unified kernel images for
//! slot A and slot B (each names its own slot's root on its command line,
//! so a version carries both), and the root image with its dm-verity tree.
//! The manifest comes first so a node verifies it before it reads (or
//! writes anywhere) the large entries, each of which must then match the
//! size and SHA-256 the signed manifest gives.
//!
//! The keys that may sign are the image's (`/etc/orc/upgrade-keys`, in the
//! verified root): a node only takes what the builder of its own image
//! trusted.

use std::io::{Read, Write};
use std::path::Path;

use ring::signature::{Ed25519KeyPair, UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};

use crate::boot_entry::{compare_versions, valid_version};
use crate::manifest::Artifact;

pub const MANIFEST: &str = "bundle.json";
pub const SIGNATURE: &str = "bundle.sig";
pub const UKI_A: &str = "orc-a.efi";
pub const UKI_B: &str = "orc-b.efi";
pub const ROOT: &str = "root.img";
/// Where the image keeps the public keys (hex, one a line) that may sign
/// its upgrades.
pub const KEYS_PATH: &str = "/etc/orc/upgrade-keys";
/// The manifest's format; a node refuses one it does not know.
pub const FORMAT: u32 = 1;
/// The most bytes a manifest or signature entry may have.
const SMALL: u64 = 64 << 10;

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the bundle's entry {index} is {found:?}, expected {expected}: not an orc upgrade bundle, or built by another version of the format")]
    Order { index: usize, found: String, expected: &'static str },
    #[error("the bundle's {0} is over 64 KiB: not an orc upgrade bundle")]
    TooLarge(&'static str),
    #[error("the bundle's signature is not valid base64")]
    SignatureEncoding,
    #[error("the bundle is not signed by a key this image trusts ({trusted} trusted, in {KEYS_PATH}): build it with the image's signing key, or install an image that trusts the key")]
    Untrusted { trusted: usize },
    #[error("the bundle's manifest is malformed: {0}")]
    Manifest(serde_json::Error),
    #[error("the bundle's manifest is format {found}, this node reads format {FORMAT}: upgrade in steps")]
    Format { found: u32 },
    #[error("the bundle's version {0:?} cannot name a boot entry (letters, digits, '.', '_', '~')")]
    Version(String),
    #[error("version {offered} is not newer than the running {running}: pass --force to install it anyway")]
    NotNewer { offered: String, running: String },
    #[error("the bundle's {name} is {size} bytes with SHA-256 {sha256}, but its signed manifest says {want_size} bytes with {want_sha256}: the bundle is damaged or was altered")]
    Mismatch { name: String, size: u64, sha256: String, want_size: u64, want_sha256: String },
    #[error("a public key line {0:?} is not 64 hex digits (an ed25519 key)")]
    Key(String),
}

/// What a bundle holds, signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleManifest {
    pub format: u32,
    pub version: String,
    pub git_revision: String,
    pub kernel_version: String,
    /// The root's dm-verity root hash, hex (in both images' command lines).
    pub root_hash: String,
    pub uki_a: Artifact,
    pub uki_b: Artifact,
    pub root: Artifact,
}

/// Parses the trusted keys file: one hex ed25519 public key a line; `#`
/// starts a comment.
pub fn parse_keys(text: &str) -> Result<Vec<[u8; 32]>, BundleError> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty())
        .map(|l| {
            let b = hex::decode(l).map_err(|_| BundleError::Key(l.to_string()))?;
            <[u8; 32]>::try_from(b.as_slice()).map_err(|_| BundleError::Key(l.to_string()))
        })
        .collect()
}

/// The signature entry for `manifest`: base64 of the ed25519 signature.
pub fn sign(manifest: &[u8], key: &Ed25519KeyPair) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(key.sign(manifest).as_ref())
}

/// The manifest, once its signature verifies against one of `trusted`,
/// its format is known and its version can name a boot entry.
pub fn verify(manifest: &[u8], signature: &str, trusted: &[[u8; 32]]) -> Result<BundleManifest, BundleError> {
    use base64::Engine;
    let sig = base64::engine::general_purpose::STANDARD
        .decode(signature.trim())
        .map_err(|_| BundleError::SignatureEncoding)?;
    if !trusted.iter().any(|k| UnparsedPublicKey::new(&ED25519, k).verify(manifest, &sig).is_ok()) {
        return Err(BundleError::Untrusted { trusted: trusted.len() });
    }
    let m: BundleManifest = serde_json::from_slice(manifest).map_err(BundleError::Manifest)?;
    if m.format != FORMAT {
        return Err(BundleError::Format { found: m.format });
    }
    if !valid_version(&m.version) {
        return Err(BundleError::Version(m.version));
    }
    Ok(m)
}

/// Refuses `offered` unless it is newer than `running`, or `force`.
pub fn check_newer(running: &str, offered: &str, force: bool) -> Result<(), BundleError> {
    if force || compare_versions(offered, running).is_gt() {
        return Ok(());
    }
    Err(BundleError::NotNewer { offered: offered.into(), running: running.into() })
}

/// Writes a bundle of `m` (its artifacts read from `dir` by their names)
/// signed with `key` to `out`.
pub fn write(m: &BundleManifest, dir: &Path, key: &Ed25519KeyPair, out: &Path) -> Result<(), BundleError> {
    let manifest = serde_json::to_vec_pretty(m).map_err(BundleError::Manifest)?;
    let signature = sign(&manifest, key);
    let mut tar = tar::Builder::new(std::fs::File::create(out)?);
    let header = |size: u64| {
        let mut h = tar::Header::new_ustar();
        h.set_size(size);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_cksum();
        h
    };
    tar.append_data(&mut header(manifest.len() as u64), MANIFEST, manifest.as_slice())?;
    tar.append_data(&mut header(signature.len() as u64), SIGNATURE, signature.as_bytes())?;
    for a in [&m.uki_a, &m.uki_b, &m.root] {
        let f = std::fs::File::open(dir.join(&a.name))?;
        tar.append_data(&mut header(a.size), &a.name, f)?;
    }
    tar.into_inner()?.flush()?;
    Ok(())
}

/// The entry `index` of `entries`, which must be named `expected`.
fn next_entry<'a, R: Read>(
    entries: &mut tar::Entries<'a, R>,
    index: usize,
    expected: &'static str,
) -> Result<tar::Entry<'a, R>, BundleError> {
    let e = entries.next().ok_or_else(|| BundleError::Order { index, found: "(end)".into(), expected })??;
    let found = e.path()?.to_string_lossy().into_owned();
    if found != expected {
        return Err(BundleError::Order { index, found, expected });
    }
    Ok(e)
}

/// A small entry (the manifest, the signature) read whole.
fn small<R: Read>(e: tar::Entry<'_, R>, what: &'static str) -> Result<Vec<u8>, BundleError> {
    if e.header().size()? > SMALL {
        return Err(BundleError::TooLarge(what));
    }
    let mut b = Vec::new();
    e.take(SMALL).read_to_end(&mut b)?;
    Ok(b)
}

/// The manifest of the bundle read from `r`, NOT verified: for a client
/// to say what it is about to send (the node verifies it).
pub fn manifest_unverified<R: Read>(r: R) -> Result<BundleManifest, BundleError> {
    let mut archive = tar::Archive::new(r);
    let mut entries = archive.entries()?;
    let manifest = small(next_entry(&mut entries, 0, MANIFEST)?, "manifest")?;
    serde_json::from_slice(&manifest).map_err(BundleError::Manifest)
}

/// Reads a bundle from `r`: verifies the manifest against `trusted`,
/// then hands each large entry (name, its signed description, a reader)
/// to `each`, which must consume it; each is checked against the manifest
/// after it was read (a mismatch is an error: whatever `each` wrote with
/// it must not be used).
pub fn read<R: Read>(
    r: R,
    trusted: &[[u8; 32]],
    mut each: impl FnMut(&BundleManifest, &Artifact, &mut dyn Read) -> Result<(), BundleError>,
) -> Result<BundleManifest, BundleError> {
    let mut archive = tar::Archive::new(r);
    let mut entries = archive.entries()?;
    let manifest = small(next_entry(&mut entries, 0, MANIFEST)?, "manifest")?;
    let signature = small(next_entry(&mut entries, 1, SIGNATURE)?, "signature")?;
    let m = verify(&manifest, &String::from_utf8_lossy(&signature), trusted)?;
    for (i, (name, want)) in [(UKI_A, &m.uki_a), (UKI_B, &m.uki_b), (ROOT, &m.root)].into_iter().enumerate() {
        let e = next_entry(&mut entries, 2 + i, name)?;
        let mut hashing = Hashing { inner: e.take(want.size), hasher: sha2::Sha256::default(), size: 0 };
        each(&m, want, &mut hashing)?;
        std::io::copy(&mut hashing, &mut std::io::sink())?;
        use sha2::Digest;
        let sha256 = hex::encode(hashing.hasher.finalize());
        if hashing.size != want.size || sha256 != want.sha256 {
            return Err(BundleError::Mismatch {
                name: name.into(),
                size: hashing.size,
                sha256,
                want_size: want.size,
                want_sha256: want.sha256.clone(),
            });
        }
    }
    Ok(m)
}

/// A reader that hashes and counts what passes through it.
struct Hashing<R> {
    inner: R,
    hasher: sha2::Sha256,
    size: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use sha2::Digest;
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::KeyPair;

    fn key() -> Ed25519KeyPair {
        let rng = ring::rand::SystemRandom::new();
        let pk8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        Ed25519KeyPair::from_pkcs8(pk8.as_ref()).unwrap()
    }

    fn public(k: &Ed25519KeyPair) -> [u8; 32] {
        k.public_key().as_ref().try_into().unwrap()
    }

    fn bundle(dir: &Path, version: &str, k: &Ed25519KeyPair) -> std::path::PathBuf {
        for (n, body) in [(UKI_A, "uki a"), (UKI_B, "uki b"), (ROOT, "the root")] {
            std::fs::write(dir.join(n), body).unwrap();
        }
        let of = |n: &str| Artifact::of_file(&dir.join(n)).unwrap();
        let m = BundleManifest {
            format: FORMAT,
            version: version.into(),
            git_revision: "abc".into(),
            kernel_version: "6.1".into(),
            root_hash: "00".into(),
            uki_a: of(UKI_A),
            uki_b: of(UKI_B),
            root: of(ROOT),
        };
        let out = dir.join("b.bundle");
        write(&m, dir, k, &out).unwrap();
        out
    }

    #[test]
    fn a_signed_bundle_reads_back_and_a_foreign_one_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let k = key();
        let path = bundle(d.path(), "0.2.0", &k);
        let mut seen = Vec::new();
        let m = read(std::fs::File::open(&path).unwrap(), &[public(&k)], |_, a, r| {
            let mut b = String::new();
            r.read_to_string(&mut b)?;
            seen.push((a.name.clone(), b));
            Ok(())
        })
        .unwrap();
        assert_eq!(m.version, "0.2.0");
        assert_eq!(manifest_unverified(std::fs::File::open(&path).unwrap()).unwrap(), m);
        assert_eq!(seen[2], (ROOT.to_string(), "the root".to_string()));
        let other = key();
        let e = read(std::fs::File::open(&path).unwrap(), &[public(&other)], |_, _, _| Ok(())).unwrap_err();
        assert!(matches!(e, BundleError::Untrusted { trusted: 1 }), "{e}");
        assert!(e.to_string().contains(KEYS_PATH));
    }

    #[test]
    fn an_altered_entry_is_caught_after_it_was_read() {
        let d = tempfile::tempdir().unwrap();
        let k = key();
        let path = bundle(d.path(), "0.2.0", &k);
        let mut raw = std::fs::read(&path).unwrap();
        let at = raw.windows(8).position(|w| w == b"the root").unwrap();
        raw[at] = b'T';
        let e = read(raw.as_slice(), &[public(&k)], |_, _, _| Ok(())).unwrap_err();
        assert!(matches!(&e, BundleError::Mismatch { name, .. } if name == ROOT), "{e}");
        // A tampered manifest does not verify.
        let mut raw = std::fs::read(&path).unwrap();
        let at = raw.windows(5).position(|w| w == b"0.2.0").unwrap();
        raw[at + 2] = b'9';
        let e = read(raw.as_slice(), &[public(&k)], |_, _, _| Ok(())).unwrap_err();
        assert!(matches!(e, BundleError::Untrusted { .. }), "{e}");
        // Not a bundle at all.
        let tar_of = |name: &str| {
            let mut b = tar::Builder::new(Vec::new());
            let mut h = tar::Header::new_ustar();
            h.set_size(1);
            h.set_cksum();
            b.append_data(&mut h, name, &b"x"[..]).unwrap();
            b.into_inner().unwrap()
        };
        let e = read(tar_of("etc/passwd").as_slice(), &[public(&k)], |_, _, _| Ok(())).unwrap_err();
        assert!(matches!(e, BundleError::Order { index: 0, .. }), "{e}");
    }

    #[test]
    fn versions_must_be_newer_unless_forced_and_keys_parse() {
        check_newer("0.1.0", "0.2.0", false).unwrap();
        assert!(matches!(check_newer("0.2.0", "0.2.0", false), Err(BundleError::NotNewer { .. })));
        assert!(check_newer("0.10.0", "0.9.0", false).unwrap_err().to_string().contains("--force"));
        check_newer("0.2.0", "0.1.0", true).unwrap();
        let k = public(&key());
        let text = format!("# release key\n{}  # 2026\n\n", hex::encode(k));
        assert_eq!(parse_keys(&text).unwrap(), vec![k]);
        assert!(matches!(parse_keys("abcd"), Err(BundleError::Key(_))));
    }
}
