//! OS images made by tests from the built image (`cargo xtask image`):
//! unified kernel images with a command line of the test's choosing (a
//! node's own addresses, or a breakage), disks holding them, and upgrade
//! bundles of any version signed with the image's development key or
//! another one. Nothing here needs root.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use orc_image::bundle::{BundleManifest, FORMAT, ROOT, UKI_A, UKI_B};
use orc_image::disk::{self, SLOT_A_NAME, SLOT_B_NAME};
use orc_image::manifest::Artifact;
use ring::signature::Ed25519KeyPair;

/// The built image's directory and what its manifest says.
pub struct BuiltImage {
    pub dir: PathBuf,
    pub version: String,
    pub kernel_version: String,
    pub root_hash: String,
    /// `orc.verity=`'s value.
    pub verity: String,
}

/// One version's pieces: the kernel command line added to each slot's,
/// and the initramfs (the image's unless broken on purpose).
#[derive(Debug, Clone, Default)]
pub struct Variant {
    pub extra_cmdline: String,
    pub initrd: Option<PathBuf>,
}

impl BuiltImage {
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        let m: orc_image::manifest::Manifest = orc_image::manifest::Manifest::load(&dir.join("manifest.json"))?;
        let verity = m
            .cmdline
            .split_whitespace()
            .find_map(|w| w.strip_prefix("orc.verity="))
            .context("the image's command line has no orc.verity=")?
            .to_string();
        Ok(Self {
            dir: dir.to_path_buf(),
            version: m.version,
            kernel_version: m.kernel_version,
            root_hash: m.root_hash,
            verity,
        })
    }

    /// The unified kernel image of `version` booting `slot` (a GPT name).
    pub fn uki(&self, slot: &str, version: &str, v: &Variant, out: &Path) -> anyhow::Result<()> {
        let work = out.with_extension("work");
        std::fs::create_dir_all(&work)?;
        let mut cmdline = disk::slot_cmdline(slot, &self.verity);
        if !v.extra_cmdline.is_empty() {
            cmdline = format!("{cmdline} {}", v.extra_cmdline);
        }
        let initrd = v.initrd.clone().unwrap_or_else(|| self.dir.join("initramfs.img"));
        let parts = orc_image::uki::UkiParts {
            stub: Path::new(orc_image::uki::STUB),
            kernel: &self.dir.join("vmlinuz"),
            initrd: &initrd,
            cmdline: &cmdline,
            os_release: &orc_image::uki::os_release(version, "test"),
        };
        orc_image::uki::build(&parts, &work, out)?;
        std::fs::remove_dir_all(&work).ok();
        Ok(())
    }

    /// A disk like the image's `disk.raw` whose version boots with `v`.
    pub fn disk(&self, v: &Variant, work: &Path, out: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(work)?;
        let uki = work.join(UKI_A);
        self.uki(SLOT_A_NAME, &self.version, v, &uki)?;
        let esp = disk::esp_files(work, Path::new(disk::SYSTEMD_BOOT), &uki, &self.version)?;
        let spec = disk::DiskSpec { size: 2 << 30, esp, root: self.dir.join(ROOT), seed: [7; 16] };
        disk::write(&spec, out)?;
        Ok(())
    }

    /// An upgrade bundle of `version` with `v`, signed with `key`.
    pub fn bundle(
        &self,
        version: &str,
        v: &Variant,
        key: &Ed25519KeyPair,
        work: &Path,
        out: &Path,
    ) -> anyhow::Result<()> {
        std::fs::create_dir_all(work)?;
        self.uki(SLOT_A_NAME, version, v, &work.join(UKI_A))?;
        self.uki(SLOT_B_NAME, version, v, &work.join(UKI_B))?;
        let root = work.join(ROOT);
        if !root.exists() && std::fs::hard_link(self.dir.join(ROOT), &root).is_err() {
            std::fs::copy(self.dir.join(ROOT), &root)?;
        }
        let of = |n: &str| Artifact::of_file(&work.join(n));
        let m = BundleManifest {
            format: FORMAT,
            version: version.into(),
            git_revision: "test".into(),
            kernel_version: self.kernel_version.clone(),
            root_hash: self.root_hash.clone(),
            uki_a: of(UKI_A)?,
            uki_b: of(UKI_B)?,
            root: of(ROOT)?,
        };
        orc_image::bundle::write(&m, work, key, out)?;
        Ok(())
    }

    /// The image's development signing key (what its nodes trust).
    pub fn dev_key(&self) -> anyhow::Result<Ed25519KeyPair> {
        let p = self.dir.join("keys/upgrade-dev.pk8");
        let b = std::fs::read(&p).with_context(|| format!("{}: built with ORC_UPGRADE_KEY?", p.display()))?;
        Ed25519KeyPair::from_pkcs8(&b).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))
    }
}

/// A key no image trusts.
pub fn other_key() -> anyhow::Result<Ed25519KeyPair> {
    let rng = ring::rand::SystemRandom::new();
    let pk8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ed25519KeyPair::from_pkcs8(pk8.as_ref()).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Not an initramfs at all: the kernel finds no root and panics.
pub fn garbage_initramfs(out: &Path) -> anyhow::Result<()> {
    std::fs::write(out, b"this is not a cpio archive".repeat(64))?;
    Ok(())
}

/// An initramfs whose `/init` exits at once (a static program assembled
/// with binutils): the kernel panics with "Attempted to kill init!".
pub fn exiting_initramfs(work: &Path, out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(work)?;
    let (src, obj, exe) = (work.join("exit.s"), work.join("exit.o"), work.join("exit"));
    std::fs::write(&src, ".globl _start\n_start:\n  mov $60, %eax\n  mov $1, %edi\n  syscall\n")?;
    for (tool, args) in [
        ("as", vec![src.as_os_str(), "-o".as_ref(), obj.as_os_str()]),
        ("ld", vec!["-static".as_ref(), obj.as_os_str(), "-o".as_ref(), exe.as_os_str()]),
    ] {
        let st = Command::new(tool).args(&args).status().with_context(|| format!("running {tool} (binutils)"))?;
        anyhow::ensure!(st.success(), "{tool} failed");
    }
    let mut i = orc_image::initramfs::Initramfs::new();
    i.file("/init", 0o755, std::fs::read(&exe)?).char_dev("/dev/console", 0o600, 5, 1);
    i.write_gz(std::fs::File::create(out)?)?;
    Ok(())
}
