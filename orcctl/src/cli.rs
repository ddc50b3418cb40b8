//! The command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(name = "orcctl", version, about = "Manage orc nodes and clusters")]
pub struct Cli {
    /// orcctl's config file (default: $ORCCONFIG, then ~/.config/orc/config.toml).
    #[arg(long, global = true, value_name = "FILE")]
    pub orcconfig: Option<PathBuf>,
    /// Context to use instead of the current one.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Nodes to talk to (host[:port], comma-separated); default: the context's first endpoint.
    #[arg(long, short = 'n', global = true, value_delimiter = ',')]
    pub nodes: Vec<String>,
    /// Output format.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Namespace to work in instead of the context's (default: `default`).
    #[arg(long, short = 'N', global = true)]
    pub namespace: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Subcommand, Debug)]
// Parsed once per run: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Create and manage clusters.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// orcctl's own contexts: which cluster, as whom (kubectl's `config`, Docker's `context`).
    #[command(subcommand)]
    Context(ContextCommand),
    /// Configs: files with versions, mounted read-only into tasks (--config).
    #[command(subcommand)]
    Config(PayloadCommand),
    /// Volumes: named storage that outlives tasks (--mount type=volume,source=NAME,target=PATH).
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// Secrets: files with versions, encrypted at rest, mounted into tasks
    /// on a tmpfs (--secret); never shown again.
    #[command(subcommand)]
    Secret(PayloadCommand),
    /// Nodes of the cluster.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Networks tasks join: services on one reach each other by name;
    /// tasks on different ones cannot talk.
    #[command(subcommand)]
    Network(NetworkCommand),
    /// People's access: certificates with a role (admin, operator, reader).
    #[command(subcommand)]
    User(UserCommand),
    /// Namespaces: separate names, quotas and access for teams in one cluster.
    #[command(subcommand, alias = "ns")]
    Namespace(NamespaceCommand),
    /// What happened in the cluster: services, tasks, updates, probes,
    /// autoscaling and nodes, oldest first (a manager keeps the latest 10,000).
    Events {
        /// Then follow new events as they happen.
        #[arg(long, short = 'f')]
        follow: bool,
        /// Only this service and its tasks.
        #[arg(long)]
        service: Option<String>,
        /// Only events since then: a duration back (10m, 2h) or a time (2026-12-03T10:00:00Z).
        #[arg(long)]
        since: Option<String>,
    },
    /// Who changed what, when, with what result: the audit logs of every
    /// manager of the context (or of --nodes), oldest first (admins).
    Audit {
        /// Then follow new records as they come.
        #[arg(long, short = 'f')]
        follow: bool,
        /// Only records since then: a duration back (10m, 2h) or a time (2026-12-03T10:00:00Z).
        #[arg(long)]
        since: Option<String>,
    },
    /// Build and identity of nodes.
    Version,
    /// Live health checks of nodes.
    Health,
    /// Kernel log of nodes.
    Dmesg {
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// Logs of orc-init and the services it supervises.
    Logs {
        /// init, agent, ...
        #[arg(default_value = "init")]
        service: String,
        #[arg(long, short = 'f')]
        follow: bool,
        /// Only the last N lines.
        #[arg(long, default_value_t = 0)]
        tail: u32,
    },
    /// What PID 1 supervises on nodes.
    Services,
    /// Restart a service PID 1 supervises (today: agent; containers keep running).
    Restart { service: String },
    /// Images on nodes: pull, load, list, remove.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Services: replicated or global tasks the cluster keeps running.
    #[command(subcommand, alias = "svc")]
    Service(ServiceCommand),
    /// Containers on nodes (node-level; services come with the cluster).
    #[command(subcommand, alias = "c")]
    Container(ContainerCommand),
    /// Reboot nodes.
    Reboot,
    /// Power nodes off.
    Shutdown,
    /// Upgrade the OS of nodes (--nodes, one after another) from a signed
    /// bundle (`cargo xtask image` makes `orc-<version>.bundle`): written to
    /// the slot the node did not boot from, booted with 3 tries, blessed once
    /// the node is back in the cluster with its tasks running; otherwise the
    /// node falls back to the version it runs now by itself. Waits and shows
    /// each stage.
    Upgrade {
        #[command(flatten)]
        source: BundleSource,
        /// Every node of the cluster, one batch after another: workers first
        /// (--batch at a time), then managers one at a time while the quorum
        /// is whole (the leader last); each drained, upgraded, blessed and
        /// set back. Stops at the first failure; run it again to resume.
        /// Nodes are reached at their advertised addresses, or at the
        /// --nodes endpoints matched to them by node id.
        #[arg(long)]
        all: bool,
        /// With --all: workers upgraded at once.
        #[arg(long, default_value_t = 1, requires = "all", value_parser = clap::value_parser!(u32).range(1..))]
        batch: u32,
        /// With --all: how long to wait for a drained node's tasks to run
        /// (and be ready) elsewhere before going on without them.
        #[arg(long, default_value = "5m", requires = "all")]
        drain_timeout: String,
        /// Install a version that is not newer, or one that failed before.
        #[arg(long)]
        force: bool,
        /// How long after its boot the new version has to be back in the
        /// cluster with its tasks running before the node gives up on it.
        #[arg(long, default_value = "5m")]
        health_window: String,
        /// Stop waiting for a node after this long (it still blesses or falls back by itself).
        #[arg(long, default_value = "30m")]
        timeout: String,
    },
    /// Boot nodes (--nodes) into the other slot's version again, and wait
    /// until they run it (a version being proven is recorded as failed).
    Rollback {
        /// Stop waiting for a node after this long.
        #[arg(long, default_value = "30m")]
        timeout: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Bootstrap a new cluster on a node in maintenance mode.
    Init {
        /// host[:port] of the node.
        addr: String,
        /// The fingerprint the node prints on its console (sha256:...).
        #[arg(long, conflicts_with = "insecure")]
        fingerprint: Option<String>,
        /// Trust whatever certificate the node presents (only on a network you trust).
        #[arg(long)]
        insecure: bool,
        /// Name of the context to write (default: the cluster name).
        #[arg(long = "context-name")]
        context_name: Option<String>,
        #[arg(long, default_value = "orc")]
        cluster_name: String,
        #[arg(long, default_value = "admin")]
        admin_name: String,
        /// The node's `orc.maintenance_token=`, when it was booted with one.
        #[arg(long, default_value = "")]
        maintenance_token: String,
        /// Tasks' addresses come from this network (default 10.0.0.0/8,
        /// skipping subnets over the nodes' own networks); it must not
        /// overlap the node's networks.
        #[arg(long, default_value = "")]
        container_cidr: String,
        /// The prefix length of each node's subnet per network (default 24: 253 tasks a node).
        #[arg(long, default_value_t = 24)]
        subnet_size: u32,
    },
    /// The Raft quorum as a manager sees it: members, leader, term, log.
    Status,
    /// On a surviving manager of a cluster that lost its majority for good
    /// (give it with --nodes): it becomes the only manager, keeping the state.
    Recover {
        /// Required: the other managers are dropped from the quorum.
        #[arg(long)]
        force_new_cluster: bool,
    },
    /// Cluster-wide settings.
    Update {
        /// Lifetime of node certificates (e.g. 90d is the default; 10m; 30s for tests).
        #[arg(long)]
        cert_ttl: Option<String>,
        /// Replicas one service may ask for (default 10000).
        #[arg(long)]
        max_replicas: Option<u64>,
        /// The container CIDR of a cluster made before it was set at init
        /// (refused once nodes have subnets from one).
        #[arg(long)]
        container_cidr: Option<String>,
        /// With --container-cidr: each node's subnet size (default 24).
        #[arg(long, requires = "container_cidr")]
        subnet_size: Option<u32>,
        /// Run only signed images: a YAML file of rules (`rules: [{pattern:
        /// "registry:5000/team/*", keys: [team.pub]}]`, key files relative to it, or PEM).
        #[arg(long, value_name = "FILE", conflicts_with = "no_image_policy")]
        image_policy: Option<PathBuf>,
        /// Run any image again.
        #[arg(long)]
        no_image_policy: bool,
        /// Autolock: managers keep their CA key sealed under an unlock key
        /// (printed once, for you to keep); a restarted manager serves
        /// nothing until `orcctl cluster unlock`. `--autolock=false` turns it off.
        #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
        autolock: Option<bool>,
    },
    /// Autolock: give locked managers (--nodes; the context's first
    /// endpoint by default) the unlock key, read from stdin or --key-file.
    Unlock {
        #[arg(long, value_name = "FILE")]
        key_file: Option<PathBuf>,
    },
    /// Autolock: show the cluster's unlock key, or replace it (--rotate);
    /// managers re-seal their CA key under the new one within seconds.
    UnlockKey {
        #[arg(long)]
        rotate: bool,
        /// Only the key.
        #[arg(short, long)]
        quiet: bool,
    },
    /// The token nodes join with (`orcctl node join --token …`, or `orc.join=` on the kernel command line).
    JoinToken {
        #[arg(value_parser = ["manager", "worker"])]
        role: String,
        /// Replace it: nodes with the old token can no longer join.
        #[arg(long)]
        rotate: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum ContextCommand {
    /// List contexts.
    #[command(alias = "list")]
    Ls,
    /// Make a context the current one.
    Use { name: String },
    /// Set the namespace the current context works in (none: `default`).
    Namespace { name: Option<String> },
    /// Renew the current context's certificate before it expires (same
    /// name, role and lifetime; a new key).
    Renew,
}

/// Caps of a namespace; `none` lifts one.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct QuotaArgs {
    /// Reserved CPUs of its tasks (e.g. 4, 0.5).
    #[arg(long)]
    pub cpus: Option<String>,
    /// Reserved memory of its tasks (e.g. 8GiB).
    #[arg(long)]
    pub memory: Option<String>,
    /// Tasks running at once.
    #[arg(long)]
    pub tasks: Option<String>,
    /// Volumes (named, and stateful slots' own).
    #[arg(long)]
    pub volumes: Option<String>,
    /// Size limits of its volumes added up (e.g. 100GiB); with it, every
    /// volume there needs a size (`volume create --size`, `--mount size=`).
    #[arg(long)]
    pub volume_size: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum NamespaceCommand {
    /// Make a namespace, with a quota if given (admin only).
    Create {
        /// A DNS label: lowercase letters, digits and '-', at most 63.
        name: String,
        #[command(flatten)]
        quota: QuotaArgs,
    },
    /// Every namespace you may see, what it holds and its quota.
    #[command(alias = "list")]
    Ls,
    /// A namespace: its quota, what it uses and holds.
    Inspect { name: String },
    /// Change a namespace's quota (admin only): the given caps change, the
    /// rest stay; lowering one below what is held only stops growth.
    Quota {
        name: String,
        #[command(flatten)]
        quota: QuotaArgs,
    },
    /// Remove an empty namespace (admin only; never `default`).
    #[command(alias = "remove")]
    Rm { name: String },
}

#[derive(Subcommand, Debug)]
pub enum VolumeCommand {
    /// Make a named volume (its data lives on each node that runs a task mounting it).
    Create {
        /// 1-64 letters, digits, '.', '_' or '-'.
        name: String,
        /// KEY=VALUE, repeatable.
        #[arg(long)]
        label: Vec<String>,
        /// Its size limit (e.g. 10GiB), a project quota on each node's
        /// copy: writes past it fail with "Disk quota exceeded".
        #[arg(long)]
        size: Option<String>,
        /// Docker's local driver options, for an NFS volume:
        /// `--opt type=nfs --opt o=addr=10.0.0.5,soft --opt device=:/srv/data`.
        #[arg(long = "opt", value_name = "KEY=VALUE")]
        opt: Vec<String>,
    },
    /// Every volume, stateful slots' own among them.
    #[command(alias = "list")]
    Ls,
    /// A volume, the services mounting it and, for a slot's, its node.
    Inspect { name: String },
    /// Remove a volume no service mounts; every node deletes its copy.
    #[command(alias = "remove")]
    Rm { name: String },
}

/// `secret …` and `config …` (and the old spellings of `context …`).
#[derive(Subcommand, Debug)]
pub enum PayloadCommand {
    /// Store a file as version 1 (FILE, or - for standard input).
    Create {
        /// 1-64 letters, digits, '.', '_' or '-'.
        name: String,
        file: PathBuf,
        /// KEY=VALUE, repeatable.
        #[arg(long)]
        label: Vec<String>,
    },
    /// Store a new version; every service mounting it rolls to it (its update policy applies).
    Update {
        name: String,
        file: PathBuf,
        /// Return once stored; do not follow the services' updates.
        #[arg(long, short = 'd')]
        detach: bool,
    },
    #[command(alias = "list")]
    Ls,
    /// Versions, labels and the services mounting it (a config's content too).
    Inspect { name: String },
    /// Remove one no service mounts.
    #[command(alias = "remove")]
    Rm { name: String },
    /// Old spelling of `orcctl context ls`.
    #[command(hide = true)]
    Contexts,
    /// Old spelling of `orcctl context use`.
    #[command(hide = true)]
    UseContext { name: String },
    /// Old spelling of `orcctl context renew`.
    #[command(hide = true)]
    Renew,
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// People's certificates.
    #[command(subcommand)]
    Cert(UserCertCommand),
}

#[derive(Subcommand, Debug)]
pub enum UserCertCommand {
    /// Issue a certificate for a person and write it as an orcctl context
    /// (admin only). The key is made here and never leaves this machine.
    Create {
        name: String,
        #[arg(long, value_parser = ["admin", "operator", "reader"])]
        role: String,
        /// Lifetime (e.g. 90d, 12h; default a year).
        #[arg(long)]
        ttl: Option<String>,
        /// Limit the person to these namespaces (comma-separated; the first
        /// is the context's). Operators and readers only; without it, every
        /// namespace.
        #[arg(long, value_delimiter = ',', value_name = "NAMESPACE,...")]
        namespaces: Vec<String>,
        /// Write an orcctl config file holding just this context (mode 0600);
        /// without it, the context is printed.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Revoke a certificate by serial, or every live one of a person by
    /// name: every node refuses it within seconds (admin only).
    Revoke { cert: String },
    /// People's certificates on record (admin only).
    Ls,
}

/// Where an OS bundle comes from (`upgrade`, `node install`).
#[derive(clap::Args, Debug)]
pub struct BundleSource {
    /// The signed bundle (`orc-<version>.bundle`), sent to each node.
    #[arg(long, value_name = "FILE", required_unless_present = "image", conflicts_with = "image")]
    pub bundle: Option<PathBuf>,
    /// An image holding the bundle (a layer with a `*.bundle` file, e.g.
    /// FROM scratch + COPY orc-<version>.bundle /) that each node pulls
    /// itself from its registry (the node's insecure registries apply).
    #[arg(long, value_name = "REF")]
    pub image: Option<String>,
    /// With --image: the nodes' credentials for its registry.
    #[command(flatten)]
    pub login: RegistryLogin,
}

/// Registry credentials: `--username` with the password on stdin.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RegistryLogin {
    /// Registry user name (basic or token auth).
    #[arg(long)]
    pub username: Option<String>,
    /// Read the registry password from stdin.
    #[arg(long, requires = "username")]
    pub password_stdin: bool,
}

#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// Pull an image from a registry onto nodes.
    Pull {
        /// e.g. busybox, docker.io/library/nginx:1.27, 10.0.2.2:5000/app:1
        reference: String,
        #[command(flatten)]
        login: RegistryLogin,
    },
    /// Load an OCI image layout or `docker save` archive (tar or tar.gz) onto nodes.
    Load {
        file: PathBuf,
        /// Name for images the archive does not name.
        #[arg(long)]
        name: Option<String>,
    },
    /// List images on nodes.
    #[command(alias = "list")]
    Ls,
    /// Remove an image name; unused layers are freed.
    #[command(alias = "remove")]
    Rm { name: String },
    /// Make an Ed25519 key pair to sign images with: PREFIX.key (private) and PREFIX.pub.
    Keygen {
        #[arg(long, default_value = "orc-image")]
        out: PathBuf,
    },
    /// Sign an image in its registry (cosign-style: the signature is stored
    /// beside the image), for clusters that run signed images only.
    Sign {
        /// e.g. registry:5000/team/web:1 (the tag's current manifest is
        /// signed), or an OCI image layout archive (a file): every image in
        /// it is signed inside it, for `orcctl image load` on air-gapped nodes.
        reference: String,
        /// The private key (PEM PKCS#8, e.g. from `orcctl image keygen`).
        #[arg(long)]
        key: PathBuf,
        /// The registry speaks plain HTTP (a test registry).
        #[arg(long)]
        insecure_registry: bool,
        #[command(flatten)]
        login: RegistryLogin,
    },
}

#[derive(Subcommand, Debug)]
pub enum ContainerCommand {
    /// Create and start a container.
    Run(Box<RunArgs>),
    /// List containers.
    #[command(alias = "list", alias = "ps")]
    Ls {
        /// Also containers that are not running.
        #[arg(long, short = 'a')]
        all: bool,
    },
    /// Everything about one container, with the generated OCI spec and live figures.
    Inspect { id: String },
    /// stdout and stderr of a container.
    Logs {
        id: String,
        #[arg(long, short = 'f')]
        follow: bool,
        /// Only the last N lines.
        #[arg(long, default_value_t = 0)]
        tail: u32,
        /// Show the time of each line.
        #[arg(long, short = 't')]
        timestamps: bool,
    },
    /// Run a command in a running container; `-it` for an interactive shell.
    Exec {
        /// Keep stdin open and send it.
        #[arg(long, short = 'i')]
        interactive: bool,
        /// Allocate a terminal.
        #[arg(long, short = 't')]
        tty: bool,
        /// KEY=VALUE, repeatable.
        #[arg(long = "env", short = 'e')]
        env: Vec<String>,
        #[arg(long, short = 'u', default_value = "")]
        user: String,
        #[arg(long, short = 'w', default_value = "")]
        workdir: String,
        id: String,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// SIGTERM, then SIGKILL after the timeout.
    Stop {
        id: String,
        /// Seconds to wait before SIGKILL.
        #[arg(long, short = 't', default_value_t = 10)]
        timeout: u32,
    },
    /// Wait until a container ends; prints its exit code.
    Wait { id: String },
    /// Send a signal (default KILL).
    Kill {
        id: String,
        #[arg(long, short = 's', default_value = "KILL")]
        signal: String,
    },
    /// Remove a container.
    #[command(alias = "remove")]
    Rm {
        id: String,
        /// Kill it first if it is running.
        #[arg(long, short = 'f')]
        force: bool,
    },
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    pub image: String,
    /// Stay attached: show its output, exit with its status, remove it after
    /// (like `docker run --rm`). Without it, print the id and return.
    #[arg(long)]
    pub rm: bool,
    /// Arguments after `--` replace the image's cmd.
    #[arg(last = true)]
    pub args: Vec<String>,
    #[arg(long)]
    pub name: Option<String>,
    /// Replace the image's entrypoint.
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// KEY=VALUE, repeatable.
    #[arg(long = "env", short = 'e')]
    pub env: Vec<String>,
    /// user, uid or uid:gid.
    #[arg(long, short = 'u', default_value = "")]
    pub user: String,
    #[arg(long, short = 'w', default_value = "")]
    pub workdir: String,
    /// Bind mount: /node/path:/container/path[:ro], repeatable.
    #[arg(long = "volume", short = 'v')]
    pub volumes: Vec<String>,
    /// A tmpfs at this path, repeatable.
    #[arg(long)]
    pub tmpfs: Vec<String>,
    /// Mount the root filesystem read-only.
    #[arg(long)]
    pub read_only: bool,
    /// A cluster network to join (made with `network create --attachable`; one of a namespace
    /// other than default as NAMESPACE/NAME), repeatable, in order: the first holds its default
    /// route and resolver. Default: the node's own network.
    #[arg(long)]
    pub network: Vec<String>,
    /// CPU quota in CPUs, e.g. 0.5.
    #[arg(long, default_value_t = 0.0)]
    pub cpus: f64,
    /// Memory limit: bytes or with k, m, g.
    #[arg(long, short = 'm')]
    pub memory: Option<String>,
    /// Max processes in the container.
    #[arg(long, default_value_t = 0)]
    pub pids_limit: i64,
    /// no, always, unless-stopped, on-failure[:max-attempts].
    #[arg(long, default_value = "no")]
    pub restart: String,
    #[command(flatten)]
    pub login: RegistryLogin,
}

#[derive(Subcommand, Debug)]
pub enum ServiceCommand {
    /// Create a service from flags or a YAML file (`-f`, compose-like).
    Create(ServiceCreate),
    /// Change a service: flags change fields, `-f` replaces the spec.
    Update(ServiceUpdate),
    /// Go back to the previous spec under the rollback policy.
    Rollback {
        service: String,
        /// Return at once instead of showing progress until it converges.
        #[arg(long, short = 'd')]
        detach: bool,
    },
    /// Set replica counts: `orcctl service scale web=5 api=2`.
    Scale {
        #[arg(required = true)]
        pairs: Vec<String>,
    },
    /// Remove services; their tasks stop.
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        services: Vec<String>,
    },
    /// List services with desired and running tasks.
    #[command(alias = "list")]
    Ls {
        /// Keep printing rows as they change (Ctrl-C ends).
        #[arg(long, short = 'w')]
        watch: bool,
    },
    /// Tasks of a service (current and recent): where, state, why.
    Ps {
        service: String,
        /// Only tasks wanted running.
        #[arg(long, conflicts_with = "watch")]
        running: bool,
        /// Keep printing rows as they change (Ctrl-C ends).
        #[arg(long, short = 'w')]
        watch: bool,
    },
    /// A service's spec and status.
    Inspect { service: String },
    /// Logs of all of a service's tasks, each line labelled with its task.
    Logs {
        service: String,
        #[arg(long, short = 'f')]
        follow: bool,
        /// Last N lines of each task.
        #[arg(long, default_value_t = 0)]
        tail: u32,
        #[arg(long, short = 't')]
        timestamps: bool,
    },
}

/// The fields of a service spec as flags (create, and update where set).
#[derive(clap::Args, Debug, Default)]
pub struct ServiceFlags {
    /// Replace the image's entrypoint.
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// replicated, global, replicated-job or global-job.
    #[arg(long)]
    pub mode: Option<String>,
    /// Tasks; for a replicated job, completions.
    #[arg(long)]
    pub replicas: Option<u64>,
    /// Replicated jobs: tasks running at once (default: all of --replicas).
    #[arg(long)]
    pub max_concurrent: Option<u64>,
    /// A network of the service's namespace (or the shared `default`) its
    /// tasks join (repeatable, in order: the first holds their default
    /// route and resolver; default: `default`), or `host` for the node's
    /// own network (admins only).
    #[arg(long)]
    pub network: Vec<String>,
    /// Storage to mount (repeatable): type=volume,source=NAME,target=PATH[,readonly]
    /// (no source: an anonymous volume, removed with its task; on a stateful
    /// service each slot gets its own, NAME-<service>.<slot>) or type=tmpfs,target=PATH.
    #[arg(long)]
    pub mount: Vec<String>,
    /// A secret to mount (repeatable): NAME, or
    /// source=NAME[,target=PATH][,uid=N][,gid=N][,mode=0400]; default target /run/secrets/NAME.
    #[arg(long)]
    pub secret: Vec<String>,
    /// A config to mount read-only (repeatable): NAME, or
    /// source=NAME[,target=PATH][,uid=N][,gid=N][,mode=0444]; default target /NAME.
    #[arg(long)]
    pub config: Vec<String>,
    /// A stable identity per slot (hostname <service>.<slot>), ordered
    /// start and stop, never two tasks of a slot at once (`--stateful=false` to drop).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub stateful: Option<bool>,
    /// Jobs: run on this cron schedule ("*/5 * * * *"; six fields: seconds first).
    #[arg(long)]
    pub schedule: Option<String>,
    /// The schedule's IANA time zone (default UTC).
    #[arg(long)]
    pub time_zone: Option<String>,
    /// When a run is due while one is going: allow (default), forbid or replace.
    #[arg(long)]
    pub concurrency: Option<String>,
    /// Skip a run more than this late (e.g. 2m; default: never too late).
    #[arg(long)]
    pub starting_deadline: Option<String>,
    /// Successful runs kept (default 3).
    #[arg(long)]
    pub success_history: Option<u32>,
    /// Failed runs kept (default 1).
    #[arg(long)]
    pub failed_history: Option<u32>,
    /// Start no new runs of the schedule.
    #[arg(long, conflicts_with = "unsuspend")]
    pub suspend: bool,
    /// Start runs of the schedule again.
    #[arg(long)]
    pub unsuspend: bool,
    /// Autoscale: the fewest replicas (default 1).
    #[arg(long)]
    pub autoscale_min: Option<u64>,
    /// Autoscale: the most replicas.
    #[arg(long)]
    pub autoscale_max: Option<u64>,
    /// Autoscale: target CPU use, in percent of --reserve-cpu.
    #[arg(long, value_name = "PERCENT")]
    pub autoscale_cpu: Option<u32>,
    /// Autoscale: target memory use, in percent of --reserve-memory.
    #[arg(long, value_name = "PERCENT")]
    pub autoscale_memory: Option<u32>,
    /// Autoscale: a scale-down takes the highest count asked in this window (default 5m).
    #[arg(long)]
    pub scale_down_window: Option<String>,
    /// Stop autoscaling (the replica count stays where it is).
    #[arg(long, conflicts_with_all = ["autoscale_min", "autoscale_max", "autoscale_cpu", "autoscale_memory", "scale_down_window"])]
    pub no_autoscale: bool,
    /// user, uid or uid:gid.
    #[arg(long, short = 'u')]
    pub user: Option<String>,
    #[arg(long, short = 'w')]
    pub workdir: Option<String>,
    /// CPUs a node must have free for each task.
    #[arg(long)]
    pub reserve_cpu: Option<f64>,
    /// Memory a node must have free for each task (64m, 1g).
    #[arg(long)]
    pub reserve_memory: Option<String>,
    #[arg(long)]
    pub limit_cpu: Option<f64>,
    #[arg(long)]
    pub limit_memory: Option<String>,
    #[arg(long)]
    pub limit_pids: Option<i64>,
    /// any, on-failure or none.
    #[arg(long)]
    pub restart_condition: Option<String>,
    /// Wait before a replacement starts (e.g. 500ms; default 5s).
    #[arg(long)]
    pub restart_delay: Option<String>,
    /// Replacements per slot (0: unlimited).
    #[arg(long)]
    pub restart_max_attempts: Option<u32>,
    /// Window the attempts are counted in (e.g. 1m).
    #[arg(long)]
    pub restart_window: Option<String>,
    /// A probe: 'ROLE KIND TARGET [OPTION=VALUE…]', ROLE startup, liveness
    /// or readiness; KIND exec CMD…, shell SCRIPT, http [:]PORT[/PATH] or
    /// tcp [:]PORT; options interval, timeout, failures, successes, start
    /// (e.g. 'readiness http :8080/ready interval=2s'). Repeatable.
    #[arg(long)]
    pub probe: Vec<String>,
    /// Drop the probe of this role.
    #[arg(long, value_name = "ROLE")]
    pub probe_rm: Vec<String>,
    /// Do not use the image's HEALTHCHECK when no probe is declared.
    #[arg(long)]
    pub no_healthcheck: bool,
    /// Tasks replaced at once by an update (0: all; default 1).
    #[arg(long)]
    pub update_parallelism: Option<u64>,
    /// Wait between update batches (e.g. 10s).
    #[arg(long)]
    pub update_delay: Option<String>,
    /// stop-first (default) or start-first.
    #[arg(long)]
    pub update_order: Option<String>,
    /// How long a new task is watched for failure once ready (default 5s).
    #[arg(long)]
    pub update_monitor: Option<String>,
    /// Share of tasks that may fail during an update (0 to 1; default 0).
    #[arg(long)]
    pub update_max_failure_ratio: Option<f64>,
    /// pause (default), continue or rollback.
    #[arg(long)]
    pub update_failure_action: Option<String>,
    /// Tasks replaced at once by a rollback (0: all; default 1).
    #[arg(long)]
    pub rollback_parallelism: Option<u64>,
    #[arg(long)]
    pub rollback_delay: Option<String>,
    /// stop-first (default) or start-first.
    #[arg(long)]
    pub rollback_order: Option<String>,
    #[arg(long)]
    pub rollback_monitor: Option<String>,
    #[arg(long)]
    pub rollback_max_failure_ratio: Option<f64>,
    /// pause (default) or continue.
    #[arg(long)]
    pub rollback_failure_action: Option<String>,
    /// Time between the stop signal and SIGKILL (default 10s).
    #[arg(long)]
    pub stop_grace_period: Option<String>,
    /// Signal that stops a task (default SIGTERM).
    #[arg(long)]
    pub stop_signal: Option<String>,
    /// Time a task is out of its service's rotation before its stop
    /// signal, so its connections drain (default 2s; 0s: none).
    #[arg(long)]
    pub stop_drain: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct ServiceCreate {
    /// A YAML service file (compose-like: image, command, environment, ports, deploy…).
    #[arg(long, short = 'f')]
    pub file: Option<PathBuf>,
    #[arg(long)]
    pub name: Option<String>,
    /// The image (or give it in the file).
    pub image: Option<String>,
    /// Arguments after `--` replace the image's cmd.
    #[arg(last = true)]
    pub args: Vec<String>,
    /// KEY=VALUE, repeatable.
    #[arg(long = "env", short = 'e')]
    pub env: Vec<String>,
    /// node.labels.K==V, node.role==manager, node.hostname!=h; repeatable.
    #[arg(long)]
    pub constraint: Vec<String>,
    /// Publish a port: PUBLISHED[:TARGET][/udp] on the routing mesh (every
    /// node answers), or published=P,target=T,protocol=tcp|udp,mode=ingress|local|host;
    /// repeatable.
    #[arg(long, short = 'p')]
    pub publish: Vec<String>,
    /// KEY=VALUE, repeatable.
    #[arg(long)]
    pub label: Vec<String>,
    #[command(flatten)]
    pub flags: ServiceFlags,
}

#[derive(clap::Args, Debug)]
pub struct ServiceUpdate {
    pub service: String,
    /// Replace the whole spec with this YAML file.
    #[arg(long, short = 'f')]
    pub file: Option<PathBuf>,
    #[arg(long)]
    pub image: Option<String>,
    /// Replace the args (the image's cmd); `--args` with nothing clears them.
    #[arg(long, num_args = 0..)]
    pub args: Option<Vec<String>>,
    #[arg(long)]
    pub env_add: Vec<String>,
    /// KEY to remove.
    #[arg(long)]
    pub env_rm: Vec<String>,
    /// Stop mounting what is at this target (repeatable); `--mount` adds or changes one.
    #[arg(long)]
    pub mount_rm: Vec<String>,
    /// Stop mounting this secret (repeatable); `--secret` adds or changes one.
    #[arg(long)]
    pub secret_rm: Vec<String>,
    /// Stop mounting this config (repeatable); `--config` adds or changes one.
    #[arg(long)]
    pub config_rm: Vec<String>,
    #[arg(long)]
    pub constraint_add: Vec<String>,
    #[arg(long)]
    pub constraint_rm: Vec<String>,
    /// Publish another port (as --publish).
    #[arg(long)]
    pub publish_add: Vec<String>,
    /// PORT to stop publishing.
    #[arg(long)]
    pub publish_rm: Vec<u16>,
    /// Service label KEY=VALUE (tasks keep running).
    #[arg(long)]
    pub label_add: Vec<String>,
    #[arg(long)]
    pub label_rm: Vec<String>,
    /// Return at once instead of showing progress until the update converges.
    #[arg(long, short = 'd')]
    pub detach: bool,
    /// Pause the update (or rollback) under way.
    #[arg(long, conflicts_with = "resume")]
    pub pause: bool,
    /// Resume a paused update (or rollback).
    #[arg(long)]
    pub resume: bool,
    #[command(flatten)]
    pub flags: ServiceFlags,
}

#[derive(Subcommand, Debug)]
pub enum NetworkCommand {
    /// Make a network in the namespace (its own VXLAN; addresses from the cluster's pool, or --subnet).
    Create {
        /// A DNS label: <service>.<network> resolves.
        name: String,
        /// A CIDR of its own (e.g. 172.30.0.0/16), outside the cluster's pool and the nodes' networks.
        #[arg(long)]
        subnet: Option<String>,
        /// With --subnet: the prefix length of each node's part (default: the pool's, 24).
        #[arg(long)]
        subnet_size: Option<u8>,
        /// Carry traffic between nodes in a WireGuard mesh (no plaintext on the wire).
        #[arg(long, visible_alias = "opt-encrypted")]
        encrypted: bool,
        /// Standalone containers may join it (`orcctl container run --network NAME`).
        #[arg(long)]
        attachable: bool,
        /// KEY=VALUE, repeatable.
        #[arg(long)]
        label: Vec<String>,
    },
    /// The namespace's networks, the shared `default` (the cluster's pool) first.
    #[command(alias = "list")]
    Ls,
    /// A network with its subnet on each node and the tasks on it.
    Inspect { network: String },
    /// Remove a network no service uses.
    #[command(alias = "remove")]
    Rm { network: String },
}

#[derive(Subcommand, Debug)]
pub enum NodeCommand {
    /// Nodes of the cluster: role, status, availability, tasks.
    #[command(alias = "list")]
    Ls {
        /// Keep printing rows as they change (Ctrl-C ends).
        #[arg(long, short = 'w')]
        watch: bool,
    },
    /// Everything about one node.
    Inspect { node: String },
    /// Tasks on a node (current and recent).
    Ps {
        node: String,
        /// Only tasks wanted running.
        #[arg(long, conflicts_with = "watch")]
        running: bool,
        /// Keep printing rows as they change (Ctrl-C ends).
        #[arg(long, short = 'w')]
        watch: bool,
    },
    /// Availability (active, pause, drain) and labels.
    Update {
        node: String,
        #[arg(long)]
        availability: Option<String>,
        /// KEY=VALUE, repeatable.
        #[arg(long)]
        label_add: Vec<String>,
        /// KEY, repeatable.
        #[arg(long)]
        label_rm: Vec<String>,
    },
    /// Make nodes managers (they join the Raft quorum).
    Promote {
        #[arg(required = true, value_name = "NODE")]
        ids: Vec<String>,
    },
    /// Make managers workers (they leave the Raft quorum).
    Demote {
        #[arg(required = true, value_name = "NODE")]
        ids: Vec<String>,
    },
    /// Forget a node (down, or --force); its tasks move elsewhere.
    #[command(alias = "remove")]
    Rm {
        node: String,
        #[arg(long)]
        force: bool,
    },
    /// Install a node in maintenance mode (booted from the ISO or over PXE)
    /// to a disk from a signed bundle, then wait until it runs from the
    /// disk (slot A) with the same identity. Writes only the disk named,
    /// and a disk holding data only with --wipe. The machine must boot
    /// with UEFI, the disk before the live medium in its boot order.
    Install {
        /// host[:port] of the node in maintenance mode.
        addr: String,
        /// The disk: /dev/disk/by-id/… (virtio-SERIAL, nvme-MODEL_SERIAL,
        /// ata-MODEL_SERIAL, wwn-0x…) or /dev/NAME. A wrong name is answered
        /// with the node's disks.
        #[arg(long)]
        disk: String,
        /// Erase the disk when it holds data (partitions, filesystems).
        #[arg(long)]
        wipe: bool,
        #[command(flatten)]
        source: BundleSource,
        #[command(flatten)]
        access: MaintenanceAccess,
        /// Stop waiting for the node to come back from its disk after this long.
        #[arg(long, default_value = "10m")]
        timeout: String,
    },
    /// Make a node in maintenance mode join a cluster (its role comes from the token).
    Join {
        /// host[:port] of the node in maintenance mode.
        addr: String,
        /// From `orcctl cluster join-token manager|worker`.
        #[arg(long)]
        token: String,
        /// host:port of a manager of the cluster.
        #[arg(long)]
        manager: String,
        #[command(flatten)]
        access: MaintenanceAccess,
    },
}

/// How orcctl reaches a node in maintenance mode (`node join`, `node install`).
#[derive(clap::Args, Debug)]
pub struct MaintenanceAccess {
    /// The fingerprint the node prints on its console (sha256:...); after
    /// an install, the node must present the same one.
    #[arg(long, conflicts_with = "insecure")]
    pub fingerprint: Option<String>,
    /// Trust whatever certificate the node presents (only on a network you trust).
    #[arg(long)]
    pub insecure: bool,
    /// The node's `orc.maintenance_token=`, when it was booted with one.
    #[arg(long, default_value = "")]
    pub maintenance_token: String,
}

impl PayloadCommand {
    /// The `context` command an old spelling (`config contexts|use-context|renew`) means.
    pub fn legacy_context(&self) -> Option<ContextCommand> {
        match self {
            Self::Contexts => Some(ContextCommand::Ls),
            Self::UseContext { name } => Some(ContextCommand::Use { name: name.clone() }),
            Self::Renew => Some(ContextCommand::Renew),
            _ => None,
        }
    }
}

impl ContextCommand {
    /// How it is spelled now.
    pub fn spelling(&self) -> String {
        match self {
            Self::Ls => "ls".into(),
            Self::Use { name } => format!("use {name}"),
            Self::Renew => "renew".into(),
            Self::Namespace { name } => format!("namespace {}", name.as_deref().unwrap_or_default()),
        }
    }
}

/// Global flags that take a value in the next argument.
const VALUED: [&str; 8] = ["--orcconfig", "--config", "--context", "--nodes", "-n", "--output", "--namespace", "-N"];

/// The command line with old spellings made current, and a notice for
/// each: `--config FILE` before the command is `--orcconfig FILE` now
/// (after it, `--config` is a service's config).
pub fn current_args(args: Vec<std::ffi::OsString>) -> (Vec<std::ffi::OsString>, Vec<String>) {
    let mut notices = Vec::new();
    let mut out = Vec::with_capacity(args.len());
    let mut it = args.into_iter();
    out.extend(it.next());
    let mut value_next = false;
    for a in it.by_ref() {
        let s = a.to_string_lossy().into_owned();
        if value_next {
            value_next = false;
            out.push(a);
            continue;
        }
        if s == "--config" || s.starts_with("--config=") {
            notices.push("--config FILE is now --orcconfig FILE (`--config` names a service's config)".to_string());
            out.push(s.replacen("--config", "--orcconfig", 1).into());
            value_next = s == "--config";
            continue;
        }
        let flag = s.starts_with('-');
        value_next = VALUED.contains(&s.as_str()) || s == "-o";
        out.push(a);
        if !flag {
            break;
        }
    }
    out.extend(it);
    (out, notices)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<std::ffi::OsString> {
        s.split_whitespace().map(Into::into).collect()
    }

    #[test]
    fn every_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn the_old_config_flag_before_the_command_is_the_new_one() {
        let (a, n) = current_args(args("orcctl --config /c -n x service create --config app --name w"));
        assert_eq!(a, args("orcctl --orcconfig /c -n x service create --config app --name w"));
        assert_eq!(n.len(), 1);
        let (a, n) = current_args(args("orcctl -o json --config=/c service ls"));
        assert_eq!(a, args("orcctl -o json --orcconfig=/c service ls"));
        assert_eq!(n.len(), 1);
        let (a, n) = current_args(args("orcctl --context config service update web --config c"));
        assert_eq!(a, args("orcctl --context config service update web --config c"));
        assert!(n.is_empty());
        Cli::try_parse_from(args("orcctl --orcconfig /c service create --name w --config app --secret db i")).unwrap();
    }
}
