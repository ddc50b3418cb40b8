//! A QEMU node booting the orc image: direct kernel boot of the built
//! kernel and initramfs, the verified root image as `vda`, a persistent STATE
//! disk as `vdb` (blank on first boot: PID 1 formats it) — or the image's
//! GPT disk under OVMF, its live ISO, or PXE ([`Boot`]) — a user-network NIC
//! (DHCP from QEMU, the API forwarded to a loopback port) and optionally a
//! second NIC on the dgram hub with a static address.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

pub const STATE_DISK_BYTES: u64 = 2 << 30;

#[derive(Debug, Clone, Default)]
pub struct NodeSpec {
    pub name: String,
    /// Per-node directory: console.log, state.img, qemu.pid, qmp.sock.
    pub dir: PathBuf,
    /// The image artifacts (`target/orc`).
    pub image: PathBuf,
    /// Boot this root image instead of the image's (e.g. a tampered copy).
    pub root_img: Option<PathBuf>,
    /// Host loopback port forwarded to the node's API port.
    pub api_port: u16,
    /// Hub socket and node index (1-based) for the L2 network between nodes.
    pub l2: Option<(PathBuf, u8)>,
    pub memory_mb: u32,
    /// Run detached (for `cargo xtask qemu`); otherwise a child of the caller.
    pub daemonize: bool,
    /// Appended to the kernel command line (e.g. `orc.insecure_registries=…`).
    pub extra_cmdline: String,
    /// More (host loopback port, guest port) TCP forwards on the user-net NIC.
    pub forwards: Vec<(u16, u16)>,
    /// Size of the blank STATE disk made on first boot (0: [`STATE_DISK_BYTES`]).
    pub state_disk_bytes: u64,
    /// How the node boots.
    pub boot: Boot,
    /// With [`Boot::Disk`]: this disk image instead of the image's `disk.raw`.
    pub disk: Option<PathBuf>,
    /// More disks (virtio, by serial: `/dev/disk/by-id/virtio-SERIAL`),
    /// made blank of this size on first boot unless their file
    /// (`disk-SERIAL.img`) is there; the firmware tries them before the
    /// live media.
    pub extra_disks: Vec<(String, u64)>,
}

/// How a node boots.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Boot {
    /// QEMU's direct kernel boot: the image's kernel, initramfs and
    /// command line; the root image as `vda`, STATE as `vdb`.
    #[default]
    Kernel,
    /// A machine installed from the image's disk: UEFI firmware (OVMF),
    /// systemd-boot, the unified kernel image of slot A, STATE on the
    /// disk's own partition (a copy of `disk.raw` per node, made on first
    /// boot). No kernel, command line or disks are handed to QEMU.
    Disk,
    /// The live ISO as a CD, under SeaBIOS (isolinux) or, with `uefi`,
    /// OVMF; no disk (STATE on tmpfs).
    Iso { uefi: bool },
    /// The live system's kernel and initramfs (`pxe/`) handed to OVMF by
    /// QEMU, with the live command line and the node's arguments: a UEFI
    /// network boot as a site's iPXE does it, without the network.
    LiveKernel,
    /// Over the network: the NIC's iPXE fetches the image's `pxe/` over
    /// QEMU's TFTP, with the node's own arguments set before its script
    /// runs (as a site's DHCP or an embedded script would); no disk.
    Pxe,
}

/// Debian's OVMF (package `ovmf`): the firmware and its variable store.
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
/// The image's disk (`cargo xtask image`).
pub const DISK_IMAGE: &str = "disk.raw";

#[derive(serde::Deserialize)]
struct Manifest {
    cmdline: String,
}

/// The accelerator to use: KVM only when a guest actually boots with it
/// (nested KVM may exist and hang), decided once per image directory.
pub fn accel(image: &Path) -> String {
    let cache = image.join("accel");
    if let Ok(a) = std::fs::read_to_string(&cache) {
        return a.trim().to_string();
    }
    let works = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok() && kvm_boots(image);
    let a = if works { "kvm" } else { "tcg" }.to_string();
    let _ = std::fs::write(&cache, &a);
    a
}

fn kvm_boots(image: &Path) -> bool {
    let floor = image.join("floor-initramfs.img");
    if !floor.exists() {
        return false;
    }
    let child = Command::new("qemu-system-x86_64")
        .args([
            "-accel",
            "kvm",
            "-m",
            "256",
            "-nographic",
            "-no-reboot",
            "-monitor",
            "none",
            "-serial",
            "null",
            "-kernel",
        ])
        .arg(image.join("vmlinuz"))
        .arg("-initrd")
        .arg(&floor)
        .args(["-append", "console=ttyS0 panic=-1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else { return false };
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if let Ok(Some(st)) = child.try_wait() {
            return st.success();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

/// The full kernel command line of a node.
pub fn cmdline(image: &Path, spec: &NodeSpec) -> anyhow::Result<String> {
    let m: Manifest = serde_json::from_slice(
        &std::fs::read(image.join("manifest.json")).context("reading manifest.json; run `cargo xtask image`")?,
    )?;
    if spec.boot == Boot::LiveKernel {
        let verity = m
            .cmdline
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{}=", orc_image::cmdline::VERITY)))
            .context("the manifest's command line has no orc.verity")?;
        return Ok(format!("{} {}", orc_image::live::cmdline(verity), node_args(spec)));
    }
    Ok(format!("{} orc.state=/dev/vdb {}", m.cmdline, node_args(spec)))
}

/// The node's own command-line arguments: its hostname, its L2 address,
/// [`NodeSpec::extra_cmdline`].
pub fn node_args(spec: &NodeSpec) -> String {
    let mut c = format!("orc.hostname={}", spec.name);
    if let Some((_, i)) = &spec.l2 {
        c.push_str(&format!(" orc.ip=eth1:10.42.0.{}/24", 10 + *i as u32));
        // Managers reach each other on the L2 network, not on user-net's
        // 10.0.2.15 (the same on every node).
        c.push_str(&format!(" orc.advertise=10.42.0.{}:7443", 10 + *i as u32));
    }
    if !spec.extra_cmdline.is_empty() {
        c.push(' ');
        c.push_str(&spec.extra_cmdline);
    }
    c
}

/// QEMU's arguments for `spec`.
pub fn args(spec: &NodeSpec, accel: &str, cmdline: &str) -> Vec<String> {
    let d = |f: &str| spec.dir.join(f).display().to_string();
    let root = spec.root_img.clone().unwrap_or_else(|| spec.image.join("root.img"));
    let mut a: Vec<String> = vec![
        "-name".into(),
        spec.name.clone(),
        "-machine".into(),
        "q35".into(),
        "-accel".into(),
        accel.into(),
        "-cpu".into(),
        if accel == "kvm" { "host" } else { "max" }.into(),
        "-smp".into(),
        "1".into(),
        "-m".into(),
        spec.memory_mb.to_string(),
        "-display".into(),
        "none".into(),
        "-monitor".into(),
        "none".into(),
        "-chardev".into(),
        format!("file,id=con,path={},append=on", d("console.log")),
        "-serial".into(),
        "chardev:con".into(),
        "-qmp".into(),
        format!("unix:{},server=on,wait=off", d("qmp.sock")),
    ];
    if matches!(spec.boot, Boot::Disk | Boot::Iso { uefi: true } | Boot::LiveKernel) {
        a.extend([
            "-drive".into(),
            format!("if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"),
            "-drive".into(),
            format!("if=pflash,format=raw,unit=1,file={}", d("ovmf-vars.fd")),
        ]);
    }
    match spec.boot {
        Boot::Disk => a.extend(["-drive".into(), format!("file={},format=raw,if=virtio", d(DISK_IMAGE))]),
        Boot::Iso { .. } => {
            // As `-cdrom` would, with a place in the boot order after the disks.
            a.extend([
                "-drive".into(),
                format!(
                    "file={},format=raw,media=cdrom,if=none,id=cd,readonly=on",
                    spec.image.join(orc_image::live::ISO).display()
                ),
                "-device".into(),
                "ide-cd,drive=cd,bus=ide.2,bootindex=9".into(),
            ]);
        }
        Boot::Pxe => a.extend(["-boot".into(), "n".into()]),
        Boot::LiveKernel => {
            let pxe = spec.image.join(orc_image::live::PXE_DIR);
            a.extend([
                "-kernel".into(),
                pxe.join("vmlinuz").display().to_string(),
                "-initrd".into(),
                pxe.join("initramfs.img").display().to_string(),
                "-append".into(),
                cmdline.into(),
            ]);
        }
        Boot::Kernel => a.extend([
            "-kernel".into(),
            spec.image.join("vmlinuz").display().to_string(),
            "-initrd".into(),
            spec.image.join("initramfs.img").display().to_string(),
            "-append".into(),
            cmdline.into(),
            "-drive".into(),
            format!("file={},format=raw,if=virtio,readonly=on", root.display()),
            "-drive".into(),
            format!("file={},format=raw,if=virtio", d("state.img")),
        ]),
    }
    for (i, (serial, _)) in spec.extra_disks.iter().enumerate() {
        a.extend([
            "-drive".into(),
            format!("file={},format=raw,if=none,id=x{i}", spec.dir.join(extra_disk(serial)).display()),
            "-device".into(),
            format!("virtio-blk-pci,drive=x{i},serial={serial},bootindex={}", i + 1),
        ]);
    }
    // iPXE (the NIC's ROM) only where the node boots over the network.
    let (tftp, rom) = match spec.boot {
        Boot::Pxe => (format!(",tftp={},bootfile={PXE_SCRIPT}", d(TFTP_DIR)), ""),
        _ => (String::new(), ",romfile="),
    };
    a.extend([
        "-netdev".into(),
        format!(
            "user,id=n0,hostfwd=tcp:127.0.0.1:{}-:7443{}{tftp}",
            spec.api_port,
            spec.forwards.iter().map(|(h, g)| format!(",hostfwd=tcp:127.0.0.1:{h}-:{g}")).collect::<String>()
        ),
        "-device".into(),
        format!("virtio-net-pci,netdev=n0{rom}"),
    ]);
    if let Some((hub, i)) = &spec.l2 {
        a.extend([
            "-netdev".into(),
            format!(
                "dgram,id=l2,local.type=unix,local.path={},remote.type=unix,remote.path={}",
                d("l2.sock"),
                hub.display()
            ),
            "-device".into(),
            format!("virtio-net-pci,netdev=l2,romfile=,mac=52:54:00:42:00:{i:02x}"),
        ]);
    }
    if spec.daemonize {
        a.extend(["-daemonize".into(), "-pidfile".into(), d("qemu.pid")]);
    }
    a
}

/// The file of the extra disk with `serial`, in the node's directory.
pub fn extra_disk(serial: &str) -> String {
    format!("disk-{serial}.img")
}

/// The node's TFTP directory (under its own) and the script QEMU's DHCP
/// names as the boot file there.
const TFTP_DIR: &str = "tftp";
const PXE_SCRIPT: &str = "node.ipxe";

/// The node's TFTP directory: the image's `pxe/` and a script that sets
/// the node's own arguments and chains the image's.
fn pxe_dir(spec: &NodeSpec) -> anyhow::Result<()> {
    use orc_image::live::{IPXE_SCRIPT, PXE_DIR};
    let dir = spec.dir.join(TFTP_DIR);
    std::fs::create_dir_all(&dir)?;
    for e in std::fs::read_dir(spec.image.join(PXE_DIR)).context("the image's pxe/ (cargo xtask image)")? {
        let e = e?;
        let to = dir.join(e.file_name());
        let _ = std::fs::remove_file(&to);
        std::os::unix::fs::symlink(e.path(), &to)?;
    }
    let script = format!("#!ipxe\nset orc-args {}\nchain {IPXE_SCRIPT}\n", node_args(spec));
    std::fs::write(dir.join(PXE_SCRIPT), script)?;
    Ok(())
}

/// OVMF's variable store, the node's own copy.
fn ovmf_vars(spec: &NodeSpec) -> anyhow::Result<()> {
    let vars = spec.dir.join("ovmf-vars.fd");
    if !vars.exists() {
        std::fs::copy(OVMF_VARS, &vars).context("copying OVMF's variables (cargo xtask installs ovmf)")?;
    }
    Ok(())
}

/// The node's own copy of the image's disk and of OVMF's variable store,
/// made on first boot (the copy keeps the image's holes: `cp --sparse`).
fn installed(spec: &NodeSpec) -> anyhow::Result<()> {
    let disk = spec.dir.join(DISK_IMAGE);
    let source = spec.disk.clone().unwrap_or_else(|| spec.image.join(DISK_IMAGE));
    if !disk.exists() {
        let st = Command::new("cp")
            .arg("--sparse=always")
            .arg(&source)
            .arg(&disk)
            .status()
            .context("copying the disk image")?;
        anyhow::ensure!(st.success(), "copying {} failed", source.display());
    }
    ovmf_vars(spec)
}

pub struct Node {
    pub spec: NodeSpec,
    child: Option<Child>,
}

impl Node {
    /// Boots the node; creates a blank STATE disk on first use.
    pub fn start(spec: NodeSpec) -> anyhow::Result<Node> {
        std::fs::create_dir_all(&spec.dir)?;
        let state = spec.dir.join("state.img");
        match spec.boot {
            Boot::Disk => installed(&spec)?,
            Boot::Iso { uefi } => {
                if uefi {
                    ovmf_vars(&spec)?;
                }
            }
            Boot::LiveKernel => ovmf_vars(&spec)?,
            Boot::Pxe => pxe_dir(&spec)?,
            Boot::Kernel => {
                if !state.exists() {
                    let size = if spec.state_disk_bytes == 0 { STATE_DISK_BYTES } else { spec.state_disk_bytes };
                    std::fs::File::create(&state)?.set_len(size)?;
                }
            }
        }
        for (serial, bytes) in &spec.extra_disks {
            let f = spec.dir.join(extra_disk(serial));
            if !f.exists() {
                std::fs::File::create(&f)?.set_len(*bytes)?;
            }
        }
        let _ = std::fs::remove_file(spec.dir.join("l2.sock"));
        let accel = accel(&spec.image);
        let cmdline = cmdline(&spec.image, &spec)?;
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(args(&spec, &accel, &cmdline)).stdin(Stdio::null()).stdout(Stdio::null());
        cmd.stderr(std::fs::File::create(spec.dir.join("qemu.stderr"))?);
        if spec.daemonize {
            let st = cmd.status().context("running qemu-system-x86_64 (cargo xtask installs qemu-system-x86)")?;
            anyhow::ensure!(
                st.success(),
                "qemu failed: {}",
                std::fs::read_to_string(spec.dir.join("qemu.stderr")).unwrap_or_default()
            );
            Ok(Node { spec, child: None })
        } else {
            let child = cmd.spawn().context("running qemu-system-x86_64 (cargo xtask installs qemu-system-x86)")?;
            Ok(Node { spec, child: Some(child) })
        }
    }

    pub fn console_path(&self) -> PathBuf {
        self.spec.dir.join("console.log")
    }

    /// Console text from byte `from` on.
    pub fn console_from(&self, from: u64) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(self.console_path()) {
            let _ = f.seek(SeekFrom::Start(from));
            let mut b = vec![];
            let _ = f.read_to_end(&mut b);
            s = String::from_utf8_lossy(&b).into_owned();
        }
        s
    }

    pub fn console_len(&self) -> u64 {
        std::fs::metadata(self.console_path()).map(|m| m.len()).unwrap_or(0)
    }

    /// Waits for `needle` on the console after byte `from`; returns the line.
    pub fn wait_console(&self, from: u64, needle: &str, limit: Duration) -> Option<String> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(l) = self.console_from(from).lines().find(|l| l.contains(needle)) {
                return Some(l.to_string());
            }
            if self.exited() {
                return None;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        None
    }

    /// The maintenance fingerprint printed on the console after byte `from`.
    pub fn fingerprint(&self, from: u64, limit: Duration) -> Option<String> {
        let line = self.wait_console(from, "TLS fingerprint sha256:", limit)?;
        line.split("sha256:").nth(1).map(|s| s.trim().chars().take(64).collect())
    }

    pub fn pid(&self) -> Option<i32> {
        match &self.child {
            Some(c) => Some(c.id() as i32),
            None => std::fs::read_to_string(self.spec.dir.join("qemu.pid")).ok()?.trim().parse().ok(),
        }
    }

    /// Whether QEMU has exited.
    pub fn exited(&self) -> bool {
        match self.pid() {
            Some(pid) => {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                stat.is_empty() || stat.split(") ").nth(1).is_some_and(|s| s.starts_with('Z'))
            }
            None => true,
        }
    }

    /// Waits for QEMU to exit by itself.
    pub fn wait_exit(&mut self, limit: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(_)) = c.try_wait() {
                    return true;
                }
            } else if self.exited() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    }

    pub fn kill(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        } else if let Some(pid) = self.pid() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if !self.spec.daemonize {
            self.kill();
        }
    }
}

/// A node handle for a daemonized QEMU started earlier (by `cargo xtask qemu`).
pub fn attach(spec: NodeSpec) -> Node {
    Node { spec, child: None }
}
