//! Loads the kernel modules listed (in dependency order) by the image build.

use std::fs::File;
use std::path::{Path, PathBuf};

use nix::kmod::{finit_module, ModuleInitFlags};

#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    /// the module list is missing
    #[error("cannot read the module list {path}: {source}")]
    List { path: String, source: std::io::Error },
}

/// Modules opened to load later (each with why it could not be opened).
pub type Opened = Vec<(PathBuf, Result<File, String>)>;

/// Loads every module in the list at `list`; paths are relative to `dir`.
/// A module that fails to load is logged and skipped: the node may still come
/// up without it, and the log says which one is missing. Returns how many loaded.
pub fn load_all(list: &Path, dir: &Path) -> Result<usize, ModuleError> {
    Ok(load(open_all(list, dir)?))
}

/// Opens every module in the list at `list` (paths relative to `dir`), to
/// load later: the files stay readable through their descriptors after the
/// initramfs holding them is gone.
pub fn open_all(list: &Path, dir: &Path) -> Result<Opened, ModuleError> {
    let text = std::fs::read_to_string(list)
        .map_err(|source| ModuleError::List { path: list.display().to_string(), source })?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|rel| {
            let path = dir.join(rel);
            let file = File::open(&path).map_err(|e| e.to_string());
            (path, file)
        })
        .collect())
}

/// Loads opened modules in order; returns how many loaded.
pub fn load(modules: Opened) -> usize {
    let mut loaded = 0;
    for (path, file) in modules {
        let res = file.and_then(|f| finit_module(&f, c"", ModuleInitFlags::empty()).map_err(|e| e.to_string()));
        match res {
            Ok(()) => loaded += 1,
            Err(e) if e.contains("EEXIST") => {}
            Err(e) => tracing::warn!(module = %path.display(), error = %e, "cannot load kernel module"),
        }
    }
    loaded
}

/// Loads `modules` on a thread of its own at the lowest CPU priority
/// (SCHED_IDLE: it runs when nothing else wants the CPU, so the agent starts
/// first), with `pending` present until they are all loaded.
pub fn load_late(modules: Opened, pending: &Path) {
    if let Err(e) = std::fs::write(pending, b"") {
        tracing::warn!(path = %pending.display(), error = %e, "cannot mark the late modules pending");
    }
    let pending = pending.to_path_buf();
    let spawned = std::thread::Builder::new().name("late-modules".into()).spawn(move || {
        let start = std::time::Instant::now();
        idle_priority();
        let loaded = load(modules);
        let _ = std::fs::remove_file(&pending);
        tracing::info!(loaded, took_ms = start.elapsed().as_millis() as u64, "late kernel modules loaded");
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start loading the late modules");
    }
}

/// Puts the calling thread in SCHED_IDLE.
fn idle_priority() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; `param` outlives the call.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if rc != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "cannot lower the late modules' priority");
    }
}
