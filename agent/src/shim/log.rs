//! The container log: CRI format (`<RFC 3339 nanos> <stream> <F|P> <text>`,
//! one line each, the format kubelet and containerd use), rotated by size:
//! `container.log` grows to [`MAX_SIZE`], then becomes `container.log.1`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

pub use crate::shim_contract::log::{parse, Entry, FILE, MAX_SIZE, ROTATED};
/// A line longer than this is written as partial (`P`) pieces.
const MAX_LINE: usize = 16 * 1024;

pub struct LogWriter {
    dir: PathBuf,
    file: File,
    size: u64,
    max_size: u64,
    /// Unfinished line per stream (0 stdout, 1 stderr).
    pending: [Vec<u8>; 2],
}

pub fn timestamp() -> String {
    let now = time::OffsetDateTime::now_utc();
    let f = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:9]Z");
    now.format(&f).unwrap_or_default()
}

impl LogWriter {
    pub fn open(dir: &Path, max_size: u64) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let file = OpenOptions::new().create(true).append(true).open(dir.join(FILE))?;
        let size = file.metadata()?.len();
        Ok(Self { dir: dir.to_owned(), file, size, max_size, pending: [Vec::new(), Vec::new()] })
    }

    fn line(&mut self, stream: usize, text: &[u8], partial: bool) -> std::io::Result<()> {
        let name = if stream == 0 { "stdout" } else { "stderr" };
        let mut buf = Vec::with_capacity(text.len() + 48);
        buf.extend_from_slice(timestamp().as_bytes());
        buf.push(b' ');
        buf.extend_from_slice(name.as_bytes());
        buf.extend_from_slice(if partial { b" P " } else { b" F " });
        buf.extend_from_slice(text);
        buf.push(b'\n');
        if self.size + buf.len() as u64 > self.max_size && self.size > 0 {
            self.rotate()?;
        }
        self.file.write_all(&buf)?;
        self.size += buf.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        std::fs::rename(self.dir.join(FILE), self.dir.join(ROTATED))?;
        self.file = OpenOptions::new().create(true).append(true).open(self.dir.join(FILE))?;
        self.size = 0;
        Ok(())
    }

    /// Takes a chunk of output of `stream` (0 stdout, 1 stderr).
    pub fn write(&mut self, stream: usize, data: &[u8]) -> std::io::Result<()> {
        let mut pending = std::mem::take(&mut self.pending[stream]);
        pending.extend_from_slice(data);
        let mut start = 0;
        while let Some(nl) = pending[start..].iter().position(|b| *b == b'\n') {
            self.line(stream, &pending[start..start + nl], false)?;
            start += nl + 1;
        }
        let mut rest = pending.split_off(start);
        while rest.len() >= MAX_LINE {
            let tail = rest.split_off(MAX_LINE);
            self.line(stream, &rest, true)?;
            rest = tail;
        }
        self.pending[stream] = rest;
        Ok(())
    }

    /// Writes what is left of unfinished lines (at the end of the stream).
    pub fn flush_stream(&mut self, stream: usize) -> std::io::Result<()> {
        let rest = std::mem::take(&mut self.pending[stream]);
        if !rest.is_empty() {
            self.line(stream, &rest, false)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_partials_and_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = LogWriter::open(dir.path(), 200).unwrap();
        w.write(0, b"hello\nwor").unwrap();
        w.write(1, b"oops\n").unwrap();
        w.write(0, b"ld\n").unwrap();
        let text = std::fs::read(dir.path().join(FILE)).unwrap();
        let entries: Vec<Entry> =
            text.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(|l| parse(l).unwrap()).collect();
        assert_eq!(
            entries.iter().map(|e| (e.stream.as_str(), e.text.as_slice())).collect::<Vec<_>>(),
            [("stdout", &b"hello"[..]), ("stderr", b"oops"), ("stdout", b"world")]
        );
        assert!(entries[0].time.ends_with('Z') && entries[0].time.len() == 30, "{}", entries[0].time);
        for _ in 0..5 {
            w.write(0, b"0123456789012345678901234567890123456789\n").unwrap();
        }
        assert!(dir.path().join(ROTATED).exists());
        assert!(std::fs::metadata(dir.path().join(FILE)).unwrap().len() <= 200);
        w.write(0, b"no newline").unwrap();
        w.flush_stream(0).unwrap();
        let last = std::fs::read_to_string(dir.path().join(FILE)).unwrap();
        assert!(last.trim_end().ends_with("stdout F no newline"));
    }
}
