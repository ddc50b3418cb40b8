//! STATE on the disk being installed: the kernel is made to read the new
//! partition table, STATE's partition gets PID 1's ext4 template grown to
//! its size, and the live STATE is copied into it with the node's own
//! command line settings, so that the installed node boots as the node it
//! was: the same maintenance certificate (and fingerprint), the same
//! hostname and addresses, the same way to join.

use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::mount::MsFlags;
use orc_image::node_settings;
use orc_image::state_fs;

use super::disks::{self, Disk};
use super::InstallError;

nix::ioctl_none!(blkrrpart, 0x12, 95);

/// STATE's partition number in orc's layout.
const STATE_PARTITION: u32 = 4;

/// Formats STATE on `disk` from `template` and copies `live_state` into
/// it, mounting it under `work` for the moment.
pub fn make(disk: &Disk, template: &Path, live_state: &Path, work: &Path) -> Result<(), InstallError> {
    reread_partitions(disk)?;
    let part = wait_partition(disk, STATE_PARTITION)?;
    state_fs::write_template(&part, template)?;
    let mnt = work.join("state");
    std::fs::create_dir_all(&mnt).map_err(|e| InstallError::io("creating", &mnt, e))?;
    nix::mount::mount(Some(&part), &mnt, Some("ext4"), MsFlags::MS_NOATIME, None::<&str>)
        .map_err(|source| InstallError::Sys { what: "mounting", path: part.clone(), source })?;
    let filled = fill(&part, &mnt, live_state);
    if let Ok(dir) = std::fs::File::open(&mnt) {
        let _ = nix::unistd::syncfs(&dir);
    }
    let unmounted =
        nix::mount::umount(&mnt).map_err(|source| InstallError::Sys { what: "unmounting", path: mnt, source });
    filled?;
    unmounted
}

fn fill(part: &Path, mnt: &Path, live_state: &Path) -> Result<(), InstallError> {
    let blocks = state_fs::grow(part, mnt)?;
    let copied = copy_tree(live_state, mnt)?;
    // The settings the live system booted with (and any it kept).
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let kept = std::fs::read_to_string(live_state.join(node_settings::FILE)).unwrap_or_default();
    let effective = node_settings::effective(&cmdline, &kept);
    let words = node_settings::node_words(&effective);
    if !words.is_empty() {
        let path = mnt.join(node_settings::FILE);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| InstallError::io("creating", dir, e))?;
        }
        std::fs::write(&path, format!("{}\n", words.join(" "))).map_err(|e| InstallError::io("writing", &path, e))?;
    }
    tracing::info!(partition = %part.display(), blocks, files = copied, settings = words.len(), "STATE made on the new disk");
    Ok(())
}

/// Asks the kernel to read the disk's new partition table (`BLKRRPART`).
fn reread_partitions(disk: &Disk) -> Result<(), InstallError> {
    let f = std::fs::File::open(&disk.dev).map_err(|e| InstallError::io("opening", &disk.dev, e))?;
    // SAFETY: BLKRRPART takes no argument.
    unsafe { blkrrpart(f.as_raw_fd()) }.map_err(|source| InstallError::Sys {
        what: "re-reading the partition table of",
        path: disk.dev.clone(),
        source,
    })?;
    Ok(())
}

fn wait_partition(disk: &Disk, n: u32) -> Result<std::path::PathBuf, InstallError> {
    let start = Instant::now();
    loop {
        if let Some(p) = disks::partition(disk, Path::new(super::SYS_BLOCK), Path::new(super::DEV), n) {
            return Ok(p);
        }
        if start.elapsed() > Duration::from_secs(10) {
            return Err(InstallError::NoPartition { disk: disk.dev.display().to_string(), n });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Copies the tree at `from` into `to` (files, directories, symbolic
/// links, with their modes and owners; nothing else); returns how many
/// entries. A file that goes away meanwhile is skipped.
fn copy_tree(from: &Path, to: &Path) -> Result<u64, InstallError> {
    let mut n = 0;
    let entries = std::fs::read_dir(from).map_err(|e| InstallError::io("reading", from, e))?;
    for e in entries.flatten() {
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let meta = match std::fs::symlink_metadata(&src) {
            Ok(m) => m,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => return Err(InstallError::io("reading", &src, err)),
        };
        let kind = meta.file_type();
        let done = if kind.is_dir() {
            std::fs::create_dir_all(&dst).map_err(|err| InstallError::io("creating", &dst, err))?;
            n += copy_tree(&src, &dst)?;
            Ok(())
        } else if kind.is_symlink() {
            let target = std::fs::read_link(&src).map_err(|err| InstallError::io("reading", &src, err))?;
            let _ = std::fs::remove_file(&dst);
            std::os::unix::fs::symlink(target, &dst)
        } else if kind.is_file() {
            match std::fs::copy(&src, &dst) {
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                r => r.map(|_| ()),
            }
        } else {
            continue;
        };
        done.map_err(|err| InstallError::io("copying", &src, err))?;
        if !kind.is_symlink() {
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
                .map_err(|err| InstallError::io("setting the mode of", &dst, err))?;
        }
        nix::unistd::fchownat(
            nix::fcntl::AT_FDCWD,
            &dst,
            Some(meta.uid().into()),
            Some(meta.gid().into()),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|source| InstallError::Sys { what: "setting the owner of", path: dst.clone(), source })?;
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_is_copied_with_modes_and_links() {
        let d = tempfile::tempdir().unwrap();
        let (from, to) = (d.path().join("from"), d.path().join("to"));
        std::fs::create_dir_all(from.join("pki/maintenance")).unwrap();
        std::fs::write(from.join("pki/maintenance/key.pem"), "secret").unwrap();
        std::fs::set_permissions(from.join("pki/maintenance/key.pem"), std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink("maintenance", from.join("pki/current")).unwrap();
        std::fs::create_dir_all(&to).unwrap();
        assert_eq!(copy_tree(&from, &to).unwrap(), 4);
        assert_eq!(std::fs::read_to_string(to.join("pki/current/key.pem")).unwrap(), "secret");
        let mode = std::fs::metadata(to.join("pki/maintenance/key.pem")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
