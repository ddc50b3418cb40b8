//! Loads the kernel modules listed (in dependency order) by the image build.

use std::fs::File;
use std::path::Path;

use nix::kmod::{finit_module, ModuleInitFlags};

#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    /// the module list is missing
    #[error("cannot read the module list {path}: {source}")]
    List { path: String, source: std::io::Error },
}

/// Loads every module in the list at `list`; paths are relative to `dir`.
/// A module that fails to load is logged and skipped: the node may still come
/// up without it, and the log says which one is missing. Returns how many loaded.
pub fn load_all(list: &Path, dir: &Path) -> Result<usize, ModuleError> {
    let text = std::fs::read_to_string(list)
        .map_err(|source| ModuleError::List { path: list.display().to_string(), source })?;
    let mut loaded = 0;
    for rel in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let path = dir.join(rel);
        let res = File::open(&path)
            .map_err(|e| e.to_string())
            .and_then(|f| finit_module(&f, c"", ModuleInitFlags::empty()).map_err(|e| e.to_string()));
        match res {
            Ok(()) => loaded += 1,
            Err(e) if e.contains("EEXIST") => {}
            Err(e) => tracing::warn!(module = %path.display(), error = %e, "cannot load kernel module"),
        }
    }
    Ok(loaded)
}
