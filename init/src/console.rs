//! Copying service output to the console without ever waiting for it: a
//! serial console writes a few kilobytes a second, and a pump blocked on it
//! would block the service writing its log (the agent, whose every line goes
//! there). Lines go through a bounded queue to one writer thread; when the
//! queue is full they are dropped and counted, and the count is printed
//! once the console catches up.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;

/// Lines waiting for the console at most.
pub const QUEUE: usize = 1024;

#[derive(Clone)]
pub struct Console {
    tx: SyncSender<String>,
    dropped: Arc<AtomicU64>,
}

impl Console {
    /// `/dev/console`, if it opens.
    pub fn open() -> Option<Self> {
        let f = std::fs::OpenOptions::new().write(true).open("/dev/console").ok()?;
        Some(Self::new(f, QUEUE))
    }

    /// A console writing to `out` with room for `queue` lines.
    pub fn new(mut out: impl Write + Send + 'static, queue: usize) -> Self {
        let (tx, rx) = sync_channel::<String>(queue);
        let dropped = Arc::new(AtomicU64::new(0));
        let counter = dropped.clone();
        std::thread::spawn(move || {
            for line in rx {
                let lost = counter.swap(0, Ordering::Relaxed);
                if lost > 0 {
                    let _ = writeln!(out, "init: {lost} lines not shown on the console (too slow); see `orcctl logs`");
                }
                let _ = writeln!(out, "{line}");
            }
        });
        Self { tx, dropped }
    }

    /// Queues `line`, or drops it (counted) when the console is behind.
    pub fn line(&self, line: String) {
        if self.tx.try_send(line).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    /// A console that takes 10 ms a line and records what it got.
    struct Slow(Arc<Mutex<Vec<u8>>>);
    impl Write for Slow {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            std::thread::sleep(Duration::from_millis(10));
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_slow_console_never_blocks_and_says_what_it_dropped() {
        let got = Arc::new(Mutex::new(Vec::new()));
        let c = Console::new(Slow(got.clone()), 8);
        let start = Instant::now();
        for i in 0..10_000 {
            c.line(format!("line {i}"));
        }
        // 10 000 lines to a 100-line-a-second console, queued in no time.
        assert!(start.elapsed() < Duration::from_secs(2), "{:?}", start.elapsed());
        c.line("last".into());
        std::thread::sleep(Duration::from_millis(500));
        c.line("after".into());
        std::thread::sleep(Duration::from_millis(500));
        let text = String::from_utf8(got.lock().unwrap().clone()).unwrap();
        assert!(text.contains("line 0"), "{text}");
        assert!(text.contains("lines not shown on the console"), "{text}");
        assert!(text.contains("after"), "{text}");
    }
}
