//! A real OCI registry (Debian's `docker-registry`) on loopback, with its
//! storage in a temporary directory, killed when dropped. QEMU nodes reach
//! it as 10.0.2.2:<port> through user networking.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use crate::oci::Image;

pub const BINARY: &str = "/usr/bin/docker-registry";

pub struct Registry {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    pub fn start() -> anyhow::Result<Self> {
        anyhow::ensure!(
            std::path::Path::new(BINARY).exists(),
            "{BINARY} is missing: `cargo xtask test` installs Debian's docker-registry"
        );
        let dir = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )?;
        let log = std::fs::File::create(dir.path().join("registry.log"))?;
        let child = Command::new(BINARY).arg("serve").arg(&config).stdout(Stdio::null()).stderr(log).spawn()?;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(Self { child, port, _dir: dir });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        anyhow::bail!("docker-registry did not listen on 127.0.0.1:{port}")
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
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
        client.push(&reference, &layers, config, &RegistryAuth::Anonymous, None).await?;
        Ok(name)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
