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

pub use orc_image::node_settings::FILE;
use orc_image::node_settings::{effective, node_words};

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
