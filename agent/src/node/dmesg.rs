//! `Dmesg`: records from `/dev/kmsg` (`pri,seq,usec,flags;message`), from the
//! oldest the kernel still holds; with follow, new ones as they come.

use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::AgentError;
use orc_proto::machine::DmesgEntry;
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;

/// Parses one `/dev/kmsg` record; continuation lines (`KEY=value`) are dropped.
pub fn parse_record(rec: &str) -> Option<DmesgEntry> {
    let (head, msg) = rec.split_once(';')?;
    let mut f = head.split(',');
    let pri: u32 = f.next()?.parse().ok()?;
    let sequence = f.next()?.parse().ok()?;
    let timestamp_us = f.next()?.parse().ok()?;
    let message = msg.lines().next().unwrap_or("").to_string();
    Some(DmesgEntry { sequence, timestamp_us, level: pri & 7, facility: pri >> 3, message })
}

/// Streams records into `tx` until the client goes away (or, without
/// follow, until the buffer is read).
pub async fn stream(kmsg: &Path, follow: bool, tx: mpsc::Sender<Result<DmesgEntry, AgentError>>) {
    let file = match OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(kmsg) {
        Ok(f) => f,
        Err(e) => {
            let _ = tx.send(Err(AgentError::Unavailable(format!("cannot open {}: {e}", kmsg.display())))).await;
            return;
        }
    };
    // The AsyncFd owns the File, so the fd cannot be closed under it.
    #[allow(deprecated)]
    let Ok(mut fd) = AsyncFd::new(file) else {
        return;
    };
    let mut buf = vec![0u8; 8192];
    loop {
        match fd.get_mut().read(&mut buf) {
            Ok(n) => {
                if let Some(e) = parse_record(&String::from_utf8_lossy(&buf[..n])) {
                    if tx.send(Ok(e)).await.is_err() {
                        return;
                    }
                }
            }
            // The record we were at was overwritten: carry on with the next.
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if !follow {
                    return;
                }
                tokio::select! {
                    r = fd.readable_mut() => match r {
                        Ok(mut guard) => guard.clear_ready(),
                        Err(_) => return,
                    },
                    _ = tx.closed() => return,
                }
            }
            Err(e) => {
                let _ = tx.send(Err(AgentError::Internal(format!("reading kernel log: {e}")))).await;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records() {
        let e = parse_record("6,339,5140900,-;NET: Registered protocol family 10\n SUBSYSTEM=net\n").unwrap();
        assert_eq!((e.level, e.facility, e.sequence, e.timestamp_us), (6, 0, 339, 5140900));
        assert_eq!(e.message, "NET: Registered protocol family 10");
        let e = parse_record("30,7,1,c;x").unwrap();
        assert_eq!((e.level, e.facility), (6, 3));
        assert!(parse_record("garbage").is_none());
    }
}
