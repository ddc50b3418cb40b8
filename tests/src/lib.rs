//! Fixtures for orc's process-level and VM end-to-end tests, shared with
//! `cargo xtask qemu`.
//!
//! # Layout
//! - [`paths`]: where the workspace, its binaries and the built image are.
//! - [`agent`]: an `orc-agent` process on loopback with its own state.
//! - [`cluster`]: several agents bootstrapped and joined into one cluster.
//! - [`qemu`]: a QEMU node booting the image (KVM when it works, TCG otherwise).
//! - [`qemu_cluster`]: QEMU nodes bootstrapped and joined into one cluster.
//! - [`cluster_def`]: local cluster definitions (`qemu/*.toml`).
//! - [`hub`]: the user-space L2 frame hub joining QEMU nodes without root.
//! - [`oci`]: a busybox-based test image (OCI layout or registry push).
//! - [`registry`]: Debian's docker-registry on loopback (or the test LAN).
//! - [`lan`]: network namespaces as hosts on a bridge (root).
//! - [`nfs_server`]: a VM serving NFSv4 on the L2 hub (Debian's nfs-kernel-server).
//! - [`ntp`]: Debian's chronyd as an NTP server, its clock shifted with faketime.
//! - [`small_fs`]: a small loop-mounted ext4 to fill up (root).
//! - [`simulator`]: many simulated nodes with real sessions against real managers.
//! - [`watching`]: a long-running `orcctl … --watch` a test reads line by line.

// The test harness: a failed unwrap is a failed test, with its line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod agent;
pub mod cluster;
pub mod cluster_def;
pub mod hub;
pub mod lan;
pub mod nfs_server;
pub mod ntp;
pub mod oci;
pub mod os_images;
pub mod paths;
pub mod qemu;
pub mod qemu_cluster;
pub mod registry;
pub mod simulator;
pub mod small_fs;
pub mod upgrade_rig;
pub mod watching;

/// Files under `dir` whose bytes hold `needle`.
pub fn files_holding(dir: &std::path::Path, needle: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for e in entries.flatten() {
        let p = e.path();
        let Ok(meta) = std::fs::symlink_metadata(&p) else { continue };
        if meta.is_dir() {
            out.extend(files_holding(&p, needle));
        } else if meta.is_file() {
            if let Ok(bytes) = std::fs::read(&p) {
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    out.push(p.display().to_string());
                }
            }
        }
    }
    out
}

/// A TCP port free on loopback right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(27443)
}

/// The body of `GET /` on 127.0.0.1:`port`, or None when nothing answers.
pub fn http_get(port: u16) -> Option<String> {
    http_get_at(std::net::Ipv4Addr::LOCALHOST, port)
}

/// The body of `GET /` at `ip:port`, if something answers.
pub fn http_get_at(ip: std::net::Ipv4Addr, port: u16) -> Option<String> {
    http_get_path(ip, port, "/")
}

/// The body of `GET path` at `ip:port`, if something answers.
pub fn http_get_path(ip: std::net::Ipv4Addr, port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect((ip, port)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes()).ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    http_body(&resp).map(str::to_string)
}

/// The body of HTTP response `resp`: after the first blank line, which a
/// CGI script's headers may end with bare newlines (busybox httpd passes
/// them on as they are; clients accept both).
pub fn http_body(resp: &str) -> Option<&str> {
    let crlf = resp.find("\r\n\r\n").map(|i| (i, 4));
    let lf = resp.find("\n\n").map(|i| (i, 2));
    let (at, len) = match (crlf, lf) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b)?,
    };
    Some(&resp[at + len..])
}

/// The image directory the VM tests boot (`ORC_E2E_IMAGE`, set by
/// `cargo xtask test`); None, with a note, when unset.
pub fn e2e_image() -> Option<std::path::PathBuf> {
    match std::env::var_os("ORC_E2E_IMAGE") {
        Some(p) => Some(std::path::PathBuf::from(p)),
        None => {
            eprintln!("skipped: set ORC_E2E_IMAGE (cargo xtask test does) to run the VM tests");
            None
        }
    }
}
