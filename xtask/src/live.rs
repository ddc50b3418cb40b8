//! The live artifacts of `cargo xtask image` ([`orc_image::live`]): the
//! live unified kernel image, the PXE directory and the hybrid ISO
//! (xorriso + isolinux for BIOS, a FAT ESP holding the live UKI for UEFI).
//! No root needed; two builds give the same bytes (every date in the ISO
//! is [`EPOCH`], the FAT's and the GPT's ids are fixed).

use std::path::Path;
use std::process::Command;

use anyhow::Context;
use orc_image::live::{self, IPXE_SCRIPT, ISO, LIVE_UKI, PXE_DIR};

/// Every date in the ISO (SOURCE_DATE_EPOCH): 2026-01-01.
const EPOCH: u64 = 1_767_225_600;
/// Debian's isolinux and its one module.
const ISOLINUX_BIN: &str = "/usr/lib/ISOLINUX/isolinux.bin";
const ISOHYBRID_MBR: &str = "/usr/lib/ISOLINUX/isohdpfx.bin";
const LDLINUX: &str = "/usr/lib/syslinux/modules/bios/ldlinux.c32";
/// The most an El Torito boot image can be (a 16-bit count of 512-byte sectors).
const ELTORITO_MAX: u64 = 65_535 * 512;
/// The live initramfs (`out`'s, beside the base one).
pub const LIVE_INITRAMFS: &str = "live-initramfs.img";

/// Builds the live artifacts from `out`'s `vmlinuz`, `initramfs.img` and
/// `root.img`; `verity` is the root's dm-verity value.
pub fn build(out: &Path, work: &Path, version: &str, rev: &str, verity: &str) -> anyhow::Result<()> {
    eprintln!("xtask: building the live system (ISO, PXE)");
    let cmdline = live::cmdline(verity);
    let initramfs = out.join(LIVE_INITRAMFS);
    write_initramfs(&out.join("initramfs.img"), &out.join("root.img"), &initramfs)?;
    let parts = orc_image::uki::UkiParts {
        stub: Path::new(orc_image::uki::STUB),
        kernel: &out.join("vmlinuz"),
        initrd: &initramfs,
        cmdline: &cmdline,
        os_release: &orc_image::uki::os_release(version, rev),
    };
    orc_image::uki::build(&parts, work, &out.join(LIVE_UKI))?;
    pxe(out, &initramfs, &cmdline)?;
    iso(out, work, &initramfs, &cmdline)
}

/// The live initramfs: `base` and then the root's archive, zstd-compressed
/// (single-threaded at a fixed level: the same bytes every build).
fn write_initramfs(base: &Path, root: &Path, out: &Path) -> anyhow::Result<()> {
    use std::io::Write;
    let mut zstd = Command::new("zstd")
        .args(["-19", "-q", "-c", "-T1"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("running zstd (cargo xtask installs the zstd package)")?;
    let archive = live::root_archive(root)?;
    let mut stdin = zstd.stdin.take().context("zstd's stdin")?;
    let feed = std::thread::spawn(move || stdin.write_all(&archive));
    let done = zstd.wait_with_output()?;
    feed.join().map_err(|_| anyhow::anyhow!("feeding zstd panicked"))??;
    anyhow::ensure!(done.status.success(), "zstd failed compressing the live root");
    let mut bytes = std::fs::read(base).with_context(|| format!("reading {}", base.display()))?;
    bytes.extend_from_slice(&done.stdout);
    std::fs::write(out, bytes).with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

/// `pxe/`: what a TFTP or HTTP server hands out.
fn pxe(out: &Path, initramfs: &Path, cmdline: &str) -> anyhow::Result<()> {
    let dir = out.join(PXE_DIR);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    std::fs::copy(out.join("vmlinuz"), dir.join("vmlinuz"))?;
    std::fs::copy(initramfs, dir.join("initramfs.img"))?;
    std::fs::copy(out.join(LIVE_UKI), dir.join(LIVE_UKI))?;
    std::fs::write(dir.join(IPXE_SCRIPT), live::ipxe_script(cmdline))?;
    Ok(())
}

/// `orc.iso`: isolinux boots the kernel and the live initramfs from the
/// ISO 9660 tree under BIOS; under UEFI the firmware starts the live UKI
/// from the ESP appended as a GPT partition (also El Torito's EFI entry).
fn iso(out: &Path, work: &Path, initramfs: &Path, cmdline: &str) -> anyhow::Result<()> {
    let tree = work.join("iso");
    let _ = std::fs::remove_dir_all(&tree);
    for d in ["isolinux", "live"] {
        std::fs::create_dir_all(tree.join(d))?;
    }
    let copy = |from: &Path, to: &str| {
        std::fs::copy(from, tree.join(to)).with_context(|| format!("copying {} into the ISO", from.display()))
    };
    copy(Path::new(ISOLINUX_BIN), "isolinux/isolinux.bin")?;
    copy(Path::new(LDLINUX), "isolinux/ldlinux.c32")?;
    copy(&out.join("vmlinuz"), "live/vmlinuz")?;
    copy(initramfs, "live/initramfs.img")?;
    std::fs::write(tree.join("isolinux/isolinux.cfg"), live::isolinux_cfg(cmdline))?;
    let esp = work.join("iso-esp.img");
    let uki = out.join(LIVE_UKI);
    // The UKI and FAT's tables, within El Torito's 65,535 sectors of 512
    // bytes (UEFI firmware reads no more from a CD).
    let size = (std::fs::metadata(&uki)?.len() + (1 << 20)).next_multiple_of(1 << 20);
    anyhow::ensure!(
        size <= ELTORITO_MAX,
        "the live UKI needs a {size}-byte ESP, more than El Torito's {ELTORITO_MAX}: the live system grew too big for UEFI CD boot"
    );
    let files = [orc_image::disk::EspFile { path: "EFI/BOOT/BOOTX64.EFI".into(), source: uki }];
    std::fs::write(&esp, orc_image::disk::esp_image(size, &files)?)?;
    set_dates(&tree)?;
    let iso = out.join(ISO);
    let _ = std::fs::remove_file(&iso);
    let st = Command::new("xorriso")
        .env("SOURCE_DATE_EPOCH", EPOCH.to_string())
        .args(["-as", "mkisofs", "-quiet", "-o"])
        .arg(&iso)
        .args(["-V", "ORC_LIVE", "-R", "-J", "-isohybrid-mbr", ISOHYBRID_MBR])
        .args(["-c", "isolinux/boot.cat", "-b", "isolinux/isolinux.bin"])
        .args(["-no-emul-boot", "-boot-load-size", "4", "-boot-info-table"])
        .args(["-append_partition", "2", "0xef"])
        .arg(&esp)
        .args(["-appended_part_as_gpt", "-eltorito-alt-boot"])
        .args(["-e", "--interval:appended_partition_2:all::", "-no-emul-boot"])
        .arg(&tree)
        .status()
        .context("running xorriso (cargo xtask installs the xorriso package)")?;
    anyhow::ensure!(st.success(), "xorriso failed building {}", iso.display());
    Ok(())
}

/// Every file and directory under `dir` dated [`EPOCH`] (xorriso takes
/// the files' own dates).
fn set_dates(dir: &Path) -> anyhow::Result<()> {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(EPOCH);
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            set_dates(&p)?;
        }
        std::fs::File::open(&p)?.set_modified(t).with_context(|| format!("dating {}", p.display()))?;
    }
    std::fs::File::open(dir)?.set_modified(t)?;
    Ok(())
}
