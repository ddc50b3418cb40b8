//! The root filesystem image: an erofs (LZ4HC) image of a directory tree,
//! followed in the same file by its dm-verity hash tree (no superblock), so one
//! block device carries both and the kernel command line carries the rest.
//!
//! Layout of `root.img`: `[erofs data: data_blocks × 4 KiB][hash tree]`.

use std::path::Path;
use std::process::Command;

use crate::cmdline::VERITY_BLOCK_SIZE;

/// Fixed so that two builds of the same tree give the same bytes.
const FS_UUID: &str = "6f72632d-726f-6f74-2d66-732d30303031";
/// Fixed for reproducibility; the salt only needs to be public, not secret.
pub const VERITY_SALT: &str = "6f72632d726f6f742d7665726974792d73616c742d76312d3030303030303031";

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// a build tool could not be run
    #[error("cannot run {tool}: {source}; install it (cargo xtask installs erofs-utils and cryptsetup-bin)")]
    Spawn { tool: &'static str, source: std::io::Error },
    /// a build tool failed
    #[error("{tool} failed ({status}): {stderr}")]
    Failed { tool: &'static str, status: String, stderr: String },
    /// the output could not be inspected
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: std::io::Error },
    /// veritysetup printed no root hash
    #[error("veritysetup printed no root hash: {0}")]
    NoRootHash(String),
}

/// What the kernel command line needs to verify and mount the root image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootImage {
    pub root_hash: String,
    pub salt: String,
    pub data_blocks: u64,
}

impl RootImage {
    /// The value of `orc.verity=`.
    pub fn cmdline_value(&self) -> String {
        format!("{}:{}:{}", self.root_hash, self.salt, self.data_blocks)
    }
}

fn run(tool: &'static str, cmd: &mut Command) -> Result<String, RootfsError> {
    let out = cmd.output().map_err(|source| RootfsError::Spawn { tool, source })?;
    if !out.status.success() {
        return Err(RootfsError::Failed {
            tool,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Builds `out` from the directory `tree`.
pub fn build(tree: &Path, out: &Path) -> Result<RootImage, RootfsError> {
    let _ = std::fs::remove_file(out);
    run(
        "mkfs.erofs",
        Command::new("mkfs.erofs")
            .arg("-zlz4hc")
            .arg("-T0")
            .arg(format!("-U{FS_UUID}"))
            .arg("--all-root")
            .arg("-x-1")
            .arg("--quiet")
            .arg(out)
            .arg(tree),
    )?;
    let io = |source| RootfsError::Io { path: out.display().to_string(), source };
    let len = std::fs::metadata(out).map_err(io)?.len();
    // erofs images are made of whole 4 KiB blocks already; pad defensively.
    let data_blocks = len.div_ceil(VERITY_BLOCK_SIZE);
    let data_len = data_blocks * VERITY_BLOCK_SIZE;
    if data_len != len {
        std::fs::OpenOptions::new().write(true).open(out).and_then(|f| f.set_len(data_len)).map_err(io)?;
    }
    let stdout = run(
        "veritysetup",
        Command::new("veritysetup")
            .arg("format")
            .arg("--no-superblock")
            .arg(format!("--salt={VERITY_SALT}"))
            .arg(format!("--data-blocks={data_blocks}"))
            .arg(format!("--hash-offset={data_len}"))
            .arg(format!("--data-block-size={VERITY_BLOCK_SIZE}"))
            .arg(format!("--hash-block-size={VERITY_BLOCK_SIZE}"))
            .arg("--hash=sha256")
            .arg(out)
            .arg(out),
    )?;
    let root_hash = parse_root_hash(&stdout).ok_or_else(|| RootfsError::NoRootHash(stdout.clone()))?;
    Ok(RootImage { root_hash, salt: VERITY_SALT.to_string(), data_blocks })
}

fn parse_root_hash(stdout: &str) -> Option<String> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("Root hash:"))
        .map(|h| h.trim().to_string())
        .filter(|h| h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_hash_is_parsed() {
        let out = "VERITY header information for x\nUUID:\nHash type:  1\nRoot hash:      \
                   4392712ba01368efdf14b05c76f9e4df0d53664630b5d48632ed17a137f39076\n";
        assert_eq!(
            parse_root_hash(out).as_deref(),
            Some("4392712ba01368efdf14b05c76f9e4df0d53664630b5d48632ed17a137f39076")
        );
        assert_eq!(parse_root_hash("Root hash: xyz"), None);
    }

    #[test]
    fn cmdline_value_format() {
        let r = RootImage { root_hash: "ab".into(), salt: "cd".into(), data_blocks: 7 };
        assert_eq!(r.cmdline_value(), "ab:cd:7");
    }
}
