//! Bounds on every string and list a client or a node writes into a
//! container record or the cluster state: lengths, counts, characters. One
//! place, so a new field gets the same rules and the same error shape
//! ("field X: what is wrong; what is allowed").

use std::collections::BTreeMap;

/// A string field: at most this many bytes.
pub const MAX_STRING: usize = 4096;
/// A list field (command, args, env, constraints, ports): at most this many entries.
pub const MAX_LIST: usize = 1024;
/// All entries of one list together: at most this many bytes.
pub const MAX_LIST_BYTES: usize = 256 * 1024;
/// Labels on one object.
pub const MAX_LABELS: usize = 64;
/// A label key.
pub const MAX_LABEL_KEY: usize = 253;

/// What is wrong with one field of a request, and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct FieldError {
    pub field: String,
    pub problem: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self { field: field.into(), problem: problem.into() }
    }
}

/// A string of at most `max` bytes without NUL (NUL cannot reach an exec,
/// a path or a header, and would be cut silently).
pub fn text(field: &str, value: &str, max: usize) -> Result<(), FieldError> {
    if value.len() > max {
        return Err(FieldError::new(field, format!("{} bytes is too long (at most {max})", value.len())));
    }
    if value.contains('\0') {
        return Err(FieldError::new(field, "contains a NUL character"));
    }
    Ok(())
}

/// A list of strings: at most [`MAX_LIST`] entries, [`MAX_LIST_BYTES`] in
/// all, each a [`text`] of at most [`MAX_STRING`] bytes.
pub fn list(field: &str, values: &[String]) -> Result<(), FieldError> {
    if values.len() > MAX_LIST {
        return Err(FieldError::new(field, format!("{} entries is too many (at most {MAX_LIST})", values.len())));
    }
    let total: usize = values.iter().map(String::len).sum();
    if total > MAX_LIST_BYTES {
        return Err(FieldError::new(field, format!("{total} bytes in all is too long (at most {MAX_LIST_BYTES})")));
    }
    for (i, v) in values.iter().enumerate() {
        text(&format!("{field}[{i}]"), v, MAX_STRING)?;
    }
    Ok(())
}

/// `KEY=VALUE` environment entries.
pub fn env(field: &str, values: &[String]) -> Result<(), FieldError> {
    list(field, values)?;
    if let Some(e) = values.iter().find(|e| !e.contains('=') || e.starts_with('=')) {
        return Err(FieldError::new(field, format!("{e:?} is not KEY=VALUE")));
    }
    Ok(())
}

/// Labels: at most [`MAX_LABELS`]; keys of letters, digits, `.`, `-`, `_`
/// and `/`, 1 to [`MAX_LABEL_KEY`] bytes; values of at most [`MAX_STRING`].
pub fn labels(field: &str, labels: &BTreeMap<String, String>) -> Result<(), FieldError> {
    if labels.len() > MAX_LABELS {
        return Err(FieldError::new(field, format!("{} labels is too many (at most {MAX_LABELS})", labels.len())));
    }
    for (k, v) in labels {
        let key_ok = !k.is_empty()
            && k.len() <= MAX_LABEL_KEY
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b));
        if !key_ok {
            return Err(FieldError::new(
                field,
                format!("key {k:?}: use 1-{MAX_LABEL_KEY} letters, digits, '.', '-', '_' or '/'"),
            ));
        }
        text(&format!("{field}.{k}"), v, MAX_STRING)?;
    }
    Ok(())
}

/// A number of milliseconds within `0..=max_ms`.
pub fn duration_ms(field: &str, ms: u64, max_ms: u64) -> Result<(), FieldError> {
    if ms > max_ms {
        return Err(FieldError::new(field, format!("{ms} ms is too long (at most {} s)", max_ms / 1000)));
    }
    Ok(())
}

/// Cuts a string a node reports (a hostname, an error message) to `max`
/// bytes on a character boundary, so no peer can grow the state at will.
pub fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_rule_names_the_field_and_the_bound() {
        assert_eq!(text("user", "a\0b", 10).unwrap_err().to_string(), "user: contains a NUL character");
        assert!(text("image", &"x".repeat(11), 10).unwrap_err().to_string().contains("at most 10"));
        let many = vec!["a".to_string(); MAX_LIST + 1];
        assert!(list("args", &many).unwrap_err().to_string().starts_with("args: 1025 entries"));
        let big = vec!["a".repeat(MAX_STRING); 100];
        assert!(list("args", &big).unwrap_err().to_string().contains("in all"));
        let e = list("command", &["ok".into(), "b\0d".into()]).unwrap_err();
        assert_eq!(e.field, "command[1]");
        assert!(env("env", &["A=1".into(), "B".into()]).unwrap_err().to_string().contains("\"B\" is not KEY=VALUE"));
        assert!(env("env", &["A=\0".into()]).is_err());
        let mut l = BTreeMap::new();
        l.insert("team".to_string(), "web".to_string());
        labels("labels", &l).unwrap();
        l.insert("bad key".to_string(), String::new());
        assert!(labels("labels", &l).unwrap_err().to_string().contains("\"bad key\""));
        assert!(duration_ms("restart.delay", u64::MAX, 1000).is_err());
    }

    #[test]
    fn truncation_keeps_characters_whole() {
        assert_eq!(truncate("héllo".into(), 2), "h");
        assert_eq!(truncate("abc".into(), 10), "abc");
    }
}
