//! `Reboot` and `Shutdown`: orc-init does the orderly work; the agent asks it
//! with a signal, a moment after answering so the reply gets out.

use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::error::AgentError;
use crate::state::NodeState;

#[derive(Debug, Clone, Copy)]
pub enum PowerAction {
    Reboot,
    Poweroff,
}

pub fn do_power(state: &NodeState, action: PowerAction) -> Result<(), AgentError> {
    let Some(pid) = state.config.init_pid else {
        return Err(AgentError::FailedPrecondition(
            "this agent is not running under orc-init, so it cannot reboot or power off its host".into(),
        ));
    };
    let sig = match action {
        PowerAction::Reboot => Signal::SIGTERM,
        PowerAction::Poweroff => Signal::SIGUSR2,
    };
    tracing::info!(?action, "asking orc-init to {action:?}");
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        if let Err(e) = kill(Pid::from_raw(pid), sig) {
            tracing::error!(pid, error = %e, "cannot signal orc-init");
        }
    });
    Ok(())
}
