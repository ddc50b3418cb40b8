//! Image names: `busybox` means `docker.io/library/busybox:latest`, as users
//! expect from Docker.

use oci_client::Reference;

use crate::error::AgentError;

pub fn parse(name: &str) -> Result<Reference, AgentError> {
    Reference::try_from(name.trim()).map_err(|e| {
        AgentError::InvalidArgument(format!(
            "{name:?} is not an image reference ({e}); expected e.g. busybox, \
             docker.io/library/busybox:1.36 or registry:5000/app@sha256:…"
        ))
    })
}

/// The full name an image is stored under.
pub fn normalize(name: &str) -> Result<String, AgentError> {
    let r = parse(name)?;
    // A reference with a tag and no digest, or a digest only: `whole()` keeps both.
    Ok(match (r.tag(), r.digest()) {
        (None, None) => format!("{}:latest", r.whole()),
        _ => r.whole(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_short_names_expand() {
        assert_eq!(normalize("busybox").unwrap(), "docker.io/library/busybox:latest");
        assert_eq!(normalize("busybox:1.36").unwrap(), "docker.io/library/busybox:1.36");
        assert_eq!(normalize("me/app").unwrap(), "docker.io/me/app:latest");
        assert_eq!(normalize("10.0.2.2:5000/orc/busybox:1").unwrap(), "10.0.2.2:5000/orc/busybox:1");
        assert!(normalize("busybox:bad tag").is_err());
        assert!(normalize("lower/UPPER").is_err());
        assert!(normalize("").is_err());
    }
}
