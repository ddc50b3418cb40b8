//! Boot entries on the ESP and their boot counting, as systemd-boot reads
//! them (the Boot Loader Specification's "boot assessment"): a unified
//! kernel image per installed version at `EFI/Linux/orc-<version>.efi`.
//!
//! A freshly written slot's entry is `orc-<version>+3.efi`: systemd-boot
//! renames it at each boot it tries (`+2-1`, `+1-2`, `+0-3`); once the node
//! is back and healthy the agent blesses it (`orc-<version>.efi`); an entry
//! left at `+0` is bad and sorted after every good one, so the next boot
//! falls back to the old version by itself — even when the new kernel
//! never reaches userspace.

use std::cmp::Ordering;
use std::fmt;

/// The directory systemd-boot finds unified kernel images in.
pub const ENTRY_DIR: &str = "EFI/Linux";
/// Every entry's name starts with this.
pub const PREFIX: &str = "orc-";
/// The file name extension of a unified kernel image.
pub const SUFFIX: &str = ".efi";
/// The boots a new version gets before it counts as bad.
pub const TRIES: u32 = 3;

/// A boot entry's name, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootEntry {
    /// The OS version it boots (`0.2.0`).
    pub version: String,
    /// The boot counter; None: blessed (no more counting).
    pub counter: Option<Counter>,
}

/// Boots left and boots tried of an entry not yet blessed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter {
    pub left: u32,
    pub done: u32,
}

/// What is wrong with a file name that is not one of ours.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EntryError {
    #[error("{0:?} is not a boot entry of orc (orc-<version>[+<left>[-<done>]].efi)")]
    NotOurs(String),
    #[error("{name:?}: version {version:?} must be non-empty letters, digits, '.', '_' or '~'")]
    BadVersion { name: String, version: String },
    #[error("{name:?}: boot counter {counter:?} must be +<left> or +<left>-<done> in digits")]
    BadCounter { name: String, counter: String },
}

/// Whether `v` can be a version in an entry's name: no `+` or `-` (they
/// delimit the counter), no `/`.
pub fn valid_version(v: &str) -> bool {
    !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '~'))
}

impl BootEntry {
    /// The entry of a version just written: [`TRIES`] boots to prove itself.
    pub fn new_untried(version: &str) -> Self {
        Self { version: version.to_string(), counter: Some(Counter { left: TRIES, done: 0 }) }
    }

    /// The entry of a version that needs no proving (the one installed).
    pub fn blessed(version: &str) -> Self {
        Self { version: version.to_string(), counter: None }
    }

    /// Parses a file name under [`ENTRY_DIR`].
    pub fn parse(name: &str) -> Result<Self, EntryError> {
        let not_ours = || EntryError::NotOurs(name.to_string());
        let stem = name.strip_prefix(PREFIX).and_then(|s| s.strip_suffix(SUFFIX)).ok_or_else(not_ours)?;
        let (version, counter) = match stem.split_once('+') {
            None => (stem, None),
            Some((v, c)) => {
                let bad = || EntryError::BadCounter { name: name.to_string(), counter: c.to_string() };
                let num = |s: &str| {
                    if s.is_empty() || !s.chars().all(|c| c.is_ascii_digit()) {
                        return Err(bad());
                    }
                    s.parse::<u32>().map_err(|_| bad())
                };
                let counter = match c.split_once('-') {
                    None => Counter { left: num(c)?, done: 0 },
                    Some((l, d)) => Counter { left: num(l)?, done: num(d)? },
                };
                (v, Some(counter))
            }
        };
        if !valid_version(version) {
            return Err(EntryError::BadVersion { name: name.to_string(), version: version.to_string() });
        }
        Ok(Self { version: version.to_string(), counter })
    }

    /// Its file name.
    pub fn file_name(&self) -> String {
        match self.counter {
            None => format!("{PREFIX}{}{SUFFIX}", self.version),
            Some(Counter { left, done: 0 }) => format!("{PREFIX}{}+{left}{SUFFIX}", self.version),
            Some(Counter { left, done }) => format!("{PREFIX}{}+{left}-{done}{SUFFIX}", self.version),
        }
    }

    /// Tried out: every boot it had failed to be blessed.
    pub fn bad(&self) -> bool {
        self.counter.is_some_and(|c| c.left == 0)
    }

    /// Still being tried (counting, boots left).
    pub fn trying(&self) -> bool {
        self.counter.is_some_and(|c| c.left > 0)
    }

    /// What systemd-boot does when it boots it: one try fewer left (a bad
    /// entry booted anyway is not renamed).
    pub fn tried(&self) -> Self {
        let counter = self.counter.map(|c| match c.left {
            0 => c,
            left => Counter { left: left - 1, done: c.done + 1 },
        });
        Self { counter, ..self.clone() }
    }
}

impl fmt::Display for BootEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file_name())
    }
}

/// Compares two versions as systemd-boot's `strverscmp_improved` does for
/// the cases our versions take: runs of digits by value, other characters
/// by byte, `~` before anything (a pre-release sorts before its release).
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (Some(b'~'), Some(b'~')) => {}
            (Some(b'~'), _) => return Ordering::Less,
            (_, Some(b'~')) => return Ordering::Greater,
            (None, _) => return Ordering::Less,
            (_, None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let run = |s: &[u8]| s.iter().take_while(|c| c.is_ascii_digit()).count();
                let (na, nb) = (run(a), run(b));
                let strip = |s: &[u8]| -> Vec<u8> { s.iter().copied().skip_while(|c| *c == b'0').collect() };
                let (da, db) = (strip(&a[..na]), strip(&b[..nb]));
                let o = da.len().cmp(&db.len()).then_with(|| da.cmp(&db));
                if o != Ordering::Equal {
                    return o;
                }
                a = &a[na..];
                b = &b[nb..];
                continue;
            }
            (Some(x), Some(y)) if x != y => return x.cmp(y),
            _ => {}
        }
        a = &a[1..];
        b = &b[1..];
    }
}

/// The entry systemd-boot boots among `entries` (with `default orc-*`):
/// good ones (blessed or still trying) before bad ones, newest version
/// first. None when there is none.
pub fn chosen(entries: &[BootEntry]) -> Option<&BootEntry> {
    entries.iter().min_by(|a, b| a.bad().cmp(&b.bad()).then_with(|| compare_versions(&b.version, &a.version)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_bad_names_say_why() {
        for name in ["orc-0.2.0.efi", "orc-0.2.0+3.efi", "orc-0.2.0+1-2.efi", "orc-1.0~rc1+0-3.efi"] {
            assert_eq!(BootEntry::parse(name).unwrap().file_name(), name);
        }
        let e = BootEntry::parse("orc-0.2.0+1-2.efi").unwrap();
        assert_eq!(e.version, "0.2.0");
        assert_eq!(e.counter, Some(Counter { left: 1, done: 2 }));
        assert!(matches!(BootEntry::parse("linux.efi"), Err(EntryError::NotOurs(_))));
        assert!(matches!(BootEntry::parse("orc-0.2.0.conf"), Err(EntryError::NotOurs(_))));
        assert!(matches!(BootEntry::parse("orc-+3.efi"), Err(EntryError::BadVersion { .. })));
        assert!(matches!(BootEntry::parse("orc-0.2/x.efi"), Err(EntryError::BadVersion { .. })));
        for bad in ["orc-1+.efi", "orc-1+x.efi", "orc-1+1-.efi", "orc-1+-1.efi", "orc-1+99999999999.efi"] {
            assert!(matches!(BootEntry::parse(bad), Err(EntryError::BadCounter { .. })), "{bad}");
        }
        assert_eq!(BootEntry::new_untried("0.3.0").file_name(), "orc-0.3.0+3.efi");
        assert_eq!(BootEntry::blessed("0.3.0").file_name(), "orc-0.3.0.efi");
    }

    #[test]
    fn counting_down_to_bad_and_falling_back() {
        let mut new = BootEntry::new_untried("0.3.0");
        let old = BootEntry::blessed("0.2.0");
        for (left, done) in [(2, 1), (1, 2), (0, 3)] {
            // Each boot systemd-boot picks the new one while it has tries.
            assert_eq!(chosen(&[old.clone(), new.clone()]), Some(&new));
            new = new.tried();
            assert_eq!(new.counter, Some(Counter { left, done }));
        }
        assert!(new.bad() && !new.trying());
        assert_eq!(chosen(&[new.clone(), old.clone()]), Some(&old), "tried out: back to the old one");
        assert_eq!(new.tried(), new, "a bad entry stays at zero");
        assert!(!old.bad() && !old.trying() && old.tried() == old, "a blessed entry is not counted");
        // Every entry bad: the newest still boots (better than nothing).
        assert_eq!(
            chosen(&[new.clone(), BootEntry { counter: Some(Counter { left: 0, done: 3 }), ..old }]),
            Some(&new)
        );
        assert_eq!(chosen(&[]), None);
    }

    #[test]
    fn versions_compare_as_systemd_boot_does() {
        let lt = |a, b| compare_versions(a, b) == Ordering::Less;
        assert!(lt("0.2.0", "0.10.0"));
        assert!(lt("0.9.9", "1.0.0"));
        assert!(lt("1.0~rc1", "1.0"));
        assert!(lt("1.0", "1.0.1"));
        assert!(lt("1.0.01", "1.0.2"));
        assert_eq!(compare_versions("1.0.0", "1.0.0"), Ordering::Equal);
        assert_eq!(compare_versions("007", "7"), Ordering::Equal);
    }
}
