//! How Raft data is written: log entries, snapshots, the store's metadata
//! and the Raft RPCs between managers. One version byte, then MessagePack
//! with field names (fields can be added with defaults, as JSON allowed,
//! at about half its size and a fraction of its CPU).
//!
//! Stores written before this encoding hold JSON (first byte `{`, `[`, `"`,
//! a digit or `n`ull); [`decode`] still reads those for types whose shape
//! did not change, and [`super::store::migrate`] rewrites the rest once.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The first byte of everything written in this encoding.
pub const V1: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("encoding: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    #[error("decoding MessagePack: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
    #[error("decoding JSON (a store from before the binary encoding): {0}")]
    Json(#[from] serde_json::Error),
    #[error("empty value")]
    Empty,
    #[error("unknown encoding version {0} (written by a newer orc?)")]
    Version(u8),
}

/// The version byte and `v` as MessagePack.
pub fn encode<T: Serialize + ?Sized>(v: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![V1];
    rmp_serde::encode::write_named(&mut out, v)?;
    Ok(out)
}

/// What [`encode`] wrote, or the JSON written before it.
pub fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T, CodecError> {
    match b.first() {
        None => Err(CodecError::Empty),
        Some(&V1) => Ok(rmp_serde::from_slice(&b[1..])?),
        Some(c) if is_json(*c) => Ok(serde_json::from_slice(b)?),
        Some(c) => Err(CodecError::Version(*c)),
    }
}

/// Whether a value starting with `c` was written as JSON.
pub fn is_json(c: u8) -> bool {
    matches!(c, b'{' | b'[' | b'"' | b'n' | b't' | b'f' | b'-' | b'0'..=b'9' | b' ' | b'\n')
}

/// `#[serde(with = "codec::bytes")]`: a `Vec<u8>` as bytes (MessagePack
/// bin, not an array of numbers), read back from either (JSON has arrays).
pub mod bytes {
    use serde::de::{SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct Bytes;
        impl<'de> Visitor<'de> for Bytes {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(b) = seq.next_element()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_byte_buf(Bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
    struct Old {
        a: u64,
    }

    #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
    struct New {
        a: u64,
        #[serde(default)]
        b: Option<String>,
    }

    #[test]
    fn round_trips_reads_json_and_takes_new_fields() {
        let v = New { a: 7, b: Some("x".into()) };
        let bytes = encode(&v).unwrap();
        assert_eq!(bytes[0], V1);
        assert_eq!(decode::<New>(&bytes).unwrap(), v);
        // Written before a field existed: it takes its default.
        assert_eq!(decode::<New>(&encode(&Old { a: 1 }).unwrap()).unwrap(), New { a: 1, b: None });
        // Written as JSON by an older store.
        assert_eq!(decode::<New>(br#"{"a":3}"#).unwrap(), New { a: 3, b: None });
        assert!(matches!(decode::<New>(&[9, 1, 2]), Err(CodecError::Version(9))));
        assert!(matches!(decode::<New>(&[]), Err(CodecError::Empty)));
    }

    #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
    struct Blob {
        #[serde(with = "bytes")]
        data: Vec<u8>,
    }

    #[test]
    fn bytes_are_bytes_and_json_arrays_still_read() {
        let b = Blob { data: vec![0, 1, 255] };
        let enc = encode(&b).unwrap();
        assert!(enc.len() < 16, "{enc:?}");
        assert_eq!(decode::<Blob>(&enc).unwrap(), b);
        assert_eq!(decode::<Blob>(br#"{"data":[0,1,255]}"#).unwrap(), b);
    }
}
