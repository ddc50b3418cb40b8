//! Checks a kernel `.config` against orc's fragment (`kernel-config/orc.config`).
//!
//! In the fragment, `CONFIG_X=y` means the option must be built in and
//! `CONFIG_X=m` means built in or a module will do.

use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KconfigError {
    /// the fragment has a line that is not CONFIG_X=y|m
    #[error("kernel-config fragment line {line}: expected CONFIG_NAME=y or CONFIG_NAME=m, got {text:?}")]
    BadFragment { line: usize, text: String },
    /// required options are missing
    #[error("the kernel lacks options orc needs: {}; use a kernel built with kernel-config/orc.config", .0.join(", "))]
    Missing(Vec<String>),
}

/// Parses `CONFIG_X=value` lines into a map; comments and blanks are skipped.
pub fn parse(config: &str) -> BTreeMap<String, String> {
    config
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("CONFIG_"))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
        .collect()
}

/// Returns Ok when `config` satisfies every line of `fragment`, otherwise the
/// list of unmet options, each with what was required and what was found.
pub fn check(config: &str, fragment: &str) -> Result<(), KconfigError> {
    let have = parse(config);
    let mut missing = Vec::new();
    for (i, line) in fragment.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || KconfigError::BadFragment { line: i + 1, text: line.to_string() };
        let (key, want) = line.split_once('=').ok_or_else(bad)?;
        if !key.starts_with("CONFIG_") || !(want == "y" || want == "m") {
            return Err(bad());
        }
        let got = have.get(key).map(String::as_str);
        let ok = matches!((want, got), ("y", Some("y")) | ("m", Some("y" | "m")));
        if !ok {
            missing.push(format!("{key}={want} (found {})", got.unwrap_or("unset")));
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(KconfigError::Missing(missing))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_table() {
        let config = "CONFIG_A=y\nCONFIG_B=m\n# CONFIG_C is not set\n";
        let cases: &[(&str, Result<(), &str>)] = &[
            ("CONFIG_A=y", Ok(())),
            ("CONFIG_A=m", Ok(())),
            ("CONFIG_B=m", Ok(())),
            ("CONFIG_B=y", Err("CONFIG_B=y (found m)")),
            ("CONFIG_C=m", Err("CONFIG_C=m (found unset)")),
            ("# comment\n\nCONFIG_A=y", Ok(())),
        ];
        for (i, (frag, want)) in cases.iter().enumerate() {
            let got = check(config, frag);
            match (got, want) {
                (Ok(()), Ok(())) => {}
                (Err(KconfigError::Missing(m)), Err(w)) => assert_eq!(m, vec![w.to_string()], "case {i}"),
                (g, w) => panic!("case {i}: got {g:?}, want {w:?}"),
            }
        }
    }

    #[test]
    fn bad_fragment_line_is_named() {
        let e = check("", "CONFIG_A=n").unwrap_err();
        assert_eq!(e, KconfigError::BadFragment { line: 1, text: "CONFIG_A=n".into() });
        assert!(e.to_string().contains("line 1"));
    }
}
