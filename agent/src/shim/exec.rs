//! Exec: a new process in the running container (libcontainer's tenant
//! builder, from this single-threaded shim so the process is our child),
//! with pipes or a pty, relayed over the gRPC stream.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use nix::fcntl::OFlag;
use oci_spec::runtime::{Process, Spec};
use tokio::sync::{mpsc, oneshot};
use tonic::{Status, Streaming};

use super::error::ShimError;

use super::fdio::FdIo;
use super::Shim;
use crate::shim_contract::ExitInfo;
use orc_proto::container as pb;
use pb::exec_input::Input;
use pb::exec_output::Output;

pub struct Spawned {
    pid: i32,
    /// Where stdin goes: a pipe or the pty master.
    stdin: Option<FdIo>,
    stdout: FdIo,
    stderr: Option<FdIo>,
    tty: bool,
    exited: oneshot::Receiver<ExitInfo>,
    files: Vec<PathBuf>,
}

fn set_winsize(fd: i32, rows: u32, cols: u32) {
    if rows == 0 || cols == 0 {
        return;
    }
    let ws = libc::winsize { ws_row: rows as u16, ws_col: cols as u16, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads one `winsize` from the pointer we pass.
    unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) };
}

fn process(
    shim: &Shim,
    start: &pb::ExecStart,
) -> Result<(Process, Option<oci_spec::runtime::LinuxSeccomp>), ShimError> {
    if start.args.is_empty() {
        return Err(ShimError::InvalidArgument(
            "exec needs a command (`orcctl container exec ID -- CMD ARGS…`)".into(),
        ));
    }
    let spec = Spec::load(shim.bundle.join("config.json"))
        .map_err(|e| ShimError::Internal(format!("reading the container's spec: {e}")))?;
    let mut p = spec.process().clone().unwrap_or_default();
    p.set_args(Some(start.args.clone()));
    let mut env = p.env().clone().unwrap_or_default();
    for e in &start.env {
        let key = e.split('=').next().unwrap_or_default();
        env.retain(|x| x.split('=').next() != Some(key));
        env.push(e.clone());
    }
    if start.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    p.set_env(Some(env));
    if !start.workdir.is_empty() {
        if !start.workdir.starts_with('/') {
            return Err(ShimError::InvalidArgument(format!("working directory {:?} must be absolute", start.workdir)));
        }
        p.set_cwd(start.workdir.clone().into());
    }
    if !start.user.is_empty() {
        let ids = crate::shim_contract::user::resolve(&start.user, &[shim.bundle.join("rootfs")])?;
        let mut u = p.user().clone();
        u.set_uid(ids.uid);
        u.set_gid(ids.gid);
        p.set_user(u);
    }
    p.set_terminal(Some(start.tty));
    let seccomp = spec.linux().as_ref().and_then(|l| l.seccomp().clone());
    if seccomp.is_some() {
        p.set_no_new_privileges(Some(true));
    }
    Ok((p, seccomp))
}

fn pipe() -> Result<(OwnedFd, OwnedFd), ShimError> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| ShimError::Internal(format!("pipe: {e}")))
}

/// Receives the pty master the container's process sends on the console socket.
fn receive_master(listener: &std::os::unix::net::UnixListener) -> Result<OwnedFd, ShimError> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::FromRawFd;
    let (conn, _) = listener.accept().map_err(|e| ShimError::Internal(format!("console socket: {e}")))?;
    let mut buf = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(conn.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC)
        .map_err(|e| ShimError::Internal(format!("receiving the pty: {e}")))?;
    for c in msg.cmsgs().map_err(|e| ShimError::Internal(format!("receiving the pty: {e}")))? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(fd) = fds.first() {
                // SAFETY: the kernel just gave us this descriptor; we own it.
                return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
            }
        }
    }
    Err(ShimError::Internal("the container sent no pty on the console socket".into()))
}

/// Starts the process. Synchronous on purpose: nothing else runs meanwhile,
/// so the reaper cannot take the child's exit before it is registered.
pub fn spawn(shim: &Arc<Shim>, start: &pb::ExecStart) -> Result<Spawned, ShimError> {
    let (p, seccomp) = process(shim, start)?;
    let n = shim.exec_seq.fetch_add(1, Ordering::Relaxed);
    let process_file = shim.run.join(format!("exec-{n}.json"));
    let data = serde_json::to_vec(&p).map_err(|e| ShimError::Internal(e.to_string()))?;
    std::fs::write(&process_file, data).map_err(|e| ShimError::Internal(format!("{}: {e}", process_file.display())))?;
    let mut files = vec![process_file.clone()];
    let mut builder = ContainerBuilder::new(shim.id.clone(), SyscallType::Linux)
        .with_root_path(&shim.root)
        .map_err(|e| ShimError::Internal(e.to_string()))?
        .with_executor(super::executor::Workload::default());
    if let Some(profile) = seccomp {
        builder = builder.with_executor(super::executor::Workload { seccomp: Some(profile) });
    }
    let (builder, io) = if start.tty {
        let sock = shim.run.join(format!("exec-{n}.sock"));
        let _ = std::fs::remove_file(&sock);
        let listener = std::os::unix::net::UnixListener::bind(&sock)
            .map_err(|e| ShimError::Internal(format!("{}: {e}", sock.display())))?;
        files.push(sock.clone());
        (builder.with_console_socket(Some(&sock)), Err(listener))
    } else {
        let (in_r, in_w) = pipe()?;
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        (builder.with_stdin(in_r).with_stdout(out_w).with_stderr(err_w), Ok((in_w, out_r, err_r)))
    };
    let pid = builder
        .validate_id()
        .map_err(|e| ShimError::Internal(e.to_string()))?
        .as_tenant()
        .with_detach(true)
        .with_process(Some(&process_file))
        .build()
        .map_err(|e| {
            for f in &files {
                let _ = std::fs::remove_file(f);
            }
            ShimError::FailedPrecondition(format!("exec failed: {e}"))
        })?
        .as_raw();
    let (tx, exited) = oneshot::channel();
    shim.register_child(pid, tx);
    let io_err = |e: std::io::Error| ShimError::Internal(format!("exec i/o: {e}"));
    let (stdin, stdout, stderr) = match io {
        Ok((in_w, out_r, err_r)) => (
            Some(FdIo::new(in_w).map_err(io_err)?),
            FdIo::new(out_r).map_err(io_err)?,
            Some(FdIo::new(err_r).map_err(io_err)?),
        ),
        Err(listener) => {
            let master = receive_master(&listener)?;
            set_winsize(master.as_raw_fd(), start.rows, start.cols);
            let dup = master.try_clone().map_err(io_err)?;
            (Some(FdIo::new(dup).map_err(io_err)?), FdIo::new(master).map_err(io_err)?, None)
        }
    };
    tracing::info!(pid, tty = start.tty, args = ?start.args, "exec started");
    Ok(Spawned { pid, stdin, stdout, stderr, tty: start.tty, exited, files })
}

async fn pump(io: FdIo, stderr: bool, tx: mpsc::Sender<Result<pb::ExecOutput, Status>>) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match io.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let data = buf[..n].to_vec();
                let output = if stderr { Output::Stderr(data) } else { Output::Stdout(data) };
                if tx.send(Ok(pb::ExecOutput { output: Some(output) })).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Moves bytes both ways until the process has exited and its output is
/// drained; the last message is the exit status.
pub async fn relay(s: Spawned, mut input: Streaming<pb::ExecInput>, tx: mpsc::Sender<Result<pb::ExecOutput, Status>>) {
    let Spawned { pid, stdin, stdout, stderr, tty, exited, files } = s;
    let pty_fd = if tty { Some(stdout.raw()) } else { None };
    let out = tokio::spawn(pump(stdout, false, tx.clone()));
    let err = stderr.map(|e| tokio::spawn(pump(e, true, tx.clone())));
    let input_task = tokio::spawn(async move {
        let mut stdin = stdin;
        while let Ok(Some(msg)) = input.message().await {
            match msg.input {
                Some(Input::Stdin(data)) => {
                    if let Some(w) = &stdin {
                        if w.write_all(&data).await.is_err() {
                            stdin = None;
                        }
                    }
                }
                Some(Input::Resize(r)) => {
                    if let Some(fd) = pty_fd {
                        set_winsize(fd, r.rows, r.cols);
                    }
                }
                Some(Input::CloseStdin(true)) => {
                    if tty {
                        if let Some(w) = &stdin {
                            let _ = w.write_all(&[4]).await;
                        }
                    } else {
                        stdin = None;
                    }
                }
                _ => {}
            }
        }
    });
    // A caller gone before the process ended (a probe's timeout, a
    // dropped connection) leaves nobody to wait for it: it is killed.
    let gone = tx.clone();
    let reaper = tokio::spawn(async move {
        gone.closed().await;
        tracing::info!(pid, "exec caller went away: killing the process");
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    });
    let status = exited.await.unwrap_or(ExitInfo { code: 255, ..Default::default() });
    reaper.abort();
    // The pipes close when the process and anything it started are gone;
    // a background child holding them must not keep the caller waiting.
    let drain = async {
        let _ = out.await;
        if let Some(e) = err {
            let _ = e.await;
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), drain).await;
    input_task.abort();
    tracing::info!(pid, code = status.code, signal = status.signal, "exec finished");
    let _ = tx.send(Ok(pb::ExecOutput { output: Some(Output::Exit(status.to_proto())) })).await;
    for f in files {
        let _ = std::fs::remove_file(f);
    }
}
