//! Two QEMU nodes for OS upgrades, shared by the VM test and `cargo xtask
//! bench upgrade`: a manager booted directly, and a worker booted from its
//! own disk under UEFI (OVMF, systemd-boot, unified kernel images whose
//! command line gives it its address on the L2 hub), with a task pinned to
//! the worker from an image loaded there. Driven through the `orcctl`
//! binary.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::cluster_def::NodeRole;
use crate::os_images::{BuiltImage, Variant};
use crate::qemu::{Node, NodeSpec};

/// The worker's own addresses on the hub (its command line is in its
/// unified kernel image, so every version built for it carries them).
pub const W_NET: &str = "orc.hostname=upg-w orc.ip=eth1:10.42.0.12/24 orc.advertise=10.42.0.12:7443";
/// The worker's hostname.
pub const W_NAME: &str = "upg-w";
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
    pub nodes: Vec<Node>,
    pub config: PathBuf,
    pub w_api: String,
    pub built: BuiltImage,
    pub dir: PathBuf,
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
    /// Boots both nodes, forms the cluster and starts the worker's task.
    pub fn start(image: &Path, dir: &Path, limit: Duration) -> anyhow::Result<Self> {
        let built = BuiltImage::open(image)?;
        let hub = dir.join("hub.sock");
        {
            let hub = hub.clone();
            std::thread::spawn(move || crate::hub::run(&hub));
        }
        let w_disk = dir.join("w-disk.raw");
        built.disk(&Self::net(), &dir.join("w-disk"), &w_disk)?;
        let m = spec(image, dir, "upg-m", &hub, 1);
        let mut w = spec(image, dir, W_NAME, &hub, 2);
        w.uefi = true;
        w.disk = Some(w_disk);
        let w_api = format!("127.0.0.1:{}", w.api_port);
        let nodes = vec![Node::start(m)?, Node::start(w)?];
        let (_, ctx) = crate::qemu_cluster::form(&nodes, &[NodeRole::Manager, NodeRole::Worker], None, limit)
            .with_context(|| format!("--- worker console:\n{}", nodes[1].console_from(0)))?;
        let config = dir.join("orcctl.toml");
        crate::qemu_cluster::save(&config, "upg", ctx)?;
        let rig = Self { nodes, config, w_api, built, dir: dir.to_path_buf() };
        let archive = dir.join("busybox.tar");
        std::fs::write(&archive, crate::oci::busybox(0)?.layout_tar(IMAGE)?)?;
        let m_api = format!("127.0.0.1:{}", rig.nodes[0].spec.api_port);
        for node in [m_api.as_str(), rig.w_api.as_str()] {
            rig.ctl(&["-n", node, "image", "load", &archive.display().to_string()]).check()?;
        }
        let constraint = format!("node.id=={}", rig.w_id()?);
        let create = ["service", "create", "--name", SERVICE, "--constraint", &constraint, IMAGE];
        rig.ctl(&[&create[..], &["--", "sleep", "100000"]].concat()).check()?;
        rig.wait_task(limit)?;
        Ok(rig)
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
