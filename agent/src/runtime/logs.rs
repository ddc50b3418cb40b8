//! Reading a container's log files: the last lines, then (with follow) what
//! the shim appends, across rotations, until the container has exited.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::shim_contract::log::{parse, FILE, ROTATED};
use orc_proto::container as pb;

const POLL: Duration = Duration::from_millis(200);

fn to_proto(line: &[u8]) -> Option<pb::LogEntry> {
    let e = parse(line)?;
    Some(pb::LogEntry { time: e.time, stream: e.stream, line: e.text })
}

/// Complete lines of `data`; the unfinished rest stays in `data`. One pass
/// over the bytes and one move of the rest, whatever the number of lines.
fn take_lines(data: &mut Vec<u8>) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, b) in data.iter().enumerate() {
        if *b == b'\n' {
            out.push(data[start..i].to_vec());
            start = i + 1;
        }
    }
    data.drain(..start);
    out
}

fn read_from(path: &Path, offset: u64) -> std::io::Result<(Vec<u8>, u64)> {
    let mut f = std::fs::File::open(path)?;
    let ino = f.metadata()?.ino();
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    Ok((buf, ino))
}

/// Streams the log of the container in `dir` (its `log/` directory) into
/// `tx`. `running` says whether to keep following; `changed` wakes on a
/// change of any container, so a follow ends as soon as its container does.
pub async fn stream(
    dir: PathBuf,
    follow: bool,
    tail: u32,
    running: impl Fn() -> bool + Send + 'static,
    mut changed: watch::Receiver<u64>,
    tx: mpsc::Sender<pb::LogEntry>,
) {
    let log = dir.join(FILE);
    let rotated = dir.join(ROTATED);
    let (old, _) = read_from(&rotated, 0).unwrap_or_default();
    let (cur, mut ino) = read_from(&log, 0).unwrap_or_default();
    let mut offset = cur.len() as u64;
    let mut all = old;
    all.extend_from_slice(&cur);
    let mut lines = take_lines(&mut all);
    let mut pending = all;
    if tail > 0 && lines.len() > tail as usize {
        lines.drain(..lines.len() - tail as usize);
    }

    for l in lines {
        if let Some(e) = to_proto(&l) {
            if tx.send(e).await.is_err() {
                return;
            }
        }
    }
    if !follow {
        return;
    }
    loop {
        let was_running = running();
        let mut data = std::mem::take(&mut pending);
        match std::fs::metadata(&log) {
            Ok(m) if m.ino() != ino => {
                // Rotated: the rest of the old file is now `.1`.
                if let Ok((rest, _)) = read_from(&rotated, offset) {
                    data.extend_from_slice(&rest);
                }
                offset = 0;
                ino = m.ino();
            }
            _ => {}
        }
        if let Ok((new, _)) = read_from(&log, offset) {
            offset += new.len() as u64;
            data.extend_from_slice(&new);
        }
        for l in take_lines(&mut data) {
            if let Some(e) = to_proto(&l) {
                if tx.send(e).await.is_err() {
                    return;
                }
            }
        }
        pending = data;
        if !was_running {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            Ok(()) = changed.changed() => {}
            _ = tx.closed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_taken_in_one_pass() {
        let mut data = b"a\nbc\n\nrest".to_vec();
        assert_eq!(take_lines(&mut data), [b"a".to_vec(), b"bc".to_vec(), Vec::new()]);
        assert_eq!(data, b"rest");
        // A full log of short lines (two rotated files' worth): a copy of
        // the rest per line would move terabytes here and never finish.
        let mut big = b"0123456789\n".repeat(2 << 20);
        let lines = take_lines(&mut big);
        assert_eq!(lines.len(), 2 << 20);
        assert!(big.is_empty());
    }
}
