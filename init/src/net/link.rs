//! The few rtnetlink calls PID 1 needs.

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

use super::NetError;

pub struct Netlink {
    handle: Handle,
}

fn nl(e: impl std::fmt::Display) -> NetError {
    NetError::Netlink(e.to_string())
}

impl Netlink {
    pub async fn connect() -> Result<Self, NetError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(nl)?;
        tokio::spawn(conn);
        Ok(Self { handle })
    }

    async fn index(&self, iface: &str) -> Result<u32, NetError> {
        let mut links = self.handle.link().get().match_name(iface.to_string()).execute();
        match links.try_next().await.map_err(|e| NetError::Netlink(format!("{iface}: {e}")))? {
            Some(l) => Ok(l.header.index),
            None => Err(NetError::Netlink(format!("no interface {iface}"))),
        }
    }

    pub async fn up(&self, iface: &str) -> Result<(), NetError> {
        let idx = self.index(iface).await?;
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(idx).up().build())
            .execute()
            .await
            .map_err(|e| NetError::Netlink(format!("set {iface} up: {e}")))
    }

    /// Adds an address; an address already present is fine.
    pub async fn add_addr(&self, iface: &str, addr: Ipv4Addr, prefix: u8) -> Result<(), NetError> {
        let idx = self.index(iface).await?;
        match self.handle.address().add(idx, IpAddr::V4(addr), prefix).execute().await {
            Ok(()) => Ok(()),
            Err(e) if e.to_string().contains("File exists") => Ok(()),
            Err(e) => Err(NetError::Netlink(format!("add {addr}/{prefix} to {iface}: {e}"))),
        }
    }

    /// Adds a default route through `gw`; an existing one is kept.
    pub async fn default_route(&self, gw: Ipv4Addr) -> Result<(), NetError> {
        let msg = RouteMessageBuilder::<Ipv4Addr>::new().gateway(gw).build();
        match self.handle.route().add(msg).execute().await {
            Ok(()) => Ok(()),
            Err(e) if e.to_string().contains("File exists") => Ok(()),
            Err(e) => Err(NetError::Netlink(format!("default route via {gw}: {e}"))),
        }
    }
}
