//! The `orc.*` keys of the kernel command line, parsed by a pure function so the
//! table of cases below is the specification.

use std::net::Ipv4Addr;

pub use orc_image::cmdline::{
    ADVERTISE, HOSTNAME, INSECURE_REGISTRIES, INSTALL, INSTALL_IMAGE, IP, JOIN, MAINTENANCE_TOKEN, MAX_IMAGE_SIZE, NTP,
    ROOT, STATE, VERITY,
};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CmdlineError {
    /// orc.verity is malformed
    #[error("{VERITY}={0:?}: expected <root hash hex>:<salt hex>:<data blocks>")]
    Verity(String),
    /// orc.ip is malformed
    #[error("{IP}={0:?}: expected IFACE:ADDR/PREFIX[:GATEWAY], e.g. eth1:10.42.0.11/24")]
    Ip(String),
    /// orc.max_image_size is not a number of bytes
    #[error("{MAX_IMAGE_SIZE}={0:?}: expected a number of bytes, e.g. 34359738368")]
    Bytes(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verity {
    pub root_hash: String,
    pub salt: String,
    pub data_blocks: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticIp {
    pub iface: String,
    pub addr: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
}

/// Everything `orc-init` takes from the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cmdline {
    pub root: Option<String>,
    pub verity: Option<Verity>,
    pub state: Option<String>,
    pub ips: Vec<StaticIp>,
    pub hostname: Option<String>,
    pub join: Option<String>,
    pub insecure_registries: Vec<String>,
    pub advertise: Option<String>,
    pub max_image_size: Option<u64>,
    pub maintenance_token: Option<String>,
    pub ntp: Vec<String>,
    pub install: Option<String>,
    pub install_image: Option<String>,
}

fn parse_verity(v: &str) -> Result<Verity, CmdlineError> {
    let err = || CmdlineError::Verity(v.to_string());
    let mut it = v.split(':');
    let (Some(h), Some(s), Some(b), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return Err(err());
    };
    let hex = |x: &str| !x.is_empty() && x.len().is_multiple_of(2) && x.chars().all(|c| c.is_ascii_hexdigit());
    if h.len() != 64 || !hex(h) || !hex(s) {
        return Err(err());
    }
    let data_blocks = b.parse().map_err(|_| err())?;
    Ok(Verity { root_hash: h.to_string(), salt: s.to_string(), data_blocks })
}

fn parse_ip(v: &str) -> Result<StaticIp, CmdlineError> {
    let err = || CmdlineError::Ip(v.to_string());
    let mut it = v.split(':');
    let iface = it.next().filter(|s| !s.is_empty()).ok_or_else(err)?;
    let (addr, prefix) = it.next().and_then(|c| c.split_once('/')).ok_or_else(err)?;
    let addr: Ipv4Addr = addr.parse().map_err(|_| err())?;
    let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32).ok_or_else(err)?;
    let gateway = match it.next() {
        None | Some("") => None,
        Some(g) => Some(g.parse().map_err(|_| err())?),
    };
    if it.next().is_some() {
        return Err(err());
    }
    Ok(StaticIp { iface: iface.to_string(), addr, prefix, gateway })
}

/// Parses the command line. Unknown keys are ignored (they belong to the
/// kernel); a malformed `orc.*` value is an error naming the key.
pub fn parse(cmdline: &str) -> Result<Cmdline, CmdlineError> {
    let mut c = Cmdline::default();
    for word in cmdline.split_whitespace() {
        let Some((key, value)) = word.split_once('=') else { continue };
        match key {
            ROOT => c.root = Some(value.to_string()),
            VERITY => c.verity = Some(parse_verity(value)?),
            STATE => c.state = Some(value.to_string()),
            IP => c.ips.push(parse_ip(value)?),
            HOSTNAME => c.hostname = Some(value.to_string()),
            JOIN => c.join = Some(value.to_string()),
            ADVERTISE => c.advertise = Some(value.to_string()),
            MAINTENANCE_TOKEN => c.maintenance_token = Some(value.to_string()),
            MAX_IMAGE_SIZE => {
                c.max_image_size = Some(value.parse().map_err(|_| CmdlineError::Bytes(value.to_string()))?)
            }
            INSECURE_REGISTRIES => {
                c.insecure_registries.extend(value.split(',').filter(|r| !r.is_empty()).map(String::from))
            }
            NTP => c.ntp.extend(value.split(',').filter(|r| !r.is_empty()).map(String::from)),
            INSTALL => c.install = Some(value.to_string()),
            INSTALL_IMAGE => c.install_image = Some(value.to_string()),
            _ => {}
        }
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "4392712ba01368efdf14b05c76f9e4df0d53664630b5d48632ed17a137f39076";

    #[test]
    fn parse_table() {
        let ok: &[(&str, Cmdline)] = &[
            ("console=ttyS0 quiet", Cmdline::default()),
            (
                "orc.advertise=10.42.0.11:7443 orc.join=ORC1-x@10.42.0.10:7443",
                Cmdline {
                    advertise: Some("10.42.0.11:7443".into()),
                    join: Some("ORC1-x@10.42.0.10:7443".into()),
                    ..Default::default()
                },
            ),
            (
                "orc.install=/dev/disk/by-id/virtio-d1 orc.install_image=10.0.2.2:5000/orc:0.2.0",
                Cmdline {
                    install: Some("/dev/disk/by-id/virtio-d1".into()),
                    install_image: Some("10.0.2.2:5000/orc:0.2.0".into()),
                    ..Default::default()
                },
            ),
            (
                "orc.ntp=10.0.2.2:11123,time.example.org",
                Cmdline { ntp: vec!["10.0.2.2:11123".into(), "time.example.org".into()], ..Default::default() },
            ),
            (
                "orc.insecure_registries=10.0.2.2:5000,reg:80 orc.insecure_registries=x:1",
                Cmdline {
                    insecure_registries: vec!["10.0.2.2:5000".into(), "reg:80".into(), "x:1".into()],
                    ..Default::default()
                },
            ),
            (
                "orc.root=/dev/vda orc.state=/dev/vdb orc.hostname=n1",
                Cmdline {
                    root: Some("/dev/vda".into()),
                    state: Some("/dev/vdb".into()),
                    hostname: Some("n1".into()),
                    ..Default::default()
                },
            ),
            (
                &format!("orc.verity={HASH}:00ff:1234"),
                Cmdline {
                    verity: Some(Verity { root_hash: HASH.into(), salt: "00ff".into(), data_blocks: 1234 }),
                    ..Default::default()
                },
            ),
            (
                "orc.ip=eth1:10.42.0.11/24 orc.ip=eth2:10.0.0.2/8:10.0.0.1",
                Cmdline {
                    ips: vec![
                        StaticIp { iface: "eth1".into(), addr: [10, 42, 0, 11].into(), prefix: 24, gateway: None },
                        StaticIp {
                            iface: "eth2".into(),
                            addr: [10, 0, 0, 2].into(),
                            prefix: 8,
                            gateway: Some([10, 0, 0, 1].into()),
                        },
                    ],
                    ..Default::default()
                },
            ),
        ];
        for (i, (line, want)) in ok.iter().enumerate() {
            assert_eq!(parse(line).as_ref(), Ok(want), "case {i}: {line}");
        }
    }

    #[test]
    fn errors_name_the_key() {
        let bad = [
            "orc.verity=zz:00:1",
            &format!("orc.verity={HASH}:00"),
            &format!("orc.verity={HASH}:0g:1"),
            &format!("orc.verity={HASH}:00:x"),
            "orc.ip=eth0",
            "orc.ip=eth0:10.0.0.1",
            "orc.ip=eth0:10.0.0.1/33",
            "orc.ip=:10.0.0.1/24",
            "orc.ip=eth0:10.0.0.1/24:nope",
            "orc.max_image_size=32g",
        ];
        for (i, line) in bad.iter().enumerate() {
            let e = parse(line).unwrap_err().to_string();
            let key = line.split('=').next().unwrap();
            assert!(e.starts_with(key), "case {i}: {e}");
        }
    }
}
