//! A reader under the tar parser that follows the archive's structure and
//! refuses extension members (GNU long names and links, pax headers) larger
//! than [`MAX_EXTENSION`]: the `tar` crate reads those whole into memory,
//! so a few compressed megabytes could otherwise claim gigabytes of RAM.
//!
//! It reads block boundaries exactly as `tar` does: a 512-byte header, then
//! for a GNU sparse member its extension headers, then the member's data
//! (its size field, or a preceding pax `size` record) padded to 512 bytes.
//! A header it cannot parse is left for `tar` to reject.

use std::io::{self, Read};

/// The largest extension member (a path, a link target, pax records).
pub const MAX_EXTENSION: u64 = 1 << 20;

const BLOCK: usize = 512;

enum State {
    /// Filling a header block.
    Header,
    /// Filling a GNU extended sparse header block.
    Sparse,
    /// Member data: `left` bytes, then `pad`; pax records are kept.
    Data { left: u64, pad: u64, pax: Option<Vec<u8>> },
    /// Past a header `tar` will refuse: nothing more to check.
    Off,
}

pub struct Guard<R> {
    inner: R,
    state: State,
    block: [u8; BLOCK],
    filled: usize,
    /// A pax `size` record for the next member.
    pax_size: Option<u64>,
    /// The data state to enter once a sparse member's extension headers end.
    after_sparse: Option<State>,
}

impl<R: Read> Guard<R> {
    pub fn new(inner: R) -> Self {
        Self { inner, state: State::Header, block: [0; BLOCK], filled: 0, pax_size: None, after_sparse: None }
    }

    fn header(&mut self) -> io::Result<()> {
        if self.block.iter().all(|b| *b == 0) {
            return Ok(()); // End-of-archive marker: another header may follow.
        }
        let h = tar::Header::from_byte_slice(&self.block);
        let (Ok(mut size), kind) = (h.entry_size(), h.entry_type()) else {
            self.state = State::Off;
            return Ok(());
        };
        let extension = kind.is_gnu_longname() || kind.is_gnu_longlink() || kind.is_pax_local_extensions();
        if extension {
            if size > MAX_EXTENSION {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "a {} member of {size} bytes (at most {MAX_EXTENSION}): the layer is malformed or hostile",
                        if kind.is_pax_local_extensions() { "pax header" } else { "GNU long name" }
                    ),
                ));
            }
        } else if let Some(s) = self.pax_size.take() {
            size = s;
        }
        let sparse_ext = kind.is_gnu_sparse() && h.as_gnu().is_some_and(|g| g.is_extended());
        let pax = kind.is_pax_local_extensions().then(Vec::new);
        self.state = State::Data { left: size, pad: (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64, pax };
        if sparse_ext {
            self.after_sparse = Some(std::mem::replace(&mut self.state, State::Sparse));
        }
        Ok(())
    }

    fn feed(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            match &mut self.state {
                State::Off => return Ok(()),
                State::Header | State::Sparse => {
                    let n = (BLOCK - self.filled).min(data.len());
                    self.block[self.filled..self.filled + n].copy_from_slice(&data[..n]);
                    self.filled += n;
                    data = &data[n..];
                    if self.filled == BLOCK {
                        self.filled = 0;
                        if matches!(self.state, State::Header) {
                            self.header()?;
                        } else if self.block[504] == 0 {
                            // The last extended sparse header: the data follows.
                            self.state = self.after_sparse.take().unwrap_or(State::Header);
                        }
                    }
                }
                State::Data { left, pad, pax } => {
                    let n = (*left + *pad).min(data.len() as u64) as usize;
                    let in_data = (*left).min(n as u64) as usize;
                    if let Some(p) = pax {
                        p.extend_from_slice(&data[..in_data]);
                    }
                    *left -= in_data as u64;
                    *pad -= (n - in_data) as u64;
                    data = &data[n..];
                    if *left == 0 && *pad == 0 {
                        if let Some(p) = pax.take() {
                            self.pax_size = pax_size(&p);
                        }
                        self.state = State::Header;
                    }
                }
            }
        }
        Ok(())
    }
}

/// The `size` record of pax extension data, as `tar` reads it.
fn pax_size(data: &[u8]) -> Option<u64> {
    tar::PaxExtensions::new(data)
        .filter_map(Result::ok)
        .find(|e| e.key() == Ok("size"))
        .and_then(|e| e.value().ok()?.parse().ok())
}

impl<R: Read> Read for Guard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.feed(&buf[..n])?;
        Ok(n)
    }
}
