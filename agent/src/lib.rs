//! orc-agent: the node agent.
//!
//! # Layout
//! Top to bottom: a module imports only those below it (the diagram with
//! who calls whom is in `docs/architecture.md`).
//! - [`api`]: the gRPC server (TLS, peers), the authorization table, the
//!   handlers (three lines each), proto conversions, the one error → status map.
//! - [`install`]: a live node onto a disk (layout, slot A, STATE with its identity).
//! - [`upgrade`]: the node's OS upgrades (A/B slots, boot counting,
//!   blessing or falling back).
//! - [`node`]: what the Machine API reads and does (versions, health, logs, power, bootstrap).
//! - [`worker`]: the node's session with the leader; its tasks as containers
//!   through a small runtime trait.
//! - [`cluster`]: objects, typed patches, orchestrators and scheduler, the
//!   leader loop, dispatcher, joining, tokens, renewal, the Cluster API's
//!   domain functions.
//! - [`raft`]: the managers' replicated log: openraft types, commands, the
//!   redb store, the mTLS transport, lifecycle, consistency.
//! - [`state`]: the node's identity, its served TLS, its Raft handle and its deny list.
//! - [`selfproc`]: the agent's own open-file limit and OOM score.
//! - [`runtime`]: containers (records, specs, shims, logs, restart policies).
//! - [`images`]: the image store (pull, load, layers, GC).
//! - [`shim`]: `orc-agent shim`, the per-container process.
//! - [`shim_contract`]: what the agent and its shims agree on (below both).
//! - [`pki`]: CA, certificates, roles, identity, TLS configs, peer identity,
//!   the node-to-node channel.
//! - [`fields`]: bounds on every string and list written into records or the state.
//! - [`config`], [`error`], [`fsutil`] (atomic writes, disk usage, confined reads), [`sync`]
//!   (poison-tolerant locks), [`lookup`] (by name, id or unique id prefix),
//!   [`clock`] (Unix seconds and milliseconds).

pub mod api;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod error;
pub mod fields;
pub mod fsutil;
pub mod images;
pub mod install;
pub mod late_modules;
pub mod lookup;
pub mod model;
pub mod network;
pub mod node;
pub mod pki;
pub mod raft;
pub mod runtime;
pub mod selfproc;
pub mod shim;
pub mod shim_contract;
pub mod state;
pub mod sync;
pub mod timesync;
pub mod upgrade;
pub mod worker;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;

/// Runs the agent until `shutdown` completes.
pub async fn run(mut config: config::Config, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
    let on_node = config.init_pid.is_some();
    node::timeline::mark(on_node, "agent-start");
    selfproc::apply();
    // The join token lives only in the joining task, and goes with it.
    let join = config.join.take();
    let state = state::NodeState::open(config.clone(), join.is_some()).context("opening node state")?;
    node::timeline::mark(on_node, "agent-state");
    let tcp = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding the API on {}", config.listen))?;
    let addr = tcp.local_addr()?;
    let _ = state.api_addr.set(addr);
    std::fs::create_dir_all(&config.run_dir).ok();
    std::fs::write(config.run_dir.join("api.addr"), addr.to_string())
        .with_context(|| format!("writing {}", config.run_dir.join("api.addr").display()))?;
    let vsock = match config.vsock_port {
        0 => None,
        port => {
            match tokio_vsock::VsockListener::bind(tokio_vsock::VsockAddr::new(tokio_vsock::VMADDR_CID_ANY, port)) {
                Ok(l) => Some(l),
                Err(e) => {
                    tracing::info!(port, error = %e, "no vsock listener (kernel without vsock?)");
                    None
                }
            }
        }
    };
    let (maintenance, cluster_id) = state.mode();
    if maintenance {
        // Printed on the console: the operator pins it with `orcctl cluster init --fingerprint`.
        println!("orc: maintenance mode: TLS fingerprint sha256:{}", state.maintenance_fingerprint);
        std::fs::write(config.run_dir.join("maintenance.fingerprint"), &state.maintenance_fingerprint).ok();
    }
    if state.locked() {
        println!(
            "orc: this manager is locked (autolock): it serves only health and `orcctl cluster unlock` until \
             given the unlock key"
        );
    }
    tracing::info!(%addr, vsock = vsock.is_some(), maintenance, cluster_id = ?cluster_id, "serving the Machine API");
    let images =
        images::ImageStore::open(&config.state_dir, config.insecure_registries.clone(), config.max_image_bytes)
            .context("opening the image store")?;
    let runtime = runtime::manager::Runtime::open(&config.state_dir, &config.run_dir, images)
        .context("opening the container store")?;
    runtime.reattach().await;
    tokio::spawn(timesync::poll::run(state.time.clone()));
    {
        let state = state.clone();
        tokio::spawn(async move { state.start_raft(false).await });
    }
    match (maintenance, config.install.clone(), config.install_image.clone(), join) {
        // Installing first: the installed node keeps `orc.join` and joins from its disk.
        (true, Some(disk), Some(image), _) => {
            let req = install::Request { disk, wipe: false };
            tokio::spawn(install::at_start(state.clone(), runtime.images.clone(), req, image));
        }
        (true, _, _, Some(join)) => {
            let state = state.clone();
            tokio::spawn(async move { cluster::join::join_at_start(&state, &join).await });
        }
        _ => {}
    }
    tokio::spawn(cluster::certs::follow(state.clone()));
    tokio::spawn(cluster::autolock::follow(state.clone()));
    let liveness = Arc::new(cluster::dispatcher::Liveness::default());
    let measurements = Arc::new(cluster::usage::Measurements::default());
    tokio::spawn(cluster::leader::run(state.raft.clone(), liveness.clone(), measurements.clone()));
    let network = network::node::NodeNetwork::start(state.clone());
    // Attachments of standalone containers removed while the agent was down.
    let joined = runtime.list(true).await.into_iter().filter(|r| !r.spec.networks.is_empty());
    network.retain_containers(&joined.map(|r| r.spec.name).collect());
    let files = worker::files::TaskFiles::new(&config.run_dir);
    let volumes = worker::volumes::TaskVolumes::new(&config.state_dir, &config.run_dir);
    let executor = worker::executor::Executor::new(Arc::new(runtime.clone()), Some(network.clone()), files, volumes);
    // Before the first session: the managers hear of a fallen-back upgrade in it.
    if let Some(pending) = upgrade::bless::at_start(&state) {
        tokio::spawn(upgrade::bless::prove(state.clone(), executor.clone(), pending));
    }
    tokio::spawn(worker::session::run(state.clone(), executor.clone()));
    node::timeline::mark(on_node, "agent-api");
    let parts = api::server::Parts { runtime, network, liveness, measurements, executor };
    api::server::run(state, parts, tcp, vsock, shutdown).await.context("serving the API")
}
