//! `cargo xtask test`: every tier. Unit and process-level tests run with
//! `cargo test`; the VM tier needs the image, so it is built first and the
//! VM tests find it through `ORC_E2E_IMAGE`.

use std::process::Command;

use anyhow::bail;

pub(crate) fn cargo(args: &[&str], e2e: bool) -> anyhow::Result<()> {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(args).current_dir(crate::image::workspace());
    if e2e {
        cmd.env("ORC_E2E_IMAGE", crate::image::out_dir());
    }
    let st = cmd.status()?;
    if !st.success() {
        bail!("cargo {} failed", args.join(" "));
    }
    Ok(())
}

/// The repository's habits, checked before any test: formatting and clippy
/// with warnings as errors (every target, tests included).
fn habits() -> anyhow::Result<()> {
    cargo(&["fmt", "--all", "--check"], false)?;
    cargo(&["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"], false)
}

/// Every tier; with `filter`, only the tests whose name contains it.
pub fn all(filter: Option<&str>) -> anyhow::Result<()> {
    crate::deps::ensure()?;
    habits()?;
    cargo(&["build", "--workspace", "--bins"], false)?;
    crate::image::build(&crate::image::ImageOptions { kernel: None })?;
    let mut args = vec!["test", "--workspace", "--", "--test-threads=1"];
    args.extend(filter);
    cargo(&args, true)
}

pub fn e2e() -> anyhow::Result<()> {
    crate::deps::ensure()?;
    cargo(&["build", "--workspace", "--bins"], false)?;
    crate::image::build(&crate::image::ImageOptions { kernel: None })?;
    cargo(&["test", "-p", "orc-e2e", "--test", "vm", "--", "--test-threads=1"], true)
}
