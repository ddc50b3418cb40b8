//! PID 1's log: every line goes to `/dev/kmsg` (so the console and `dmesg`
//! show it from the first second of boot) and, once `/run` exists, to
//! `/run/orc/log/init.log`, where the agent serves it to `orcctl logs`.
//! Lines logged before `/run` is mounted are kept and written then.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use tracing_subscriber::fmt::MakeWriter;

#[derive(Default)]
struct Sinks {
    kmsg: Option<File>,
    file: Option<File>,
    pending: Vec<u8>,
}

static SINKS: Mutex<Sinks> = Mutex::new(Sinks { kmsg: None, file: None, pending: Vec::new() });

fn sinks() -> std::sync::MutexGuard<'static, Sinks> {
    // A poisoned log must not take PID 1 down: keep using it.
    SINKS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Installs the subscriber. Safe to call before anything is mounted.
pub fn init() {
    let _ = tracing_subscriber::fmt()
        .with_writer(InitLogWriter)
        .with_ansi(false)
        .with_target(false)
        .with_timer(tracing_subscriber::fmt::time::uptime())
        .with_max_level(tracing::Level::DEBUG)
        .try_init();
}

/// Starts writing to the kernel log (after devtmpfs is mounted).
pub fn attach_kmsg(dev: &Path) {
    if let Ok(f) = OpenOptions::new().write(true).open(dev.join("kmsg")) {
        sinks().kmsg = Some(f);
    }
}

/// Starts writing to `path` (after /run is mounted), flushing what came before.
pub fn attach_file(path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = OpenOptions::new().create(true).append(true).open(path)?;
    let mut s = sinks();
    f.write_all(&s.pending)?;
    s.pending = Vec::new();
    s.file = Some(f);
    Ok(())
}

pub struct InitLogWriter;

impl<'a> MakeWriter<'a> for InitLogWriter {
    type Writer = InitLogWriter;
    fn make_writer(&'a self) -> Self::Writer {
        InitLogWriter
    }
}

impl Write for InitLogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut s = sinks();
        if let Some(k) = s.kmsg.as_mut() {
            // One write is one kernel log record; <6> is KERN_INFO. It ends
            // with its newline: the kernel holds a record without one back
            // (a line to be continued) until the next record comes.
            let mut rec = Vec::with_capacity(buf.len() + 14);
            rec.extend_from_slice(b"<6>orc-init: ");
            rec.extend_from_slice(buf.strip_suffix(b"\n").unwrap_or(buf));
            rec.push(b'\n');
            let _ = k.write_all(&rec);
        } else {
            // No kernel log yet: the console is our stderr.
            let _ = std::io::stderr().write_all(buf);
        }
        let s = &mut *s;
        match (s.file.as_mut(), &mut s.pending) {
            (Some(f), _) => {
                let _ = f.write_all(buf);
            }
            (None, pending) if pending.len() < (1 << 20) => pending.extend_from_slice(buf),
            (None, _) => {}
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
