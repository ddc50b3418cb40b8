//! Hosts for agents that need a network of their own (container
//! networking: each node programs a bridge, a VXLAN device and nftables
//! rules, as on a machine of its own): one network namespace per host,
//! joined by a veth to a bridge of this test process in the host's
//! namespace (the LAN), which holds the LAN's first address so the tests
//! (orcctl, the registry) reach every host. Root only.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

/// The LAN of this test process.
pub struct Lan {
    bridge: String,
    /// 172.31.<n>.0/24.
    prefix: [u8; 3],
    next: AtomicU8,
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let o = Command::new("ip").args(args).output()?;
    anyhow::ensure!(o.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&o.stderr).trim());
    Ok(())
}

/// Bridges and namespaces of test processes that are gone.
fn sweep() {
    let alive = |pid: &str| std::path::Path::new("/proc").join(pid).exists();
    if let Ok(d) = std::fs::read_dir("/sys/class/net") {
        for e in d.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = n.strip_prefix("orct") {
                if !alive(pid) {
                    let _ = ip(&["link", "del", &n]);
                }
            }
        }
    }
    if let Ok(d) = std::fs::read_dir("/run/netns") {
        for e in d.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = n.strip_prefix("orct").and_then(|r| r.split('-').next()) {
                if !alive(pid) {
                    let _ = ip(&["netns", "del", &n]);
                }
            }
        }
    }
}

impl Lan {
    /// The LAN of this process (made on first use).
    pub fn get() -> anyhow::Result<&'static Lan> {
        static LAN: OnceLock<Result<Lan, String>> = OnceLock::new();
        LAN.get_or_init(|| Lan::make().map_err(|e| format!("{e:#}"))).as_ref().map_err(|e| anyhow::anyhow!("{e}"))
    }

    fn make() -> anyhow::Result<Lan> {
        sweep();
        let pid = std::process::id();
        let bridge = format!("orct{pid}");
        let prefix = [172, 31, (pid % 250) as u8 + 1];
        let _ = ip(&["link", "del", &bridge]);
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        ip(&["addr", "add", &format!("{}.{}.{}.1/24", prefix[0], prefix[1], prefix[2]), "dev", &bridge])?;
        ip(&["link", "set", &bridge, "up"])?;
        Ok(Lan { bridge, prefix, next: AtomicU8::new(10) })
    }

    /// The LAN's own address (the host namespace's side).
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(self.prefix[0], self.prefix[1], self.prefix[2], 1)
    }

    /// A new host on the LAN.
    pub fn host(&'static self) -> anyhow::Result<Host> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        anyhow::ensure!(n < 250, "more than 240 hosts on one test LAN");
        let pid = std::process::id();
        let name = format!("orct{pid}-{n}");
        let (outer, inner) = (format!("orct{}h{n}", pid % 100_000), format!("orct{}p{n}", pid % 100_000));
        let addr = Ipv4Addr::new(self.prefix[0], self.prefix[1], self.prefix[2], n);
        ip(&["netns", "add", &name])?;
        let host = Host { name: name.clone(), addr };
        ip(&["link", "add", &outer, "type", "veth", "peer", "name", &inner])?;
        ip(&["link", "set", &inner, "netns", &name])?;
        ip(&["link", "set", &outer, "master", &self.bridge, "up"])?;
        let inside = |args: &[&str]| {
            let mut all = vec!["-n", name.as_str()];
            all.extend_from_slice(args);
            ip(&all)
        };
        inside(&["link", "set", &inner, "name", "eth0"])?;
        inside(&["addr", "add", &format!("{addr}/24"), "dev", "eth0"])?;
        inside(&["link", "set", "eth0", "up"])?;
        inside(&["link", "set", "lo", "up"])?;
        inside(&["route", "add", "default", "via", &self.gateway().to_string()])?;
        Ok(host)
    }
}

/// A network namespace on the LAN, removed when dropped.
#[derive(Debug)]
pub struct Host {
    pub name: String,
    pub addr: Ipv4Addr,
}

impl Host {
    /// Where the namespace is kept (for `nsenter --net=`).
    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
    }
}
