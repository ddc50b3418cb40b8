//! A DHCPv4 client: DISCOVER/OFFER/REQUEST/ACK with retries, then renewal at
//! T1 (unicast to the server), rebinding at T2 (broadcast), and a new DORA
//! when the lease runs out. Messages are encoded with `dhcproto`.
//!
//! The socket is UDP bound to port 68 and to the interface (SO_BINDTODEVICE);
//! we set the broadcast flag, so servers answer to 255.255.255.255 and the
//! reply reaches us before the interface has an address.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{FromRawFd, IntoRawFd};
use std::time::Duration;

use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable};
use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn};
use tokio::net::UdpSocket;

use super::NetError;

const SERVER_PORT: u16 = 67;
const CLIENT_PORT: u16 = 68;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub addr: Ipv4Addr,
    pub prefix: u8,
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub server: Ipv4Addr,
    pub lease_secs: u32,
    pub renew_secs: u32,
    pub rebind_secs: u32,
    pub hostname: Option<String>,
    /// NTP servers (option 42).
    pub ntp: Vec<Ipv4Addr>,
}

fn err(iface: &str, msg: impl std::fmt::Display) -> NetError {
    NetError::Dhcp { iface: iface.to_string(), msg: msg.to_string() }
}

/// Builds a client message of type `kind` with transaction `xid`.
pub fn request_message(
    kind: MessageType,
    xid: u32,
    mac: [u8; 6],
    ciaddr: Ipv4Addr,
    requested: Option<(Ipv4Addr, Ipv4Addr)>,
) -> Message {
    let z = Ipv4Addr::UNSPECIFIED;
    let mut m = Message::new_with_id(xid, ciaddr, z, z, z, &mac);
    m.set_opcode(Opcode::BootRequest);
    if ciaddr.is_unspecified() {
        m.set_flags(Flags::default().set_broadcast());
    }
    let o = m.opts_mut();
    o.insert(DhcpOption::MessageType(kind));
    let mut cid = vec![1u8];
    cid.extend_from_slice(&mac);
    o.insert(DhcpOption::ClientIdentifier(cid));
    o.insert(DhcpOption::ParameterRequestList(vec![
        OptionCode::SubnetMask,
        OptionCode::Router,
        OptionCode::DomainNameServer,
        OptionCode::Hostname,
        OptionCode::NtpServers,
        OptionCode::AddressLeaseTime,
        OptionCode::Renewal,
        OptionCode::Rebinding,
    ]));
    if let Some((addr, server)) = requested {
        o.insert(DhcpOption::RequestedIpAddress(addr));
        o.insert(DhcpOption::ServerIdentifier(server));
    }
    m
}

/// Reads a lease out of an OFFER or ACK.
pub fn lease_of(m: &Message) -> Option<Lease> {
    let o = m.opts();
    let server = match o.get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(s)) => *s,
        _ => m.siaddr(),
    };
    let prefix = match o.get(OptionCode::SubnetMask) {
        Some(DhcpOption::SubnetMask(mask)) => u32::from(*mask).count_ones() as u8,
        _ => 24,
    };
    let router = match o.get(OptionCode::Router) {
        Some(DhcpOption::Router(r)) => r.first().copied(),
        _ => None,
    };
    let dns = match o.get(OptionCode::DomainNameServer) {
        Some(DhcpOption::DomainNameServer(d)) => d.clone(),
        _ => vec![],
    };
    let lease_secs = match o.get(OptionCode::AddressLeaseTime) {
        Some(DhcpOption::AddressLeaseTime(t)) => *t,
        _ => 3600,
    };
    let renew_secs = match o.get(OptionCode::Renewal) {
        Some(DhcpOption::Renewal(t)) => *t,
        _ => lease_secs / 2,
    };
    let rebind_secs = match o.get(OptionCode::Rebinding) {
        Some(DhcpOption::Rebinding(t)) => *t,
        _ => lease_secs / 8 * 7,
    };
    let hostname = match o.get(OptionCode::Hostname) {
        Some(DhcpOption::Hostname(h)) => Some(h.clone()),
        _ => None,
    };
    let ntp = match o.get(OptionCode::NtpServers) {
        Some(DhcpOption::NtpServers(n)) => n.clone(),
        _ => Vec::new(),
    };
    if m.yiaddr().is_unspecified() {
        return None;
    }
    Some(Lease { addr: m.yiaddr(), prefix, router, dns, server, lease_secs, renew_secs, rebind_secs, hostname, ntp })
}

fn socket(iface: &str) -> Result<UdpSocket, NetError> {
    let fd =
        socket::socket(AddressFamily::Inet, SockType::Datagram, SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK, None)
            .map_err(|e| err(iface, format!("socket: {e}")))?;
    socket::setsockopt(&fd, sockopt::Broadcast, &true).map_err(|e| err(iface, e))?;
    socket::setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(|e| err(iface, e))?;
    socket::setsockopt(&fd, sockopt::BindToDevice, &std::ffi::OsString::from(iface))
        .map_err(|e| err(iface, format!("bind to device: {e}")))?;
    socket::bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, CLIENT_PORT)),
    )
    .map_err(|e| err(iface, format!("bind port 68: {e}")))?;
    // SAFETY: we own the fd just created and hand it over whole.
    let std_sock = unsafe { std::net::UdpSocket::from_raw_fd(fd.into_raw_fd()) };
    UdpSocket::from_std(std_sock).map_err(|e| err(iface, e))
}

/// Sends `msg` to `to` and waits for a reply of type `want` with the same xid,
/// retrying with exponential backoff (`tries` times, from 1 s).
async fn exchange(
    sock: &UdpSocket,
    iface: &str,
    msg: &Message,
    to: SocketAddrV4,
    want: MessageType,
    tries: u32,
) -> Result<Message, NetError> {
    let bytes = msg.to_vec().map_err(|e| err(iface, e))?;
    let mut wait = Duration::from_secs(1);
    let mut buf = vec![0u8; 1500];
    for _ in 0..tries {
        sock.send_to(&bytes, to).await.map_err(|e| err(iface, format!("send: {e}")))?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let Ok(recv) = tokio::time::timeout_at(deadline, sock.recv_from(&mut buf)).await else { break };
            let (n, _) = recv.map_err(|e| err(iface, format!("recv: {e}")))?;
            let Ok(reply) = Message::decode(&mut Decoder::new(&buf[..n])) else { continue };
            if reply.xid() != msg.xid() || reply.opcode() != Opcode::BootReply {
                continue;
            }
            match reply.opts().msg_type() {
                Some(t) if t == want => return Ok(reply),
                Some(MessageType::Nak) => return Err(err(iface, "server answered NAK")),
                _ => continue,
            }
        }
        wait = (wait * 2).min(Duration::from_secs(16));
    }
    Err(err(iface, format!("no {want:?} after {tries} tries")))
}

fn broadcast() -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::BROADCAST, SERVER_PORT)
}

/// Full DORA: returns the acknowledged lease.
pub async fn acquire(iface: &str, mac: [u8; 6]) -> Result<Lease, NetError> {
    let sock = socket(iface)?;
    let xid = rand::random();
    let discover = request_message(MessageType::Discover, xid, mac, Ipv4Addr::UNSPECIFIED, None);
    let offer = exchange(&sock, iface, &discover, broadcast(), MessageType::Offer, 5).await?;
    let offered = lease_of(&offer).ok_or_else(|| err(iface, "offer without an address"))?;
    let request =
        request_message(MessageType::Request, xid, mac, Ipv4Addr::UNSPECIFIED, Some((offered.addr, offered.server)));
    let ack = exchange(&sock, iface, &request, broadcast(), MessageType::Ack, 4).await?;
    lease_of(&ack).ok_or_else(|| err(iface, "ACK without an address"))
}

/// Keeps the lease: renew at T1, rebind at T2, start over at expiry. Runs forever.
pub async fn maintain(iface: String, mac: [u8; 6], mut lease: Lease) {
    loop {
        tokio::time::sleep(Duration::from_secs(lease.renew_secs.max(10) as u64)).await;
        let renewed = async {
            let sock = socket(&iface)?;
            let req = request_message(MessageType::Request, rand::random(), mac, lease.addr, None);
            match exchange(&sock, &iface, &req, SocketAddrV4::new(lease.server, SERVER_PORT), MessageType::Ack, 3).await
            {
                Ok(ack) => Ok(ack),
                Err(_) => exchange(&sock, &iface, &req, broadcast(), MessageType::Ack, 3).await,
            }
        }
        .await;
        match renewed.map(|ack| lease_of(&ack)) {
            Ok(Some(l)) if l.addr == lease.addr => {
                tracing::debug!(iface = %iface, lease_secs = l.lease_secs, "DHCP lease renewed");
                super::publish(&l);
                lease = l;
            }
            other => {
                tracing::warn!(iface = %iface, result = ?other.err(), "DHCP renewal failed, starting over");
                match acquire(&iface, mac).await {
                    Ok(l) => {
                        super::publish(&l);
                        lease = l;
                    }
                    Err(e) => tracing::warn!(iface = %iface, error = %e, "DHCP failed"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discover_is_broadcast_with_client_id() {
        let mac = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
        let m = request_message(MessageType::Discover, 7, mac, Ipv4Addr::UNSPECIFIED, None);
        assert!(m.flags().broadcast());
        assert_eq!(m.xid(), 7);
        assert_eq!(&m.chaddr()[..6], &mac);
        assert_eq!(m.opts().msg_type(), Some(MessageType::Discover));
        let bytes = m.to_vec().unwrap();
        let back = Message::decode(&mut Decoder::new(&bytes)).unwrap();
        assert_eq!(back.xid(), 7);
    }

    #[test]
    fn lease_from_ack() {
        let mut m = Message::new_with_id(
            9,
            Ipv4Addr::UNSPECIFIED,
            [10, 0, 2, 15].into(),
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            &[0; 6],
        );
        m.set_opcode(Opcode::BootReply);
        let o = m.opts_mut();
        o.insert(DhcpOption::MessageType(MessageType::Ack));
        o.insert(DhcpOption::ServerIdentifier([10, 0, 2, 2].into()));
        o.insert(DhcpOption::SubnetMask([255, 255, 255, 0].into()));
        o.insert(DhcpOption::Router(vec![[10, 0, 2, 2].into()]));
        o.insert(DhcpOption::DomainNameServer(vec![[10, 0, 2, 3].into()]));
        o.insert(DhcpOption::AddressLeaseTime(86400));
        o.insert(DhcpOption::NtpServers(vec![[10, 0, 2, 4].into(), [10, 0, 2, 5].into()]));
        let l = lease_of(&m).unwrap();
        assert_eq!(l.ntp, vec![Ipv4Addr::new(10, 0, 2, 4), Ipv4Addr::new(10, 0, 2, 5)]);
        assert_eq!(l.addr, Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(l.prefix, 24);
        assert_eq!(l.router, Some(Ipv4Addr::new(10, 0, 2, 2)));
        assert_eq!(l.dns, vec![Ipv4Addr::new(10, 0, 2, 3)]);
        assert_eq!(l.renew_secs, 43200);
        assert_eq!(l.rebind_secs, 75600);
    }
}
