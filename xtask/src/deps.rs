//! Host packages the build and the tests need, installed with apt when missing.

use std::process::Command;

use anyhow::{bail, Context};

/// Debian packages and a command each provides, to check for it cheaply.
pub const PACKAGES: &[(&str, &str)] = &[
    ("qemu-system-x86", "qemu-system-x86_64"),
    ("ipxe-qemu", "/usr/lib/ipxe/qemu/efi-virtio.rom"),
    ("erofs-utils", "mkfs.erofs"),
    ("cryptsetup-bin", "veritysetup"),
    ("kmod", "depmod"),
    ("e2fsprogs", "mkfs.ext4"),
    ("busybox-static", "/bin/busybox"),
    ("dpkg", "dpkg-deb"),
    // The agent links libseccomp statically (container seccomp profiles).
    ("libseccomp-dev", "/usr/lib/x86_64-linux-gnu/libseccomp.a"),
    // CA roots the node image carries for pulls from public registries.
    ("ca-certificates", "/etc/ssl/certs/ca-certificates.crt"),
    // The registry the tests push to and nodes pull from.
    ("docker-registry", "docker-registry"),
    // The peers of `cargo xtask bench container-start`.
    ("runc", "runc"),
    ("crun", "crun"),
    ("pkg-config", "pkg-config"),
    // The floor of the pull benchmark.
    ("curl", "curl"),
    // An NTP server whose clock is off, for the clock tests (chronyd under faketime).
    ("faketime", "faketime"),
    // Container networking: the agent loads its rules with nft (nodes carry
    // it in the image); the process tests make hosts of namespaces with ip.
    ("nftables", "nft"),
    ("conntrack", "conntrack"),
    // Encrypted networks: the agent configures WireGuard devices with wg
    // (nodes carry it in the image).
    ("wireguard-tools", "wg"),
    ("iproute2", "ip"),
    // The NFS server VM of the volume tests (its daemons, with their
    // libraries, go into a test initramfs; the host's own is not started).
    ("nfs-kernel-server", "/usr/sbin/rpc.mountd"),
    // The disk image: unified kernel images are systemd's EFI stub with
    // sections added by objcopy; systemd-boot boots them (boot counting);
    // the tests boot the disk under OVMF.
    ("systemd-boot-efi", "/usr/lib/systemd/boot/efi/systemd-bootx64.efi"),
    ("binutils", "objcopy"),
    ("ovmf", "/usr/share/OVMF/OVMF_CODE_4M.fd"),
    // The live ISO: xorriso writes it, isolinux boots it under BIOS.
    ("xorriso", "xorriso"),
    ("isolinux", "/usr/lib/ISOLINUX/isolinux.bin"),
    ("syslinux-common", "/usr/lib/syslinux/modules/bios/ldlinux.c32"),
    // The live root in the live initramfs is zstd-compressed.
    ("zstd", "zstd"),
];

/// Peers the tests run from Debian packages that are unpacked, not
/// installed (installing chrony would replace the host's own time service
/// and start a daemon): (package, a file it holds).
pub const UNPACKED: &[(&str, &str)] = &[("chrony", "usr/sbin/chronyd")];

/// Where [`UNPACKED`] packages (and the node's kernel) are unpacked.
pub fn cache_dir() -> std::path::PathBuf {
    crate::image::out_dir().join("cache")
}

fn present(probe: &str) -> bool {
    if probe.starts_with('/') {
        return std::path::Path::new(probe).exists();
    }
    ["/usr/bin", "/usr/sbin", "/bin", "/sbin"].iter().any(|d| std::path::Path::new(d).join(probe).exists())
}

/// Installs what is missing, saying so.
pub fn ensure() -> anyhow::Result<()> {
    ensure_packages(PACKAGES)?;
    for (pkg, probe) in UNPACKED {
        unpacked(pkg, &cache_dir(), probe)?;
    }
    Ok(())
}

pub fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Debian package `pkg` unpacked under `<cache>/<pkg>` (downloaded with
/// `apt-get download` unless `<cache>/<pkg>/<probe>` is there already).
pub fn unpacked(pkg: &str, cache: &std::path::Path, probe: &str) -> anyhow::Result<std::path::PathBuf> {
    let root = cache.join(pkg);
    if root.join(probe).exists() {
        return Ok(root);
    }
    std::fs::create_dir_all(cache)?;
    eprintln!("xtask: downloading and unpacking Debian package {pkg}");
    let download = || output(Command::new("apt-get").args(["download", pkg]).current_dir(cache));
    download().or_else(|_| {
        // A fresh machine may have no package lists yet.
        let _ = Command::new("apt-get").args(["update", "-q"]).status();
        download()
    })?;
    let deb = std::fs::read_dir(cache)?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{pkg}_")) && n.ends_with(".deb"))
        })
        .context("apt-get download produced no .deb")?;
    let tmp = cache.join(format!("{pkg}.tmp"));
    let _ = std::fs::remove_dir_all(&tmp);
    output(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tmp))?;
    let _ = std::fs::remove_dir_all(&root);
    std::fs::rename(&tmp, &root)?;
    let _ = std::fs::remove_file(&deb);
    anyhow::ensure!(root.join(probe).exists(), "{pkg} holds no {probe}");
    Ok(root)
}

/// Installs those of `packages` (name, probe) that are missing, saying so.
/// Benchmarks use it for their peers (e.g. docker.io), which tests never need.
pub fn ensure_packages(packages: &[(&str, &str)]) -> anyhow::Result<()> {
    let missing: Vec<&str> = packages.iter().filter(|(_, p)| !present(p)).map(|(pkg, _)| *pkg).collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing host packages with apt: {}", missing.join(" "));
    let sudo = if nix::unistd::geteuid().is_root() { vec![] } else { vec!["sudo"] };
    let run = |args: &[&str]| -> anyhow::Result<()> {
        let mut all: Vec<&str> = sudo.clone();
        all.extend_from_slice(args);
        let st = Command::new(all[0])
            .args(&all[1..])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .with_context(|| format!("running {}", all.join(" ")))?;
        if !st.success() {
            bail!("`{}` failed; install the packages by hand: apt-get install {}", all.join(" "), missing.join(" "));
        }
        Ok(())
    };
    run(&["apt-get", "update", "-q"])?;
    let mut args = vec!["apt-get", "install", "-y", "-q", "--no-install-recommends"];
    args.extend(missing.iter());
    run(&args)
}
