//! `user`, `uid`, `user:group` or `uid:gid` to numeric ids, read from the
//! image's own /etc/passwd and /etc/group (topmost layer that has them,
//! resolved inside the layer so its symlinks cannot point at the node's).

use std::path::{Path, PathBuf};

use nix::fcntl::ResolveFlag;

use crate::error::AgentError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ids {
    pub uid: u32,
    pub gid: u32,
}

/// The image's `file` from the first of `layers` (topmost first) that has
/// it: empty when none has; an error when it is not a regular file of at
/// most 4 MiB (a FIFO or a device there is refused, never waited on).
fn read(layers: &[PathBuf], file: &str) -> Result<String, String> {
    for layer in layers {
        match crate::fsutil::read_regular_in(layer, Path::new(file), ResolveFlag::RESOLVE_IN_ROOT, 4 << 20) {
            Ok(data) => return Ok(String::from_utf8_lossy(&data).into_owned()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("the image's /{file} cannot be read: {e}")),
        }
    }
    Ok(String::new())
}

/// (name, id, primary gid) entries of a passwd or group file.
fn entries(text: &str) -> impl Iterator<Item = (&str, u32, u32)> {
    text.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        Some((*f.first()?, f.get(2)?.parse().ok()?, f.get(3).and_then(|g| g.parse().ok()).unwrap_or(0)))
    })
}

pub fn resolve(user: &str, layers: &[PathBuf]) -> Result<Ids, AgentError> {
    let user = user.trim();
    if user.is_empty() {
        return Ok(Ids { uid: 0, gid: 0 });
    }
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let passwd = read(layers, "etc/passwd");
    let (uid, primary) = match u.parse::<u32>() {
        Ok(uid) => {
            let text = passwd.unwrap_or_default();
            let primary = entries(&text).find(|e| e.1 == uid).map(|e| e.2).unwrap_or(0);
            (uid, primary)
        }
        Err(_) => {
            let text =
                passwd.map_err(|e| AgentError::InvalidArgument(format!("user {u:?}: {e}; use a numeric uid")))?;
            let found = entries(&text).find(|e| e.0 == u).map(|e| (e.1, e.2));
            found.ok_or_else(|| {
                AgentError::InvalidArgument(format!(
                    "user {u:?} is not in the image's /etc/passwd; use a numeric uid (e.g. 1000:1000)"
                ))
            })?
        }
    };
    let gid = match g {
        None => primary,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => {
                let group = read(layers, "etc/group")
                    .map_err(|e| AgentError::InvalidArgument(format!("group {g:?}: {e}; use a numeric gid")))?;
                let found = entries(&group).find(|e| e.0 == g).map(|e| e.1);
                found.ok_or_else(|| {
                    AgentError::InvalidArgument(format!(
                        "group {g:?} is not in the image's /etc/group; use a numeric gid"
                    ))
                })?
            }
        },
    };
    Ok(Ids { uid, gid })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_resolve_from_the_top_layer() {
        let top = tempfile::tempdir().unwrap();
        let bottom = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(top.path().join("etc")).unwrap();
        std::fs::create_dir_all(bottom.path().join("etc")).unwrap();
        std::fs::write(top.path().join("etc/passwd"), "root:x:0:0::/:/bin/sh\nwww:x:33:34::/:/bin/false\n").unwrap();
        std::fs::write(bottom.path().join("etc/passwd"), "www:x:99:99::/:/bin/false\n").unwrap();
        std::fs::write(bottom.path().join("etc/group"), "staff:x:50:\n").unwrap();
        let layers = [top.path().to_owned(), bottom.path().to_owned()];
        assert_eq!(resolve("", &layers).unwrap(), Ids { uid: 0, gid: 0 });
        assert_eq!(resolve("www", &layers).unwrap(), Ids { uid: 33, gid: 34 });
        assert_eq!(resolve("33", &layers).unwrap(), Ids { uid: 33, gid: 34 });
        assert_eq!(resolve("1000:1000", &layers).unwrap(), Ids { uid: 1000, gid: 1000 });
        assert_eq!(resolve("www:staff", &layers).unwrap(), Ids { uid: 33, gid: 50 });
        assert!(resolve("nobody", &layers).unwrap_err().to_string().contains("not in the image"));
    }

    #[test]
    fn a_symlinked_passwd_resolves_inside_the_layer() {
        let layer = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(layer.path().join("etc")).unwrap();
        // Points at the node's /etc/passwd if followed naively.
        std::os::unix::fs::symlink("/etc/passwd", layer.path().join("etc/passwd")).unwrap();
        assert!(resolve("root", &[layer.path().to_owned()]).is_err());
    }

    #[test]
    fn a_fifo_or_device_as_passwd_is_refused_at_once() {
        let layer = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(layer.path().join("etc")).unwrap();
        // A reader opening this FIFO would wait for a writer forever.
        nix::unistd::mkfifo(&layer.path().join("etc/passwd"), nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        let layers = [layer.path().to_owned()];
        let e = resolve("www", &layers).unwrap_err().to_string();
        assert!(e.contains("not a regular file") && e.contains("numeric uid"), "{e}");
        // A numeric user needs no file.
        assert_eq!(resolve("1000:1000", &layers).unwrap(), Ids { uid: 1000, gid: 1000 });
    }
}
