//! The container log as the shim writes it and the agent reads it: CRI
//! format (`<RFC 3339 nanos> <stream> <F|P> <text>`), `container.log`
//! rotated to `container.log.1` at [`MAX_SIZE`].

pub const FILE: &str = "container.log";
pub const ROTATED: &str = "container.log.1";
pub const MAX_SIZE: u64 = 10 * 1024 * 1024;

/// One parsed log line.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub time: String,
    pub stream: String,
    pub partial: bool,
    pub text: Vec<u8>,
}

pub fn parse(line: &[u8]) -> Option<Entry> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let time = String::from_utf8(parts.next()?.to_vec()).ok()?;
    let stream = String::from_utf8(parts.next()?.to_vec()).ok()?;
    let tag = parts.next()?;
    let text = parts.next().unwrap_or_default().to_vec();
    Some(Entry { time, stream, partial: tag == b"P", text })
}
