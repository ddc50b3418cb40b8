//! A real OCI registry (Debian's `docker-registry`) on loopback, with its
//! storage in a temporary directory, killed when dropped. QEMU nodes reach
//! it as 10.0.2.2:<port> through user networking.
//!
//! [`Access`] picks how it authenticates: not at all, HTTP basic (htpasswd),
//! or bearer tokens from a token server run here (the Docker Hub flow: 401
//! with a `Bearer realm=…` challenge, a token fetched with basic
//! credentials, then the request again with the token).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use crate::oci::Image;

pub const BINARY: &str = "/usr/bin/docker-registry";
const SERVICE: &str = "orc-test-registry";
const ISSUER: &str = "orc-test-token-server";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    Anonymous,
    Basic { user: String, password: String },
    Token { user: String, password: String },
}

pub struct Registry {
    child: Child,
    /// Where it listens: loopback, or the test LAN's address ([`Registry::start_on_lan`]).
    pub ip: std::net::Ipv4Addr,
    pub port: u16,
    pub access: Access,
    _dir: tempfile::TempDir,
}

fn b64url(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// A token server on its own thread: checks basic credentials and hands out
/// ES256 JWTs whose `x5c` names the certificate the registry trusts.
fn token_server(user: String, password: String, key_pkcs8: Vec<u8>, cert_der: Vec<u8>) -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let rng = ring::rand::SystemRandom::new();
    let key =
        ring::signature::EcdsaKeyPair::from_pkcs8(&ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING, &key_pkcs8, &rng)
            .map_err(|e| anyhow::anyhow!("token key: {e}"))?;
    let expected = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")));
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut reader = BufReader::new(&conn);
            let mut request = String::new();
            let _ = reader.read_line(&mut request);
            let mut authorized = false;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    if k.eq_ignore_ascii_case("authorization") && v.trim() == expected {
                        authorized = true;
                    }
                }
            }
            let query = request
                .split_whitespace()
                .nth(1)
                .and_then(|p| p.split_once('?'))
                .map(|(_, q)| q.to_string())
                .unwrap_or_default();
            let scope = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("scope="))
                .unwrap_or("")
                .replace("%3A", ":")
                .replace("%2F", "/")
                .replace("%2C", ",");
            let mut conn = &conn;
            if !authorized {
                let _ = conn.write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                continue;
            }
            // scope = repository:<name>:<actions>
            let access: Vec<serde_json::Value> = scope
                .split(' ')
                .filter_map(|s| {
                    let mut p = s.splitn(3, ':');
                    let (t, n, a) = (p.next()?, p.next()?, p.next()?);
                    Some(serde_json::json!({"type": t, "name": n, "actions": a.split(',').collect::<Vec<_>>()}))
                })
                .collect();
            let now =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
            let header = serde_json::json!({"alg": "ES256", "typ": "JWT",
                "x5c": [base64::engine::general_purpose::STANDARD.encode(&cert_der)]});
            let claims = serde_json::json!({"iss": ISSUER, "sub": user, "aud": SERVICE, "exp": now + 300,
                "nbf": now - 10, "iat": now, "jti": format!("{now}-{}", rand_id()), "access": access});
            let signing_input =
                format!("{}.{}", b64url(header.to_string().as_bytes()), b64url(claims.to_string().as_bytes()));
            let Ok(sig) = key.sign(&rng, signing_input.as_bytes()) else { continue };
            let token = format!("{signing_input}.{}", b64url(sig.as_ref()));
            let body = serde_json::json!({"token": token, "access_token": token, "expires_in": 300}).to_string();
            let _ = write!(conn, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        }
    });
    Ok(port)
}

/// A token id unique in this process.
fn rand_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl Registry {
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(Access::Anonymous)
    }

    /// One the hosts of the test LAN reach (agents in network namespaces).
    pub fn start_on_lan() -> anyhow::Result<Self> {
        Self::start_at(crate::lan::Lan::get()?.gateway(), Access::Anonymous)
    }

    pub fn start_with(access: Access) -> anyhow::Result<Self> {
        Self::start_at(std::net::Ipv4Addr::LOCALHOST, access)
    }

    fn start_at(ip: std::net::Ipv4Addr, access: Access) -> anyhow::Result<Self> {
        anyhow::ensure!(
            std::path::Path::new(BINARY).exists(),
            "{BINARY} is missing: `cargo xtask test` installs Debian's docker-registry"
        );
        let dir = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind((ip, 0))?.local_addr()?.port();
        let auth = match &access {
            Access::Anonymous => String::new(),
            Access::Basic { user, password } => {
                let hash = bcrypt::hash(password, 4)?;
                let file = dir.path().join("htpasswd");
                std::fs::write(&file, format!("{user}:{hash}\n"))?;
                format!("auth:\n  htpasswd:\n    realm: orc-test\n    path: {}\n", file.display())
            }
            Access::Token { user, password } => {
                let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
                let cert = rcgen::CertificateParams::new(vec!["token-server".to_string()])?.self_signed(&key)?;
                let bundle = dir.path().join("token.pem");
                std::fs::write(&bundle, cert.pem())?;
                let tport = token_server(user.clone(), password.clone(), key.serialize_der(), cert.der().to_vec())?;
                format!(
                    "auth:\n  token:\n    realm: http://127.0.0.1:{tport}/token\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
                    bundle.display()
                )
            }
        };
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n{auth}http:\n  addr: {ip}:{port}\n",
                dir.path().join("data").display()
            ),
        )?;
        let log = std::fs::File::create(dir.path().join("registry.log"))?;
        let child = Command::new(BINARY).arg("serve").arg(&config).stdout(Stdio::null()).stderr(log).spawn()?;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if std::net::TcpStream::connect((ip, port)).is_ok() {
                return Ok(Self { child, ip, port, access, _dir: dir });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        anyhow::bail!("docker-registry did not listen on {ip}:{port}")
    }

    pub fn host(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }

    /// Pushes `image` as `<host>/<repository>` (e.g. `orc/busybox:1`).
    pub async fn push(&self, image: &Image, repository: &str) -> anyhow::Result<String> {
        let name = format!("{}/{repository}", self.host());
        let reference: Reference = name.parse()?;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = Client::new(ClientConfig { protocol: ClientProtocol::Http, ..Default::default() });
        let layers: Vec<ImageLayer> = image
            .layers
            .iter()
            .map(|l| ImageLayer::new(l.clone(), crate::oci::LAYER_MEDIA_TYPE.to_string(), None))
            .collect();
        let config = Config::new(image.config.clone(), crate::oci::CONFIG_MEDIA_TYPE.to_string(), None);
        let auth = match &self.access {
            Access::Anonymous => RegistryAuth::Anonymous,
            Access::Basic { user, password } | Access::Token { user, password } => {
                RegistryAuth::Basic(user.clone(), password.clone())
            }
        };
        client.push(&reference, &layers, config, &auth, None).await?;
        Ok(name)
    }

    /// Pushes `amd64` and `arm64` as two images and an OCI image index
    /// `<repository>:<tag>` naming both by platform (a multi-arch image).
    pub async fn push_index(
        &self,
        amd64: &Image,
        arm64: &Image,
        repository: &str,
        tag: &str,
    ) -> anyhow::Result<String> {
        let mut entries = Vec::new();
        for (img, arch) in [(arm64, "arm64"), (amd64, "amd64")] {
            let name = self.push(img, &format!("{repository}:{arch}-only")).await?;
            let reference: Reference = name.parse()?;
            let client = Client::new(ClientConfig { protocol: ClientProtocol::Http, ..Default::default() });
            let (raw, digest) = client
                .pull_manifest_raw(&reference, &RegistryAuth::Anonymous, &[crate::oci::MANIFEST_MEDIA_TYPE])
                .await?;
            entries.push(serde_json::json!({"mediaType": crate::oci::MANIFEST_MEDIA_TYPE, "digest": digest,
                "size": raw.len(), "platform": {"architecture": arch, "os": "linux"}}));
        }
        let index = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries});
        let name = format!("{}/{repository}:{tag}", self.host());
        let reference: Reference = name.parse()?;
        let client = Client::new(ClientConfig { protocol: ClientProtocol::Http, ..Default::default() });
        let content_type = http::HeaderValue::from_static("application/vnd.oci.image.index.v1+json");
        client.push_manifest_raw(&reference, serde_json::to_vec(&index)?, content_type).await?;
        Ok(name)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
