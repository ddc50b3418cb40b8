//! The NFS server the VM tests mount volumes from: a small VM booting the
//! node kernel with an initramfs of busybox and Debian's
//! `nfs-kernel-server` daemons (with the libraries they link), which loads
//! `nfsd` and exports a tmpfs at `/export` over NFSv4 on the test L2
//! network (the address given as `nfs.ip=` on its command line). Not part
//! of the node image; the host's own NFS server is never started.

use std::path::Path;
use std::process::Command;

use anyhow::Context;
use orc_image::initramfs::Initramfs;

use crate::deps::output;
use crate::kernel::{module_deps, Kernel};

/// Its file name beside the image's artifacts.
pub const INITRAMFS: &str = "nfs-server-initramfs.img";

/// The daemons it runs.
const DAEMONS: [&str; 3] = ["/usr/sbin/rpc.nfsd", "/usr/sbin/rpc.mountd", "/usr/sbin/exportfs"];

/// Its PID 1: mounts, modules, the address, the export, the daemons.
/// `ORC-NFS-READY` on the console says it serves.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /bin /tmp /run /export /var/lib/nfs/v4recovery /etc
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
/bin/busybox --install -s /bin
export PATH=/bin:/usr/sbin
exec >/dev/ttyS0 2>&1
for m in $(cat /modules); do insmod "/lib/modules/$m" || echo "insmod $m failed"; done
ip=$(sed -n 's/.*nfs\.ip=\([^ ]*\).*/\1/p' /proc/cmdline)
ip link set lo up
ip link set eth0 up
ip addr add "$ip" dev eth0
mount -t tmpfs -o size=256m,mode=0777 tmpfs /export
mount -t nfsd nfsd /proc/fs/nfsd
echo 10 > /proc/fs/nfsd/nfsv4leasetime
echo 10 > /proc/fs/nfsd/nfsv4gracetime
touch /var/lib/nfs/etab /var/lib/nfs/rmtab
echo '/export *(rw,sync,no_subtree_check,no_root_squash,insecure,fsid=0)' > /etc/exports
exportfs -ra
rpc.mountd -N 3 --no-udp || echo "rpc.mountd failed: $?"
rpc.nfsd -N 3 --no-udp 8 || echo "rpc.nfsd failed: $?"
echo "nfsd versions: $(cat /proc/fs/nfsd/versions); ports: $(cat /proc/fs/nfsd/portlist); threads: $(cat /proc/fs/nfsd/threads)"
if [ "$(cat /proc/fs/nfsd/threads)" -gt 0 ]; then echo "ORC-NFS-READY $ip"; else echo "ORC-NFS-FAILED"; fi
while :; do sleep 3600; done
"#;

/// The shared libraries `bin` loads (and the loader), as `ldd` lists them.
fn libraries(bin: &str) -> anyhow::Result<Vec<String>> {
    let text = output(Command::new("ldd").arg(bin)).with_context(|| format!("ldd {bin}"))?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = l.split_once("=> ").map_or(l, |(_, p)| p);
            path.split_whitespace().next().filter(|p| p.starts_with('/')).map(str::to_string)
        })
        .collect())
}

/// Writes the server's initramfs to `out` (kernel modules from `k`).
pub fn initramfs(k: &Kernel, out: &Path) -> anyhow::Result<()> {
    let read = |p: &str| std::fs::read(p).with_context(|| format!("reading {p} (package nfs-kernel-server)"));
    let mut i = Initramfs::new();
    i.file("/init", 0o755, INIT.as_bytes().to_vec())
        .file("/bin/busybox", 0o755, read("/bin/busybox")?)
        .char_dev("/dev/console", 0o600, 5, 1)
        .file("/etc/netconfig", 0o644, read("/etc/netconfig")?)
        // What the daemons look their ports and protocols up in.
        .file("/etc/services", 0o644, b"sunrpc 111/tcp\nsunrpc 111/udp\nnfs 2049/tcp\nnfs 2049/udp\n".to_vec())
        .file("/etc/protocols", 0o644, b"ip 0 IP\ntcp 6 TCP\nudp 17 UDP\n".to_vec())
        .file("/etc/passwd", 0o644, b"root:x:0:0:root:/:/bin/sh\n".to_vec())
        .file("/etc/group", 0o644, b"root:x:0:\nnogroup:x:65534:\n".to_vec());
    let mut libs = std::collections::BTreeSet::new();
    for d in DAEMONS {
        i.file(d, 0o755, read(d)?);
        libs.extend(libraries(d)?);
    }
    for l in &libs {
        // Each at the path the loader looks for it, its target's bytes.
        let data = std::fs::read(l).with_context(|| format!("reading {l}"))?;
        i.file(l, 0o755, data);
    }
    let order = module_deps(k)?.load_order(&["virtio_pci", "virtio_net", "nfsd"])?;
    i.file("/modules", 0o644, order.iter().map(|m| format!("{m}\n")).collect::<String>().into_bytes());
    for rel in &order {
        let data = std::fs::read(k.modules_dir.join(rel)).with_context(|| format!("reading module {rel}"))?;
        i.file(&format!("/lib/modules/{rel}"), 0o644, data);
    }
    i.write_gz(std::fs::File::create(out)?)?;
    Ok(())
}
