//! The last step in every container process before `execve`: default
//! signal handling (the shim itself ignores SIGPIPE, as Rust programs do,
//! so a client that hangs up cannot kill it; the container must get the
//! default back) and, for exec'd processes, the container's seccomp filter
//! (libcontainer 0.7's tenant path drops it from the spec).

use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use oci_spec::runtime::{LinuxSeccomp, Spec};

#[derive(Clone, Default)]
pub struct Workload {
    /// Installed right before `execve` (exec'd processes; no_new_privs is set).
    pub seccomp: Option<LinuxSeccomp>,
}

impl Executor for Workload {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        use nix::sys::signal::{signal, sigprocmask, SigHandler, SigSet, SigmaskHow, Signal};
        // SAFETY: restoring the default disposition; no handler runs.
        unsafe {
            let _ = signal(Signal::SIGPIPE, SigHandler::SigDfl);
        }
        let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
        if let Some(profile) = &self.seccomp {
            libcontainer::seccomp::initialize_seccomp(profile)
                .map_err(|e| ExecutorError::Other(format!("installing the seccomp filter: {e}")))?;
        }
        DefaultExecutor {}.exec(spec)
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        DefaultExecutor {}.validate(spec)
    }
}
