//! Installing the node to a disk: a node booted live (ISO or PXE) in
//! maintenance mode lays out the disk it was told to use (`orcctl node
//! install --disk`, or `orc.install=` on its command line) as the image's
//! disk is laid out, from a signed upgrade bundle — streamed by orcctl or
//! pulled from an image, verified before the disk is touched — and
//! reboots into slot A with the identity it has now:
//!
//! 1. the disk is checked ([`disks`]: only the one named, whole, unused,
//!    blank unless `--wipe`);
//! 2. the bundle's signature is verified; then the GPT is written, the
//!    root image streamed into slot A, the unified kernel image of slot A
//!    kept aside;
//! 3. STATE is formatted from PID 1's template and given a copy of the
//!    live STATE (the maintenance certificate, so the node keeps its
//!    fingerprint; anything else there) and the node's own command line
//!    settings (`boot/node.cmdline`: hostname, addresses, `orc.join`, the
//!    maintenance token), so the installed node is the same node;
//! 4. the ESP last — systemd-boot as the removable-media loader and the
//!    version's entry — so a disk whose install failed half way has no
//!    boot entry and the firmware boots the next device.
//!
//! - [`disks`]: the node's disks, their by-id names, the rules.
//! - [`state_copy`]: STATE on the new disk.

pub mod disks;
pub mod error;
pub mod state_copy;

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use orc_image::boot_entry::{BootEntry, ENTRY_DIR};
use orc_image::bundle::{self, BundleError};
use orc_image::disk;

pub use error::InstallError;

/// One install at a time.
static INSTALLING: Mutex<()> = Mutex::new(());
/// `/sys/class/block`, `/dev`.
const SYS_BLOCK: &str = "/sys/class/block";
const DEV: &str = "/dev";

/// What the operator asked for.
#[derive(Debug, Clone)]
pub struct Request {
    /// `/dev/disk/by-id/…` or `/dev/NAME`.
    pub disk: String,
    /// Erase a disk that holds data.
    pub wipe: bool,
}

/// What was installed, where.
#[derive(Debug, Clone)]
pub struct Installed {
    pub version: String,
    /// The disk as named and as found (`/dev/vda (4096 MiB, …)`).
    pub disk: String,
    pub entry: String,
}

/// The disk `req` names, checked against the rules (nothing is written).
pub fn target(req: &Request) -> Result<disks::Disk, InstallError> {
    if !Path::new("/sys/firmware/efi").exists() {
        return Err(InstallError::NotUefi);
    }
    let sys = Path::new(SYS_BLOCK);
    let all = disks::list(sys, Path::new(DEV));
    let d = disks::resolve(&req.disk, &all, sys)?.clone();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| InstallError::io("reading", "/proc/self/mountinfo", e))?;
    let busy = disks::in_use(&d, sys, &mountinfo);
    let (head, tail) = disks::ends(&d)?;
    disks::check(&d, req.wipe, &head, &tail, busy)?;
    Ok(d)
}

/// Installs the bundle read from `input` to the disk `req` names, from
/// STATE at `state_dir`, working in `run_dir`. Blocks.
pub fn install(state_dir: &Path, run_dir: &Path, req: &Request, input: impl Read) -> Result<Installed, InstallError> {
    let _one = INSTALLING.try_lock().map_err(|_| InstallError::Busy)?;
    let target = target(req)?;
    let need = |what, path: &str| {
        let p = PathBuf::from(path);
        if p.exists() {
            Ok(p)
        } else {
            Err(InstallError::Missing { what, path: p })
        }
    };
    let template = need("STATE's template", orc_image::cmdline::STATE_TEMPLATE_RUN)?;
    let boot_loader = need("systemd-boot", disk::SYSTEMD_BOOT_ON_NODE)?;
    let keys_path = Path::new(bundle::KEYS_PATH);
    let keys = std::fs::read_to_string(keys_path)
        .map_err(|source| InstallError::NoKeys { path: keys_path.to_path_buf(), source })?;
    let trusted = bundle::parse_keys(&keys)?;
    let work = run_dir.join("install");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| InstallError::io("creating", &work, e))?;
    let result = write(&target, req, input, &trusted, &work, &template, &boot_loader, state_dir);
    let _ = std::fs::remove_dir_all(&work);
    result
}

/// The writing, once the disk passed the rules.
#[allow(clippy::too_many_arguments)]
fn write(
    target: &disks::Disk,
    req: &Request,
    input: impl Read,
    trusted: &[[u8; 32]],
    work: &Path,
    template: &Path,
    boot_loader: &Path,
    state_dir: &Path,
) -> Result<Installed, InstallError> {
    let dev = &target.dev;
    let open = || {
        std::fs::OpenOptions::new().read(true).write(true).open(dev).map_err(|e| InstallError::io("opening", dev, e))
    };
    let uki = work.join(bundle::UKI_A);
    // Ours, inside the reader's callback, said as it is.
    let mut refused: Option<InstallError> = None;
    let mut layout: Option<(std::fs::File, disk::Layout)> = None;
    let result = bundle::read(input, trusted, |m, artifact, data| {
        if layout.is_none() {
            // The signature is good: the disk may be touched now.
            let laid = (|| {
                disk::check_root(bundle::ROOT, m.root.size)?;
                tracing::info!(version = %m.version, disk = %target, wipe = req.wipe, "installing");
                let mut f = open()?;
                if req.wipe {
                    wipe(&mut f, target.size).map_err(|e| InstallError::io("wiping", dev, e))?;
                }
                Ok::<_, InstallError>(disk::write_table(f, target.size, rand::random(), dev)?)
            })();
            match laid {
                Ok(l) => layout = Some(l),
                Err(e) => {
                    refused = Some(e);
                    return Err(BundleError::Io(std::io::Error::other("refused")));
                }
            }
        }
        let Some((f, l)) = layout.as_mut() else { return Ok(()) };
        if artifact.name == bundle::UKI_A {
            let mut out = std::fs::File::create(&uki)?;
            std::io::copy(data, &mut out)?;
        } else if artifact.name == bundle::ROOT {
            f.seek(SeekFrom::Start(l.slot_a.0))?;
            let n = std::io::copy(&mut data.take(l.slot_a.1), f)?;
            f.flush()?;
            tracing::info!(bytes = n, disk = %dev.display(), "slot A written");
        }
        Ok(())
    });
    let m = match (result, refused) {
        (Ok(m), _) => m,
        (Err(_), Some(e)) => return Err(e),
        (Err(e), None) => return Err(e.into()),
    };
    let Some((f, l)) = layout else { return Err(InstallError::Stream("the bundle held nothing to install".into())) };
    f.sync_all().map_err(|e| InstallError::io("syncing", dev, e))?;
    drop(f);
    state_copy::make(target, template, state_dir, work)?;
    // The ESP last: until it is written, the disk boots nothing.
    let files =
        disk::esp_files(work, boot_loader, &uki, &m.version).map_err(|e| InstallError::io("preparing", work, e))?;
    let mut f = open()?;
    disk::write_esp(&mut f, &l, &files).map_err(|e| InstallError::io("writing the ESP of", dev, e))?;
    f.sync_all().map_err(|e| InstallError::io("syncing", dev, e))?;
    let entry = format!("{ENTRY_DIR}/{}", BootEntry::blessed(&m.version).file_name());
    tracing::info!(version = %m.version, disk = %target, entry = %entry, "installed");
    Ok(Installed { version: m.version, disk: target.to_string(), entry })
}

/// Zeros the first and last MiB of the disk: no old partition table,
/// filesystem or RAID signature survives to confuse the kernel or PID 1.
fn wipe(f: &mut std::fs::File, size: u64) -> std::io::Result<()> {
    let zeros = vec![0u8; 1 << 20];
    for at in [0, size.saturating_sub(1 << 20)] {
        f.seek(SeekFrom::Start(at))?;
        f.write_all(&zeros)?;
    }
    f.sync_all()
}

/// `orc.install=`: at start in maintenance mode, installs to `req`'s disk
/// from the bundle in `image` and reboots into it. The disk is checked
/// first (a disk that is not blank is left alone: the firmware booted
/// the live system again after an install, or the wrong disk was named);
/// a registry that cannot be reached yet is tried again, every 10 s for
/// 10 minutes. What happens is said on the console.
pub async fn at_start(
    state: std::sync::Arc<crate::state::NodeState>,
    images: std::sync::Arc<crate::images::ImageStore>,
    mut req: Request,
    image: String,
) {
    const TRIES: u32 = 60;
    let checked = req.clone();
    match tokio::task::spawn_blocking(move || target(&checked)).await {
        Ok(Ok(d)) => println!("orc: installing to {d} from {image} (orc.install=)"),
        Ok(Err(e)) => {
            println!("orc: not installing (orc.install={}): {e}", req.disk);
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "install task");
            return;
        }
    }
    for attempt in 1..=TRIES {
        let (state_dir, run_dir) = (state.state_dir().to_path_buf(), state.config.run_dir.clone());
        let r = req.clone();
        let done = crate::upgrade::pull::with_bundle(&images, &image, None, move |bundle| {
            install(&state_dir, &run_dir, &r, bundle)
        })
        .await;
        match done {
            Ok(i) => {
                println!("orc: installed {} on {}; rebooting into it", i.version, i.disk);
                if let Err(e) = crate::node::power::do_power(&state, crate::node::power::PowerAction::Reboot) {
                    println!("orc: installed, but cannot reboot: {e}");
                }
                return;
            }
            Err(e) if retried(&e) && attempt < TRIES => {
                tracing::warn!(error = %e, attempt, image = %image, "install: the bundle could not be read; trying again in 10 s");
                // The disk was blank when checked: what is on it now is ours.
                req.wipe = true;
                tokio::time::sleep(std::time::Duration::from_secs(10)).await;
            }
            Err(e) => {
                println!("orc: install failed (orc.install={}): {e}", req.disk);
                return;
            }
        }
    }
}

/// Whether an install that failed may work when tried again: the
/// registry or the stream, not the disk or the bundle's signature.
fn retried(e: &InstallError) -> bool {
    use crate::upgrade::UpgradeError;
    matches!(
        e,
        InstallError::Upgrade(UpgradeError::Agent(_) | UpgradeError::Stream(_))
            | InstallError::Bundle(BundleError::Io(_))
            | InstallError::Stream(_)
    )
}
