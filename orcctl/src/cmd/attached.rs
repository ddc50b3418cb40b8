//! `orcctl container run --rm`: like `docker run --rm`, the container's
//! output on ours, its exit status as ours, and the container removed
//! after — over one connection: Run, Logs (follow), Wait, Remove. Ctrl-C
//! removes it at once (killed) and exits 130.

use std::io::Write;

use futures::StreamExt;
use orc_proto::container::*;

use super::container::containers;
use crate::connect::Trust;
use crate::error::CliError;

/// Exit status of a shell for a process that ended with `code` or by `signal`.
fn status_of(exit: Option<&ExitStatus>) -> u8 {
    match exit {
        Some(e) if e.code != 0 => e.code.clamp(1, 255) as u8,
        Some(e) if e.signal != 0 => (128 + e.signal).clamp(1, 255) as u8,
        Some(_) => 0,
        // It did not end as a process does (the node went down under it).
        None => 125,
    }
}

/// Runs `spec` on `node`, attached, and removes it after.
pub async fn run_rm(node: &str, trust: &Trust, spec: ContainerSpec) -> Result<(), CliError> {
    let err = crate::cmd::status_err(node);
    let mut c = containers(node, trust).await?;
    let id = c.run(RunRequest { spec: Some(spec) }).await.map_err(&err)?.into_inner().id;
    let mut logs = c.clone();
    let log_id = id.clone();
    let output = tokio::spawn(async move {
        let mut s = logs.logs(LogsRequest { id: log_id, follow: true, tail: 0 }).await?.into_inner();
        while let Some(e) = s.next().await {
            let e = e?;
            let mut line = e.line;
            line.push(b'\n');
            if e.stream == "stderr" {
                let _ = std::io::stderr().write_all(&line);
            } else {
                let _ = std::io::stdout().lock().write_all(&line);
            }
        }
        let _ = std::io::stdout().flush();
        Ok::<_, tonic::Status>(())
    });
    let ended = tokio::select! {
        w = c.wait(WaitRequest { id: id.clone() }) => Some(w.map_err(&err)?.into_inner()),
        _ = tokio::signal::ctrl_c() => None,
    };
    let Some(ended) = ended else {
        output.abort();
        c.remove(RemoveContainerRequest { id, force: true }).await.map_err(&err)?;
        return Err(CliError::Exit(130));
    };
    // The log follow ends with the container; its output is all shown first.
    match output.await {
        Ok(Ok(())) => {}
        Ok(Err(s)) => eprintln!("orcctl: {node}: the container's output broke off: {}", s.message()),
        Err(_) => {}
    }
    c.remove(RemoveContainerRequest { id, force: false }).await.map_err(&err)?;
    match status_of(ended.exit.as_ref()) {
        0 => Ok(()),
        code => Err(CliError::Exit(code)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_status_is_a_shells() {
        let e = |code, signal| ExitStatus { code, signal, oom_killed: false };
        assert_eq!(status_of(Some(&e(0, 0))), 0);
        assert_eq!(status_of(Some(&e(3, 0))), 3);
        assert_eq!(status_of(Some(&e(0, 9))), 137);
        assert_eq!(status_of(Some(&e(300, 0))), 255);
        assert_eq!(status_of(None), 125);
    }
}
