//! Image signatures, cosign-style: an Ed25519 signature over a "simple
//! signing" payload naming the image's repository and manifest digest,
//! stored in the registry as an OCI artifact beside the image (tag
//! `sha256-<hex>.sig`, one layer holding the payload, the signature in
//! the layer's annotation). `orcctl image sign` makes them; a node checks
//! them against the cluster's image policy before it runs an image.
//!
//! Keys are PEM: a PKCS#8 private key (`openssl genpkey -algorithm
//! ed25519`, or `orcctl image keygen`) and its SubjectPublicKeyInfo.

use base64::Engine;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use x509_parser::prelude::FromDer;

/// The media type of the payload layer.
pub const PAYLOAD_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The layer annotation holding the base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The payload's type, as cosign writes it.
const PAYLOAD_TYPE: &str = "cosign container image signature";
/// The OID of Ed25519 keys (RFC 8410).
const ED25519_OID: &str = "1.3.101.112";

/// What is wrong with a key or a signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    #[error("not a PEM {want}: {why}")]
    Pem { want: &'static str, why: String },
    #[error("not an Ed25519 key ({0}): make one with `orcctl image keygen` or `openssl genpkey -algorithm ed25519`")]
    NotEd25519(String),
    #[error("the signature is not base64")]
    Encoding,
    #[error("the signature payload is not a cosign simple-signing payload: {0}")]
    Payload(String),
    #[error("the signature is for {signed}, not {wanted}")]
    OtherImage { signed: String, wanted: String },
    #[error("the signature does not verify with any trusted key")]
    Untrusted,
}

/// The tag a signature of manifest `digest` (`sha256:<hex>`) is stored at.
pub fn signature_tag(digest: &str) -> String {
    format!("{}.sig", digest.replacen(':', "-", 1))
}

/// The payload that is signed for `repository` (`registry/path`) at `digest`.
pub fn payload(repository: &str, digest: &str) -> Vec<u8> {
    let p = serde_json::json!({
        "critical": {
            "identity": {"docker-reference": repository},
            "image": {"docker-manifest-digest": digest},
            "type": PAYLOAD_TYPE,
        },
        "optional": null,
    });
    p.to_string().into_bytes()
}

/// A new key pair: the PKCS#8 private key and the public key, both PEM.
pub fn keygen() -> Result<(String, String), SigError> {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|e| SigError::NotEd25519(e.to_string()))?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|e| SigError::NotEd25519(e.to_string()))?;
    let private = pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8.as_ref().to_vec()));
    Ok((private, public_pem(pair.public_key().as_ref())))
}

/// The SubjectPublicKeyInfo PEM of a raw Ed25519 public key.
fn public_pem(raw: &[u8]) -> String {
    // SEQUENCE { SEQUENCE { OID 1.3.101.112 }, BIT STRING { key } }: the
    // one encoding RFC 8410 gives an Ed25519 public key.
    let mut der = vec![0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
    der.extend_from_slice(raw);
    pem::encode(&pem::Pem::new("PUBLIC KEY", der))
}

/// The base64 signature of `payload` with the PKCS#8 PEM key `key_pem`,
/// and the signer's public key PEM.
pub fn sign(key_pem: &str, payload: &[u8]) -> Result<(String, String), SigError> {
    let p = pem::parse(key_pem).map_err(|e| SigError::Pem { want: "private key", why: e.to_string() })?;
    if p.tag() != "PRIVATE KEY" {
        return Err(SigError::Pem { want: "private key", why: format!("it is a {:?}", p.tag()) });
    }
    let pair =
        Ed25519KeyPair::from_pkcs8_maybe_unchecked(p.contents()).map_err(|e| SigError::NotEd25519(e.to_string()))?;
    let sig = pair.sign(payload);
    Ok((base64::engine::general_purpose::STANDARD.encode(sig.as_ref()), public_pem(pair.public_key().as_ref())))
}

/// The raw Ed25519 key in a public key PEM (checked).
pub fn public_key(pem_text: &str) -> Result<Vec<u8>, SigError> {
    let p = pem::parse(pem_text).map_err(|e| SigError::Pem { want: "public key", why: e.to_string() })?;
    if p.tag() != "PUBLIC KEY" {
        return Err(SigError::Pem { want: "public key", why: format!("it is a {:?}", p.tag()) });
    }
    let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(p.contents())
        .map_err(|e| SigError::Pem { want: "public key", why: e.to_string() })?;
    let oid = spki.algorithm.algorithm.to_id_string();
    if oid != ED25519_OID || spki.subject_public_key.data.len() != 32 {
        return Err(SigError::NotEd25519(format!("algorithm {oid}")));
    }
    Ok(spki.subject_public_key.data.to_vec())
}

/// Checks that `payload` names `digest` and that `signature` (base64) over
/// it verifies with one of `keys` (raw Ed25519 public keys); the index of
/// the key that did.
pub fn verify(payload: &[u8], signature: &str, digest: &str, keys: &[Vec<u8>]) -> Result<usize, SigError> {
    let v: serde_json::Value = serde_json::from_slice(payload).map_err(|e| SigError::Payload(e.to_string()))?;
    let critical = &v["critical"];
    if critical["type"] != PAYLOAD_TYPE {
        return Err(SigError::Payload(format!("type {}", critical["type"])));
    }
    let signed = critical["image"]["docker-manifest-digest"].as_str().unwrap_or_default();
    if signed != digest {
        return Err(SigError::OtherImage { signed: signed.to_string(), wanted: digest.to_string() });
    }
    let sig = base64::engine::general_purpose::STANDARD.decode(signature.trim()).map_err(|_| SigError::Encoding)?;
    keys.iter()
        .position(|k| UnparsedPublicKey::new(&ED25519, k).verify(payload, &sig).is_ok())
        .ok_or(SigError::Untrusted)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn sign_and_verify_and_what_is_refused() {
        let (private, public) = keygen().unwrap();
        let (other_private, other_public) = keygen().unwrap();
        let p = payload("registry:5000/app", DIGEST);
        let (sig, signer) = sign(&private, &p).unwrap();
        assert_eq!(signer, public);
        let keys = vec![public_key(&other_public).unwrap(), public_key(&public).unwrap()];
        assert_eq!(verify(&p, &sig, DIGEST, &keys), Ok(1));
        // Another key, another image, a changed payload, a bad encoding.
        let (other_sig, _) = sign(&other_private, &p).unwrap();
        assert_eq!(verify(&p, &other_sig, DIGEST, &keys[1..]), Err(SigError::Untrusted));
        let wanted = DIGEST.replace("0123", "3210");
        assert!(matches!(verify(&p, &sig, &wanted, &keys), Err(SigError::OtherImage { .. })));
        let mut changed = p.clone();
        let at = changed.len() - 3;
        changed[at] = b' ';
        assert!(verify(&changed, &sig, DIGEST, &keys).is_err());
        assert_eq!(verify(&p, "***", DIGEST, &keys), Err(SigError::Encoding));
        assert!(public_key(&private).unwrap_err().to_string().contains("PRIVATE KEY"));
        assert!(sign(&public, &p).is_err());
        assert_eq!(signature_tag(DIGEST), format!("sha256-{}.sig", &DIGEST[7..]));
    }

    #[test]
    fn openssl_keys_are_taken() {
        // `openssl genpkey -algorithm ed25519` and `openssl pkey -pubout`.
        let private = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINACxpno+hBVBcLbyIsMD9QhtJ92l0XTjXgg0eAeIoXu\n-----END PRIVATE KEY-----\n";
        let (sig, public) = sign(private, b"{}").unwrap();
        assert!(public_key(&public).is_ok());
        assert!(!sig.is_empty());
        let ec = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEW0IYszAvIw6k3/Ewt6PABrzZRBOb\nPEXKH+8U7hjxuNqw6TcxLCddhI+eISOGg9cJiqTZxSTqtBH4qhBT0yMUCA==\n-----END PUBLIC KEY-----\n";
        assert!(matches!(public_key(ec), Err(SigError::NotEd25519(_))), "{:?}", public_key(ec));
    }
}
