//! One layer from a byte stream to a verified directory in `layers/`:
//! sniff the compression, hash the compressed and the uncompressed bytes,
//! unpack with `orc_layer` into a temporary directory, compare both digests,
//! rename into place. Blocking: run it on a blocking thread.

use std::io::{self, BufRead, BufReader, Read};

use sha2::{Digest, Sha256};

use super::ImageStore;
use crate::error::AgentError;

/// Counts and hashes what passes through.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
    n: u64,
    on_read: Box<dyn FnMut(u64) + Send>,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.hash.update(&buf[..k]);
        self.n += k as u64;
        (self.on_read)(self.n);
        Ok(k)
    }
}

fn hashing<R: Read>(inner: R, on_read: Box<dyn FnMut(u64) + Send>) -> Hashing<R> {
    Hashing { inner, hash: Sha256::new(), n: 0, on_read }
}

fn finish<R>(h: Hashing<R>) -> (String, u64) {
    (format!("sha256:{}", hex::encode(h.hash.finalize())), h.n)
}

/// What a layer turned out to be.
#[derive(Debug, Clone)]
pub struct Unpacked {
    pub diff_id: String,
    pub blob_digest: String,
    pub compressed_size: u64,
    pub size: u64,
}

/// Unpacks `blob` (gzip'd or plain tar). `expect_blob` and `expect_diff_id`
/// are checked when given; a mismatch leaves nothing behind.
pub fn unpack(
    store: &ImageStore,
    blob: impl Read,
    expect_blob: Option<&str>,
    expect_diff_id: Option<&str>,
    progress: Box<dyn FnMut(u64) + Send>,
) -> Result<Unpacked, AgentError> {
    let tmp = tempdir_in(&store.tmp_dir())?;
    let result = unpack_into(store, blob, expect_blob, expect_diff_id, progress, &tmp);
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

fn tempdir_in(dir: &std::path::Path) -> Result<std::path::PathBuf, AgentError> {
    let p = dir.join(format!("layer-{:016x}", rand::random::<u64>()));
    std::fs::create_dir(&p).map_err(|e| AgentError::io(&p, e))?;
    Ok(p)
}

fn unpack_into(
    store: &ImageStore,
    blob: impl Read,
    expect_blob: Option<&str>,
    expect_diff_id: Option<&str>,
    progress: Box<dyn FnMut(u64) + Send>,
    tmp: &std::path::Path,
) -> Result<Unpacked, AgentError> {
    let what = expect_blob.or(expect_diff_id).unwrap_or("layer").to_string();
    let corrupt = |e: String| AgentError::InvalidArgument(format!("layer {what}: {e}"));
    let mut raw = BufReader::with_capacity(256 * 1024, hashing(blob, progress));
    let magic = raw.fill_buf().map_err(|e| corrupt(format!("reading: {e}")))?;
    let gzip = magic.starts_with(&[0x1f, 0x8b]);
    if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return Err(corrupt("zstd-compressed layers are not supported yet; push the image with gzip layers".into()));
    }
    let decoder: Box<dyn Read> =
        if gzip { Box::new(flate2::read::GzDecoder::new(&mut raw)) } else { Box::new(&mut raw) };
    let mut plain = hashing(decoder, Box::new(|_| {}));
    let dest = tmp.join("root");
    std::fs::create_dir(&dest).map_err(|e| AgentError::io(&dest, e))?;
    let limits = orc_layer::Limits { max_bytes: store.max_image_bytes };
    orc_layer::unpack_limited(&mut plain, &dest, limits).map_err(|e| match e {
        orc_layer::Error::Write { ref source, .. } if source.raw_os_error() == Some(libc::ENOSPC) => {
            AgentError::io(&dest, io::Error::from_raw_os_error(libc::ENOSPC))
        }
        orc_layer::Error::TooLarge { path, size, .. } => {
            store.too_large(&format!("layer {what}: {}", path.display()), size)
        }
        e => corrupt(e.to_string()),
    })?;
    // The digests cover every byte, also the tar's trailing padding.
    io::copy(&mut plain, &mut io::sink()).map_err(|e| corrupt(format!("reading: {e}")))?;
    let (diff_id, _) = finish(plain);
    io::copy(&mut raw, &mut io::sink()).map_err(|e| corrupt(format!("reading: {e}")))?;
    let (blob_digest, compressed_size) = finish(raw.into_inner());
    if let Some(want) = expect_blob {
        if want != blob_digest {
            return Err(corrupt(format!(
                "content has digest {blob_digest}, the manifest says {want}: corrupt download"
            )));
        }
    }
    if let Some(want) = expect_diff_id {
        if want != diff_id {
            return Err(corrupt(format!("uncompressed digest {diff_id} differs from the image config's {want}")));
        }
    }
    let size = crate::fsutil::du(&dest);
    let target = store.layer_dir(&diff_id)?;
    if !target.exists() {
        std::fs::rename(&dest, &target).map_err(|e| AgentError::io(&target, e))?;
    }
    Ok(Unpacked { diff_id, blob_digest, compressed_size, size })
}
