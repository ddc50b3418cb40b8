//! Three QEMU nodes for OS upgrades, shared by the VM test and `cargo
//! xtask bench upgrade`: a manager and two workers, each booted from its
//! own disk under UEFI (OVMF, systemd-boot, unified kernel images whose
//! command line gives the node its address on the L2 hub — kept on STATE
//! by its first boot, so later images need not carry it), with a task
//! pinned to the first worker from an image loaded on every node, and a
//! registry versions can be published to as images. Driven through the
//! `orcctl` binary.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::cluster_def::NodeRole;
use crate::os_images::{BuiltImage, Variant};
use crate::qemu::{Node, NodeSpec};

/// The worker's own addresses on the hub (its command line is in its
/// unified kernel image; [`Rig::net`] builds versions that carry them).
pub const W_NET: &str = "orc.hostname=upg-w orc.ip=eth1:10.42.0.12/24 orc.advertise=10.42.0.12:7443";
/// The worker's hostname.
pub const W_NAME: &str = "upg-w";
/// A port the benchmark publishes a service on, forwarded from this host to every node.
pub const WEB_PORT: u16 = 8080;
/// The nodes: hostname and index on the hub (address 10.42.0.(10 + index)).
pub const NODES: [(&str, u8); 3] = [("upg-m", 1), (W_NAME, 2), ("upg-w2", 3)];
/// The service whose task runs on the worker.
pub const SERVICE: &str = "keep";
/// The image loaded on both nodes (no registry).
pub const IMAGE: &str = "local/busybox:1";

/// What an orcctl run printed.
pub struct Out {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

pub struct Rig {
    /// Manager, worker, second worker.
    pub nodes: Vec<Node>,
    pub config: PathBuf,
    pub w_api: String,
    /// Each node's API as reached from this host, in [`NODES`] order.
    pub apis: Vec<String>,
    /// Each node's port [`WEB_PORT`] as reached from this host, in [`NODES`] order.
    pub webs: Vec<std::net::SocketAddr>,
    pub built: BuiltImage,
    pub dir: PathBuf,
    /// Where versions are published as images ([`Rig::publish`]); the
    /// nodes' first image trusts it over plain HTTP.
    pub registry: crate::registry::Registry,
}

/// A node's addresses on the hub, for its first image's command line.
pub fn net_of(name: &str, index: u8) -> String {
    let ip = format!("10.42.0.{}", 10 + u32::from(index));
    format!("orc.hostname={name} orc.ip=eth1:{ip}/24 orc.advertise={ip}:7443")
}

fn spec(image: &Path, dir: &Path, name: &str, hub: &Path, index: u8) -> NodeSpec {
    NodeSpec {
        name: name.into(),
        dir: dir.join(name),
        image: image.to_path_buf(),
        api_port: crate::free_port(),
        l2: Some((hub.to_path_buf(), index)),
        memory_mb: 512,
        ..Default::default()
    }
}

impl Rig {
    /// Boots the nodes, forms the cluster and starts the worker's task.
    pub fn start(image: &Path, dir: &Path, limit: Duration) -> anyhow::Result<Self> {
        let built = BuiltImage::open(image)?;
        let hub = dir.join("hub.sock");
        {
            let hub = hub.clone();
            std::thread::spawn(move || crate::hub::run(&hub));
        }
        let registry = crate::registry::Registry::start()?;
        let mut specs = Vec::new();
        for (name, index) in NODES {
            let disk = dir.join(format!("{name}-disk.raw"));
            let own = format!("{} orc.insecure_registries=10.0.2.2:{}", net_of(name, index), registry.port);
            let net = Variant { extra_cmdline: own, initrd: None };
            built.disk(&net, &dir.join(format!("{name}-disk")), &disk)?;
            let mut s = spec(image, dir, name, &hub, index);
            s.boot = crate::qemu::Boot::Disk;
            s.disk = Some(disk);
            s.forwards = vec![(crate::free_port(), WEB_PORT)];
            specs.push(s);
        }
        let apis: Vec<String> = specs.iter().map(|s| format!("127.0.0.1:{}", s.api_port)).collect();
        let webs = specs.iter().map(|s| std::net::SocketAddr::from(([127, 0, 0, 1], s.forwards[0].0))).collect();
        let nodes = specs.into_iter().map(Node::start).collect::<anyhow::Result<Vec<_>>>()?;
        let roles = [NodeRole::Manager, NodeRole::Worker, NodeRole::Worker];
        let (_, ctx) = crate::qemu_cluster::form(&nodes, &roles, None, limit)
            .with_context(|| format!("--- worker console:\n{}", nodes[1].console_from(0)))?;
        let config = dir.join("orcctl.toml");
        crate::qemu_cluster::save(&config, "upg", ctx)?;
        let rig = Self { nodes, config, w_api: apis[1].clone(), apis, webs, built, dir: dir.to_path_buf(), registry };
        let archive = dir.join("busybox.tar");
        std::fs::write(&archive, crate::oci::busybox(0)?.layout_tar(IMAGE)?)?;
        for node in &rig.apis {
            rig.ctl(&["-n", node, "image", "load", &archive.display().to_string()]).check()?;
        }
        let constraint = format!("node.id=={}", rig.w_id()?);
        let create = ["service", "create", "--name", SERVICE, "--constraint", &constraint, IMAGE];
        rig.ctl(&[&create[..], &["--", "sleep", "100000"]].concat()).check()?;
        rig.wait_task(limit)?;
        Ok(rig)
    }

    /// Publishes `bundle` as the image `orc/os:<tag>` (one layer holding
    /// it, as `FROM scratch` + `COPY` makes it); its name as the nodes
    /// reach the registry.
    pub fn publish(&self, bundle: &Path, tag: &str) -> anyhow::Result<String> {
        self.publish_image(&crate::oci::files_only(&[("orc.bundle", std::fs::read(bundle)?)])?, tag)
    }

    /// Pushes `image` as `orc/os:<tag>`; its name as the nodes reach it.
    pub fn publish_image(&self, image: &crate::oci::Image, tag: &str) -> anyhow::Result<String> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        rt.block_on(self.registry.push(image, &format!("orc/os:{tag}")))?;
        Ok(format!("10.0.2.2:{}/orc/os:{tag}", self.registry.port))
    }

    /// A version with no addresses of any node on its command line: each
    /// node boots it with those its STATE kept.
    pub fn generic() -> Variant {
        Variant { extra_cmdline: String::new(), initrd: None }
    }

    /// The worker's own command line additions (its addresses).
    pub fn net() -> Variant {
        Variant { extra_cmdline: W_NET.into(), initrd: None }
    }

    pub fn ctl(&self, args: &[&str]) -> Out {
        match Command::new(crate::paths::debug_bin("orcctl")).arg("--orcconfig").arg(&self.config).args(args).output() {
            Ok(o) => Out {
                ok: o.status.success(),
                stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            },
            Err(e) => Out { ok: false, stdout: String::new(), stderr: format!("running orcctl: {e}") },
        }
    }

    /// orcctl with `--nodes` the worker.
    pub fn on_w(&self, args: &[&str]) -> Out {
        self.ctl(&[&["-n", self.w_api.as_str()][..], args].concat())
    }

    /// The worker's node id (from its `version`).
    pub fn w_id(&self) -> anyhow::Result<String> {
        let v = self.w_version()?;
        Ok(v["node_id"].as_str().context("no node id")?.to_string())
    }

    /// The worker as the managers see it (`node inspect`), as JSON.
    pub fn w_node(&self) -> anyhow::Result<serde_json::Value> {
        let o = self.ctl(&["-o", "json", "node", "inspect", &self.w_id()?]).check()?;
        let v: serde_json::Value = serde_json::from_str(&o.stdout)?;
        Ok(if v.is_array() { v[0].clone() } else { v })
    }

    /// The worker's `version`, as JSON.
    pub fn w_version(&self) -> anyhow::Result<serde_json::Value> {
        let o = self.on_w(&["-o", "json", "version"]).check()?;
        let v: serde_json::Value = serde_json::from_str(&o.stdout)?;
        Ok(v[0].clone())
    }

    /// The worker's task of [`SERVICE`] is running, as the managers see it.
    pub fn task_running(&self) -> bool {
        let o = self.ctl(&["-o", "json", "service", "ps", SERVICE]);
        let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap_or_default();
        v.as_array().is_some_and(|t| t.iter().any(|t| t["state"] == "running"))
    }

    pub fn wait_task(&self, limit: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        while !self.task_running() {
            anyhow::ensure!(start.elapsed() < limit, "the task on {W_NAME} is not running after {limit:?}");
            std::thread::sleep(Duration::from_secs(2));
        }
        Ok(())
    }

    /// A bundle of `version` named `name`, built with `v`, signed with `key`.
    pub fn bundle(
        &self,
        name: &str,
        version: &str,
        v: &Variant,
        key: &ring::signature::Ed25519KeyPair,
    ) -> anyhow::Result<PathBuf> {
        let dir = self.dir.join("bundles");
        let out = dir.join(format!("{name}.bundle"));
        self.built.bundle(version, v, key, &dir.join(name), &out)?;
        Ok(out)
    }

    /// The worker's console so far (for failure messages).
    pub fn console(&self) -> String {
        self.nodes[1].console_from(0)
    }
}

impl Out {
    /// Self when orcctl succeeded; its output as the error otherwise.
    pub fn check(self) -> anyhow::Result<Self> {
        anyhow::ensure!(self.ok, "orcctl failed: {}{}", self.stderr, self.stdout);
        Ok(self)
    }
}
