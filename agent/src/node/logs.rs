//! `Logs`: the per-service log files orc-init writes under `<run>/log/`
//! (`init.log`, `agent.log`, rotated to `.log.1`), tail and follow.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use orc_proto::machine::LogLine;
use tokio::sync::mpsc;

use crate::error::AgentError;

const POLL: Duration = Duration::from_millis(250);

/// Services with a log, sorted.
pub fn available(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| d.flatten().filter_map(|e| e.file_name().to_str()?.strip_suffix(".log").map(str::to_string)).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// The log file of `service`, or an error listing the ones there are.
pub fn path_of(dir: &Path, service: &str) -> Result<PathBuf, AgentError> {
    let ok = !service.is_empty() && service.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    let p = dir.join(format!("{service}.log"));
    if ok && p.exists() {
        return Ok(p);
    }
    Err(AgentError::NotFound(format!("no log for service {service:?}; logs: {}", available(dir).join(", "))))
}

/// The last `n` lines of `text` (all when n is 0).
pub fn tail(text: &str, n: usize) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().collect();
    if n == 0 || n >= lines.len() {
        lines
    } else {
        lines[lines.len() - n..].to_vec()
    }
}

pub async fn stream(
    path: PathBuf,
    service: String,
    tail_n: usize,
    follow: bool,
    tx: mpsc::Sender<Result<LogLine, AgentError>>,
) {
    let send = |line: &str| LogLine { service: service.clone(), line: line.to_string() };
    let Ok(mut file) = std::fs::File::open(&path) else { return };
    let mut text = String::new();
    if let Err(e) = file.read_to_string(&mut text) {
        let _ = tx.send(Err(AgentError::Internal(format!("reading {}: {e}", path.display())))).await;
        return;
    }
    for l in tail(&text, tail_n) {
        if tx.send(Ok(send(l))).await.is_err() {
            return;
        }
    }
    if !follow {
        return;
    }
    let mut pos = text.len() as u64;
    let mut partial = String::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = tx.closed() => return,
        }
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if len < pos {
            // Rotated: start over on the new file.
            match std::fs::File::open(&path) {
                Ok(f) => file = f,
                Err(_) => continue,
            }
            pos = 0;
        }
        if len == pos {
            continue;
        }
        let mut chunk = String::new();
        if file.seek(SeekFrom::Start(pos)).is_err() || file.read_to_string(&mut chunk).is_err() {
            continue;
        }
        pos += chunk.len() as u64;
        partial.push_str(&chunk);
        while let Some(i) = partial.find('\n') {
            let line: String = partial.drain(..=i).collect();
            if tx.send(Ok(send(line.trim_end_matches('\n')))).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_table() {
        let t = "a\nb\nc\n";
        assert_eq!(tail(t, 0), vec!["a", "b", "c"]);
        assert_eq!(tail(t, 2), vec!["b", "c"]);
        assert_eq!(tail(t, 9), vec!["a", "b", "c"]);
    }

    #[test]
    fn unknown_service_lists_the_known_ones() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("init.log"), "x\n").unwrap();
        std::fs::write(dir.path().join("agent.log"), "y\n").unwrap();
        assert!(path_of(dir.path(), "init").is_ok());
        let e = path_of(dir.path(), "nope").unwrap_err().to_string();
        assert!(e.contains("logs: agent, init"), "{e}");
        assert!(path_of(dir.path(), "../etc/passwd").is_err());
    }
}
