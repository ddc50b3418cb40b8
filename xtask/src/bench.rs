//! `cargo xtask bench <name>`.

use anyhow::bail;

pub fn run(name: &str) -> anyhow::Result<()> {
    match name {
        "boot" => crate::bench_boot::run(),
        other => bail!("unknown benchmark {other:?}; benchmarks: boot"),
    }
}
