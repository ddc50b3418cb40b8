//! Making the cluster CA and issuing certificates from it.

use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;

use super::role::Role;
use super::{PkiError, NODE_SERVER_NAME};

/// The longest lifetime of any certificate the CA issues: its own.
pub const MAX_TTL: Duration = CA_TTL;
/// CA certificates live ten years.
const CA_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Node certificates live 90 days (Swarm's default) and renew before expiry.
pub const NODE_TTL: Duration = Duration::from_secs(90 * 24 * 3600);
/// People's certificates live one year.
pub const PERSON_TTL: Duration = Duration::from_secs(365 * 24 * 3600);
/// Tolerate clocks that are a little behind the issuer's.
const BACKDATE: Duration = Duration::from_secs(3600);

/// A person's certificate scoped to namespaces names each in a SAN URI
/// `orc:namespace:<name>` (none: the whole cluster).
pub const NAMESPACE_URI: &str = "orc:namespace:";

/// A certificate with its private key, both PEM.
#[derive(Debug, Clone)]
pub struct CertKey {
    pub cert_pem: String,
    pub key_pem: String,
}

fn dn(name: &str, cluster_id: &str, ou: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn.push(DnType::OrganizationName, cluster_id);
    dn.push(DnType::OrganizationalUnitName, ou);
    dn
}

/// The longest lifetime any certificate gets (the CA's): a longer TTL is
/// an error, never an overflow.
fn validity(params: &mut CertificateParams, ttl: Duration) -> Result<(), PkiError> {
    if ttl > CA_TTL {
        return Err(PkiError::TtlTooLong { secs: ttl.as_secs(), max_secs: CA_TTL.as_secs() });
    }
    let now = OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + ttl;
    Ok(())
}

/// A new self-signed cluster CA.
pub fn new_ca(cluster_id: &str, cluster_name: &str) -> Result<CertKey, PkiError> {
    let key = KeyPair::generate()?;
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name = dn(&format!("orc cluster CA {cluster_name}"), cluster_id, "ca");
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    validity(&mut p, CA_TTL)?;
    let cert = p.self_signed(&key)?;
    Ok(CertKey { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

/// Issues a certificate for `name` with `role`, signed by the CA.
pub fn issue(ca: &CertKey, cluster_id: &str, name: &str, role: Role, ttl: Duration) -> Result<CertKey, PkiError> {
    let ca_key = KeyPair::from_pem(&ca.key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key)?;
    let key = KeyPair::generate()?;
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name = dn(name, cluster_id, role.as_str());
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    if !role.is_person() {
        p.extended_key_usages.push(ExtendedKeyUsagePurpose::ServerAuth);
        p.subject_alt_names = vec![SanType::DnsName(NODE_SERVER_NAME.try_into()?)];
    }
    validity(&mut p, ttl)?;
    let cert = p.signed_by(&key, &issuer)?;
    Ok(CertKey { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

/// Signs a CSR of a node (joining, renewing) or a person: the CA sets the
/// name, cluster and role (the CSR only contributes its public key).
pub fn sign_csr(
    ca: &CertKey,
    cluster_id: &str,
    name: &str,
    role: Role,
    namespaces: &[String],
    ttl: Duration,
    csr_pem: &str,
) -> Result<String, PkiError> {
    let ca_key = KeyPair::from_pem(&ca.key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key)?;
    let mut csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)?;
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name = dn(name, cluster_id, role.as_str());
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    if !role.is_person() {
        p.extended_key_usages.push(ExtendedKeyUsagePurpose::ServerAuth);
        p.subject_alt_names = vec![SanType::DnsName(NODE_SERVER_NAME.try_into()?)];
    }
    for ns in namespaces {
        p.subject_alt_names.push(SanType::URI(format!("{NAMESPACE_URI}{ns}").try_into()?));
    }
    validity(&mut p, ttl)?;
    csr.params = p;
    Ok(csr.signed_by(&issuer)?.pem())
}

/// A new key and a CSR for it (the joiner's side).
pub fn new_csr() -> Result<(String, String), PkiError> {
    let key = KeyPair::generate()?;
    let csr = CertificateParams::new(Vec::<String>::new())?.serialize_request(&key)?;
    Ok((key.serialize_pem(), csr.pem()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::role::identity_of;

    fn der(pem: &str) -> Vec<u8> {
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        x509_parser::pem::parse_x509_pem(pem.as_bytes()).map(|(_, p)| p.contents).unwrap_or_else(|_| b64.into_bytes())
    }

    #[test]
    fn issued_certificates_carry_role_and_cluster() {
        let ca = new_ca("c1", "test").unwrap();
        for role in [Role::Admin, Role::Operator, Role::Reader, Role::Manager, Role::Worker] {
            let ck = issue(&ca, "c1", "someone", role, PERSON_TTL).unwrap();
            let id = identity_of(&der(&ck.cert_pem)).unwrap();
            assert_eq!((id.name.as_str(), id.cluster_id.as_str(), id.role), ("someone", "c1", role));
        }
    }

    #[test]
    fn a_person_limited_to_namespaces_carries_them() {
        let ca = new_ca("c1", "test").unwrap();
        let (_, csr) = new_csr().unwrap();
        let ns = vec!["team-a".to_string(), "team-b".to_string()];
        let pem = sign_csr(&ca, "c1", "alice", Role::Operator, &ns, PERSON_TTL, &csr).unwrap();
        let id = identity_of(&der(&pem)).unwrap();
        assert_eq!((id.name.as_str(), id.role, id.namespaces), ("alice", Role::Operator, ns));
    }

    #[test]
    fn a_lifetime_past_the_cas_is_an_error_not_an_overflow() {
        let ca = new_ca("c1", "test").unwrap();
        for ttl in [Duration::from_secs(u64::MAX), Duration::MAX, CA_TTL + Duration::from_secs(1)] {
            let e = issue(&ca, "c1", "n", Role::Worker, ttl).unwrap_err();
            assert!(matches!(e, PkiError::TtlTooLong { .. }), "{e}");
        }
    }
}
