//! The commands, one file per noun: [`machine`] (version, health, logs,
//! power… on nodes), [`container`], [`image`], [`service`], [`node`], [`network`],
//! [`sign`] (image keys and signatures), [`cluster`], [`context`] (orcctl's own), [`payload`] (secrets and configs), [`volume`], [`user`], [`events`]; [`attached`]: `container run --rm`;
//! [`watch`]: `--watch` of `ls`/`ps`; [`rollout`]: an update's progress. Node commands fan out over `--nodes`
//! concurrently and report per node; cluster-wide ones talk to the first
//! manager that answers.

pub mod attached;
pub mod audit;
pub mod cluster;
pub mod container;
pub mod context;
pub mod events;
pub mod image;
pub mod install;
pub mod machine;
pub mod namespace;
pub mod network;
pub mod node;
pub mod payload;
pub mod rolling;
pub mod rollout;
pub mod service;
pub mod sign;
pub mod sign_archive;
pub mod upgrade;
pub mod user;
pub mod volume;
pub mod watch;

use crate::cli::{
    Cli, ClusterCommand, Command, ContextCommand, ImageCommand, NodeCommand, UserCertCommand, UserCommand,
};
use crate::config::Config;
use crate::connect::Trust;
use crate::error::CliError;
use payload::PayloadKind;

/// A gRPC status from `addr` as an error that names the node.
pub(crate) fn status_err(addr: &str) -> impl Fn(tonic::Status) -> CliError + '_ {
    move |s| CliError::from_status(addr, s)
}

/// Runs the command line.
pub async fn run(mut cli: Cli) -> Result<(), CliError> {
    let path = crate::config::path(cli.orcconfig.as_deref());
    let out = cli.output;
    // Commands that need no context.
    match cli.command {
        Command::Cluster(cmd @ ClusterCommand::Init { .. }) => return cluster::init(cmd, &path, out).await,
        Command::Context(ContextCommand::Renew) => return user::renew(&path, cli.context.as_deref(), out).await,
        Command::Context(cmd) => return context::run(&path, cmd, out),
        Command::Config(cmd) if cmd.legacy_context().is_some() => {
            let Some(cmd) = cmd.legacy_context() else { return Ok(()) };
            eprintln!(
                "orcctl: notice: `orcctl config` is the cluster's configs now: use `orcctl context {}`",
                cmd.spelling()
            );
            return match cmd {
                ContextCommand::Renew => user::renew(&path, cli.context.as_deref(), out).await,
                cmd => context::run(&path, cmd, out),
            };
        }
        Command::Node(cmd @ NodeCommand::Join { .. }) => return node::join(cmd, out).await,
        Command::Node(cmd @ NodeCommand::Install { .. }) => return install::run(cmd, out).await,
        Command::Image(cmd @ (ImageCommand::Keygen { .. } | ImageCommand::Sign { .. })) => {
            return sign::run(cmd, out).await
        }
        _ => {}
    }
    let cfg = Config::load_or_default(&path)?;
    let (_, ctx) = cfg.context(&path, cli.context.as_deref())?;
    let nodes = if cli.nodes.is_empty() {
        vec![ctx
            .endpoints
            .first()
            .cloned()
            .ok_or_else(|| CliError::Usage("the context has no endpoints; pass --nodes".into()))?]
    } else {
        cli.nodes.clone()
    };
    // `user cert create NAME --namespace team-a` limits the certificate to
    // team-a (the spelling and kubectl's habit), as --namespaces does.
    if let (Some(ns), Command::User(UserCommand::Cert(UserCertCommand::Create { namespaces, .. }))) =
        (&cli.namespace, &mut cli.command)
    {
        if !namespaces.contains(ns) {
            namespaces.insert(0, ns.clone());
        }
    }
    let mut ctx = ctx.clone();
    if let Some(ns) = cli.namespace {
        ctx.namespace = Some(ns);
    }
    let trust = Trust::Cluster(ctx.clone());
    // Cluster-wide commands try the managers in turn.
    let managers = if cli.nodes.is_empty() { ctx.endpoints.clone() } else { cli.nodes.clone() };
    match cli.command {
        Command::Service(cmd) => service::run(cmd, &managers, &trust, out).await,
        Command::Node(cmd) => node::run(cmd, &managers, &trust, out).await,
        Command::Network(cmd) => network::run(cmd, &managers, &trust, out).await,
        Command::User(cmd) => user::run(cmd, &managers, &trust, out).await,
        Command::Namespace(cmd) => namespace::run(cmd, &managers, &trust, out).await,
        Command::Events { follow, service, since } => events::run(&managers, &trust, out, follow, service, since).await,
        Command::Audit { follow, since } => audit::run(&managers, &trust, out, follow, since).await,
        Command::Cluster(cmd) => cluster::run(cmd, &nodes, &managers, &trust, out).await,
        Command::Image(cmd) => image::run(cmd, &nodes, &trust, out).await,
        Command::Container(cmd) => container::run(cmd, &nodes, &trust, out).await,
        Command::Volume(cmd) => volume::run(cmd, &managers, &trust, out).await,
        Command::Secret(cmd) => payload::run(PayloadKind::Secret, cmd, &managers, &trust, out).await,
        Command::Config(cmd) => payload::run(PayloadKind::Config, cmd, &managers, &trust, out).await,
        Command::Context(_) => Ok(()),
        cmd @ Command::Upgrade { all: true, .. } => upgrade::run(cmd, &cli.nodes, &ctx.endpoints, &trust, out).await,
        Command::Upgrade { .. } | Command::Rollback { .. } if cli.nodes.is_empty() => {
            Err(CliError::Usage("name the nodes with --nodes (host[:port], comma-separated)".into()))
        }
        cmd @ (Command::Upgrade { .. } | Command::Rollback { .. }) => {
            upgrade::run(cmd, &nodes, &ctx.endpoints, &trust, out).await
        }
        machine_command => machine::run(machine_command, &nodes, &trust, out).await,
    }
}
