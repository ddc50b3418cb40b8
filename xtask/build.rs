//! xtask links the agent's library, which links libseccomp: on a fresh
//! machine the xtask could not even be built to install its packages. This
//! installs the one library it needs to link, with apt, saying so; every
//! other host package is installed by the xtask itself (`deps.rs`).

use std::path::Path;
use std::process::Command;

const LIBRARY: &str = "/usr/lib/x86_64-linux-gnu/libseccomp.a";
const PACKAGE: &str = "libseccomp-dev";

fn main() {
    // Written when the package is installed: after an install here, the next
    // build runs this once more (and says nothing), so cargo does not replay
    // the warning below from its cache on every build.
    println!("cargo:rerun-if-changed=/var/lib/dpkg/info/{PACKAGE}:amd64.list");
    println!("cargo:rerun-if-changed={LIBRARY}");
    if Path::new(LIBRARY).exists() {
        return;
    }
    println!("cargo:warning=installing host package {PACKAGE} with apt (the xtask links libseccomp)");
    let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    let apt = |args: &[&str]| {
        let mut c = if root { Command::new("apt-get") } else { Command::new("sudo") };
        if !root {
            c.arg("apt-get");
        }
        // apt's output to stderr: a build script's stdout speaks to cargo.
        c.args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(std::process::Stdio::from(std::io::stderr()))
            .status()
            .is_ok_and(|s| s.success())
    };
    let ok = apt(&["install", "-y", "-q", "--no-install-recommends", PACKAGE])
        || (apt(&["update", "-q"]) && apt(&["install", "-y", "-q", "--no-install-recommends", PACKAGE]));
    if !ok {
        panic!("{PACKAGE} is missing and `apt-get install {PACKAGE}` failed: install it by hand (as root), then run the xtask again");
    }
}
