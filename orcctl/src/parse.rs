//! Parsing what people type: sizes, durations, ports, `KEY=VALUE`.

use orc_proto::cluster::Port;

use crate::error::CliError;

/// `64m`, `1g`, `512k`, `1048576`.
pub fn parse_bytes(s: &str) -> Result<u64, CliError> {
    let s = s.trim().to_ascii_lowercase();
    // 64m, 64mb, 64mi and 64mib are the same: powers of two.
    let s = s.trim_end_matches('b').trim_end_matches('i');
    let (num, mult) = match s.chars().last() {
        Some('k') => (&s[..s.len() - 1], 1u64 << 10),
        Some('m') => (&s[..s.len() - 1], 1 << 20),
        Some('g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    let n: f64 = num.parse().map_err(|_| CliError::Usage(format!("{s:?} is not a size (e.g. 64m, 1g, 1048576)")))?;
    Ok((n * mult as f64) as u64)
}

/// `5s`, `500ms`, `2m`, `1h` → milliseconds.
pub fn parse_duration(s: &str) -> Result<u64, CliError> {
    let s = s.trim();
    let bad = || CliError::Usage(format!("{s:?} is not a duration (e.g. 500ms, 5s, 2m, 1h)"));
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3_600_000.0)
    } else {
        return Err(bad());
    };
    let n: f64 = num.trim().parse().map_err(|_| bad())?;
    if n < 0.0 || !n.is_finite() {
        return Err(bad());
    }
    Ok((n * mult) as u64)
}

/// A lifetime in seconds: `90d`, or a [`parse_duration`] (`12h`, `30m`, `10s`).
pub fn parse_ttl_secs(s: &str) -> Result<u64, CliError> {
    let t = s.trim();
    match t.strip_suffix('d') {
        Some(days) => days
            .parse::<u64>()
            .ok()
            .and_then(|d| d.checked_mul(86_400))
            .ok_or_else(|| CliError::Usage(format!("{t:?} is not a duration (e.g. 90d, 12h)"))),
        None => Ok(parse_duration(t)? / 1000),
    }
}

/// `80`, `8080:80`, `53/udp`, `53:53/udp`, or Docker's long form
/// `published=8080,target=80,protocol=tcp,mode=ingress|local|host`.
pub fn parse_port(s: &str) -> Result<Port, CliError> {
    let bad = |why: &str| {
        CliError::Usage(format!("port {s:?}: {why} (e.g. 8080, 8080:80, 53/udp, published=8080,target=80,mode=local)"))
    };
    let num = |p: &str| p.trim().parse::<u16>().map_err(|_| bad("not a port number"));
    let protocol = |p: &str| match p {
        "tcp" | "udp" => Ok(p.to_string()),
        _ => Err(bad("the protocol is tcp or udp")),
    };
    if s.contains('=') {
        let mut port = Port { protocol: "tcp".into(), mode: "ingress".into(), ..Default::default() };
        for field in s.split(',') {
            let (k, v) = field.split_once('=').ok_or_else(|| bad("long form fields are KEY=VALUE"))?;
            match k.trim() {
                "published" => port.published = num(v)?.into(),
                "target" => port.target = num(v)?.into(),
                "protocol" => port.protocol = protocol(v.trim())?,
                "mode" => match v.trim() {
                    m @ ("ingress" | "local" | "host") => port.mode = m.into(),
                    _ => return Err(bad("the mode is ingress, local or host")),
                },
                other => return Err(bad(&format!("unknown field {other:?}: use published, target, protocol, mode"))),
            }
        }
        if port.target == 0 {
            return Err(bad("target is required"));
        }
        if port.published == 0 {
            port.published = port.target;
        }
        return Ok(port);
    }
    let (ports, proto) = match s.split_once('/') {
        Some((p, proto)) => (p, protocol(proto)?),
        None => (s, "tcp".to_string()),
    };
    let (published, target) = match ports.split_once(':') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => (num(ports)?, num(ports)?),
    };
    Ok(Port { published: published.into(), target: target.into(), protocol: proto, mode: "ingress".into() })
}

/// `KEY=VALUE` (the `what` names it in the error).
pub fn key_value(s: &str, what: &str) -> Result<(String, String), CliError> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| CliError::Usage(format!("{what} {s:?} is not KEY=VALUE")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_bytes("64m").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("1G").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("512k").unwrap(), 512 << 10);
        assert_eq!(parse_bytes("1000").unwrap(), 1000);
        assert!(parse_bytes("lots").is_err());
    }

    #[test]
    fn ports_parse_short_and_long() {
        let p = |s: &str| parse_port(s).map(|p| (p.published, p.target, p.protocol, p.mode));
        let t = |a: u32, b: u32, proto: &str, mode: &str| (a, b, proto.to_string(), mode.to_string());
        assert_eq!(p("80").unwrap(), t(80, 80, "tcp", "ingress"));
        assert_eq!(p("8080:80").unwrap(), t(8080, 80, "tcp", "ingress"));
        assert_eq!(p("53:53/udp").unwrap(), t(53, 53, "udp", "ingress"));
        assert_eq!(p("published=8080,target=80,mode=local").unwrap(), t(8080, 80, "tcp", "local"));
        assert_eq!(p("target=53,protocol=udp,mode=host").unwrap(), t(53, 53, "udp", "host"));
        for (bad, why) in [
            ("80/sctp", "tcp or udp"),
            ("published=80", "target is required"),
            ("target=80,mode=nodeport", "ingress, local or host"),
            ("target=80,port=1", "unknown field \"port\""),
            ("x:80", "not a port number"),
        ] {
            let e = parse_port(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}

/// A `--secret`/`--config` flag: `NAME`, or
/// `source=NAME[,target=PATH][,uid=N][,gid=N][,mode=OCTAL]`.
pub fn parse_file_ref(s: &str, what: &str) -> Result<orc_proto::cluster::FileRef, CliError> {
    let mut f = orc_proto::cluster::FileRef::default();
    if !s.contains('=') {
        f.name = s.trim().to_string();
    }
    for part in s.split(',').filter(|_| s.contains('=')) {
        let (k, v) = part.split_once('=').ok_or_else(|| {
            CliError::Usage(format!("--{what} {s:?}: {part:?} is not KEY=VALUE (source, target, uid, gid, mode)"))
        })?;
        let num = |v: &str, radix: u32| {
            u32::from_str_radix(v.trim_start_matches("0o"), radix)
                .map_err(|_| CliError::Usage(format!("--{what} {s:?}: {k}={v} is not a number")))
        };
        match k.trim() {
            "source" | "src" => f.name = v.to_string(),
            "target" | "dst" | "destination" => f.target = v.to_string(),
            "uid" => f.uid = num(v, 10)?,
            "gid" => f.gid = num(v, 10)?,
            "mode" => f.mode = num(v, 8)?,
            other => {
                return Err(CliError::Usage(format!(
                    "--{what} {s:?}: unknown option {other:?} (source, target, uid, gid, mode)"
                )))
            }
        }
    }
    if f.name.is_empty() {
        return Err(CliError::Usage(format!("--{what} {s:?} names no {what}: give NAME or source=NAME")));
    }
    Ok(f)
}

#[cfg(test)]
mod file_ref_tests {
    use super::parse_file_ref;

    #[test]
    fn short_and_long_forms() {
        let f = parse_file_ref("db", "secret").unwrap();
        assert_eq!((f.name.as_str(), f.target.as_str(), f.mode), ("db", "", 0));
        let f = parse_file_ref("source=db,target=/etc/pw,uid=100,gid=101,mode=0400", "secret").unwrap();
        assert_eq!((f.name.as_str(), f.target.as_str(), f.uid, f.gid, f.mode), ("db", "/etc/pw", 100, 101, 0o400));
        assert!(parse_file_ref("target=/x", "secret").unwrap_err().to_string().contains("names no secret"));
        assert!(parse_file_ref("source=db,mode=9", "config").unwrap_err().to_string().contains("mode=9"));
        assert!(parse_file_ref("source=db,owner=1", "config").unwrap_err().to_string().contains("unknown option"));
    }
}

/// A `--mount` flag: `type=volume|tmpfs,source=NAME,target=PATH[,readonly]`.
pub fn parse_mount(s: &str) -> Result<orc_proto::cluster::ServiceMount, CliError> {
    let mut m = orc_proto::cluster::ServiceMount { r#type: "volume".into(), ..Default::default() };
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, "true"));
        match k {
            "type" => m.r#type = v.to_string(),
            "source" | "src" => m.source = v.to_string(),
            "target" | "dst" | "destination" => m.target = v.to_string(),
            // Docker's `volume-opt=size=…` spelled short.
            "size" => m.size = parse_bytes(v)?,
            "readonly" | "ro" => {
                m.read_only = match v {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(CliError::Usage(format!("--mount {s:?}: {k}={v} is not true or false"))),
                }
            }
            other => {
                return Err(CliError::Usage(format!(
                    "--mount {s:?}: unknown option {other:?} (type, source, target, readonly, size)"
                )))
            }
        }
    }
    if m.target.is_empty() {
        return Err(CliError::Usage(format!("--mount {s:?} has no target: add target=/PATH")));
    }
    if m.r#type == "bind" {
        return Err(CliError::Usage(format!(
            "--mount {s:?}: services mount volumes and tmpfs; a host path is `orcctl container run -v` (admins)"
        )));
    }
    Ok(m)
}

#[cfg(test)]
mod mount_tests {
    use super::parse_mount;

    #[test]
    fn mounts() {
        let m = parse_mount("type=volume,source=data,target=/data,readonly").unwrap();
        assert_eq!(
            (m.r#type.as_str(), m.source.as_str(), m.target.as_str(), m.read_only),
            ("volume", "data", "/data", true)
        );
        let m = parse_mount("target=/cache").unwrap();
        assert_eq!((m.r#type.as_str(), m.source.as_str()), ("volume", ""));
        assert!(parse_mount("source=x").unwrap_err().to_string().contains("no target"));
        assert!(parse_mount("type=bind,source=/x,target=/y").unwrap_err().to_string().contains("container run -v"));
        assert_eq!(parse_mount("target=/x,size=1MiB").unwrap().size, 1 << 20);
        assert!(parse_mount("target=/x,colour=red").unwrap_err().to_string().contains("unknown option"));
    }
}
