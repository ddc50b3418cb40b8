//! The contract between the agent and its shims, below both: what the
//! agent passes (the shim's arguments, the container directory's layout,
//! the overlay to mount), what the shim answers (a typed readiness line,
//! `exit.json`), the log format both read, where the container's cgroup is,
//! and how a user name becomes ids inside the image. `runtime/` (the agent
//! side) and `shim/` (the process) import this; neither imports the other.
//!
//! # Layout
//! - this file: [`ShimArgs`], [`Ready`] ([`announce_ready`] / [`read_ready`]),
//!   [`ExitInfo`] ([`record_exit`] / [`recorded_exit`]), [`Overlay`]
//!   ([`Overlay::save`] / [`Overlay::load`]), the file names, [`cgroup_path`].
//! - [`log`]: the CRI log format and file names.
//! - [`user`]: `user[:group]` → uid/gid from the image's own files.

pub mod log;
pub mod user;

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The shim's socket, in its run directory.
pub const SOCKET: &str = "shim.sock";
/// How the container ended, in its directory on STATE.
pub const EXIT_FILE: &str = "exit.json";
/// The overlay description, in the bundle.
pub const OVERLAY_FILE: &str = "rootfs.json";
/// The shim's own stderr, in the container directory.
pub const SHIM_LOG: &str = "shim.log";
/// The OCI bundle and the log directory, in the container directory.
pub const BUNDLE_DIR: &str = "bundle";
pub const LOG_DIR: &str = "log";

/// The container's cgroup (v2), relative to the cgroup root.
pub fn cgroup_path(id: &str) -> String {
    format!("/orc/{id}")
}

/// `orc-agent shim …`: what the agent tells a shim.
#[derive(Debug, Clone, clap::Args)]
pub struct ShimArgs {
    /// Container id.
    #[arg(long)]
    pub id: String,
    /// The container's directory on STATE (bundle/, log/, exit.json).
    #[arg(long)]
    pub dir: PathBuf,
    /// The container's runtime directory (socket, exec files).
    #[arg(long)]
    pub run: PathBuf,
    /// libcontainer's state root (on tmpfs).
    #[arg(long)]
    pub root: PathBuf,
    /// Log size at which it rotates.
    #[arg(long, default_value_t = log::MAX_SIZE)]
    pub log_max_size: u64,
}

impl ShimArgs {
    /// The command line after `orc-agent`, which [`ShimArgs`] parses back.
    pub fn command_line(&self) -> Vec<OsString> {
        let mut v: Vec<OsString> = vec!["shim".into()];
        for (flag, value) in [
            ("--id", OsString::from(&self.id)),
            ("--dir", self.dir.clone().into()),
            ("--run", self.run.clone().into()),
            ("--root", self.root.clone().into()),
            ("--log-max-size", self.log_max_size.to_string().into()),
        ] {
            v.push(flag.into());
            v.push(value);
        }
        v
    }

    pub fn bundle(&self) -> PathBuf {
        self.dir.join(BUNDLE_DIR)
    }

    pub fn log_dir(&self) -> PathBuf {
        self.dir.join(LOG_DIR)
    }

    pub fn exit_file(&self) -> PathBuf {
        self.dir.join(EXIT_FILE)
    }

    pub fn socket(&self) -> PathBuf {
        self.run.join(SOCKET)
    }
}

/// The shim's one line on stdout once the container started, or why not.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum Ready {
    Started { pid: i32, started: i64 },
    Failed { error: String },
}

/// Shim side: says `r` to the agent, then stdout goes to /dev/null.
pub fn announce_ready(r: &Ready) {
    let mut out = std::io::stdout();
    let line = serde_json::to_string(r).unwrap_or_default();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        let _ = nix::unistd::dup2_stdout(null);
    }
}

/// Agent side: the readiness line, or `None` when it is not one.
pub fn read_ready(line: &str) -> Option<Ready> {
    serde_json::from_str(line.trim()).ok()
}

/// How a container ended, as the shim writes it to `exit.json` and answers `Wait`.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ExitInfo {
    pub code: i32,
    pub signal: i32,
    pub oom_killed: bool,
    /// Unix seconds.
    pub finished: i64,
}

impl ExitInfo {
    pub fn to_proto(self) -> orc_proto::container::ExitStatus {
        orc_proto::container::ExitStatus { code: self.code, signal: self.signal, oom_killed: self.oom_killed }
    }
    pub fn failed(&self) -> bool {
        self.code != 0 || self.signal != 0 || self.oom_killed
    }
}

/// The container's rootfs: an overlay the shim mounts at `bundle/rootfs`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Overlay {
    /// Unpacked layers, topmost first.
    pub lower: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
}

/// Shim side: records how the container in `dir` ended (`exit.json`, atomically).
pub fn record_exit(dir: &Path, exit: &ExitInfo) -> Result<(), crate::error::AgentError> {
    let data = serde_json::to_vec(exit).map_err(|e| crate::error::AgentError::Io(e.to_string()))?;
    // An agent restart must find it; a power loss ends the container anyway.
    crate::fsutil::write_replace(&dir.join(EXIT_FILE), &data)
}

/// Agent side: how the container in `dir` ended, when its shim recorded it.
pub fn recorded_exit(dir: &Path) -> Option<ExitInfo> {
    serde_json::from_slice(&std::fs::read(dir.join(EXIT_FILE)).ok()?).ok()
}

impl Overlay {
    /// Agent side: writes the overlay into `bundle` for the shim.
    pub fn save(&self, bundle: &Path) -> Result<(), crate::error::AgentError> {
        let data = serde_json::to_vec(self).map_err(|e| crate::error::AgentError::Io(e.to_string()))?;
        crate::fsutil::write_atomic(&bundle.join(OVERLAY_FILE), &data)
    }

    /// Shim side: the overlay of `bundle`, none when the rootfs is a plain directory.
    pub fn load(bundle: &Path) -> Result<Option<Self>, String> {
        let file = bundle.join(OVERLAY_FILE);
        let data = match std::fs::read(&file) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", file.display())),
        };
        serde_json::from_slice(&data).map(Some).map_err(|e| format!("{}: {e}", file.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: Cmd,
    }

    #[derive(clap::Subcommand)]
    enum Cmd {
        Shim(ShimArgs),
    }

    #[test]
    fn args_and_readiness_round_trip() {
        let a = ShimArgs {
            id: "c1".into(),
            dir: "/s/c1".into(),
            run: "/r/c1".into(),
            root: "/r/lc".into(),
            log_max_size: 42,
        };
        let mut argv: Vec<OsString> = vec!["orc-agent".into()];
        argv.extend(a.command_line());
        let Cmd::Shim(b) = Cli::parse_from(argv).cmd;
        assert_eq!((b.id, b.dir, b.run, b.root, b.log_max_size), (a.id, a.dir, a.run, a.root, a.log_max_size));
        for r in [Ready::Started { pid: 7, started: 9 }, Ready::Failed { error: "no".into() }] {
            assert_eq!(read_ready(&serde_json::to_string(&r).unwrap()), Some(r));
        }
        assert_eq!(read_ready("garbage"), None);
        assert_eq!(read_ready(r#"{"pid":1,"started":2}"#), Some(Ready::Started { pid: 1, started: 2 }));

        let dir = tempfile::tempdir().unwrap();
        assert_eq!(recorded_exit(dir.path()), None);
        let exit = ExitInfo { code: 137, signal: 9, oom_killed: true, finished: 5 };
        record_exit(dir.path(), &exit).unwrap();
        assert_eq!(recorded_exit(dir.path()), Some(exit));
        assert!(Overlay::load(dir.path()).unwrap().is_none());
        let o = Overlay { lower: vec!["/l/1".into()], upper: "/u".into(), work: "/w".into() };
        o.save(dir.path()).unwrap();
        let back = Overlay::load(dir.path()).unwrap().unwrap();
        assert_eq!((back.lower, back.upper, back.work), (o.lower, o.upper, o.work));
    }
}
