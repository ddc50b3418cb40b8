//! `cargo xtask image`: static binaries, kernel, modules, the verified root
//! image, the STATE template, the initramfs and the manifest, under
//! `target/orc/`. No step needs root; two builds of one revision give the
//! same bytes.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use orc_image::cmdline::{AGENT_PATH, LATE_MODULE_LIST_PATH, MODULE_LIST_PATH, STATE_LABEL, STATE_TEMPLATE_PATH};
use orc_image::initramfs::Initramfs;
use orc_image::live;
use orc_image::manifest::{Artifact, Manifest};
use orc_image::rootfs;
use sha2::Digest;

use crate::kernel;

pub const TARGET: &str = "x86_64-unknown-linux-gnu";

pub fn workspace() -> PathBuf {
    orc_e2e::paths::workspace()
}

pub fn out_dir() -> PathBuf {
    orc_e2e::paths::image_dir()
}

pub fn git_revision(ws: &Path) -> String {
    let out = Command::new("git")
        .args(["describe", "--always", "--dirty", "--abbrev=12", "--exclude=*"])
        .current_dir(ws)
        .output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        _ => "unknown".to_string(),
    }
}

/// Builds orc-init and orc-agent as static release binaries.
pub fn static_binaries(ws: &Path, rev: &str) -> anyhow::Result<PathBuf> {
    eprintln!("xtask: building static orc-init and orc-agent ({rev})");
    let st = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--target", TARGET, "-p", "orc-init", "-p", "orc-agent"])
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        // Without these two, libseccomp-sys links dynamically and the static binary segfaults.
        .env("LIBSECCOMP_LINK_TYPE", "static")
        .env("LIBSECCOMP_LIB_PATH", "/usr/lib/x86_64-linux-gnu")
        .env("ORC_GIT_REVISION", rev)
        .current_dir(ws)
        .status()?;
    if !st.success() {
        bail!("building the static binaries failed");
    }
    Ok(orc_e2e::paths::target_dir().join(TARGET).join("release"))
}

fn copy_exec(from: &Path, to: &Path) -> anyhow::Result<()> {
    if let Some(d) = to.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::copy(from, to).with_context(|| format!("copying {}", from.display()))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Debian's nft, which the agent loads its nftables rules with,
/// conntrack, which it forgets flows with, and wg, which configures
/// encrypted networks' WireGuard devices: each binary, the shared objects
/// `ldd` names (under /usr/lib/x86_64-linux-gnu, where the loader looks
/// without a cache) and the loader.
fn netfilter_tools(dir: &Path) -> anyhow::Result<()> {
    let tools =
        [("/usr/sbin/nft", "nftables"), ("/usr/sbin/conntrack", "conntrack"), ("/usr/bin/wg", "wireguard-tools")];
    for (bin, package) in tools {
        debian_tool(dir, Path::new(bin), package)?;
    }
    copy_exec(Path::new("/lib64/ld-linux-x86-64.so.2"), &dir.join("lib64/ld-linux-x86-64.so.2"))
}

fn debian_tool(dir: &Path, bin: &Path, package: &str) -> anyhow::Result<()> {
    anyhow::ensure!(bin.exists(), "{} is missing (package {package})", bin.display());
    copy_exec(bin, &dir.join(bin.strip_prefix("/")?))?;
    let ldd = crate::deps::output(Command::new("ldd").arg(bin))?;
    let mut libs: Vec<PathBuf> = ldd
        .lines()
        .filter_map(|l| l.split("=>").nth(1))
        .filter_map(|r| r.split_whitespace().next())
        .map(PathBuf::from)
        .collect();
    libs.sort();
    for lib in libs {
        let name = lib.file_name().context("a library without a name")?;
        copy_exec(&lib, &dir.join("usr/lib/x86_64-linux-gnu").join(name))?;
    }
    Ok(())
}

/// The root filesystem tree: the agent and the few files a node needs.
fn root_tree(dir: &Path, bins: &Path, version: &str, rev: &str, upgrade_keys: &str) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    for d in ["dev", "proc", "sys", "run", "tmp", "var/lib/orc", "etc", "usr/bin", "sysroot"] {
        std::fs::create_dir_all(dir.join(d))?;
    }
    copy_exec(&bins.join("orc-agent"), &dir.join(AGENT_PATH.trim_start_matches('/')))?;
    std::fs::write(
        dir.join("etc/os-release"),
        format!("NAME=orc\nID=orc\nPRETTY_NAME=\"orc {version}\"\nVERSION_ID={version}\nBUILD_ID={rev}\n"),
    )?;
    std::fs::write(dir.join("etc/hosts"), "127.0.0.1 localhost\n::1 localhost\n")?;
    std::fs::create_dir_all(dir.join("etc/orc"))?;
    std::fs::write(dir.join(orc_image::bundle::KEYS_PATH.trim_start_matches('/')), upgrade_keys)?;
    std::os::unix::fs::symlink("/run/orc/resolv.conf", dir.join("etc/resolv.conf"))?;
    // CA roots for pulls from public registries over HTTPS (Debian's bundle).
    let roots = Path::new(CA_BUNDLE);
    std::fs::create_dir_all(dir.join("etc/ssl/certs"))?;
    std::fs::copy(roots, dir.join(CA_BUNDLE.trim_start_matches('/')))
        .with_context(|| format!("copying {CA_BUNDLE} (Debian's ca-certificates)"))?;
    // systemd-boot, which the installer puts on the ESP of the disk it lays out.
    let boot = orc_image::disk::SYSTEMD_BOOT_ON_NODE.trim_start_matches('/');
    std::fs::create_dir_all(dir.join(boot).parent().context("systemd-boot's directory")?)?;
    std::fs::copy(orc_image::disk::SYSTEMD_BOOT, dir.join(boot))
        .with_context(|| format!("copying {} (package systemd-boot-efi)", orc_image::disk::SYSTEMD_BOOT))?;
    for f in ["etc/os-release", "etc/hosts", CA_BUNDLE.trim_start_matches('/'), "etc/orc/upgrade-keys", boot] {
        std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o644))?;
    }
    netfilter_tools(dir)
}

/// A small blank ext4 labelled ORC_STATE, gzip'd, that PID 1 writes to a
/// blank STATE disk and grows (the node carries no mkfs).
fn state_template(work: &Path) -> anyhow::Result<Vec<u8>> {
    let img = work.join("state.ext4");
    let _ = std::fs::remove_file(&img);
    std::fs::File::create(&img)?.set_len(16 << 20)?;
    let out = Command::new("mkfs.ext4")
        // quota,project: volumes' size limits are project quotas.
        .args([
            "-q",
            "-F",
            "-b",
            "4096",
            "-O",
            "quota,project",
            "-L",
            STATE_LABEL,
            "-U",
            "6f72632d-7374-6174-652d-303030303031",
        ])
        .args(["-E", "hash_seed=6f72632d-7374-6174-652d-686173683031,root_owner=0:0,lazy_itable_init=0"])
        .arg(&img)
        .env("E2FSPROGS_FAKE_TIME", "1")
        .output()
        .context("mkfs.ext4 (package e2fsprogs)")?;
    if !out.status.success() {
        bail!("mkfs.ext4: {}", String::from_utf8_lossy(&out.stderr));
    }
    let raw = std::fs::read(&img)?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&raw)?;
    Ok(gz.finish()?)
}

/// The floor of the boot benchmark and the KVM probe: busybox as PID 1, powering off at once.
fn floor_initramfs(out: &Path) -> anyhow::Result<()> {
    let busybox = std::fs::read("/bin/busybox").context("reading /bin/busybox (package busybox-static)")?;
    let mut i = Initramfs::new();
    i.file("/bin/busybox", 0o755, busybox).char_dev("/dev/console", 0o600, 5, 1).file(
        "/init",
        0o755,
        b"#!/bin/busybox sh\n/bin/busybox poweroff -f\n".to_vec(),
    );
    i.write_gz(std::fs::File::create(out.join("floor-initramfs.img"))?)?;
    Ok(())
}

/// The unified kernel images of slot A and slot B (each names its slot's
/// root), and the disk.
pub const UKI_A: &str = orc_image::bundle::UKI_A;
pub const UKI_B: &str = orc_image::bundle::UKI_B;
pub const DISK: &str = "disk.raw";

/// What the bundle's manifest says of the build.
pub struct Built {
    pub version: String,
    pub git_revision: String,
    pub kernel_version: String,
    pub root_hash: String,
}
/// The disk image's size (sparse: what is not written takes no room).
const DISK_BYTES: u64 = 2 << 30;

/// The unified kernel image booting slot A (`verity`: its root's
/// dm-verity value) and the GPT disk image holding it, systemd-boot and
/// the root in slot A, with STATE blank.
fn disk_image(out: &Path, work: &Path, version: &str, rev: &str, verity: &str) -> anyhow::Result<()> {
    use orc_image::disk;
    eprintln!("xtask: building the unified kernel images and the disk image");
    let os_release = orc_image::uki::os_release(version, rev);
    for (slot, file) in [(disk::SLOT_A_NAME, UKI_A), (disk::SLOT_B_NAME, UKI_B)] {
        let cmdline = disk::slot_cmdline(slot, verity);
        let parts = orc_image::uki::UkiParts {
            stub: Path::new(orc_image::uki::STUB),
            kernel: &out.join("vmlinuz"),
            initrd: &out.join("initramfs.img"),
            cmdline: &cmdline,
            os_release: &os_release,
        };
        orc_image::uki::build(&parts, work, &out.join(file))?;
    }
    let esp = disk::esp_files(work, Path::new(disk::SYSTEMD_BOOT), &out.join(UKI_A), version)?;
    let seed: [u8; 16] = sha2::Sha256::digest(format!("orc-disk {version} {rev}"))[..16].try_into()?;
    disk::write(&disk::DiskSpec { size: DISK_BYTES, esp, root: out.join("root.img"), seed }, &out.join(DISK))?;
    Ok(())
}

pub struct ImageOptions {
    pub kernel: Option<PathBuf>,
}

pub fn build(opts: &ImageOptions) -> anyhow::Result<PathBuf> {
    crate::deps::ensure()?;
    let ws = workspace();
    let out = out_dir();
    let work = out.join("work");
    std::fs::create_dir_all(&work)?;
    let version = env!("CARGO_PKG_VERSION");
    let rev = git_revision(&ws);
    let bins = static_binaries(&ws, &rev)?;

    let k = match &opts.kernel {
        Some(dir) => kernel::from_dir(dir)?,
        None => kernel::debian(&out.join("cache"))?,
    };
    kernel::check(&k, &ws)?;
    let (order, late) = kernel::module_order(&k, &ws)?;
    eprintln!(
        "xtask: kernel {} checked against kernel-config/, {} modules at boot, {} late",
        k.version,
        order.len(),
        late.len()
    );

    eprintln!("xtask: building the root filesystem (erofs + dm-verity)");
    let (key, key_path) = crate::bundle::signing_key(&out)?;
    let tree = work.join("rootfs");
    root_tree(&tree, &bins, version, &rev, &crate::bundle::trusted_line(&key))?;
    let root = rootfs::build(&tree, &out.join("root.img"))?;

    eprintln!("xtask: building the initramfs");
    let mut initramfs = Initramfs::new();
    initramfs
        .file("/init", 0o755, std::fs::read(bins.join("orc-init"))?)
        .char_dev("/dev/console", 0o600, 5, 1)
        .char_dev("/dev/kmsg", 0o644, 1, 11)
        .dir("/proc")
        .dir("/sys")
        .dir("/run")
        .dir("/sysroot")
        .file(STATE_TEMPLATE_PATH, 0o644, state_template(&work)?)
        .file(MODULE_LIST_PATH, 0o644, order.iter().map(|p| format!("{p}\n")).collect::<String>().into_bytes())
        .file(LATE_MODULE_LIST_PATH, 0o644, late.iter().map(|p| format!("{p}\n")).collect::<String>().into_bytes());
    for rel in order.iter().chain(&late) {
        let data = std::fs::read(k.modules_dir.join(rel)).with_context(|| format!("reading module {rel}"))?;
        initramfs.file(&format!("/lib/modules/{}/{rel}", k.version), 0o644, data);
    }
    initramfs.write_gz(std::fs::File::create(out.join("initramfs.img"))?)?;
    std::fs::copy(&k.vmlinuz, out.join("vmlinuz"))?;
    floor_initramfs(&out)?;
    crate::nfs_server::initramfs(&k, &out.join(crate::nfs_server::INITRAMFS))?;

    let cmdline =
        format!("console=ttyS0 panic=10 printk.devkmsg=on orc.root=/dev/vda orc.verity={}", root.cmdline_value());
    disk_image(&out, &work, version, &rev, &root.cmdline_value())?;
    crate::live::build(&out, &work, version, &rev, &root.cmdline_value())?;
    let built = Built {
        version: version.to_string(),
        git_revision: rev.clone(),
        kernel_version: k.version.clone(),
        root_hash: root.root_hash.clone(),
    };
    let bundle = crate::bundle::write(&out, &built, &key)?;
    eprintln!("xtask: upgrade bundle {} signed with {}", bundle.display(), key_path.display());
    let artifacts =
        ["vmlinuz", "initramfs.img", "root.img", "floor-initramfs.img", UKI_A, UKI_B, live::LIVE_UKI, live::ISO]
            .iter()
            .map(|n| Artifact::of_file(&out.join(n)))
            .collect::<Result<Vec<_>, _>>()?;
    let manifest = Manifest {
        version: version.to_string(),
        git_revision: rev,
        kernel_version: k.version.clone(),
        root_hash: root.root_hash.clone(),
        cmdline,
        artifacts,
    };
    std::fs::write(out.join("manifest.json"), serde_json::to_vec_pretty(&manifest)?)?;
    for a in &manifest.artifacts {
        eprintln!("xtask:   {:<20} {:>10} bytes  sha256:{}", a.name, a.size, &a.sha256[..16]);
    }
    eprintln!("xtask: image ready in {}", out.display());
    Ok(out)
}
