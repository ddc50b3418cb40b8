//! `orcctl upgrade` and `orcctl rollback`: the node's OS, one node after
//! another. The bundle is streamed to the node, which verifies and writes
//! it; then the node reboots, and orcctl follows it through `version`
//! until it runs the new version blessed — or is back on the old one, with
//! the reason the node recorded.

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use orc_proto::cluster::nodes_client::NodesClient;
use orc_proto::cluster::ListNodesRequest;
use orc_proto::container::RegistryAuth;
use orc_proto::machine::{RebootRequest, RollbackRequest, UpgradeChunk, VersionRequest, VersionResponse};
use serde_json::json;

use super::machine::client;
use super::status_err;
use crate::cli::{Command, Output};
use crate::connect::{manager, Trust};
use crate::error::CliError;
use crate::parse::parse_duration;

const CHUNK: usize = 1 << 20;
const POLL: Duration = Duration::from_secs(2);

/// Prints a stage (table output) or a JSON line.
pub(super) fn say(out: Output, node: &str, stage: &str, message: &str) {
    match out {
        Output::Json => println!("{}", json!({"node": node, "stage": stage, "message": message})),
        Output::Table => println!("{node}: {message}"),
    }
}

pub async fn run(
    command: Command,
    nodes: &[String],
    managers: &[String],
    trust: &Trust,
    out: Output,
) -> Result<(), CliError> {
    match command {
        Command::Upgrade { source, force, health_window, timeout, all, batch, drain_timeout } => {
            let crate::cli::BundleSource { bundle, image, login } = source;
            let window = parse_duration(&health_window)? / 1000;
            let window = u32::try_from(window)
                .ok()
                .filter(|w| *w >= 10)
                .ok_or_else(|| CliError::Usage(format!("--health-window {health_window}: give 10s or more")))?;
            let timeout = Duration::from_millis(parse_duration(&timeout)?);
            let auth = super::image::login(&login)?;
            if auth.is_some() && image.is_none() {
                return Err(CliError::Usage("--username goes with --image (a bundle file needs no registry)".into()));
            }
            let source = match (&bundle, &image) {
                (Some(b), _) => Source::Bundle(b),
                (None, Some(i)) => Source::Image(i, auth.as_ref()),
                (None, None) => return Err(CliError::Usage("give --bundle FILE or --image REF".into())),
            };
            let failed = if force { Vec::new() } else { failed_versions(managers, trust).await };
            let version = match source {
                Source::Bundle(b) => {
                    std::fs::File::open(b)
                        .map_err(|e| CliError::Usage(format!("{}: {e}", b.display())))
                        .and_then(|f| {
                            orc_image::bundle::manifest_unverified(f)
                                .map_err(|e| CliError::Usage(format!("{}: {e}", b.display())))
                        })?
                        .version
                }
                Source::Image(i, auth) => {
                    let at =
                        nodes.first().or(managers.first()).ok_or_else(|| CliError::Usage("no node to ask".into()))?;
                    probe(at, i, auth, trust).await?
                }
            };
            if let Some(f) = failed.iter().find(|f| f.version == version) {
                return Err(CliError::Upgrade(format!(
                    "version {version} failed on node {}: {}; pass --force to apply it anyway",
                    f.node, f.reason
                )));
            }
            let refuse: Vec<String> = failed.into_iter().map(|f| f.version).collect();
            let how = How { source, version: &version, force, window, timeout, trust, out, refuse: &refuse };
            if all {
                let drain_timeout = Duration::from_millis(parse_duration(&drain_timeout)?);
                return super::rolling::run(&how, nodes, managers, batch as usize, drain_timeout).await;
            }
            for n in nodes {
                upgrade_one(n, &how).await?;
            }
            Ok(())
        }
        Command::Rollback { timeout } => {
            let timeout = Duration::from_millis(parse_duration(&timeout)?);
            for n in nodes {
                rollback_one(n, timeout, trust, out).await?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// A version that failed on a node of the cluster.
struct Failed {
    version: String,
    /// Its hostname and id.
    node: String,
    reason: String,
}

/// The versions that failed on nodes of the cluster (the managers keep
/// what the nodes report), refused unless forced. A cluster that cannot
/// be asked is said and left to the nodes, which refuse versions that
/// failed on themselves.
async fn failed_versions(managers: &[String], trust: &Trust) -> Vec<Failed> {
    let nodes = match manager(managers, trust).await {
        Ok((addr, channel)) => NodesClient::new(channel)
            .list(ListNodesRequest {})
            .await
            .map_err(status_err(&addr))
            .map(|r| r.into_inner().nodes),
        Err(e) => Err(e),
    };
    match nodes {
        Ok(nodes) => nodes
            .iter()
            .flat_map(|n| {
                n.failed_upgrades.iter().map(|f| Failed {
                    version: f.version.clone(),
                    node: format!("{} ({})", n.hostname, n.id),
                    reason: f.reason.clone(),
                })
            })
            .collect(),
        Err(e) => {
            eprintln!(
                "orcctl: warning: cannot ask the cluster which versions failed ({e}); the nodes still refuse their own"
            );
            Vec::new()
        }
    }
}

/// The version of the bundle in `image`, as the node at `n` reads it
/// from its registry.
async fn probe(n: &str, image: &str, auth: Option<&RegistryAuth>, trust: &Trust) -> Result<String, CliError> {
    let mut c = client(n, trust).await?;
    let ask = UpgradeChunk { image: image.to_string(), auth: auth.cloned(), probe: true, ..Default::default() };
    let r = c.upgrade(tokio_stream::iter([ask])).await.map_err(status_err(n))?.into_inner();
    Ok(r.version)
}

pub(super) async fn version(n: &str, trust: &Trust) -> Result<VersionResponse, CliError> {
    let mut c = client(n, trust).await?;
    Ok(c.version(VersionRequest {}).await.map_err(status_err(n))?.into_inner())
}

/// `version` until it answers in another boot than `boot_id`, then until
/// `done` says it is over (Some(result)); stages shown as they change.
pub(super) async fn follow(
    n: &str,
    boot_id: &str,
    timeout: Duration,
    trust: &Trust,
    out: Output,
    done: impl Fn(&VersionResponse) -> Option<Result<String, String>>,
) -> Result<(), CliError> {
    let began = Instant::now();
    let mut last = String::new();
    let mut show = |stage: &str, msg: String| {
        if msg != last {
            say(out, n, stage, &msg);
            last = msg;
        }
    };
    loop {
        if began.elapsed() > timeout {
            return Err(CliError::Upgrade(format!(
                "{n}: not done after {} s: the node still blesses or falls back by itself; see `orcctl -n {n} version`",
                timeout.as_secs()
            )));
        }
        let v = tokio::time::timeout(Duration::from_secs(10), version(n, trust)).await;
        match v {
            Ok(Ok(v)) if v.boot_id != boot_id => {
                if let Some(r) = done(&v) {
                    return match r {
                        Ok(msg) => {
                            say(out, n, "done", &msg);
                            Ok(())
                        }
                        Err(msg) => {
                            say(out, n, "failed", &msg);
                            Err(CliError::Upgrade(format!("{n}: {msg}")))
                        }
                    };
                }
                match &v.upgrade {
                    Some(u) => show(&u.stage, format!("{} {} (slot {}): {}", u.stage, u.version, u.slot, u.message)),
                    None => show("booted", format!("up, running {} from slot {}", v.os_version, v.boot_slot)),
                }
            }
            Ok(Ok(_)) => show("rebooting", "rebooting".into()),
            _ => show("down", "waiting for the node to come back".into()),
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Whether the entry of `version` in `slot` is blessed.
fn blessed(v: &VersionResponse, version: &str, slot: &str) -> bool {
    v.boot_entries.iter().any(|e| e.version == version && e.slot == slot && e.state == "blessed")
}

/// Where the new version comes from.
#[derive(Clone, Copy)]
pub(super) enum Source<'a> {
    /// A bundle file, streamed to each node.
    Bundle(&'a Path),
    /// An image holding the bundle, which each node pulls (with these
    /// registry credentials).
    Image(&'a str, Option<&'a RegistryAuth>),
}

/// What to upgrade nodes to, and how.
#[derive(Clone, Copy)]
pub(super) struct How<'a> {
    pub source: Source<'a>,
    pub version: &'a str,
    /// Versions that failed elsewhere: the nodes refuse them too.
    pub refuse: &'a [String],
    pub force: bool,
    /// The health window, in seconds.
    pub window: u32,
    pub timeout: Duration,
    pub trust: &'a Trust,
    pub out: Output,
}

/// Upgrades the node at `n` and follows it until it runs the new version
/// blessed, or fell back.
pub(super) async fn upgrade_one(n: &str, how: &How<'_>) -> Result<(), CliError> {
    let How { source, version, force, window, timeout, trust, out, refuse } = *how;
    let before = version_of(n, trust).await?;
    let mut c = client(n, trust).await?;
    let staged = match source {
        Source::Bundle(bundle) => {
            let size = std::fs::metadata(bundle).map(|m| m.len()).unwrap_or_default();
            let beside = format!("{} (slot {})", before.os_version, before.boot_slot);
            say(out, n, "sending", &format!("sending {version} ({} MiB) to write beside {beside}", size >> 20));
            let first = UpgradeChunk {
                force,
                health_window_secs: window,
                refuse_versions: refuse.to_vec(),
                ..Default::default()
            };
            let (rx, reader) = file_stream(bundle, first, |c, data| UpgradeChunk { data, ..c });
            let staged = c.upgrade(rx).await.map_err(status_err(n));
            if let Ok(Err(e)) = reader.await {
                return Err(CliError::Usage(e));
            }
            staged
        }
        Source::Image(image, auth) => {
            let beside = format!("{} (slot {})", before.os_version, before.boot_slot);
            say(out, n, "pulling", &format!("the node pulls {version} from {image} to write beside {beside}"));
            let ask = UpgradeChunk {
                image: image.to_string(),
                auth: auth.cloned(),
                force,
                health_window_secs: window,
                refuse_versions: refuse.to_vec(),
                ..Default::default()
            };
            c.upgrade(tokio_stream::iter([ask])).await.map_err(status_err(n))
        }
    };
    let staged = staged?.into_inner();
    say(out, n, "written", &format!("{} written to slot {} ({})", staged.version, staged.slot, staged.entry));
    c.reboot(RebootRequest {}).await.map_err(status_err(n))?;
    say(out, n, "rebooting", "rebooting into it");
    let (want, slot) = (staged.version.clone(), staged.slot.clone());
    follow(n, &before.boot_id, timeout, trust, out, |v| {
        let watching = v.upgrade.as_ref().is_some_and(|u| u.stage == "watching");
        if (v.upgrade.is_none() || watching) && v.os_version == want && v.boot_slot == slot && blessed(v, &want, &slot)
        {
            let more = if watching {
                "; until its health window ends, a task that was ready before failing readiness on this node only \
                 still rolls it back"
            } else {
                ""
            };
            return Some(Ok(format!("running {want} from slot {slot}, blessed{more}")));
        }
        if v.upgrade.is_none() && v.boot_slot != slot {
            let why = v
                .failed_upgrades
                .iter()
                .rev()
                .find(|f| f.version == want)
                .map(|f| f.reason.clone())
                .unwrap_or_else(|| "no reason recorded".into());
            return Some(Err(format!("fell back to {} (slot {}): {want} failed: {why}", v.os_version, v.boot_slot)));
        }
        None
    })
    .await
}

/// The file at `path` as a stream of messages: `first` carries the first
/// chunk (and the options), then one per MiB; the task reports a file
/// that could not be read.
pub(super) fn file_stream<T: Default + Send + 'static>(
    path: &Path,
    first: T,
    with_data: fn(T, Vec<u8>) -> T,
) -> (tokio_stream::wrappers::ReceiverStream<T>, tokio::task::JoinHandle<Result<(), String>>) {
    let (tx, rx) = tokio::sync::mpsc::channel::<T>(4);
    let path = path.to_path_buf();
    let reader = tokio::task::spawn_blocking(move || -> Result<(), String> {
        let mut f = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut first = Some(first);
        loop {
            let mut data = vec![0u8; CHUNK];
            let got = f.read(&mut data).map_err(|e| format!("{}: {e}", path.display()))?;
            if got == 0 {
                return Ok(());
            }
            data.truncate(got);
            if tx.blocking_send(with_data(first.take().unwrap_or_default(), data)).is_err() {
                return Ok(());
            }
        }
    });
    (tokio_stream::wrappers::ReceiverStream::new(rx), reader)
}

/// The node's version, refusing one that did not boot from a disk.
async fn version_of(n: &str, trust: &Trust) -> Result<VersionResponse, CliError> {
    let v = version(n, trust).await?;
    if v.boot_slot.is_empty() {
        return Err(CliError::Upgrade(format!(
            "{n}: this node did not boot from the disk image (no A/B slots): install it to a disk first"
        )));
    }
    Ok(v)
}

async fn rollback_one(n: &str, timeout: Duration, trust: &Trust, out: Output) -> Result<(), CliError> {
    let before = version_of(n, trust).await?;
    let mut c = client(n, trust).await?;
    let r = c.rollback(RollbackRequest {}).await.map_err(status_err(n))?.into_inner();
    say(out, n, "written", &format!("{} (slot {}) boots next, instead of {}", r.version, r.slot, before.os_version));
    c.reboot(RebootRequest {}).await.map_err(status_err(n))?;
    say(out, n, "rebooting", "rebooting into it");
    let (want, slot) = (r.version.clone(), r.slot.clone());
    follow(n, &before.boot_id, timeout, trust, out, |v| {
        if v.boot_slot == slot && v.os_version == want {
            return Some(Ok(format!("running {want} from slot {slot}")));
        }
        if v.boot_slot != slot {
            return Some(Err(format!("came back on slot {} ({}), not {slot}", v.boot_slot, v.os_version)));
        }
        None
    })
    .await
}
