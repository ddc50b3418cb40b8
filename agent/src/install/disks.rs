//! The node's disks and which one an install may take. The node has no
//! udev, so the names people use (`/dev/disk/by-id/virtio-SERIAL`,
//! `nvme-MODEL_SERIAL`, `ata-MODEL_SERIAL`, `wwn-0x…`) are worked out
//! from sysfs the way udev's persistent-storage rules name them.
//!
//! The rules: only the disk named; a whole disk, not a partition; not
//! read-only; not in use (mounted, or holding a device-mapper or loop
//! device: the disk the node runs from); big enough for orc's layout; and
//! blank — zeros in its first and last MiB, where partition tables and
//! filesystems say they are there — unless the operator said `--wipe`.

use std::path::{Path, PathBuf};

use orc_image::state_fs::{self, Probe};

use super::InstallError;

/// How a disk is named under `/dev/disk/by-id/`.
pub const BY_ID: &str = "/dev/disk/by-id/";
const MIB: u64 = 1 << 20;

/// A whole disk of the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// `vda`, `sda`, `nvme0n1`.
    pub name: String,
    pub dev: PathBuf,
    pub size: u64,
    /// Its names under [`BY_ID`].
    pub by_id: Vec<String>,
    pub read_only: bool,
}

impl std::fmt::Display for Disk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({} MiB", self.dev.display(), self.size / MIB)?;
        for n in &self.by_id {
            write!(f, ", {BY_ID}{n}")?;
        }
        f.write_str(")")
    }
}

fn attr(dir: &Path, name: &str) -> Option<String> {
    let v = std::fs::read_to_string(dir.join(name)).ok()?;
    let v = v.trim();
    (!v.is_empty()).then(|| v.to_string())
}

/// udev's way of making a model or serial a name: runs of whitespace
/// become one `_`, and what is not ASCII printable goes.
fn id_part(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join("_").chars().filter(|c| c.is_ascii_graphic()).collect()
}

/// The serial number in a SCSI VPD page 0x80 (unit serial number).
fn vpd_serial(page: &[u8]) -> Option<String> {
    let len = usize::from(*page.get(3)?);
    let s = String::from_utf8_lossy(page.get(4..4 + len)?).trim().to_string();
    (!s.is_empty()).then_some(s)
}

/// The by-id names of disk `name` (its directory under `sys_block`).
pub fn by_id_names(sys_block: &Path, name: &str) -> Vec<String> {
    let dir = sys_block.join(name);
    let device = dir.join("device");
    let mut names = Vec::new();
    if name.starts_with("vd") {
        if let Some(serial) = attr(&dir, "serial") {
            names.push(format!("virtio-{}", id_part(&serial)));
        }
    } else if name.starts_with("nvme") {
        if let (Some(model), Some(serial)) = (attr(&device, "model"), attr(&device, "serial")) {
            names.push(format!("nvme-{}_{}", id_part(&model), id_part(&serial)));
        }
        if let Some(wwid) = attr(&dir, "wwid") {
            names.push(format!("nvme-{}", id_part(&wwid)));
        }
    } else if name.starts_with("sd") {
        let ata = std::fs::read_link(&device).is_ok_and(|p| p.to_string_lossy().contains("/ata"));
        let serial = std::fs::read(device.join("vpd_pg80")).ok().and_then(|p| vpd_serial(&p));
        if let (true, Some(model), Some(serial)) = (ata, attr(&device, "model"), serial) {
            names.push(format!("ata-{}_{}", id_part(&model), id_part(&serial)));
        }
        if let Some(naa) = attr(&device, "wwid").and_then(|w| w.strip_prefix("naa.").map(str::to_string)) {
            names.push(format!("wwn-0x{}", naa.to_lowercase()));
        }
    }
    names
}

/// The whole disks under `sys_block` (`/sys/class/block`), their nodes
/// under `dev`: no partitions, loop, RAM, device-mapper or CD devices.
pub fn list(sys_block: &Path, dev: &Path) -> Vec<Disk> {
    let mut names: Vec<String> = std::fs::read_dir(sys_block)
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
        .into_iter()
        .filter(|n| !["loop", "ram", "dm-", "sr", "zram", "md"].iter().any(|p| n.starts_with(p)))
        .filter(|n| !sys_block.join(n).join("partition").exists())
        .filter_map(|n| {
            let dir = sys_block.join(&n);
            let sectors: u64 = attr(&dir, "size")?.parse().ok()?;
            (sectors > 0).then(|| Disk {
                dev: dev.join(&n),
                size: sectors * 512,
                by_id: by_id_names(sys_block, &n),
                read_only: attr(&dir, "ro").as_deref() == Some("1"),
                name: n,
            })
        })
        .collect()
}

/// The disk `spec` names: `/dev/disk/by-id/NAME` or `/dev/NAME`. A
/// partition is refused, naming its disk; an unknown name is refused with
/// the node's disks listed.
pub fn resolve<'a>(spec: &str, disks: &'a [Disk], sys_block: &Path) -> Result<&'a Disk, InstallError> {
    let found = match spec.strip_prefix(BY_ID) {
        Some(id) => disks.iter().find(|d| d.by_id.iter().any(|n| n == id)),
        None => {
            let name = spec.strip_prefix("/dev/").unwrap_or(spec);
            if sys_block.join(name).join("partition").exists() {
                let disk = std::fs::read_link(sys_block.join(name))
                    .ok()
                    .and_then(|p| p.parent().and_then(|d| d.file_name()).map(|d| d.to_string_lossy().into_owned()))
                    .unwrap_or_else(|| "its disk".into());
                return Err(InstallError::Partition { spec: spec.into(), disk });
            }
            disks.iter().find(|d| d.name == name)
        }
    };
    found.ok_or_else(|| InstallError::NoSuchDisk {
        spec: spec.into(),
        disks: if disks.is_empty() {
            "none".into()
        } else {
            disks.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
        },
    })
}

/// Why `disk` is in use, if it is: a mount of it or of one of its
/// partitions (`mountinfo`: `/proc/self/mountinfo`), or a device on top of
/// it (`holders/` in sysfs: dm-verity over the root the node runs from).
pub fn in_use(disk: &Disk, sys_block: &Path, mountinfo: &str) -> Option<String> {
    let dir = sys_block.join(&disk.name);
    let mut parts: Vec<String> = std::fs::read_dir(&dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&disk.name) && dir.join(n).join("partition").exists())
                .collect()
        })
        .unwrap_or_default();
    parts.sort();
    for name in std::iter::once(disk.name.clone()).chain(parts) {
        let d = if name == disk.name { dir.clone() } else { dir.join(&name) };
        if let Ok(mut holders) = std::fs::read_dir(d.join("holders")) {
            if let Some(h) = holders.next().and_then(Result::ok) {
                return Some(format!("/dev/{name} holds /dev/{}", h.file_name().to_string_lossy()));
            }
        }
        if let Some(devno) = attr(&d, "dev") {
            // mountinfo: id parent major:minor root mountpoint ...
            if let Some(at) = mountinfo.lines().find_map(|l| {
                let mut f = l.split_whitespace().skip(2);
                (f.next() == Some(devno.as_str())).then(|| f.nth(1).unwrap_or("?").to_string())
            }) {
                return Some(format!("/dev/{name} is mounted at {at}"));
            }
        }
    }
    None
}

/// Checks `disk` against the rules (`head` and `tail`: its first and last
/// MiB; `in_use`: from [`in_use`]).
pub fn check(disk: &Disk, wipe: bool, head: &[u8], tail: &[u8], in_use: Option<String>) -> Result<(), InstallError> {
    if disk.read_only {
        return Err(InstallError::ReadOnly(disk.to_string()));
    }
    if let Some(why) = in_use {
        return Err(InstallError::InUse { disk: disk.to_string(), why });
    }
    if disk.size < orc_image::disk::MIN_DISK {
        return Err(InstallError::TooSmall { disk: disk.to_string(), need: orc_image::disk::MIN_DISK / MIB });
    }
    if !wipe {
        let holds = match state_fs::probe(head) {
            Probe::Blank if tail.iter().all(|b| *b == 0) => None,
            Probe::Blank => Some("data at its end (a backup GPT, or RAID metadata)".to_string()),
            p => Some(p.to_string()),
        };
        if let Some(holds) = holds {
            return Err(InstallError::NotBlank { disk: disk.to_string(), holds });
        }
    }
    Ok(())
}

/// The first and last MiB of `disk`.
pub fn ends(disk: &Disk) -> Result<(Vec<u8>, Vec<u8>), InstallError> {
    let head = state_fs::read_head(&disk.dev)?;
    let tail = state_fs::read_at(&disk.dev, disk.size.saturating_sub(MIB), MIB as usize)?;
    Ok((head, tail))
}

/// The node of partition `n` of `disk` (`vda4`, `nvme0n1p4`), once the
/// kernel made it.
pub fn partition(disk: &Disk, sys_block: &Path, dev: &Path, n: u32) -> Option<PathBuf> {
    let dir = sys_block.join(&disk.name);
    std::fs::read_dir(&dir).ok()?.flatten().find_map(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        let is_n = attr(&dir.join(&name), "partition").and_then(|p| p.parse::<u32>().ok()) == Some(n);
        let node = dev.join(&name);
        (is_n && name.starts_with(&disk.name) && node.exists()).then_some(node)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake disk: name, size in sectors, files under its directory.
    type FakeDisk<'a> = (&'a str, u64, &'a [(&'a str, &'a str)]);

    /// A fake sysfs of `disks`.
    fn sysfs(root: &Path, disks: &[FakeDisk]) -> (PathBuf, PathBuf) {
        let (sys, dev) = (root.join("sys"), root.join("dev"));
        std::fs::create_dir_all(&dev).unwrap();
        for (name, sectors, files) in disks {
            let d = sys.join(name);
            std::fs::create_dir_all(d.join("device")).unwrap();
            std::fs::write(d.join("size"), format!("{sectors}\n")).unwrap();
            std::fs::write(d.join("ro"), "0\n").unwrap();
            for (f, v) in *files {
                let p = d.join(f);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(p, v).unwrap();
            }
            std::fs::write(dev.join(name), b"").unwrap();
        }
        (sys, dev)
    }

    const GIB: u64 = 2 * 1024 * 1024;

    #[test]
    fn disks_are_named_as_udev_names_them() {
        let d = tempfile::tempdir().unwrap();
        let (sys, dev) = sysfs(
            d.path(),
            &[
                ("vda", 4 * GIB, &[("serial", "orc-install\n")]),
                ("nvme0n1", 8 * GIB, &[("device/model", "Samsung SSD 980  \n"), ("device/serial", "S64ANS0T\n")]),
                ("loop0", GIB, &[]),
                ("sr0", GIB, &[]),
                ("vdb", 0, &[]),
            ],
        );
        // A partition of vda is not a disk.
        std::fs::create_dir_all(sys.join("vda1")).unwrap();
        std::fs::write(sys.join("vda1/partition"), "1\n").unwrap();
        std::fs::write(sys.join("vda1/size"), "100\n").unwrap();
        let disks = list(&sys, &dev);
        let names: Vec<(&str, &[String])> = disks.iter().map(|d| (d.name.as_str(), d.by_id.as_slice())).collect();
        assert_eq!(
            names,
            [
                ("nvme0n1", &["nvme-Samsung_SSD_980_S64ANS0T".to_string()][..]),
                ("vda", &["virtio-orc-install".to_string()][..])
            ]
        );
        assert_eq!(resolve("/dev/disk/by-id/virtio-orc-install", &disks, &sys).unwrap().name, "vda");
        assert_eq!(resolve("/dev/nvme0n1", &disks, &sys).unwrap().name, "nvme0n1");
        let e = resolve("/dev/disk/by-id/virtio-other", &disks, &sys).unwrap_err().to_string();
        assert!(e.contains("/vda (4096 MiB, /dev/disk/by-id/virtio-orc-install)"), "{e}");
        let e = resolve("/dev/vda1", &disks, &sys).unwrap_err().to_string();
        assert!(e.contains("is a partition"), "{e}");
        assert!(vpd_serial(b"\0\x80\0\x09 WD-12345").is_some_and(|s| s == "WD-12345"));
    }

    #[test]
    fn only_a_blank_unused_big_enough_disk_unless_wiped() {
        let disk = |size: u64, ro: bool| Disk {
            name: "vda".into(),
            dev: "/dev/vda".into(),
            size,
            by_id: vec![],
            read_only: ro,
        };
        let zeros = vec![0u8; MIB as usize];
        let mut gpt = zeros.clone();
        gpt[512..520].copy_from_slice(b"EFI PART");
        let big = 4 << 30;
        assert!(check(&disk(big, false), false, &zeros, &zeros, None).is_ok());
        let e = check(&disk(big, false), false, &gpt, &zeros, None).unwrap_err().to_string();
        assert!(e.contains("holds a GPT partition table") && e.contains("--wipe"), "{e}");
        assert!(check(&disk(big, false), true, &gpt, &zeros, None).is_ok(), "--wipe takes it");
        let e = check(&disk(big, false), false, &zeros, &[1u8; 16], None).unwrap_err().to_string();
        assert!(e.contains("data at its end"), "{e}");
        // Never a disk in use or read-only, not even with --wipe.
        let e = check(&disk(big, false), true, &zeros, &zeros, Some("/dev/vda2 holds /dev/dm-0".into()));
        assert!(e.unwrap_err().to_string().contains("in use"));
        assert!(matches!(check(&disk(big, true), true, &zeros, &zeros, None), Err(InstallError::ReadOnly(_))));
        assert!(matches!(
            check(&disk(512 * MIB, false), true, &zeros, &zeros, None),
            Err(InstallError::TooSmall { .. })
        ));
    }

    #[test]
    fn a_mounted_or_held_disk_is_in_use() {
        let d = tempfile::tempdir().unwrap();
        let (sys, _) = sysfs(d.path(), &[("vda", 4 * GIB, &[("dev", "254:0\n")])]);
        for (p, n) in [("vda2", "254:2"), ("vda4", "254:4")] {
            std::fs::create_dir_all(sys.join("vda").join(p).join("holders")).unwrap();
            std::fs::write(sys.join("vda").join(p).join("partition"), "2\n").unwrap();
            std::fs::write(sys.join("vda").join(p).join("dev"), format!("{n}\n")).unwrap();
        }
        let vda = Disk { name: "vda".into(), dev: "/dev/vda".into(), size: 1, by_id: vec![], read_only: false };
        let mounts = "22 1 0:21 / /proc rw - proc proc rw\n40 30 254:4 / /var/lib/orc rw - ext4 /dev/vda4 rw\n";
        assert_eq!(in_use(&vda, &sys, mounts).as_deref(), Some("/dev/vda4 is mounted at /var/lib/orc"));
        assert_eq!(in_use(&vda, &sys, ""), None);
        std::fs::create_dir_all(sys.join("vda/vda2/holders/dm-0")).unwrap();
        assert_eq!(in_use(&vda, &sys, "").as_deref(), Some("/dev/vda2 holds /dev/dm-0"));
    }
}
