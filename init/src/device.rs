//! Block devices the command line names: a path (`/dev/vda`), or a GPT
//! partition by its name (`PARTLABEL=orc-root-a`), which is how the disk
//! image's slots and STATE are named whatever the disk is called
//! (`vda`, `sda`, `nvme0n1`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The prefix of a partition named by its GPT name.
pub const PARTLABEL: &str = "PARTLABEL=";

/// The device `spec` names, if it is there now: `spec` itself when it is a
/// path; for `PARTLABEL=NAME`, the partition whose `uevent` under
/// `sys_block` says `PARTNAME=NAME`, under `dev`.
pub fn resolve(spec: &str, sys_block: &Path, dev: &Path) -> Option<PathBuf> {
    let Some(label) = spec.strip_prefix(PARTLABEL) else {
        let p = PathBuf::from(spec);
        return p.exists().then_some(p);
    };
    orc_image::disk::partition_named(sys_block, dev, label)
}

/// [`resolve`] against the running system, waiting up to `limit` for the
/// device to appear (drivers probe and partitions are read asynchronously).
pub fn wait_for(spec: &str, limit: Duration) -> Option<PathBuf> {
    let start = Instant::now();
    loop {
        if let Some(p) = resolve(spec, Path::new("/sys/class/block"), Path::new("/dev")) {
            return Some(p);
        }
        if start.elapsed() >= limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_found_by_their_gpt_name() {
        let d = tempfile::tempdir().unwrap();
        let (sys, dev) = (d.path().join("sys"), d.path().join("dev"));
        for (n, uevent) in [
            ("vda", "MAJOR=254\nMINOR=0\nDEVNAME=vda\nDEVTYPE=disk\n"),
            ("vda2", "MAJOR=254\nMINOR=2\nDEVNAME=vda2\nDEVTYPE=partition\nPARTN=2\nPARTNAME=orc-root-a\n"),
            ("vda3", "MAJOR=254\nMINOR=3\nDEVNAME=vda3\nDEVTYPE=partition\nPARTN=3\nPARTNAME=orc-root-b\n"),
        ] {
            std::fs::create_dir_all(sys.join(n)).unwrap();
            std::fs::write(sys.join(n).join("uevent"), uevent).unwrap();
        }
        std::fs::create_dir_all(&dev).unwrap();
        std::fs::write(dev.join("vda2"), "").unwrap();
        assert_eq!(resolve("PARTLABEL=orc-root-a", &sys, &dev), Some(dev.join("vda2")));
        assert_eq!(resolve("PARTLABEL=orc-root-b", &sys, &dev), None, "its node is not there yet");
        assert_eq!(resolve("PARTLABEL=orc-root", &sys, &dev), None, "whole names only");
        let path = dev.join("vda2").display().to_string();
        assert_eq!(resolve(&path, &sys, &dev), Some(dev.join("vda2")));
        assert_eq!(resolve("/nonexistent/vdz", &sys, &dev), None);
    }
}
