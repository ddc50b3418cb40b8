//! Node networking at boot: loopback up, static addresses from `orc.ip=`,
//! DHCP on every other interface that has a link, `/run/orc/resolv.conf`.
//!
//! # Layout
//! - [`link`]: rtnetlink calls (link up, address, default route).
//! - [`dhcp`]: the DHCPv4 client (DORA, renew, rebind) on a UDP socket bound to the interface.

pub mod dhcp;
pub mod link;

use std::path::Path;

use crate::cmdline::StaticIp;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("netlink: {0}")]
    Netlink(String),
    #[error("interface {0} named in orc.ip= does not exist; interfaces: {1}")]
    NoSuchIface(String, String),
    #[error("DHCP on {iface}: {msg}")]
    Dhcp { iface: String, msg: String },
}

/// Physical interfaces, from `/sys/class/net` (`sys_net`), skipping loopback and virtual ones.
pub fn physical_ifaces(sys_net: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(sys_net)
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().join("device").exists())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Reads an interface's MAC address from sysfs.
pub fn mac_of(sys_net: &Path, iface: &str) -> Option<[u8; 6]> {
    let s = std::fs::read_to_string(sys_net.join(iface).join("address")).ok()?;
    let bytes: Vec<u8> = s.trim().split(':').filter_map(|h| u8::from_str_radix(h, 16).ok()).collect();
    bytes.try_into().ok()
}

/// Where the agent finds the NTP servers DHCP offered, one per line (it
/// prefers those of `orc.ntp=`, which it gets as arguments).
pub const NTP_SERVERS: &str = "/run/orc/ntp-servers";

/// Publishes what a lease says beyond addresses: name servers for
/// containers, NTP servers for the agent.
pub fn publish(lease: &dhcp::Lease) {
    let _ = std::fs::create_dir_all("/run/orc");
    if !lease.dns.is_empty() {
        let text: String = lease.dns.iter().map(|d| format!("nameserver {d}\n")).collect();
        let _ = std::fs::write("/run/orc/resolv.conf", text);
    }
    if !lease.ntp.is_empty() {
        let text: String = lease.ntp.iter().map(|d| format!("{d}\n")).collect();
        if let Err(e) = std::fs::write(NTP_SERVERS, text) {
            tracing::warn!(path = NTP_SERVERS, error = %e, "cannot publish the NTP servers DHCP offered");
        }
    }
}

/// Brings the network up; DHCP clients keep running as spawned tasks.
/// Returns the hostname DHCP offered, if any.
pub async fn configure(statics: &[StaticIp]) -> Result<Option<String>, NetError> {
    let sys_net = Path::new("/sys/class/net");
    let nl = link::Netlink::connect().await?;
    nl.up("lo").await?;
    let ifaces = physical_ifaces(sys_net);
    for s in statics {
        if !ifaces.contains(&s.iface) {
            return Err(NetError::NoSuchIface(s.iface.clone(), ifaces.join(", ")));
        }
        nl.up(&s.iface).await?;
        nl.add_addr(&s.iface, s.addr, s.prefix).await?;
        if let Some(gw) = s.gateway {
            nl.default_route(gw).await?;
        }
        tracing::info!(iface = %s.iface, addr = %s.addr, prefix = s.prefix, "static address configured");
    }
    let mut hostname = None;
    let mut have_route = statics.iter().any(|s| s.gateway.is_some());
    for iface in ifaces.iter().filter(|i| !statics.iter().any(|s| &s.iface == *i)) {
        let Some(mac) = mac_of(sys_net, iface) else { continue };
        nl.up(iface).await?;
        match dhcp::acquire(iface, mac).await {
            Ok(lease) => {
                nl.add_addr(iface, lease.addr, lease.prefix).await?;
                if let (Some(gw), false) = (lease.router, have_route) {
                    nl.default_route(gw).await?;
                    have_route = true;
                }
                publish(&lease);
                tracing::info!(iface = %iface, addr = %lease.addr, prefix = lease.prefix, router = ?lease.router,
                    lease_secs = lease.lease_secs, "DHCP lease acquired");
                hostname = hostname.or(lease.hostname.clone());
                tokio::spawn(dhcp::maintain(iface.clone(), mac, lease));
            }
            Err(e) => tracing::warn!(iface = %iface, error = %e, "no DHCP lease; interface left without address"),
        }
    }
    Ok(hostname)
}
