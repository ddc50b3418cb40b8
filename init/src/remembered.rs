//! The node's own settings — hostname, static addresses, advertised
//! address, NTP servers — as the command line of its first boot with a
//! STATE disk gave them, kept at `STATE/boot/node.cmdline`, so that a later
//! image whose command line does not name them (one upgrade bundle for a
//! whole cluster, an image installed from ISO or PXE) keeps the node where
//! it was. A key the booted command line names wins for that boot. The
//! file is written once: no later boot changes it, so a broken upgrade
//! cannot change what the node falls back to.

use std::io;
use std::path::Path;

use orc_image::cmdline::{ADVERTISE, HOSTNAME, IP, NTP};

/// Where under STATE the settings are kept.
pub const FILE: &str = "boot/node.cmdline";

/// The keys that are the node's own, not its image's.
pub const KEYS: &[&str] = &[HOSTNAME, IP, ADVERTISE, NTP];

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

/// At boot with STATE mounted at `state`: writes the file if it is not
/// there and `booted` names node settings, and returns the command line
/// to boot with.
pub fn apply(state: &Path, booted: &str) -> io::Result<String> {
    let path = state.join(FILE);
    match std::fs::read_to_string(&path) {
        Ok(remembered) => Ok(effective(booted, &remembered)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let words = node_words(booted);
            if !words.is_empty() {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let tmp = path.with_extension("partial");
                std::fs::write(&tmp, format!("{}\n", words.join(" ")))?;
                std::fs::File::open(&tmp)?.sync_all()?;
                std::fs::rename(&tmp, &path)?;
                tracing::info!(path = %path.display(), settings = %words.join(" "), "node settings kept on STATE");
            }
            Ok(booted.trim().to_string())
        }
        Err(e) => Err(e),
    }
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
            (BASE.to_string(), "orc.root=/dev/evil orc.join=T@h orc.ntp=pool", format!("{BASE} orc.ntp=pool")),
            (BASE.to_string(), "", BASE.to_string()),
        ];
        for (booted, kept, want) in cases {
            assert_eq!(effective(&booted, kept), want, "{booted} + {kept}");
        }
    }

    #[test]
    fn written_once_by_the_first_boot_that_names_settings() {
        let dir = tempfile::tempdir().unwrap();
        // No settings on the line: nothing kept.
        assert_eq!(apply(dir.path(), BASE).unwrap(), BASE);
        assert!(!dir.path().join(FILE).exists());
        let first = format!("{BASE} orc.hostname=w1 orc.advertise=10.42.0.12:7443");
        assert_eq!(apply(dir.path(), &first).unwrap(), first);
        assert_eq!(
            std::fs::read_to_string(dir.path().join(FILE)).unwrap(),
            "orc.hostname=w1 orc.advertise=10.42.0.12:7443\n"
        );
        // A later (broken) image names other settings: used for its boot, not kept.
        let broken = format!("{BASE} orc.hostname=bad");
        assert_eq!(apply(dir.path(), &broken).unwrap(), format!("{broken} orc.advertise=10.42.0.12:7443"));
        assert_eq!(apply(dir.path(), BASE).unwrap(), format!("{BASE} orc.hostname=w1 orc.advertise=10.42.0.12:7443"));
    }
}
