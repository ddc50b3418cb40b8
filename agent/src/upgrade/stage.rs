//! A signed bundle into the slot the node did not boot from: the manifest
//! is verified first (signature, format, a version newer than the running
//! one and not failed here before, unless forced); the slot's old entries
//! go before its partition is written; the new entry, with its tries, is
//! written last and only once every part matched the signed manifest. A
//! bundle refused or broken half way leaves the node booting what it did.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use orc_image::boot_entry::{BootEntry, ENTRY_DIR};
use orc_image::bundle::{self, BundleError};

use super::esp;
use super::record::{self, OsRecord, Pending};
use super::UpgradeError;
use crate::model::os::{ReadyBefore, UpgradeProgress, UpgradeStage};
use crate::node::boot_slots::{self, Slot};
use crate::state::NodeState;

/// The unified kernel image being written, before it is renamed into an
/// entry (systemd-boot only looks at `*.efi`).
const PARTIAL: &str = ".orc-upgrade.partial";

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub force: bool,
    /// 0: [`record::DEFAULT_WINDOW_SECS`].
    pub health_window_secs: u32,
    /// Services whose task here is ready now.
    pub ready_before: Vec<ReadyBefore>,
    /// Versions that failed on other nodes (refused unless `force`).
    pub refuse: Vec<String>,
}

/// What was written.
#[derive(Debug, Clone)]
pub struct Staged {
    pub version: String,
    pub from_version: String,
    pub slot: Slot,
    pub entry: String,
}

/// The services whose task here runs and is ready now (what an upgrade
/// written now watches after its boot).
pub fn ready_now(executor: &crate::worker::executor::Executor) -> Vec<ReadyBefore> {
    executor
        .readiness()
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t.running && t.health == crate::cluster::objects::Health::Ready)
        .map(|t| ReadyBefore { service_id: t.service_id, service: t.service, spec_version: t.spec_version })
        .collect()
}

/// The block device of the partition named `name`, and its size.
fn partition(name: &'static str) -> Result<(PathBuf, u64), UpgradeError> {
    let sys = Path::new("/sys/class/block");
    let dev = orc_image::disk::partition_named(sys, Path::new("/dev"), name).ok_or(UpgradeError::NoPartition(name))?;
    let base = dev.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let size_path = sys.join(&base).join("size");
    let sectors: u64 = std::fs::read_to_string(&size_path)
        .map_err(|e| UpgradeError::io("reading", &size_path, e))?
        .trim()
        .parse()
        .map_err(|_| UpgradeError::io("parsing", &size_path, std::io::Error::other("not a number")))?;
    Ok((dev, sectors * 512))
}

/// Writes the bundle read from `input` into the inactive slot. Blocks.
pub fn stage(state: &NodeState, input: impl Read, opts: Options) -> Result<Staged, UpgradeError> {
    let booted = boot_slots::booted().ok_or(UpgradeError::NotFromDisk)?;
    let target = booted.other();
    let state_dir = state.state_dir().to_path_buf();
    let mut rec = OsRecord::load(&state_dir)?;
    let boot_id = crate::node::version::boot_id();
    if let Some(p) = &rec.pending {
        // One written but not booted yet is simply replaced; so is one
        // blessed whose workloads are being watched (the next version
        // falls back to it).
        if p.written_boot_id != boot_id && !p.blessed {
            return Err(UpgradeError::InProgress { version: p.version.clone() });
        }
    }
    let running = rec.version_of(Some(booted), env!("CARGO_PKG_VERSION"));
    let keys_path = Path::new(bundle::KEYS_PATH);
    let keys = std::fs::read_to_string(keys_path)
        .map_err(|source| UpgradeError::NoKeys { path: keys_path.to_path_buf(), source })?;
    let trusted = bundle::parse_keys(&keys)?;
    let (device, capacity) = partition(target.partition_name())?;
    let uki_name = match target {
        Slot::A => bundle::UKI_A,
        Slot::B => bundle::UKI_B,
    };
    let m = esp::writable(&state.config.run_dir, |esp_root| {
        let partial = esp_root.join(ENTRY_DIR).join(PARTIAL);
        // A refusal of ours inside the reader's callback, said as it is.
        let mut refused: Option<UpgradeError> = None;
        let mut checked = false;
        let result = bundle::read(input, &trusted, |m, artifact, data| {
            if !checked {
                checked = true;
                let why = if let Err(e) = bundle::check_newer(&running, &m.version, opts.force) {
                    Some(UpgradeError::Bundle(e))
                } else if let Some(f) = rec.failed.iter().find(|f| f.version == m.version && !opts.force) {
                    Some(UpgradeError::FailedBefore { version: f.version.clone(), reason: f.reason.clone() })
                } else if opts.refuse.contains(&m.version) && !opts.force {
                    Some(UpgradeError::FailedElsewhere { version: m.version.clone() })
                } else if m.root.size > capacity {
                    Some(UpgradeError::TooLarge {
                        size: m.root.size,
                        slot: target.as_str(),
                        device: device.clone(),
                        capacity,
                    })
                } else {
                    None
                };
                if let Some(e) = why {
                    refused = Some(e);
                    return Err(BundleError::Io(std::io::Error::other("refused")));
                }
                tracing::info!(version = %m.version, from = %running, slot = target.as_str(), "writing an upgrade");
                if let Err(e) = esp::remove_entries_of(esp_root, target) {
                    refused = Some(e);
                    return Err(BundleError::Io(std::io::Error::other("refused")));
                }
            }
            if artifact.name == uki_name {
                let mut f = std::fs::File::create(&partial)?;
                std::io::copy(data, &mut f)?;
                f.sync_all()?;
            } else if artifact.name == bundle::ROOT {
                let mut f = std::fs::OpenOptions::new().write(true).open(&device)?;
                let n = std::io::copy(data, &mut f)?;
                f.flush()?;
                f.sync_all()?;
                tracing::info!(bytes = n, device = %device.display(), "slot written");
            }
            Ok(())
        });
        let m = match (result, refused) {
            (Ok(m), _) => m,
            (Err(_), Some(e)) => {
                let _ = std::fs::remove_file(&partial);
                return Err(e);
            }
            (Err(e), None) => {
                let _ = std::fs::remove_file(&partial);
                return Err(e.into());
            }
        };
        let entry = BootEntry::new_untried(&m.version);
        let to = esp::entry_path(esp_root, &entry);
        std::fs::rename(&partial, &to).map_err(|e| UpgradeError::io("renaming", to, e))?;
        Ok(m)
    })?;
    let entry = BootEntry::new_untried(&m.version);
    let window = match opts.health_window_secs {
        0 => record::DEFAULT_WINDOW_SECS,
        s => s,
    };
    rec.slots.insert(target, m.version.clone());
    rec.pending = Some(Pending {
        version: m.version.clone(),
        from_version: running.clone(),
        slot: target,
        health_window_secs: window,
        written_boot_id: boot_id,
        verdict: None,
        ready_before: opts.ready_before,
        blessed: false,
    });
    rec.save(&state_dir)?;
    crate::sync::write(&state.os).upgrade = Some(UpgradeProgress {
        version: m.version.clone(),
        slot: target.as_str().into(),
        stage: UpgradeStage::Written,
        message: "written: boots at the next reboot".into(),
        health_window_secs: window,
    });
    tracing::info!(version = %m.version, entry = %entry, "upgrade written; it boots at the next reboot");
    Ok(Staged {
        version: m.version,
        from_version: running,
        slot: target,
        entry: format!("{ENTRY_DIR}/{}", entry.file_name()),
    })
}
