//! Encrypted networks: a WireGuard device per network on each node
//! (`orc-wg<vni>`, UDP port [`wg_port`]), in place of the VXLAN device.
//! The node's key pair is its own: the private key stays on STATE (mode
//! 0600), the public key goes to the leader in the session request, into
//! the node's object and from there into the node's leases on encrypted
//! networks, which every node's map carries. A node renews its key with
//! its certificate ([`Keys::rotate`]).
//!
//! For each other node's lease on the network the device has a peer (its
//! key, its underlay address and the network's port, its subnet as the
//! only allowed source and destination) and a route to the subnet. The
//! whole configuration is applied with `wg syncconf` (only what changed is
//! touched, so sessions of unchanged peers survive), level-triggered like
//! the VXLAN entries. Why `wg` and not netlink: as for nft, Debian's tool
//! is small, statically readable text in, and the kernel's genetlink
//! family for WireGuard has no well-kept async Rust client.

use std::fmt::Write as _;
use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use tokio::io::AsyncWriteExt;

use super::NetError;
use crate::model::objects::{valid_wg_key, SubnetLease};

/// Where the node image carries wg.
pub const WG: &str = "/usr/bin/wg";
/// What WireGuard adds to a packet: outer IPv4 (20) + UDP (8) + its
/// header and authentication tag (32).
pub const WG_OVERHEAD: u32 = 60;

fn wg_bin() -> &'static str {
    // Where the image has it; elsewhere (tests on a host) from PATH.
    if Path::new(WG).exists() {
        WG
    } else {
        "wg"
    }
}

fn err(what: impl std::fmt::Display) -> NetError {
    NetError::WireGuard(what.to_string())
}

/// Runs `wg args`, `input` on its standard input; its standard output.
async fn wg(args: &[&str], input: &str) -> Result<String, NetError> {
    let mut child = tokio::process::Command::new(wg_bin())
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| err(format!("running wg: {e} (is wireguard-tools installed?)")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes()).await.map_err(|e| err(format!("writing to wg: {e}")))?;
    }
    let out = child.wait_with_output().await.map_err(|e| err(format!("waiting for wg: {e}")))?;
    if !out.status.success() {
        return Err(err(format!("wg {}: {}", args[0], String::from_utf8_lossy(&out.stderr).trim())));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The node's WireGuard key pair, kept at `<STATE>/network/wg.key`.
pub struct Keys {
    path: PathBuf,
}

impl Keys {
    pub fn at(state_dir: &Path) -> Self {
        Self { path: state_dir.join("network").join("wg.key") }
    }

    /// The private key, made on first use.
    pub async fn private(&self) -> Result<String, NetError> {
        match std::fs::read_to_string(&self.path) {
            Ok(k) if valid_wg_key(k.trim()) => Ok(k.trim().to_string()),
            Ok(_) => {
                tracing::warn!(path = %self.path.display(), "the WireGuard key is malformed: making a new one");
                self.rotate().await
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => self.rotate().await,
            Err(e) => Err(err(format!("{}: {e}", self.path.display()))),
        }
    }

    /// The public key of [`Keys::private`].
    pub async fn public(&self) -> Result<String, NetError> {
        let private = self.private().await?;
        let public = wg(&["pubkey"], &private).await?;
        if !valid_wg_key(&public) {
            return Err(err(format!("wg pubkey wrote {public:?}, not a key")));
        }
        Ok(public)
    }

    /// A new private key in place of the old one; returns it.
    pub async fn rotate(&self) -> Result<String, NetError> {
        let key = wg(&["genkey"], "").await?;
        if !valid_wg_key(&key) {
            return Err(err("wg genkey wrote something other than a key"));
        }
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
        }
        crate::fsutil::write_private(&self.path, format!("{key}\n").as_bytes())
            .map_err(|e| err(format!("{}: {e}", self.path.display())))?;
        tracing::info!(path = %self.path.display(), "new WireGuard key");
        Ok(key)
    }
}

/// Another node on an encrypted network, as the device knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub key: String,
    pub endpoint: SocketAddrV4,
    /// Its subnet: the addresses it may send from and is sent to.
    pub allowed: Ipv4Net,
}

/// The peers of node `me` on `network`: every other node's lease with a
/// key (a node that reported none cannot be reached, and says so in its
/// own log).
pub fn peers(me: &str, network: &str, leases: &[SubnetLease], port: u16) -> Vec<Peer> {
    leases
        .iter()
        .filter(|l| l.network == network && l.node != me)
        .filter(|l| valid_wg_key(&l.key))
        .map(|l| Peer { key: l.key.clone(), endpoint: SocketAddrV4::new(l.underlay, port), allowed: l.subnet })
        .collect()
}

/// The device's whole configuration as `wg syncconf` reads it.
pub fn config(private_key: &str, port: u16, peers: &[Peer]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "[Interface]\nPrivateKey = {private_key}\nListenPort = {port}");
    for p in peers {
        let _ = writeln!(s, "\n[Peer]\nPublicKey = {}\nEndpoint = {}\nAllowedIPs = {}", p.key, p.endpoint, p.allowed);
    }
    s
}

/// Makes device `device` carry `config` exactly (peers not in it are
/// removed; the private key never touches a disk on the way).
pub async fn sync(device: &str, config: &str) -> Result<(), NetError> {
    wg(&["syncconf", device, "/proc/self/fd/0"], config).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=";
    const K2: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";

    fn lease(node: &str, network: &str, third: u8, key: &str) -> SubnetLease {
        SubnetLease {
            network: network.into(),
            node: node.into(),
            subnet: format!("10.0.{third}.0/24").parse().unwrap(),
            underlay: format!("192.168.1.{third}").parse().unwrap(),
            key: key.into(),
        }
    }

    /// With Debian's wg (cargo xtask installs it).
    #[tokio::test]
    async fn a_key_pair_is_made_once_kept_private_and_renewed() {
        use std::os::unix::fs::PermissionsExt;
        if std::process::Command::new(wg_bin()).arg("--version").output().is_err() {
            eprintln!("skipped: no wg (apt install wireguard-tools; cargo xtask test installs it)");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys::at(dir.path());
        let public = keys.public().await.unwrap();
        assert!(valid_wg_key(&public), "{public}");
        assert_eq!(keys.public().await.unwrap(), public, "kept");
        let path = dir.path().join("network/wg.key");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        keys.rotate().await.unwrap();
        let renewed = keys.public().await.unwrap();
        assert!(valid_wg_key(&renewed) && renewed != public, "renewed");
        std::fs::write(&path, "garbage\n").unwrap();
        let remade = keys.public().await.unwrap();
        assert!(valid_wg_key(&remade) && remade != renewed, "a malformed key is replaced");
    }

    #[test]
    fn every_other_keyed_node_on_the_network_is_a_peer() {
        let leases = vec![
            lease("a", "secret", 1, K1),
            lease("b", "secret", 2, K2),
            lease("c", "secret", 3, ""),
            lease("d", "secret", 4, "not a key"),
            lease("b", "other", 5, K2),
        ];
        let p = peers("a", "secret", &leases, 51821);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].endpoint.to_string(), "192.168.1.2:51821");
        assert_eq!(
            config(K1, 51821, &p),
            format!(
                "[Interface]\nPrivateKey = {K1}\nListenPort = 51821\n\n[Peer]\nPublicKey = {K2}\n\
                 Endpoint = 192.168.1.2:51821\nAllowedIPs = 10.0.2.0/24\n"
            )
        );
    }
}
