//! The node kernel: Debian's `linux-image-amd64` resolved and unpacked at
//! build time (cached under `target/orc/cache`), or a directory given with
//! `--kernel` holding `vmlinuz`, `config` and `lib/modules/<version>/`.
//! Either way it is checked against `kernel-config/`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

use crate::deps::output;
use orc_image::{kconfig, modules::ModuleDeps};

pub struct Kernel {
    pub version: String,
    pub vmlinuz: PathBuf,
    /// `lib/modules/<version>` of this kernel.
    pub modules_dir: PathBuf,
    pub config: PathBuf,
}

/// The concrete package behind the `linux-image-amd64` metapackage.
fn resolve_debian_package() -> anyhow::Result<String> {
    let deps = |_: ()| output(Command::new("apt-cache").args(["depends", "linux-image-amd64"]));
    let mut text = deps(())?;
    if !text.contains("Depends: linux-image-") {
        // A fresh machine may have no package lists yet.
        let _ = Command::new("apt-get").args(["update", "-q"]).status();
        text = deps(())?;
    }
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Depends: ").filter(|p| p.starts_with("linux-image-")))
        .map(str::to_string)
        .context("apt-cache knows no linux-image-amd64; run apt-get update, or pass --kernel DIR")
}

/// Downloads and unpacks Debian's kernel into `cache`.
pub fn debian(cache: &Path) -> anyhow::Result<Kernel> {
    let pkg = resolve_debian_package()?;
    let version = pkg.trim_start_matches("linux-image-").to_string();
    let root = crate::deps::unpacked(&pkg, cache, &format!("boot/vmlinuz-{version}"))?;
    Ok(Kernel {
        vmlinuz: root.join("boot").join(format!("vmlinuz-{version}")),
        modules_dir: root.join("lib/modules").join(&version),
        config: root.join("boot").join(format!("config-{version}")),
        version,
    })
}

/// A kernel from a directory: `vmlinuz`, `config`, `lib/modules/<version>/`.
pub fn from_dir(dir: &Path) -> anyhow::Result<Kernel> {
    let mods = dir.join("lib/modules");
    let version = std::fs::read_dir(&mods)
        .with_context(|| format!("{}: expected lib/modules/<version>/", dir.display()))?
        .flatten()
        .find(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .with_context(|| format!("{} has no module directory", mods.display()))?;
    Ok(Kernel { vmlinuz: dir.join("vmlinuz"), config: dir.join("config"), modules_dir: mods.join(&version), version })
}

/// Checks the kernel's config against `kernel-config/orc.config`.
pub fn check(k: &Kernel, workspace: &Path) -> anyhow::Result<()> {
    let config =
        std::fs::read_to_string(&k.config).with_context(|| format!("reading kernel config {}", k.config.display()))?;
    let fragment = std::fs::read_to_string(workspace.join("kernel-config/orc.config"))?;
    kconfig::check(&config, &fragment).with_context(|| format!("kernel {} does not fit orc", k.version))
}

/// The dependencies between `k`'s modules (computed once with depmod).
pub fn module_deps(k: &Kernel) -> anyhow::Result<ModuleDeps> {
    let base = k.modules_dir.parent().and_then(Path::parent).and_then(Path::parent).context("module dir layout")?;
    if !k.modules_dir.join("modules.dep").exists() {
        output(Command::new("depmod").arg("-b").arg(base).arg(&k.version))
            .context("depmod (package kmod) computes module dependencies")?;
    }
    let dep = std::fs::read_to_string(k.modules_dir.join("modules.dep"))?;
    let builtin = std::fs::read_to_string(k.modules_dir.join("modules.builtin")).unwrap_or_default();
    Ok(ModuleDeps::parse(&dep, &builtin))
}

/// Module paths (relative to the module directory) to load, in order: the
/// boot list (`kernel-config/modules`) and the late one
/// (`kernel-config/modules.late`, less what the boot list loads).
pub fn module_order(k: &Kernel, workspace: &Path) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let deps = module_deps(k)?;
    let list = |name: &str| -> anyhow::Result<Vec<String>> {
        let text = std::fs::read_to_string(workspace.join("kernel-config").join(name))?;
        let wanted: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
        deps.load_order(&wanted).with_context(|| format!("kernel-config/{name}"))
    };
    let boot = list("modules")?;
    let late = list("modules.late")?.into_iter().filter(|m| !boot.contains(m)).collect();
    Ok((boot, late))
}
