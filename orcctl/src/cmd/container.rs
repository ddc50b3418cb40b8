//! `orcctl container …` on nodes: run, ls, inspect, logs, exec, stop, wait, kill, rm.

use std::io::{Read, Write};

use futures::StreamExt;
use orc_proto::container::containers_client::ContainersClient;
use orc_proto::container::*;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use super::image::login;
use crate::cli::{ContainerCommand, Output, RunArgs};
use crate::connect::{self, Trust};
use crate::error::CliError;
use crate::fanout::{call, done, fan, split};
use crate::output::{age, short, table};
use crate::parse::parse_bytes;

pub(super) async fn containers(addr: &str, trust: &Trust) -> Result<ContainersClient<Channel>, CliError> {
    Ok(ContainersClient::new(connect::channel(addr, trust).await?).max_decoding_message_size(64 << 20))
}

/// Calls the Containers API of every node at once.
async fn each<T, F, Fut>(nodes: &[String], trust: &Trust, f: F) -> Vec<(String, Result<T, CliError>)>
where
    F: Fn(ContainersClient<Channel>) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    call(nodes, |n| async move { containers(&n, trust).await }, f).await
}

pub fn run_spec(a: &RunArgs) -> Result<ContainerSpec, CliError> {
    let mut mounts = Vec::new();
    for v in &a.volumes {
        let parts: Vec<&str> = v.split(':').collect();
        let (source, target, ro) = match parts.as_slice() {
            [s, t] => (s, t, false),
            [s, t, "ro"] => (s, t, true),
            [s, t, "rw"] => (s, t, false),
            _ => return Err(CliError::Usage(format!("volume {v:?} is not /node/path:/container/path[:ro]"))),
        };
        mounts.push(Mount {
            r#type: "bind".into(),
            source: source.to_string(),
            target: target.to_string(),
            read_only: ro,
        });
    }
    for t in &a.tmpfs {
        mounts.push(Mount { r#type: "tmpfs".into(), source: String::new(), target: t.clone(), read_only: false });
    }
    let (condition, max_attempts) = match a.restart.split_once(':') {
        Some((c, n)) => (
            c.to_string(),
            n.parse().map_err(|_| CliError::Usage(format!("restart {:?}: {n:?} is not a number", a.restart)))?,
        ),
        None => (a.restart.clone(), 0),
    };
    if a.rm && condition != "no" {
        return Err(CliError::Usage(format!(
            "--rm and --restart {} contradict each other: a container removed when it ends is not restarted; drop one",
            a.restart
        )));
    }
    Ok(ContainerSpec {
        name: a.name.clone().unwrap_or_default(),
        image: a.image.clone(),
        command: a.entrypoint.iter().cloned().collect(),
        args: a.args.clone(),
        env: a.env.clone(),
        user: a.user.clone(),
        workdir: a.workdir.clone(),
        mounts,
        read_only: a.read_only,
        resources: Some(Resources {
            cpus: a.cpus,
            memory: a.memory.as_deref().map(parse_bytes).transpose()?.unwrap_or(0),
            pids: a.pids_limit,
        }),
        restart: Some(RestartPolicy { condition, max_attempts }),
        auth: login(&a.login)?,
        labels: Default::default(),
        networks: a.network.clone(),
    })
}

fn exit_text(c: &Container) -> String {
    match (&c.state[..], &c.exit) {
        ("exited", Some(e)) if e.oom_killed => format!("exited {} (OOM killed)", e.code),
        ("exited", Some(e)) if e.signal != 0 => format!("exited {} (signal {})", e.code, e.signal),
        ("exited", Some(e)) => format!("exited {}", e.code),
        (s, _) => s.to_string(),
    }
}

fn container_json(n: &str, c: &Container) -> serde_json::Value {
    json!({"node": n, "id": c.id, "name": c.name, "image": c.image, "image_id": c.image_id, "state": c.state, "pid": c.pid,
        "created": c.created, "started": c.started, "finished": c.finished, "restart_count": c.restart_count,
        "networks": c.spec.as_ref().map(|s| s.networks.clone()).unwrap_or_default(), "addresses": c.addresses,
        "exit": c.exit.as_ref().map(|e| json!({"code": e.code, "signal": e.signal, "oom_killed": e.oom_killed}))})
}

pub async fn run(cmd: ContainerCommand, nodes: &[String], trust: &Trust, out: Output) -> Result<(), CliError> {
    match cmd {
        ContainerCommand::Run(a) => {
            let spec = run_spec(&a)?;
            if a.rm {
                let [node] = nodes else {
                    return Err(CliError::Usage("run --rm stays attached to one node: pass a single --nodes".into()));
                };
                return super::attached::run_rm(node, trust, spec).await;
            }
            let (ok, err) = split(
                each(nodes, trust, |mut c| {
                    let spec = spec.clone();
                    async move { c.run(RunRequest { spec: Some(spec) }).await }
                })
                .await,
            );
            for (n, c) in &ok {
                match out {
                    Output::Json => println!("{}", container_json(n, c)),
                    Output::Table if nodes.len() > 1 => println!("{n}: {}", c.id),
                    Output::Table => println!("{}", c.id),
                }
            }
            done(err)
        }
        ContainerCommand::Ls { all } => {
            let (ok, err) =
                split(each(nodes, trust, |mut c| async move { c.list(ListContainersRequest { all }).await }).await);
            match out {
                Output::Json => println!(
                    "{}",
                    json!(ok
                        .iter()
                        .flat_map(|(n, r)| r.containers.iter().map(move |c| container_json(n, c)))
                        .collect::<Vec<_>>())
                ),
                Output::Table => table(
                    &["NODE", "ID", "NAME", "IMAGE", "STATE", "CREATED", "RESTARTS"],
                    &ok.iter()
                        .flat_map(|(n, r)| {
                            r.containers.iter().map(move |c| {
                                vec![
                                    n.clone(),
                                    short(&c.id),
                                    c.name.clone(),
                                    c.image.clone(),
                                    exit_text(c),
                                    age(c.created),
                                    c.restart_count.to_string(),
                                ]
                            })
                        })
                        .collect::<Vec<_>>(),
                ),
            }
            done(err)
        }
        ContainerCommand::Inspect { id } => {
            let (ok, err) = split(
                each(nodes, trust, |mut c| {
                    let id = id.clone();
                    async move { c.inspect(InspectRequest { id }).await }
                })
                .await,
            );
            let docs: Vec<_> = ok
                .iter()
                .map(|(n, r)| {
                    let mut v = r.container.as_ref().map(|c| container_json(n, c)).unwrap_or_default();
                    v["spec"] = serde_json::from_str(&r.oci_spec).unwrap_or_default();
                    if let Some(s) = &r.stats {
                        v["stats"] = json!({"memory_current": s.memory_current, "memory_max": s.memory_max,
                            "cpu_usage_usec": s.cpu_usage_usec, "pids_current": s.pids_current});
                    }
                    v
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&docs).unwrap_or_default());
            done(err)
        }
        ContainerCommand::Logs { id, follow, tail, timestamps } => {
            let prefix = nodes.len() > 1;
            let results = fan(nodes, |n| {
                let id = id.clone();
                async move {
                    let mut c = containers(&n, trust).await?;
                    let mut s = c
                        .logs(LogsRequest { id, follow, tail })
                        .await
                        .map_err(|e| CliError::from_status(&n, e))?
                        .into_inner();
                    while let Some(e) = s.next().await {
                        let e = e.map_err(|e| CliError::from_status(&n, e))?;
                        let text = String::from_utf8_lossy(&e.line);
                        match out {
                            Output::Json => {
                                println!("{}", json!({"node": n, "time": e.time, "stream": e.stream, "line": text}))
                            }
                            Output::Table => {
                                let mut line = String::new();
                                if prefix {
                                    line.push_str(&format!("{n}: "));
                                }
                                if timestamps {
                                    line.push_str(&format!("{} ", e.time));
                                }
                                line.push_str(&text);
                                if e.stream == "stderr" {
                                    eprintln!("{line}");
                                } else {
                                    println!("{line}");
                                }
                            }
                        }
                    }
                    Ok(())
                }
            })
            .await;
            done(split(results).1)
        }
        ContainerCommand::Exec { interactive, tty, env, user, workdir, id, command } => {
            let [node] = nodes else {
                return Err(CliError::Usage("exec runs on one node: pass a single --nodes".into()));
            };
            exec(
                node,
                trust,
                ExecStart { container: id, args: command, env, tty, user, workdir, rows: 0, cols: 0 },
                interactive,
            )
            .await
        }
        ContainerCommand::Stop { id, timeout } => {
            let (ok, err) = split(
                each(nodes, trust, |mut c| {
                    let id = id.clone();
                    async move { c.stop(StopRequest { id, timeout }).await }
                })
                .await,
            );
            for (n, c) in ok {
                println!("{n}: {} {}", c.name, exit_text(&c));
            }
            done(err)
        }
        ContainerCommand::Wait { id } => {
            let (ok, err) = split(
                each(nodes, trust, |mut c| {
                    let id = id.clone();
                    async move { c.wait(WaitRequest { id }).await }
                })
                .await,
            );
            for (n, c) in ok {
                let code = c.exit.as_ref().map(|e| if e.signal != 0 { 128 + e.signal } else { e.code }).unwrap_or(0);
                match nodes.len() {
                    1 => println!("{code}"),
                    _ => println!("{n}: {code}"),
                }
            }
            done(err)
        }
        ContainerCommand::Kill { id, signal } => {
            let (ok, err) = split(
                each(nodes, trust, |mut c| {
                    let (id, signal) = (id.clone(), signal.clone());
                    async move { c.kill(KillRequest { id, signal }).await }
                })
                .await,
            );
            for (n, c) in ok {
                println!("{n}: {} {}", c.name, exit_text(&c));
            }
            done(err)
        }
        ContainerCommand::Rm { id, force } => {
            let (ok, err) = split(
                each(nodes, trust, |mut c| {
                    let id = id.clone();
                    async move { c.remove(RemoveContainerRequest { id, force }).await }
                })
                .await,
            );
            for (n, _) in ok {
                println!("{n}: removed {id}");
            }
            done(err)
        }
    }
}

/// An exec session: stdin (with `-i`) and window changes up, output down;
/// returns the process's exit code as [`CliError::Exit`] when it is not 0.
async fn exec(node: &str, trust: &Trust, mut start: ExecStart, interactive: bool) -> Result<(), CliError> {
    if start.tty && !crate::terminal::is_terminal() {
        return Err(CliError::Usage("-t needs a terminal on stdin and stdout; drop -t when piping".into()));
    }
    if start.tty {
        (start.rows, start.cols) = crate::terminal::size();
    }
    let tty = start.tty;
    let (tx, rx) = mpsc::channel(16);
    let _ = tx.send(ExecInput { input: Some(exec_input::Input::Start(start)) }).await;
    if interactive {
        let tx = tx.clone();
        tokio::task::spawn_blocking(move || {
            let mut stdin = std::io::stdin();
            let mut buf = [0u8; 4096];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx
                            .blocking_send(ExecInput { input: Some(exec_input::Input::Stdin(buf[..n].to_vec())) })
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            }
            let _ = tx.blocking_send(ExecInput { input: Some(exec_input::Input::CloseStdin(true)) });
        });
    } else {
        let _ = tx.send(ExecInput { input: Some(exec_input::Input::CloseStdin(true)) }).await;
    }
    if tty {
        let tx = tx.clone();
        tokio::spawn(async move {
            let Ok(mut winch) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()) else {
                return;
            };
            while winch.recv().await.is_some() {
                let (rows, cols) = crate::terminal::size();
                if tx.send(ExecInput { input: Some(exec_input::Input::Resize(Resize { rows, cols })) }).await.is_err() {
                    return;
                }
            }
        });
    }
    drop(tx);
    let mut c = containers(node, trust).await?;
    let mut s = c.exec(ReceiverStream::new(rx)).await.map_err(|e| CliError::from_status(node, e))?.into_inner();
    let _raw = tty.then(crate::terminal::RawMode::enter);
    let mut code = 0;
    while let Some(m) = s.next().await {
        match m.map_err(|e| CliError::from_status(node, e))?.output {
            Some(exec_output::Output::Stdout(d)) => {
                let mut o = std::io::stdout().lock();
                let _ = o.write_all(&d);
                let _ = o.flush();
            }
            Some(exec_output::Output::Stderr(d)) => {
                let _ = std::io::stderr().write_all(&d);
            }
            Some(exec_output::Output::Exit(e)) => {
                code = if e.code != 0 {
                    e.code
                } else if e.signal != 0 {
                    128 + e.signal
                } else {
                    0
                };
                break;
            }
            None => {}
        }
    }
    if code == 0 {
        Ok(())
    } else {
        Err(CliError::Exit(code.clamp(1, 255) as u8))
    }
}
