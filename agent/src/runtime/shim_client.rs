//! Starting a shim and talking to it over its unix socket.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::io::AsyncBufReadExt;
use tonic::transport::{Channel, Endpoint};

use crate::error::AgentError;
use crate::shim_contract::{read_ready, Ready, ShimArgs};
use orc_proto::shim::shim_client::ShimClient;

/// How long a shim may take to create and start its container.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Re-executes this binary as `orc-agent shim`, in its own session so it
/// outlives the agent, and waits for its readiness line. Returns (pid, started).
pub async fn spawn(exe: &Path, args: &ShimArgs) -> Result<(i32, i64), AgentError> {
    let log = args.dir.join(crate::shim_contract::SHIM_LOG);
    let stderr =
        std::fs::OpenOptions::new().create(true).append(true).open(&log).map_err(|e| AgentError::io(&log, e))?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.args(args.command_line()).env_remove("RUST_LOG").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(stderr);
    // SAFETY: setsid is async-signal-safe and touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| nix::unistd::setsid().map(|_| ()).map_err(std::io::Error::from));
    }
    let mut child = cmd.spawn().map_err(|e| AgentError::Io(format!("starting the shim {}: {e}", exe.display())))?;
    let Some(out) = child.stdout.take() else {
        return Err(AgentError::Io("shim without stdout".into()));
    };
    let mut line = String::new();
    let read = tokio::time::timeout(START_TIMEOUT, tokio::io::BufReader::new(out).read_line(&mut line)).await;
    // The child handle is dropped: tokio reaps the shim when it ends while
    // this agent lives; after an agent restart, PID 1 does.
    drop(child);
    match read {
        Err(_) => {
            return Err(AgentError::Unavailable(format!(
                "the shim did not start the container within {START_TIMEOUT:?}"
            )))
        }
        Ok(Err(e)) => return Err(AgentError::Io(format!("reading the shim: {e}"))),
        Ok(Ok(_)) => {}
    }
    let ready = read_ready(&line).ok_or_else(|| {
        let tail = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = tail.lines().rev().take(3).collect();
        AgentError::Io(format!(
            "the shim failed before starting: {}",
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        ))
    })?;
    match ready {
        Ready::Failed { error } => Err(AgentError::FailedPrecondition(format!("cannot start the container: {error}"))),
        Ready::Started { pid, started } => Ok((pid, started)),
    }
}

/// A client for the shim listening on `socket`.
pub async fn connect(socket: &Path) -> Result<ShimClient<Channel>, AgentError> {
    let path: PathBuf = socket.to_owned();
    let channel = Endpoint::from_static("http://shim.local")
        .connect_timeout(Duration::from_secs(5))
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move { tokio::net::UnixStream::connect(path).await.map(TokioIo::new) }
        }))
        .await
        .map_err(|e| AgentError::Unavailable(format!("the container's shim at {} is gone: {e}", socket.display())))?;
    Ok(ShimClient::new(channel))
}
