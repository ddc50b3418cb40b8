//! A small ext4 filesystem on a loop device, mounted in a temporary
//! directory and unmounted when dropped: STATE for tests that fill a disk.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct SmallFs {
    pub mnt: PathBuf,
    _dir: tempfile::TempDir,
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd.output()?;
    anyhow::ensure!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

impl SmallFs {
    /// An ext4 of `mib` MiB with no blocks reserved for root (the agent
    /// runs as root and would otherwise use them).
    pub fn new(mib: u64) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let img = dir.path().join("fs.img");
        std::fs::File::create(&img)?.set_len(mib << 20)?;
        run(Command::new("mkfs.ext4").args(["-q", "-F", "-m", "0"]).arg(&img))?;
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt)?;
        run(Command::new("mount").args(["-o", "loop"]).arg(&img).arg(&mnt))?;
        Ok(Self { mnt, _dir: dir })
    }

    /// Fills the filesystem with `<mnt>/filler` until it is full.
    pub fn fill(&self) -> anyhow::Result<u64> {
        fill(&self.mnt.join("filler"))
    }

    /// Frees what [`Self::fill`] took.
    pub fn free(&self) -> anyhow::Result<()> {
        Ok(std::fs::remove_file(self.mnt.join("filler"))?)
    }
}

fn fill(path: &Path) -> anyhow::Result<u64> {
    let mut f = std::fs::File::create(path)?;
    let mut written = 0u64;
    // Big writes first, then small ones for the last blocks; bounded by the
    // filesystem's size.
    for chunk in [1 << 20, 4096] {
        let buf = vec![0xa5u8; chunk];
        loop {
            match f.write(&buf) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => return Err(e.into()),
            }
        }
    }
    // Errors here mean what was written did not fit either: still full.
    let _ = f.sync_all();
    Ok(written)
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
    }
}
