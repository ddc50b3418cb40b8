//! `orcctl image …` on nodes: pull (with progress), load, ls, rm.

use std::collections::HashMap;
use std::io::Read;

use futures::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use orc_proto::container::images_client::ImagesClient;
use orc_proto::container::*;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use crate::cli::{ImageCommand, Output, RegistryLogin};
use crate::connect::{self, Trust};
use crate::error::CliError;
use crate::fanout::{call, done, fan, split};
use crate::output::{age, bytes, short, table};

async fn images(addr: &str, trust: &Trust) -> Result<ImagesClient<Channel>, CliError> {
    Ok(ImagesClient::new(connect::channel(addr, trust).await?).max_decoding_message_size(64 << 20))
}

/// Calls the Images API of every node at once.
async fn each<T, F, Fut>(nodes: &[String], trust: &Trust, f: F) -> Vec<(String, Result<T, CliError>)>
where
    F: Fn(ImagesClient<Channel>) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    call(nodes, |n| async move { images(&n, trust).await }, f).await
}

/// Registry credentials from the flags (the password from stdin).
pub(super) fn login(l: &RegistryLogin) -> Result<Option<RegistryAuth>, CliError> {
    let Some(username) = &l.username else { return Ok(None) };
    let mut password = String::new();
    if l.password_stdin {
        std::io::stdin()
            .read_to_string(&mut password)
            .map_err(|e| CliError::Usage(format!("reading the password from stdin: {e}")))?;
    }
    Ok(Some(RegistryAuth { username: username.clone(), password: password.trim_end_matches(['\n', '\r']).to_string() }))
}

pub async fn run(cmd: ImageCommand, nodes: &[String], trust: &Trust, out: Output) -> Result<(), CliError> {
    match cmd {
        ImageCommand::Pull { reference, login: l } => {
            let auth = login(&l)?;
            let bars = MultiProgress::new();
            let style = ProgressStyle::with_template("{prefix:.bold} {msg:>12} [{bar:30}] {bytes}/{total_bytes}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
            let results = fan(nodes, |n| {
                let (reference, auth, bars, style) = (reference.clone(), auth.clone(), bars.clone(), style.clone());
                let prefix = nodes.len() > 1;
                async move {
                    let mut c = images(&n, trust).await?;
                    let mut s = c
                        .pull(PullRequest { reference, auth })
                        .await
                        .map_err(|e| CliError::from_status(&n, e))?
                        .into_inner();
                    let mut layer_bars: HashMap<String, ProgressBar> = HashMap::new();
                    let mut image = None;
                    while let Some(p) = s.next().await {
                        match p.map_err(|e| CliError::from_status(&n, e))?.event {
                            Some(pull_progress::Event::Layer(l)) => {
                                let bar = layer_bars.entry(l.digest.clone()).or_insert_with(|| {
                                    let b = bars.add(ProgressBar::new(l.total).with_style(style.clone()));
                                    let who =
                                        if prefix { format!("{n} {}", short(&l.digest)) } else { short(&l.digest) };
                                    b.set_prefix(who);
                                    b
                                });
                                bar.set_length(l.total.max(l.current));
                                bar.set_position(l.current);
                                bar.set_message(l.state.clone());
                                if l.state == "done" || l.state == "exists" {
                                    bar.finish();
                                }
                            }
                            Some(pull_progress::Event::Image(i)) => image = Some(i),
                            None => {}
                        }
                    }
                    image.ok_or_else(|| CliError::Rpc {
                        node: n.clone(),
                        code: tonic::Code::Internal,
                        msg: "the pull ended without an image".into(),
                    })
                }
            })
            .await;
            let (ok, err) = split(results);
            for (n, i) in &ok {
                match out {
                    Output::Json => println!(
                        "{}",
                        json!({"node": n, "name": i.name, "id": i.id, "digest": i.digest, "size": i.size})
                    ),
                    Output::Table => println!("{n}: pulled {} ({}, {})", i.name, short(&i.id), bytes(i.size)),
                }
            }
            done(err)
        }
        ImageCommand::Load { file, name } => {
            let meta = std::fs::metadata(&file).map_err(|e| CliError::Usage(format!("{}: {e}", file.display())))?;
            let results = fan(nodes, |n| {
                let (file, name) = (file.clone(), name.clone().unwrap_or_default());
                async move {
                    let mut f =
                        std::fs::File::open(&file).map_err(|e| CliError::Usage(format!("{}: {e}", file.display())))?;
                    let (tx, rx) = mpsc::channel(8);
                    let reader = tokio::task::spawn_blocking(move || {
                        let mut first = true;
                        loop {
                            let mut buf = vec![0u8; 1 << 20];
                            let k = f.read(&mut buf)?;
                            if k == 0 {
                                return Ok::<(), std::io::Error>(());
                            }
                            buf.truncate(k);
                            let chunk = LoadChunk { data: buf, name: if first { name.clone() } else { String::new() } };
                            first = false;
                            if tx.blocking_send(chunk).is_err() {
                                return Ok(());
                            }
                        }
                    });
                    let mut c = images(&n, trust).await?;
                    let r = c.load(ReceiverStream::new(rx)).await.map_err(|e| CliError::from_status(&n, e));
                    reader
                        .await
                        .map_err(|e| CliError::Usage(e.to_string()))?
                        .map_err(|e| CliError::Usage(format!("{}: {e}", file.display())))?;
                    Ok(r?.into_inner())
                }
            })
            .await;
            let (ok, err) = split(results);
            for (n, r) in &ok {
                for i in &r.images {
                    match out {
                        Output::Json => println!("{}", json!({"node": n, "name": i.name, "id": i.id, "size": i.size})),
                        Output::Table => println!(
                            "{n}: loaded {} ({}, {} from a {} archive)",
                            i.name,
                            short(&i.id),
                            bytes(i.size),
                            bytes(meta.len())
                        ),
                    }
                }
            }
            done(err)
        }
        ImageCommand::Ls => {
            let (ok, err) = split(each(nodes, trust, |mut c| async move { c.list(ListImagesRequest {}).await }).await);
            match out {
                Output::Json => println!("{}", json!(ok.iter().flat_map(|(n, r)| r.images.iter().map(move |i| json!({"node": n,
                    "name": i.name, "id": i.id, "digest": i.digest, "size": i.size, "created": i.created, "layers": i.layers}))).collect::<Vec<_>>())),
                Output::Table => table(
                    &["NODE", "NAME", "ID", "SIZE", "LAYERS", "CREATED"],
                    &ok.iter().flat_map(|(n, r)| r.images.iter().map(move |i| vec![n.clone(), i.name.clone(), short(&i.id), bytes(i.size),
                        i.layers.len().to_string(), age(i.created)])).collect::<Vec<_>>(),
                ),
            }
            done(err)
        }
        // Handled before a context is needed (`super::sign`).
        ImageCommand::Keygen { .. } | ImageCommand::Sign { .. } => Ok(()),
        ImageCommand::Rm { name } => {
            let (ok, err) = split(
                each(nodes, trust, |mut c| {
                    let name = name.clone();
                    async move { c.remove(RemoveImageRequest { name }).await }
                })
                .await,
            );
            for (n, r) in ok {
                println!("{n}: untagged {}; freed {}", r.untagged.join(", "), bytes(r.reclaimed));
            }
            done(err)
        }
    }
}
