//! The module layering of `docs/architecture.md`, enforced: no module of
//! the agent imports one above it (test files and comments aside), and the
//! siblings on one row do not import each other.

use std::path::Path;

/// Top to bottom.
const ORDER: &[&str] = &[
    "api",
    "install",
    "upgrade",
    "node",
    "worker",
    "cluster",
    "network",
    "state",
    "raft",
    "model",
    "selfproc",
    "timesync",
    "runtime",
    "images",
    "shim",
    "shim_contract",
    "fsutil",
    "late_modules",
    "error",
    "fields",
    "pki",
    "config",
    "sync",
    "lookup",
    "clock",
];

/// Rows of the diagram whose modules must not import each other.
const SIBLINGS: &[(&str, &str)] = &[("node", "worker"), ("node", "cluster"), ("runtime", "shim"), ("images", "shim")];

fn rank(m: &str) -> Option<usize> {
    ORDER.iter().position(|o| *o == m)
}

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn no_module_imports_one_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let mut bad = Vec::new();
    for p in all {
        let rel = p.strip_prefix(&src).unwrap().to_string_lossy().to_string();
        let top = rel.split('/').next().unwrap().trim_end_matches(".rs").to_string();
        if top == "lib" || top == "main" || rel.ends_with("tests.rs") {
            continue;
        }
        let Some(me) = rank(&top) else { panic!("{rel}: module {top} is not in the layering (add it to ORDER)") };
        for (i, line) in std::fs::read_to_string(&p).unwrap().lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for part in line.split("crate::").skip(1) {
                let m: String = part.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
                let Some(r) = rank(&m) else { continue };
                if m == top {
                    continue;
                }
                if r < me {
                    bad.push(format!("{rel}:{}: {top} imports {m}, which is above it", i + 1));
                }
                if SIBLINGS.iter().any(|(a, b)| (*a == top && *b == m) || (*b == top && *a == m)) {
                    bad.push(format!("{rel}:{}: {top} imports its sibling {m}", i + 1));
                }
            }
        }
    }
    assert!(bad.is_empty(), "layering broken:\n{}", bad.join("\n"));
}
