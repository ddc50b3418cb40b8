//! `orc-agent shim`: one process per container, re-executed from the agent
//! binary. Single-threaded (libcontainer forks with `clone3` and runs Rust
//! in the child; a second thread holding a lock at that moment deadlocks
//! it). It mounts the rootfs, creates and starts the container, becomes
//! its child subreaper, writes its output to the log, serves kill, exec,
//! stats and wait on `<run>/shim.sock`, and after the exit cleans up and
//! writes `exit.json`. It outlives agent restarts (own session).
//!
//! Layout of a container directory (`--dir`):
//! `bundle/config.json`, `bundle/rootfs[.json]`, `log/container.log`, `exit.json`.
//!
//! - [`container`]: libcontainer create/start/delete, the overlay rootfs.
//! - [`server`], [`exec`]: the socket's service.
//! - [`log`]: the CRI log writer; [`cgroup`]: figures and signals; [`fdio`].
//! - [`executor`]: the last step before `execve` in container processes.
//! - [`error`]: what the shim refuses or fails at.

pub mod cgroup;
pub mod container;
pub mod error;
pub mod exec;
pub mod executor;
pub mod fdio;
pub mod log;
pub mod server;

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use tokio::sync::{oneshot, watch};

use crate::shim_contract::{announce_ready, ExitInfo, Ready};

use crate::shim_contract::{ShimArgs, SOCKET};

pub struct Shim {
    pub id: String,
    pub pid: i32,
    pub started: i64,
    pub bundle: PathBuf,
    pub run: PathBuf,
    pub root: PathBuf,
    pub cgroup: cgroup::Cgroup,
    /// Set once the container has exited and been cleaned up.
    pub exit: watch::Sender<Option<ExitInfo>>,
    children: Mutex<HashMap<i32, oneshot::Sender<ExitInfo>>>,
    /// Exits reaped before anyone asked for them.
    early: Mutex<HashMap<i32, ExitInfo>>,
    exec_seq: AtomicU64,
}

use crate::sync::lock;

impl Shim {
    pub fn register_child(&self, pid: i32, tx: oneshot::Sender<ExitInfo>) {
        if let Some(e) = lock(&self.early).remove(&pid) {
            let _ = tx.send(e);
        } else {
            lock(&self.children).insert(pid, tx);
        }
    }

    /// Reaps every exited child; returns the init's exit when it is among them.
    fn reap(&self) -> Option<ExitInfo> {
        let mut init = None;
        loop {
            let (pid, info) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, ExitInfo { code, ..Default::default() }),
                Ok(WaitStatus::Signaled(pid, sig, _)) => {
                    (pid, ExitInfo { code: 128 + sig as i32, signal: sig as i32, ..Default::default() })
                }
                Ok(WaitStatus::StillAlive) | Err(_) => return init,
                Ok(_) => continue,
            };
            let pid = pid.as_raw();
            if pid == self.pid {
                init = Some(info);
            } else if let Some(tx) = lock(&self.children).remove(&pid) {
                let _ = tx.send(info);
            } else {
                lock(&self.early).insert(pid, info);
            }
        }
    }
}

use crate::clock::unix_secs as now;

fn failed(error: String) {
    announce_ready(&Ready::Failed { error });
}

fn prepare_process() {
    let _ = nix::sys::prctl::set_child_subreaper(true);
    // SIGPIPE stays ignored here (a hung-up agent must not kill the shim);
    // container processes get the default back in `executor::Workload`.
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::empty()),
        None,
    );
}

/// Runs the shim; returns the process exit code.
pub fn main(args: ShimArgs) -> i32 {
    prepare_process();
    let bundle = args.bundle();
    let log_dir = args.log_dir();
    let _ = std::fs::remove_file(args.exit_file());
    if let Err(e) = std::fs::create_dir_all(&args.run).and_then(|_| std::fs::create_dir_all(&args.root)) {
        failed(format!("{}: {e}", args.run.display()));
        return 1;
    }
    let log = match log::LogWriter::open(&log_dir, args.log_max_size) {
        Ok(l) => l,
        Err(e) => {
            failed(format!("opening the log in {}: {e}", log_dir.display()));
            return 1;
        }
    };
    // The socket exists before the readiness line, so the agent can always
    // connect once it has read it.
    let sock = args.socket();
    let _ = std::fs::remove_file(&sock);
    let listener = match std::os::unix::net::UnixListener::bind(&sock).and_then(|l| l.set_nonblocking(true).map(|_| l))
    {
        Ok(l) => l,
        Err(e) => {
            failed(format!("{}: {e}", sock.display()));
            return 1;
        }
    };
    let mounted = match container::mount_rootfs(&bundle) {
        Ok(m) => m,
        Err(e) => {
            failed(e.to_string());
            return 1;
        }
    };
    let pipes = (|| -> nix::Result<_> {
        let i = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let o = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let e = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        Ok((i, o, e))
    })();
    let ((in_r, in_w), (out_r, out_w), (err_r, err_w)) = match pipes {
        Ok(p) => p,
        Err(e) => {
            failed(format!("pipes: {e}"));
            return 1;
        }
    };
    // The container's stdin reads end-of-file at once.
    drop(in_w);
    let stdio = container::Stdio { stdin: in_r, stdout: out_w, stderr: err_w };
    let pid = match container::create_and_start(&args.id, &args.root, &bundle, stdio) {
        Ok(pid) => pid,
        Err(e) => {
            if mounted {
                container::unmount_rootfs(&bundle);
            }
            failed(e.to_string());
            return 1;
        }
    };
    let started = now();
    announce_ready(&Ready::Started { pid, started });
    tracing::info!(id = %args.id, pid, "container started");

    let (exit_tx, _) = watch::channel(None);
    let shim = Arc::new(Shim {
        id: args.id.clone(),
        pid,
        started,
        bundle: bundle.clone(),
        run: args.run.clone(),
        root: args.root.clone(),
        cgroup: cgroup::Cgroup::of_bundle(&bundle, &args.id),
        exit: exit_tx,
        children: Mutex::new(HashMap::new()),
        early: Mutex::new(HashMap::new()),
        exec_seq: AtomicU64::new(0),
    });
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "no runtime; killing the container");
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            return 1;
        }
    };
    let exit = rt.block_on(serve(shim.clone(), listener, log, out_r, err_r, mounted, &args.dir));
    tracing::info!(id = %args.id, code = exit.code, signal = exit.signal, oom = exit.oom_killed, "container exited");
    0
}

async fn pump(fd: OwnedFd, stream: usize, log: Arc<Mutex<log::LogWriter>>) {
    let Ok(io) = fdio::FdIo::new(fd) else { return };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match io.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if let Err(e) = lock(&log).write(stream, &buf[..n]) {
                    tracing::warn!(error = %e, "writing the container log");
                }
            }
        }
    }
    let _ = lock(&log).flush_stream(stream);
}

async fn serve(
    shim: Arc<Shim>,
    listener: std::os::unix::net::UnixListener,
    log: log::LogWriter,
    out: OwnedFd,
    err: OwnedFd,
    mounted: bool,
    dir: &Path,
) -> ExitInfo {
    let mut sigchld = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(error = %e, "no SIGCHLD stream; polling");
            None
        }
    };
    let log = Arc::new(Mutex::new(log));
    let pumps = [tokio::spawn(pump(out, 0, log.clone())), tokio::spawn(pump(err, 1, log.clone()))];

    let sock = shim.run.join(SOCKET);
    match tokio::net::UnixListener::from_std(listener) {
        Ok(listener) => {
            let svc = orc_proto::shim::shim_server::ShimServer::new(server::ShimService { shim: shim.clone() });
            tokio::spawn(
                tonic::transport::Server::builder()
                    .add_service(svc)
                    .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener)),
            );
        }
        Err(e) => tracing::error!(socket = %sock.display(), error = %e, "cannot serve the shim socket"),
    }

    let mut exit = loop {
        if let Some(e) = shim.reap() {
            break e;
        }
        match &mut sigchld {
            Some(s) => {
                let _ = tokio::time::timeout(Duration::from_secs(1), s.recv()).await;
            }
            None => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    // Output still in the pipes; everything in the container's pid
    // namespace died with its init, so the pipes close promptly.
    let _ = tokio::time::timeout(Duration::from_secs(2), futures::future::join_all(pumps)).await;
    exit.oom_killed = shim.cgroup.oom_kills() > 0;
    exit.finished = now();
    shim.cgroup.wait_empty(Duration::from_millis(100));
    container::delete(&shim.root, &shim.id);
    if mounted {
        container::unmount_rootfs(&shim.bundle);
    }
    if let Err(e) = crate::shim_contract::record_exit(dir, &exit) {
        tracing::error!(error = %e, "writing exit.json");
    }
    shim.exit.send_replace(Some(exit));
    // Give Wait callers a chance to get their answer before the process
    // goes; one that misses it finds exit.json, written above.
    for _ in 0..8 {
        tokio::task::yield_now().await;
    }
    let _ = std::fs::remove_file(&sock);
    exit
}
