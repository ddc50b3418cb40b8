//! A user-space Ethernet switch for QEMU's `-netdev dgram`: a frame a node
//! sends to the hub's unix socket goes to the node that owns its
//! destination MAC (learned from the frames each sends), or, broadcast,
//! multicast or not yet learned, to every other node that has spoken. N
//! VMs share one L2 network with no root, bridge or tap. A node whose
//! socket is full misses the frame (as a switch port drops), rather than
//! stall the others: an emulated VM busy booting must not hold up the
//! cluster's traffic.
//!
//! It sees every frame between the nodes: a [`Capture`]
//! writes them to a pcap file (what tcpdump and wireshark read) while it is
//! on, and [`frames`] reads such a file back, for tests that must look at
//! what crossed the wire.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// pcap's magic (microsecond timestamps), version 2.4, Ethernet link type.
const PCAP_MAGIC: u32 = 0xa1b2_c3d4;
const LINKTYPE_ETHERNET: u32 = 1;
const SNAPLEN: u32 = 65535;

/// The hub's frames into a pcap file, between [`Capture::start`] and
/// [`Capture::stop`].
#[derive(Default)]
pub struct Capture(Mutex<Option<BufWriter<File>>>);

impl Capture {
    /// Starts writing every frame to a new pcap file at `path`.
    pub fn start(&self, path: &Path) -> std::io::Result<()> {
        let mut w = BufWriter::new(File::create(path)?);
        let mut header = Vec::with_capacity(24);
        header.extend(PCAP_MAGIC.to_le_bytes());
        header.extend(2u16.to_le_bytes());
        header.extend(4u16.to_le_bytes());
        header.extend(0i32.to_le_bytes()); // timezone offset
        header.extend(0u32.to_le_bytes()); // timestamp accuracy
        header.extend(SNAPLEN.to_le_bytes());
        header.extend(LINKTYPE_ETHERNET.to_le_bytes());
        w.write_all(&header)?;
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(w);
        Ok(())
    }

    /// Stops and flushes the capture.
    pub fn stop(&self) -> std::io::Result<()> {
        match self.0.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(mut w) => w.flush(),
            None => Ok(()),
        }
    }

    fn frame(&self, data: &[u8]) {
        let mut guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let Some(w) = guard.as_mut() else { return };
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let mut record = Vec::with_capacity(16 + data.len());
        record.extend((now.as_secs() as u32).to_le_bytes());
        record.extend(now.subsec_micros().to_le_bytes());
        record.extend((data.len() as u32).to_le_bytes());
        record.extend((data.len() as u32).to_le_bytes());
        record.extend(data);
        if w.write_all(&record).is_err() {
            *guard = None;
        }
    }
}

/// The frames of a pcap file written by [`Capture`].
pub fn frames(path: &Path) -> std::io::Result<Vec<Vec<u8>>> {
    let mut bytes = vec![];
    File::open(path)?.read_to_end(&mut bytes)?;
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {what}", path.display()));
    if bytes.len() < 24 || bytes[..4] != PCAP_MAGIC.to_le_bytes() {
        return Err(bad("not a little-endian pcap file"));
    }
    let mut out = vec![];
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let len = u32::from_le_bytes([bytes[at + 8], bytes[at + 9], bytes[at + 10], bytes[at + 11]]) as usize;
        let start = at + 16;
        let frame = bytes.get(start..start + len).ok_or_else(|| bad("a frame cut short"))?;
        out.push(frame.to_vec());
        at = start + len;
    }
    Ok(out)
}

/// An IPv4 UDP frame's destination port.
pub fn udp_dst_port(frame: &[u8]) -> Option<u16> {
    // Ethernet (14 bytes, type 0x0800), IPv4 (IHL words, protocol 17).
    if frame.len() < 14 + 20 || frame[12..14] != [0x08, 0x00] || frame[14 + 9] != 17 {
        return None;
    }
    let udp = 14 + usize::from(frame[14] & 0x0f) * 4;
    frame.get(udp + 2..udp + 4).map(|p| u16::from_be_bytes([p[0], p[1]]))
}

/// Runs the hub on `sock` forever.
pub fn run(sock: &Path) -> std::io::Result<()> {
    run_capturing(sock, Arc::default())
}

/// Runs the hub on `sock` forever, every frame also offered to `capture`.
pub fn run_capturing(sock: &Path, capture: Arc<Capture>) -> std::io::Result<()> {
    let _ = std::fs::remove_file(sock);
    let s = UnixDatagram::bind(sock)?;
    let mut peers: BTreeSet<PathBuf> = BTreeSet::new();
    let mut macs: BTreeMap<[u8; 6], PathBuf> = BTreeMap::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, from): (usize, SocketAddr) = s.recv_from(&mut buf)?;
        let Some(from) = from.as_pathname().map(Path::to_path_buf) else { continue };
        let frame = &buf[..n];
        if n < 14 {
            continue;
        }
        capture.frame(frame);
        peers.insert(from.clone());
        let mac = |at: usize| -> [u8; 6] { frame[at..at + 6].try_into().unwrap_or_default() };
        macs.insert(mac(6), from.clone());
        let dst = mac(0);
        let to: Vec<PathBuf> = match macs.get(&dst) {
            Some(p) if dst[0] & 1 == 0 => vec![p.clone()],
            _ => peers.iter().filter(|p| **p != from).cloned().collect(),
        };
        for p in to.iter().filter(|p| **p != from) {
            if let Err(e) = send(&s, frame, p) {
                if e.kind() != std::io::ErrorKind::WouldBlock {
                    peers.remove(p);
                    macs.retain(|_, q| q != p);
                }
            }
        }
    }
}

/// Sends `frame` to `peer` without waiting for room in its socket.
fn send(s: &UnixDatagram, frame: &[u8], peer: &Path) -> std::io::Result<()> {
    let addr = nix::sys::socket::UnixAddr::new(peer).map_err(std::io::Error::from)?;
    nix::sys::socket::sendto(s.as_raw_fd(), frame, &addr, nix::sys::socket::MsgFlags::MSG_DONTWAIT)
        .map(|_| ())
        .map_err(std::io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_capture_reads_back_frame_by_frame() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l2.pcap");
        let c = Capture::default();
        c.frame(b"before");
        c.start(&path).unwrap();
        c.frame(b"one");
        c.frame(b"second frame");
        c.stop().unwrap();
        c.frame(b"after");
        assert_eq!(frames(&path).unwrap(), vec![b"one".to_vec(), b"second frame".to_vec()]);
    }

    #[test]
    fn the_udp_port_of_an_ipv4_frame() {
        let mut f = vec![0u8; 14 + 20 + 8];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[14 + 9] = 17;
        f[14 + 20 + 2..14 + 20 + 4].copy_from_slice(&51821u16.to_be_bytes());
        assert_eq!(udp_dst_port(&f), Some(51821));
        f[14 + 9] = 6;
        assert_eq!(udp_dst_port(&f), None, "TCP");
    }
}
