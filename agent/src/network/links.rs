//! The netlink calls the node's networking makes (rtnetlink): the bridge,
//! the VXLAN and WireGuard devices, a task's veth pair, and the routes, permanent
//! neighbours and forwarding entries of the overlay. Adds replace what is
//! there, so programming the same state twice changes nothing.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::Path;

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};
use rtnetlink::packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteProtocol};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth, LinkVxlan, LinkWireguard, RouteMessageBuilder};

use super::NetError;

/// The VXLAN UDP port (IANA).
pub const VXLAN_PORT: u16 = 4789;
/// What VXLAN adds to a frame: outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14).
pub const VXLAN_OVERHEAD: u32 = 50;
/// Routes orc programs carry this protocol number, so it finds its own.
pub const PROTO: u8 = 0x6f;

fn nl(what: impl std::fmt::Display, e: impl std::fmt::Display) -> NetError {
    NetError::Netlink(format!("{what}: {e}"))
}

fn exists(e: &rtnetlink::Error) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -libc::EEXIST)
}

fn missing(e: &rtnetlink::Error) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -libc::ENOENT || m.raw_code() == -libc::ESRCH || m.raw_code() == -libc::ENODEV)
}

/// A link as the kernel has it.
#[derive(Debug, Clone)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mtu: u32,
    pub mac: Vec<u8>,
}

fn link_of(m: &LinkMessage) -> Link {
    let mut l = Link { index: m.header.index, name: String::new(), mtu: 0, mac: Vec::new() };
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => l.name = n.clone(),
            LinkAttribute::Mtu(v) => l.mtu = *v,
            LinkAttribute::Address(a) => l.mac = a.clone(),
            _ => {}
        }
    }
    l
}

/// A netlink connection to one network namespace.
#[derive(Clone)]
pub struct Links {
    handle: Handle,
}

impl Links {
    /// To the namespace this process is in.
    pub fn connect() -> Result<Self, NetError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| nl("opening a netlink socket", e))?;
        tokio::spawn(conn);
        Ok(Self { handle })
    }

    /// To the namespace kept at `path`: the socket is opened in it (it
    /// stays there), on a thread of its own.
    pub fn connect_in(path: &Path) -> Result<Self, NetError> {
        let rt = tokio::runtime::Handle::current();
        let made = super::netns::inside(path, move || {
            let _in_runtime = rt.enter();
            rtnetlink::new_connection()
        })?;
        let (conn, handle, _) = made.map_err(|e| nl(format!("opening a netlink socket in {}", path.display()), e))?;
        tokio::spawn(conn);
        Ok(Self { handle })
    }

    pub async fn get(&self, name: &str) -> Result<Option<Link>, NetError> {
        let mut links = self.handle.link().get().match_name(name.to_string()).execute();
        match links.try_next().await {
            Ok(Some(m)) => Ok(Some(link_of(&m))),
            Ok(None) => Ok(None),
            Err(e) if missing(&e) => Ok(None),
            Err(e) => Err(nl(format!("looking up {name}"), e)),
        }
    }

    async fn must(&self, name: &str) -> Result<Link, NetError> {
        self.get(name).await?.ok_or_else(|| NetError::Netlink(format!("no interface {name}")))
    }

    /// Every link, by name.
    pub async fn all(&self) -> Result<Vec<Link>, NetError> {
        let links: Vec<LinkMessage> =
            self.handle.link().get().execute().try_collect().await.map_err(|e| nl("listing links", e))?;
        Ok(links.iter().map(link_of).collect())
    }

    pub async fn delete(&self, name: &str) -> Result<(), NetError> {
        let Some(l) = self.get(name).await? else { return Ok(()) };
        match self.handle.link().del(l.index).execute().await {
            Ok(()) => Ok(()),
            Err(e) if missing(&e) => Ok(()),
            Err(e) => Err(nl(format!("deleting {name}"), e)),
        }
    }

    pub async fn up(&self, name: &str, mtu: Option<u32>) -> Result<(), NetError> {
        let l = self.must(name).await?;
        let mut b = LinkUnspec::new_with_index(l.index).up();
        if let Some(mtu) = mtu {
            b = b.mtu(mtu);
        }
        self.handle.link().set(b.build()).execute().await.map_err(|e| nl(format!("setting {name} up"), e))
    }

    /// The bridge `name` with address `mac` (set, so the kernel keeps it
    /// as ports come and go), made if missing, up with `mtu`.
    pub async fn bridge(&self, name: &str, mac: [u8; 6], mtu: u32) -> Result<Link, NetError> {
        match self.get(name).await? {
            None => match self
                .handle
                .link()
                .add(LinkBridge::new(name).address(mac.to_vec()).mtu(mtu).build())
                .execute()
                .await
            {
                Ok(()) => {}
                Err(e) if exists(&e) => {}
                Err(e) => return Err(nl(format!("creating bridge {name}"), e)),
            },
            Some(l) if l.mac != mac => {
                tracing::info!(device = name, "setting the bridge's address (it followed its ports')");
                let set = LinkUnspec::new_with_index(l.index).address(mac.to_vec()).build();
                self.handle.link().set(set).execute().await.map_err(|e| nl(format!("setting {name}'s address"), e))?;
            }
            Some(_) => {}
        }
        self.up(name, Some(mtu)).await?;
        self.must(name).await
    }

    /// The VXLAN device `name` for `vni` from `local`, learning off, no
    /// group (every remote is a forwarding entry), made again when one of
    /// another shape is there.
    pub async fn vxlan(&self, name: &str, vni: u32, local: Ipv4Addr, mac: [u8; 6], mtu: u32) -> Result<Link, NetError> {
        if let Some(l) = self.get(name).await? {
            if l.mac == mac && self.vxlan_local(name).await? == Some(local) {
                self.up(name, Some(mtu)).await?;
                return Ok(l);
            }
            tracing::info!(device = name, %local, "the VXLAN device has another address; made again");
            self.delete(name).await?;
        }
        let msg =
            LinkVxlan::new(name, vni).port(VXLAN_PORT).local(local).learning(false).mtu(mtu).address(mac.to_vec());
        self.handle.link().add(msg.build()).execute().await.map_err(|e| nl(format!("creating VXLAN {name}"), e))?;
        self.up(name, Some(mtu)).await?;
        self.must(name).await
    }

    /// The WireGuard device `name`, made if missing, up with `mtu`.
    pub async fn wireguard(&self, name: &str, mtu: u32) -> Result<Link, NetError> {
        if self.get(name).await?.is_none() {
            match self.handle.link().add(LinkWireguard::new(name).mtu(mtu).build()).execute().await {
                Ok(()) => {}
                Err(e) if exists(&e) => {}
                Err(e) => {
                    return Err(nl(format!("creating WireGuard device {name} (is the wireguard module loaded?)"), e))
                }
            }
        }
        self.up(name, Some(mtu)).await?;
        self.must(name).await
    }

    async fn vxlan_local(&self, name: &str) -> Result<Option<Ipv4Addr>, NetError> {
        use rtnetlink::packet_route::link::{InfoData, InfoVxlan, LinkInfo};
        let mut links = self.handle.link().get().match_name(name.to_string()).execute();
        let Some(m) = links.try_next().await.map_err(|e| nl(format!("looking up {name}"), e))? else {
            return Ok(None);
        };
        for a in &m.attributes {
            if let LinkAttribute::LinkInfo(infos) = a {
                for i in infos {
                    if let LinkInfo::Data(InfoData::Vxlan(v)) = i {
                        for x in v {
                            if let InfoVxlan::Local(ip) = x {
                                return Ok(Some(*ip));
                            }
                        }
                    }
                }
            }
        }
        Ok(None)
    }

    /// Adds `addr` to `name` (kept if present).
    pub async fn address(&self, name: &str, addr: Ipv4Addr, prefix: u8) -> Result<(), NetError> {
        let l = self.must(name).await?;
        match self.handle.address().add(l.index, IpAddr::V4(addr), prefix).execute().await {
            Ok(()) => Ok(()),
            Err(e) if exists(&e) => Ok(()),
            Err(e) => Err(nl(format!("adding {addr}/{prefix} to {name}"), e)),
        }
    }

    /// A veth pair `host` ↔ `peer`, the peer moved into the namespace at
    /// `netns`, the host end into `bridge`, both at `mtu`.
    pub async fn veth_into(&self, host: &str, peer: &str, netns: &Path, bridge: u32, mtu: u32) -> Result<(), NetError> {
        self.delete(host).await?;
        let add = LinkVeth::new(host, peer).mtu(mtu).build();
        self.handle.link().add(add).execute().await.map_err(|e| nl(format!("creating veth {host}"), e))?;
        let ns = std::fs::File::open(netns).map_err(|e| nl(format!("opening {}", netns.display()), e))?;
        let p = self.must(peer).await?;
        let set = LinkUnspec::new_with_index(p.index).setns_by_fd(ns.as_raw_fd()).build();
        self.handle.link().set(set).execute().await.map_err(|e| nl(format!("moving {peer} into the task"), e))?;
        let h = self.must(host).await?;
        let set = LinkUnspec::new_with_index(h.index).controller(bridge).mtu(mtu).up().build();
        self.handle.link().set(set).execute().await.map_err(|e| nl(format!("attaching {host} to the bridge"), e))
    }

    /// Renames `from` to `to` (down while renamed).
    pub async fn rename(&self, from: &str, to: &str) -> Result<(), NetError> {
        let l = self.must(from).await?;
        let set = LinkUnspec::new_with_index(l.index).name(to.to_string()).build();
        self.handle.link().set(set).execute().await.map_err(|e| nl(format!("renaming {from} to {to}"), e))
    }

    /// The default route via `gateway`.
    pub async fn default_route(&self, gateway: Ipv4Addr) -> Result<(), NetError> {
        let msg = RouteMessageBuilder::<Ipv4Addr>::new().gateway(gateway).build();
        match self.handle.route().add(msg).replace().execute().await {
            Ok(()) => Ok(()),
            Err(e) => Err(nl(format!("default route via {gateway}"), e)),
        }
    }

    /// A route to `dst` via `gateway` on link `index`, onlink (the gateway
    /// is a permanent neighbour on a device without an address for it).
    pub async fn route_onlink(&self, dst: Ipv4Net, gateway: Ipv4Addr, index: u32) -> Result<(), NetError> {
        let msg = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(dst.network(), dst.prefix_len())
            .gateway(gateway)
            .output_interface(index)
            .onlink()
            .protocol(RouteProtocol::Other(PROTO))
            .build();
        self.handle.route().add(msg).replace().execute().await.map_err(|e| nl(format!("route to {dst}"), e))
    }

    /// The routes orc added on link `index`: destination → the message.
    pub async fn routes_on(&self, index: u32) -> Result<Vec<(Ipv4Net, RouteMessage)>, NetError> {
        let msg = RouteMessageBuilder::<Ipv4Addr>::new().build();
        let routes: Vec<RouteMessage> =
            self.handle.route().get(msg).execute().try_collect().await.map_err(|e| nl("listing routes", e))?;
        let mut out = Vec::new();
        for r in routes {
            if r.header.protocol != RouteProtocol::Other(PROTO) {
                continue;
            }
            let mut oif = None;
            let mut dst = None;
            for a in &r.attributes {
                match a {
                    RouteAttribute::Oif(i) => oif = Some(*i),
                    RouteAttribute::Destination(RouteAddress::Inet(d)) => dst = Some(*d),
                    _ => {}
                }
            }
            if oif == Some(index) {
                if let Some(d) = dst.and_then(|d| Ipv4Net::new(d, r.header.destination_prefix_length).ok()) {
                    out.push((d, r));
                }
            }
        }
        Ok(out)
    }

    pub async fn delete_route(&self, r: RouteMessage) -> Result<(), NetError> {
        match self.handle.route().del(r).execute().await {
            Ok(()) => Ok(()),
            Err(e) if missing(&e) => Ok(()),
            Err(e) => Err(nl("deleting a route", e)),
        }
    }

    /// A permanent neighbour `ip` → `mac` on link `index`.
    pub async fn neighbour(&self, index: u32, ip: Ipv4Addr, mac: [u8; 6]) -> Result<(), NetError> {
        self.handle
            .neighbours()
            .add(index, IpAddr::V4(ip))
            .link_layer_address(&mac)
            .replace()
            .execute()
            .await
            .map_err(|e| nl(format!("neighbour {ip}"), e))
    }

    /// A forwarding entry on the VXLAN device `index`: frames for `mac` go
    /// to `dst` (NTF_SELF: the device's own table, not a bridge's).
    pub async fn fdb(&self, index: u32, mac: [u8; 6], dst: Ipv4Addr) -> Result<(), NetError> {
        self.handle
            .neighbours()
            .add_bridge(index, &mac)
            .flags(NeighbourFlags::Own)
            .destination(IpAddr::V4(dst))
            .replace()
            .execute()
            .await
            .map_err(|e| nl(format!("forwarding entry to {dst}"), e))
    }

    /// The neighbours (IPv4 family) or forwarding entries (bridge family)
    /// of link `index`, with their destination and link-layer address.
    pub async fn neighbours_on(
        &self,
        index: u32,
        family: AddressFamily,
    ) -> Result<Vec<(Option<Ipv4Addr>, Vec<u8>, NeighbourMessage)>, NetError> {
        let mut req = self.handle.neighbours().get();
        req = req.set_address_family(family);
        let all: Vec<NeighbourMessage> = req.execute().try_collect().await.map_err(|e| nl("listing neighbours", e))?;
        let mut out = Vec::new();
        for n in all.into_iter().filter(|n| n.header.ifindex == index) {
            let (mut ip, mut mac) = (None, Vec::new());
            for a in &n.attributes {
                match a {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(d)) => ip = Some(*d),
                    NeighbourAttribute::LinkLayerAddress(m) => mac = m.clone(),
                    _ => {}
                }
            }
            out.push((ip, mac, n));
        }
        Ok(out)
    }

    pub async fn delete_neighbour(&self, n: NeighbourMessage) -> Result<(), NetError> {
        match self.handle.neighbours().del(n).execute().await {
            Ok(()) => Ok(()),
            Err(e) if missing(&e) => Ok(()),
            Err(e) => Err(nl("deleting a neighbour", e)),
        }
    }
}
