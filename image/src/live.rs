//! The live image: what a machine boots from an ISO or over the network
//! before (or instead of) an install. The root image travels inside the
//! initramfs (`/root.img`, a second cpio archive appended to the usual
//! one: the kernel unpacks both), so a live boot needs no driver for the
//! medium it came from (CD, USB stick, BMC virtual media, TFTP or HTTP);
//! PID 1 puts it on a loop device and dm-verity checks it like a slot.
//! STATE is the disk labelled `ORC_STATE` when there is one, tmpfs
//! otherwise (a diskless worker).
//!
//! | artifact | for |
//! |---|---|
//! | `orc-live.efi` | a unified kernel image of the live system: UEFI network boot, and the ISO's UEFI loader |
//! | `orc.iso` | a hybrid ISO: BIOS (isolinux) and UEFI (El Torito and a GPT ESP), from a CD or written to a USB stick |
//! | `pxe/` | `vmlinuz`, `initramfs.img`, `boot.ipxe` (iPXE, BIOS or UEFI) and `orc-live.efi` |

use std::path::Path;

use crate::initramfs::Initramfs;

/// Where the root image is in a live initramfs.
pub const ROOT_IN_INITRD: &str = "/root.img";
/// The live unified kernel image.
pub const LIVE_UKI: &str = "orc-live.efi";
/// The hybrid ISO.
pub const ISO: &str = "orc.iso";
/// The directory of the PXE artifacts.
pub const PXE_DIR: &str = "pxe";
/// The iPXE script in it.
pub const IPXE_SCRIPT: &str = "boot.ipxe";

/// The live system's kernel command line (`verity`: its root's dm-verity
/// value). The serial console last: it is `/dev/console`.
pub fn cmdline(verity: &str) -> String {
    format!(
        "console=tty0 console=ttyS0 panic=10 printk.devkmsg=on {}=initrd:{ROOT_IN_INITRD} {}={verity}",
        crate::cmdline::ROOT,
        crate::cmdline::VERITY
    )
}

/// The archive appended to the initramfs every node boots to make the
/// live one: `root` as [`ROOT_IN_INITRD`] (bare cpio; the build
/// compresses it with zstd, which the kernel unpacks, so that the live
/// UKI fits in El Torito's 32 MiB for UEFI CD boot).
pub fn root_archive(root: &Path) -> std::io::Result<Vec<u8>> {
    let data = std::fs::read(root).map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", root.display())))?;
    let mut a = Initramfs::new();
    a.file(ROOT_IN_INITRD, 0o444, data);
    let mut out = Vec::new();
    a.write_cpio(&mut out)?;
    Ok(out)
}

/// The iPXE script of the PXE directory: the kernel and the live
/// initramfs from where the script came from (TFTP or HTTP), with
/// `cmdline` and then `${orc-args}` if the DHCP server or an embedded
/// script set it (`set orc-args orc.join=TOKEN@ADDR` makes every node
/// that boots it join by itself).
pub fn ipxe_script(cmdline: &str) -> String {
    format!(
        "#!ipxe\n\
         # orc, live over the network. Nodes join by themselves with\n\
         # `set orc-args orc.join=TOKEN@ADDR` before this script runs.\n\
         kernel vmlinuz initrd=initramfs.img {cmdline} ${{orc-args}}\n\
         initrd initramfs.img\n\
         boot\n"
    )
}

/// isolinux's configuration on the ISO (BIOS): boot the live system at once.
pub fn isolinux_cfg(cmdline: &str) -> String {
    format!("default orc\nprompt 0\ntimeout 0\nlabel orc\n  kernel /live/vmlinuz\n  initrd /live/initramfs.img\n  append {cmdline}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_live_root_is_a_file_in_the_initramfs_and_verified() {
        let c = cmdline("abc,4096,100");
        assert!(c.contains("orc.root=initrd:/root.img orc.verity=abc,4096,100"), "{c}");
        assert!(c.ends_with("orc.verity=abc,4096,100") && c.contains("console=ttyS0 "), "{c}");
        assert!(!c.contains("orc.state="), "STATE: a disk labelled ORC_STATE, or tmpfs");
    }

    #[test]
    fn the_root_archive_holds_the_root_image() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        std::fs::write(&root, vec![9u8; 5000]).unwrap();
        let a = root_archive(&root).unwrap();
        assert!(a.starts_with(b"070701"), "a newc archive");
        let name = &ROOT_IN_INITRD.as_bytes()[1..];
        assert!(a.windows(name.len()).any(|w| w == name), "root.img in it");
        assert!(a.windows(5000).any(|w| w.iter().all(|b| *b == 9)), "with its bytes");
        assert!(a.windows(10).any(|w| w == b"TRAILER!!!"), "and its trailer");
        assert!(root_archive(&d.path().join("nope")).unwrap_err().to_string().contains("nope"));
    }

    #[test]
    fn ipxe_and_isolinux_boot_the_live_system_with_its_command_line() {
        let s = ipxe_script("console=ttyS0 orc.root=initrd:/root.img");
        assert!(s.starts_with("#!ipxe\n"));
        assert!(s.contains("kernel vmlinuz initrd=initramfs.img console=ttyS0 orc.root=initrd:/root.img ${orc-args}\n"));
        assert!(s.contains("initrd initramfs.img\nboot\n"));
        let c = isolinux_cfg("x=1");
        assert!(c.contains("kernel /live/vmlinuz\n  initrd /live/initramfs.img\n  append x=1\n"), "{c}");
    }
}
