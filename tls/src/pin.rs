//! Verifiers that trust a server by a pinned digest.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

use crate::{fingerprint, provider};

/// What the server must show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pin {
    /// Exactly this leaf certificate (hex SHA-256, `sha256:` prefix allowed).
    Leaf(String),
    /// A chain carrying the CA with this hex SHA-256, which signed the leaf
    /// for [`crate::NODE_SERVER_NAME`] of a manager (its organizational unit
    /// is [`MANAGER_OU`]): what a joiner expects of the manager admitting it,
    /// before it sends its token.
    Ca(String),
    /// Anything (`orcctl --insecure`).
    Any,
}

/// The organizational unit of a manager's certificate (its role).
pub const MANAGER_OU: &str = "manager";

/// The first organizational unit of a certificate's subject.
fn organizational_unit(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, c) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let ou = c.subject().iter_organizational_unit().next()?.as_str().ok()?.to_string();
    Some(ou)
}

#[derive(Debug)]
pub struct PinnedVerifier {
    pin: Pin,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl PinnedVerifier {
    pub fn new(pin: Pin) -> Self {
        let pin = match pin {
            Pin::Leaf(fp) => Pin::Leaf(fp.trim_start_matches("sha256:").to_string()),
            other => other,
        };
        Self { pin, provider: provider() }
    }
}

/// A client configuration (no client certificate, ALPN h2) trusting `pin`.
pub fn client_config(pin: Pin) -> Result<ClientConfig, rustls::Error> {
    let mut cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedVerifier::new(pin)))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(cfg)
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.pin {
            Pin::Any => Ok(ServerCertVerified::assertion()),
            Pin::Leaf(want) => {
                let got = fingerprint(end_entity.as_ref());
                if want.eq_ignore_ascii_case(&got) {
                    Ok(ServerCertVerified::assertion())
                } else {
                    Err(rustls::Error::General(format!(
                        "fingerprint mismatch: the node presented sha256:{got}, expected sha256:{want}"
                    )))
                }
            }
            Pin::Ca(digest) => {
                let ca = intermediates.iter().find(|c| fingerprint(c.as_ref()) == *digest).ok_or_else(|| {
                    rustls::Error::General(
                        "the manager's CA does not match the join token: wrong cluster, or someone in between".into(),
                    )
                })?;
                let mut roots = rustls::RootCertStore::empty();
                roots.add(ca.clone().into_owned())?;
                let v =
                    rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                        .build()
                        .map_err(|e| rustls::Error::General(e.to_string()))?;
                let ok = v.verify_server_cert(end_entity, &[], server_name, ocsp, now)?;
                let ou = organizational_unit(end_entity).unwrap_or_default();
                if ou != MANAGER_OU {
                    return Err(rustls::Error::General(format!(
                        "the node at this address holds a {ou:?} certificate, not a manager's: join through a manager"
                    )));
                }
                Ok(ok)
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(ca: Option<(&rcgen::Certificate, &rcgen::KeyPair)>) -> (rcgen::Certificate, rcgen::KeyPair) {
        role_cert(ca, MANAGER_OU)
    }

    fn role_cert(ca: Option<(&rcgen::Certificate, &rcgen::KeyPair)>, ou: &str) -> (rcgen::Certificate, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec![crate::NODE_SERVER_NAME.to_string()]).unwrap();
        p.distinguished_name.push(rcgen::DnType::OrganizationalUnitName, ou);
        let c = match ca {
            None => {
                p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
                p.self_signed(&key).unwrap()
            }
            Some((ca, ca_key)) => {
                let issuer = rcgen::Issuer::from_ca_cert_pem(&ca.pem(), ca_key).unwrap();
                p.signed_by(&key, &issuer).unwrap()
            }
        };
        (c, key)
    }

    fn verify(pin: Pin, leaf: &rcgen::Certificate, chain: &[&rcgen::Certificate]) -> Result<(), rustls::Error> {
        let chain: Vec<CertificateDer<'_>> = chain.iter().map(|c| c.der().clone()).collect();
        let name = ServerName::try_from(crate::NODE_SERVER_NAME).unwrap();
        PinnedVerifier::new(pin).verify_server_cert(leaf.der(), &chain, &name, &[], UnixTime::now()).map(|_| ())
    }

    #[test]
    fn pins_hold_and_refuse() {
        let (ca, ca_key) = cert(None);
        let (leaf, _) = cert(Some((&ca, &ca_key)));
        let (other_ca, other_key) = cert(None);
        let (foreign_leaf, _) = cert(Some((&other_ca, &other_key)));
        let ca_fp = fingerprint(ca.der());
        let leaf_fp = fingerprint(leaf.der());

        verify(Pin::Leaf(leaf_fp.clone()), &leaf, &[]).unwrap();
        verify(Pin::Leaf(format!("sha256:{}", leaf_fp.to_uppercase())), &leaf, &[]).unwrap();
        let e = verify(Pin::Leaf(leaf_fp), &foreign_leaf, &[]).unwrap_err();
        assert!(e.to_string().contains("fingerprint mismatch"), "{e}");

        verify(Pin::Ca(ca_fp.clone()), &leaf, &[&ca]).unwrap();
        let e = verify(Pin::Ca(ca_fp.clone()), &leaf, &[&other_ca]).unwrap_err();
        assert!(e.to_string().contains("does not match the join token"), "{e}");
        // The pinned CA in the chain is not enough: it must have signed the leaf.
        assert!(verify(Pin::Ca(ca_fp.clone()), &foreign_leaf, &[&ca]).is_err());
        // And the leaf must be a manager's: a worker of the same cluster
        // would otherwise receive the joiner's token.
        let (worker, _) = role_cert(Some((&ca, &ca_key)), "worker");
        let e = verify(Pin::Ca(ca_fp), &worker, &[&ca]).unwrap_err();
        assert!(e.to_string().contains("not a manager's"), "{e}");

        verify(Pin::Any, &foreign_leaf, &[]).unwrap();
    }
}
