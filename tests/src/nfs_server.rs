//! The NFS server VM of the volume tests (`nfs-server-initramfs.img`,
//! built by `cargo xtask image`): the node kernel, Debian's
//! `nfs-kernel-server` daemons and `nfsd`, exporting a tmpfs over NFSv4 at
//! `<address>:/` on the test L2 hub. A real kernel NFS server: the test
//! host's kernel has none.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

pub struct NfsServer {
    child: Child,
    console: std::path::PathBuf,
    /// Its address on the hub (`10.42.0.60`).
    pub address: String,
}

impl NfsServer {
    /// Boots it on `hub` as `10.42.0.<10 + index>` (MAC `…:42:00:<index>`),
    /// its files under `dir`; returns once it serves.
    pub fn start(image: &Path, hub: &Path, index: u8, dir: &Path, limit: Duration) -> anyhow::Result<Self> {
        let initramfs = image.join("nfs-server-initramfs.img");
        anyhow::ensure!(initramfs.exists(), "{} is missing: run `cargo xtask image`", initramfs.display());
        std::fs::create_dir_all(dir)?;
        let address = format!("10.42.0.{}", 10 + u32::from(index));
        let console = dir.join("console.log");
        let accel = crate::qemu::accel(image);
        let sock = dir.join("l2.sock");
        let _ = std::fs::remove_file(&sock);
        let child = Command::new("qemu-system-x86_64")
            .args(["-name", "nfs-server", "-machine", "q35", "-accel", &accel, "-m", "384", "-smp", "1"])
            .args(["-display", "none", "-monitor", "none", "-no-reboot"])
            .args(["-chardev", &format!("file,id=con,path={}", console.display()), "-serial", "chardev:con"])
            .arg("-kernel")
            .arg(image.join("vmlinuz"))
            .arg("-initrd")
            .arg(&initramfs)
            .args(["-append", &format!("console=ttyS0 panic=-1 nfs.ip={address}/24")])
            .args([
                "-netdev",
                &format!(
                    "dgram,id=l2,local.type=unix,local.path={},remote.type=unix,remote.path={}",
                    sock.display(),
                    hub.display()
                ),
                "-device",
                &format!("virtio-net-pci,netdev=l2,romfile=,mac=52:54:00:42:00:{index:02x}"),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("qemu.stderr"))?)
            .spawn()
            .context("running qemu-system-x86_64")?;
        let server = Self { child, console, address };
        let start = Instant::now();
        while !server.console().contains("ORC-NFS-READY") {
            anyhow::ensure!(
                !server.console().contains("ORC-NFS-FAILED"),
                "the NFS server VM did not start nfsd:\n{}",
                server.console()
            );
            anyhow::ensure!(
                start.elapsed() < limit,
                "the NFS server VM did not come up in {limit:?}:\n{}",
                server.console()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        Ok(server)
    }

    /// What it printed.
    pub fn console(&self) -> String {
        std::fs::read_to_string(&self.console).unwrap_or_default()
    }
}

impl Drop for NfsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
