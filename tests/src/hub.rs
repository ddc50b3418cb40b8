//! A user-space Ethernet hub for QEMU's `-netdev dgram`: every frame a node
//! sends to the hub's unix socket goes to every other node that has spoken.
//! N VMs share one L2 network with no root, bridge or tap.

use std::collections::BTreeSet;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::{Path, PathBuf};

/// Runs the hub on `sock` forever.
pub fn run(sock: &Path) -> std::io::Result<()> {
    let _ = std::fs::remove_file(sock);
    let s = UnixDatagram::bind(sock)?;
    let mut peers: BTreeSet<PathBuf> = BTreeSet::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, from): (usize, SocketAddr) = s.recv_from(&mut buf)?;
        let Some(from) = from.as_pathname().map(Path::to_path_buf) else { continue };
        peers.insert(from.clone());
        let mut gone = vec![];
        for p in peers.iter().filter(|p| **p != from) {
            if s.send_to(&buf[..n], p).is_err() {
                gone.push(p.clone());
            }
        }
        for g in gone {
            peers.remove(&g);
        }
    }
}
