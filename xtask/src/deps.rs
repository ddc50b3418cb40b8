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
];

fn present(probe: &str) -> bool {
    if probe.starts_with('/') {
        return std::path::Path::new(probe).exists();
    }
    ["/usr/bin", "/usr/sbin", "/bin", "/sbin"].iter().any(|d| std::path::Path::new(d).join(probe).exists())
}

/// Installs what is missing, saying so.
pub fn ensure() -> anyhow::Result<()> {
    ensure_packages(PACKAGES)
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
