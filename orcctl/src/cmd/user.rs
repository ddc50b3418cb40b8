//! `orcctl user cert …` and `orcctl config renew`: people's certificates.
//! Keys are made here (a CSR goes to the manager), so a private key never
//! crosses the network.

use orc_proto::cluster::cluster_client::ClusterClient;
use orc_proto::cluster::{
    IssueCertRequest, IssueCertResponse, ListCertsRequest, PersonCert, RenewCertRequest, RevokeCertRequest,
};
use serde_json::json;

use crate::cli::{Output, UserCertCommand, UserCommand};
use crate::config::{Config, Context};
use crate::connect::{manager, Trust};
use crate::error::CliError;
use crate::output::{ago, table};

/// A new private key and a CSR for it (the CA sets the subject).
fn key_and_csr() -> Result<(String, String), CliError> {
    let err = |e: rcgen::Error| CliError::Usage(format!("making a key: {e}"));
    let key = rcgen::KeyPair::generate().map_err(err)?;
    let csr = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(err)?.serialize_request(&key).map_err(err)?;
    Ok((key.serialize_pem(), csr.pem().map_err(err)?))
}

fn when(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ms / 1000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

fn cert_json(c: &PersonCert) -> serde_json::Value {
    json!({
        "serial": c.serial, "name": c.name, "role": c.role, "issued_by": c.issued_by,
        "issued": when(c.issued_ms), "expires": when(c.expires_ms),
        "revoked": if c.revoked_ms > 0 { when(c.revoked_ms) } else { String::new() },
        "namespaces": c.namespaces,
    })
}

fn context_of(endpoints: &[String], r: &IssueCertResponse, key_pem: String) -> Context {
    // A person limited to namespaces works in the first of them.
    let namespace = r.cert.as_ref().and_then(|c| c.namespaces.first().cloned());
    Context {
        endpoints: endpoints.to_vec(),
        ca: r.ca_cert_pem.clone(),
        cert: r.cert_pem.clone(),
        key: key_pem,
        namespace,
    }
}

pub async fn run(cmd: UserCommand, managers: &[String], trust: &Trust, out: Output) -> Result<(), CliError> {
    let UserCommand::Cert(cmd) = cmd;
    let (n, ch) = manager(managers, trust).await?;
    let mut c = ClusterClient::new(ch);
    let status = super::status_err(&n);
    match cmd {
        UserCertCommand::Create { name, role, ttl, namespaces, out: file } => {
            let ttl_secs = ttl.as_deref().map(crate::parse::parse_ttl_secs).transpose()?.unwrap_or(0);
            let (key_pem, csr_pem) = key_and_csr()?;
            let r = c
                .issue_cert(IssueCertRequest { name: name.clone(), role, ttl_secs, csr_pem, namespaces })
                .await
                .map_err(&status)?
                .into_inner();
            let cert = r.cert.clone().unwrap_or_default();
            let mut cfg = Config::default();
            cfg.contexts.insert(name.clone(), context_of(managers, &r, key_pem));
            cfg.current_context = name.clone();
            match file {
                Some(path) => {
                    cfg.save(&path)?;
                    match out {
                        Output::Json => println!("{}", json!({"cert": cert_json(&cert), "config": path})),
                        Output::Table => println!(
                            "certificate {} for {name} ({}, expires {}) written to {} as context {name:?}",
                            cert.serial,
                            cert.role,
                            when(cert.expires_ms),
                            path.display()
                        ),
                    }
                }
                None => {
                    let text = toml::to_string_pretty(&cfg).map_err(|e| CliError::Usage(e.to_string()))?;
                    print!("{text}");
                }
            }
        }
        UserCertCommand::Revoke { cert } => {
            let r = c.revoke_cert(RevokeCertRequest { cert }).await.map_err(&status)?.into_inner();
            match out {
                Output::Json => println!("{}", json!(r.revoked.iter().map(cert_json).collect::<Vec<_>>())),
                Output::Table => {
                    for c in &r.revoked {
                        let who = if c.name.is_empty() { String::new() } else { format!(" of {}", c.name) };
                        println!("revoked {}{who}: every node refuses it within seconds", c.serial);
                    }
                }
            }
        }
        UserCertCommand::Ls => {
            let r = c.list_certs(ListCertsRequest {}).await.map_err(&status)?.into_inner();
            match out {
                Output::Json => println!("{}", json!(r.certs.iter().map(cert_json).collect::<Vec<_>>())),
                Output::Table => table(
                    &["SERIAL", "NAME", "ROLE", "NAMESPACES", "ISSUED", "EXPIRES", "BY", "REVOKED"],
                    &r.certs
                        .iter()
                        .map(|c| {
                            vec![
                                c.serial.clone(),
                                c.name.clone(),
                                c.role.clone(),
                                if c.namespaces.is_empty() { "*".into() } else { c.namespaces.join(",") },
                                ago(c.issued_ms),
                                when(c.expires_ms),
                                c.issued_by.clone(),
                                if c.revoked_ms > 0 { ago(c.revoked_ms) } else { String::new() },
                            ]
                        })
                        .collect::<Vec<_>>(),
                ),
            }
        }
    }
    Ok(())
}

/// `config renew`: a new key and certificate for the current context, same
/// name and role, written back to the config file.
pub async fn renew(path: &std::path::Path, context: Option<&str>, out: Output) -> Result<(), CliError> {
    let mut cfg = Config::load_or_default(path)?;
    let (name, ctx) = cfg.context(path, context)?;
    let ctx = ctx.clone();
    let (n, ch) = manager(&ctx.endpoints, &Trust::Cluster(ctx.clone())).await?;
    let (key_pem, csr_pem) = key_and_csr()?;
    let r = ClusterClient::new(ch)
        .renew_cert(RenewCertRequest { csr_pem })
        .await
        .map_err(super::status_err(&n))?
        .into_inner();
    let cert = r.cert.clone().unwrap_or_default();
    cfg.contexts.insert(name.clone(), context_of(&ctx.endpoints, &r, key_pem));
    cfg.save(path)?;
    match out {
        Output::Json => println!("{}", json!({"context": name, "cert": cert_json(&cert)})),
        Output::Table => println!(
            "context {name:?}: new certificate {} ({}), expires {}",
            cert.serial,
            cert.role,
            when(cert.expires_ms)
        ),
    }
    Ok(())
}
