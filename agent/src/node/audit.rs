//! The node's audit log: every call by a person (or an unknown caller)
//! that changes something or was refused — who, what, when, with what
//! result — kept on STATE (`<state>/audit.log`, JSON lines, the previous
//! file kept as `audit.log.1` past [`MAX_BYTES`]) and read by admins
//! (`orcctl audit [-f]`). Each node records the calls it served: a
//! cluster write is in the log of the manager that took it.
//!
//! A record that cannot be written (a full disk) does not stop the call;
//! the failure is logged and counted.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::pki::role::Role;

/// One log file's size before it is rotated.
pub const MAX_BYTES: u64 = 8 << 20;
const FILE: &str = "audit.log";
const PREVIOUS: &str = "audit.log.1";

/// One call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub time_ms: i64,
    /// The certificate's name ("" when the caller had none).
    pub who: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub serial: String,
    pub remote: String,
    /// `Service/Method`, e.g. `Services/Create`.
    pub method: String,
    /// What it acted on, when the handler says (a service's name, a node).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub target: String,
    /// The gRPC status code (0: OK).
    pub code: i32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

pub struct AuditLog {
    dir: PathBuf,
    file: Mutex<()>,
    tx: broadcast::Sender<Arc<Record>>,
    failures: AtomicU64,
}

impl AuditLog {
    pub fn open(state_dir: &Path) -> Arc<Self> {
        Arc::new(Self {
            dir: state_dir.to_path_buf(),
            file: Mutex::new(()),
            tx: broadcast::channel(256).0,
            failures: AtomicU64::new(0),
        })
    }

    /// Appends `r` (and hands it to followers).
    pub fn record(&self, r: Record) {
        if let Err(e) = self.append(&r) {
            let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(error = %e, failures = n, "an audit record could not be written");
            }
        }
        let _ = self.tx.send(Arc::new(r));
    }

    fn append(&self, r: &Record) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(r).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let _held = crate::sync::lock(&self.file);
        let path = self.dir.join(FILE);
        if std::fs::metadata(&path).is_ok_and(|m| m.len() + line.len() as u64 > MAX_BYTES) {
            std::fs::rename(&path, self.dir.join(PREVIOUS))?;
        }
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new().append(true).create(true).mode(0o600).open(&path)?;
        f.write_all(&line)
    }

    /// The records since `since_ms`, oldest first (lines that do not
    /// parse, like one cut by a crash, are skipped).
    pub fn read(&self, since_ms: i64) -> Vec<Record> {
        let _held = crate::sync::lock(&self.file);
        let mut out = Vec::new();
        for name in [PREVIOUS, FILE] {
            let Ok(f) = std::fs::File::open(self.dir.join(name)) else { continue };
            out.extend(
                std::io::BufReader::new(f)
                    .lines()
                    .map_while(Result::ok)
                    .filter_map(|l| serde_json::from_str::<Record>(&l).ok())
                    .filter(|r| r.time_ms >= since_ms),
            );
        }
        out
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Record>> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(t: i64, method: &str) -> Record {
        Record {
            time_ms: t,
            who: "alice".into(),
            role: Some(Role::Operator),
            serial: "ab".into(),
            remote: "1.2.3.4:5".into(),
            method: method.into(),
            target: "web".into(),
            code: 0,
            message: String::new(),
        }
    }

    #[test]
    fn records_round_trip_rotate_and_skip_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path());
        let mut follow = log.subscribe();
        log.record(rec(1, "Services/Create"));
        log.record(rec(2, "Services/Remove"));
        assert_eq!(follow.try_recv().unwrap().method, "Services/Create");
        assert_eq!(log.read(0), vec![rec(1, "Services/Create"), rec(2, "Services/Remove")]);
        assert_eq!(log.read(2).len(), 1);
        // A crash mid-line: that line is skipped, the next ones are read.
        std::fs::OpenOptions::new().append(true).open(dir.path().join(FILE)).unwrap().write_all(b"{\"time_").unwrap();
        std::fs::OpenOptions::new().append(true).open(dir.path().join(FILE)).unwrap().write_all(b"\n").unwrap();
        log.record(rec(3, "Nodes/Update"));
        assert_eq!(log.read(0).len(), 3);
        // Past the bound, the file moves aside and both are read.
        let f = std::fs::OpenOptions::new().append(true).open(dir.path().join(FILE)).unwrap();
        f.set_len(MAX_BYTES).unwrap();
        log.record(rec(4, "Volumes/Create"));
        assert!(dir.path().join(PREVIOUS).exists());
        let all = log.read(0);
        assert_eq!(all.last().map(|r| r.time_ms), Some(4));
        assert_eq!(std::fs::read_to_string(dir.path().join(FILE)).unwrap().lines().count(), 1);
    }

    #[test]
    fn a_record_that_cannot_be_written_does_not_fail_the_call() {
        let log = AuditLog::open(Path::new("/nonexistent/dir"));
        log.record(rec(1, "Services/Create"));
        assert_eq!(log.failures.load(Ordering::Relaxed), 1);
        assert!(log.read(0).is_empty());
    }
}
