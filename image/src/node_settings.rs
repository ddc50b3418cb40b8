//! The node's own settings on its kernel command line — hostname, static
//! addresses, advertised address, NTP servers, and how it joins and is
//! claimed — which STATE keeps in `boot/node.cmdline` so that an image
//! whose command line does not name them (one upgrade bundle for a whole
//! cluster, a disk installed from ISO or PXE) keeps the node where it was.
//! PID 1 writes the file at the first boot with a STATE disk and applies
//! it at every boot; the installer writes it from the live system's line.

use crate::cmdline::{ADVERTISE, HOSTNAME, INSECURE_REGISTRIES, IP, JOIN, MAINTENANCE_TOKEN, NTP};

/// Where under STATE the settings are kept.
pub const FILE: &str = "boot/node.cmdline";

/// The keys that are the node's own, not its image's.
pub const KEYS: &[&str] = &[HOSTNAME, IP, ADVERTISE, NTP, JOIN, MAINTENANCE_TOKEN, INSECURE_REGISTRIES];

fn key_of(word: &str) -> Option<&'static str> {
    let key = word.split_once('=')?.0;
    KEYS.iter().find(|k| **k == key).copied()
}

/// The words of `cmdline` that are node settings, in order.
pub fn node_words(cmdline: &str) -> Vec<&str> {
    cmdline.split_whitespace().filter(|w| key_of(w).is_some()).collect()
}

/// The command line to boot with: `booted`, then the remembered words of
/// every key `booted` does not name (all of a repeatable key's words come
/// from one side).
pub fn effective(booted: &str, remembered: &str) -> String {
    let named: Vec<&str> = node_words(booted).into_iter().filter_map(key_of).collect();
    let mut out = booted.trim().to_string();
    for w in node_words(remembered) {
        if key_of(w).is_some_and(|k| !named.contains(&k)) {
            out.push(' ');
            out.push_str(w);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "console=ttyS0 orc.root=PARTLABEL=orc-root-b orc.state=PARTLABEL=orc-state panic=5";

    #[test]
    fn effective_table() {
        let kept = "orc.hostname=w1 orc.ip=eth1:10.42.0.12/24 orc.ip=eth2:10.9.0.1/16 orc.advertise=10.42.0.12:7443\n";
        let cases = [
            // A generic image: every kept setting applies.
            (BASE.to_string(), kept, format!("{BASE} {}", kept.trim())),
            // The booted line names the hostname: its own wins, the rest is kept.
            (
                format!("{BASE} orc.hostname=w9"),
                kept,
                format!("{BASE} orc.hostname=w9 orc.ip=eth1:10.42.0.12/24 orc.ip=eth2:10.9.0.1/16 orc.advertise=10.42.0.12:7443"),
            ),
            // One orc.ip on the booted line replaces both kept ones.
            (
                format!("{BASE} orc.ip=eth1:10.99.0.12/24"),
                kept,
                format!("{BASE} orc.ip=eth1:10.99.0.12/24 orc.hostname=w1 orc.advertise=10.42.0.12:7443"),
            ),
            // Words that are not node settings are never taken from the file.
            (BASE.to_string(), "orc.root=/dev/evil orc.verity=x orc.ntp=pool", format!("{BASE} orc.ntp=pool")),
            // How the node joins and is claimed is its own (kept by an install).
            (BASE.to_string(), "orc.join=T@h orc.maintenance_token=s", format!("{BASE} orc.join=T@h orc.maintenance_token=s")),
            (BASE.to_string(), "", BASE.to_string()),
        ];
        for (booted, kept, want) in cases {
            assert_eq!(effective(&booted, kept), want, "{booted} + {kept}");
        }
    }
}
