//! The objects in the replicated state: nodes, services, tasks, settings,
//! join tokens, people's and revoked certificates, removed nodes. Changes
//! to existing objects are typed patches ([`super::patch`]). Times are Unix
//! milliseconds.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use super::autoscale::*;
pub use super::lifecycle::*;
pub use super::network::*;
pub use super::payload::*;
pub use super::volume::*;
use crate::pki::role::Role;
use crate::runtime::record::Process;

/// `cert_role` as stored: a role, or nothing (also "" from older stores).
fn role_or_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Role>, D::Error> {
    let s = Option::<String>::deserialize(d)?.unwrap_or_default();
    if s.is_empty() {
        return Ok(None);
    }
    s.parse().map(Some).map_err(serde::de::Error::custom)
}

pub use crate::clock::unix_ms as now_ms;

use super::is_default;

/// A short random id (12 hex digits), like Docker's short ids.
pub fn new_id() -> String {
    hex::encode(rand::random::<[u8; 6]>())
}

/// Cluster-wide settings, at `cluster/settings`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Node certificate lifetime; 0: the default (90 days).
    pub node_cert_ttl_secs: u64,
    /// Replicas one service may ask for; 0: the default ([`DEFAULT_MAX_REPLICAS`]).
    #[serde(default)]
    pub max_replicas: u64,
    /// The container address pool (none: set at `cluster init`, or with
    /// `cluster update --container-cidr` on a cluster made before it
    /// existed; until then tasks run without networks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Pool>,
    /// Signed images only: the trusted keys per repository pattern.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_policy: Option<super::image_policy::ImagePolicy>,
    /// Autolock: the unlock key, sealed under the data key (none: off).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "serde_bytes")]
    pub autolock: Option<Vec<u8>>,
}

/// Replicas per service unless `cluster update --max-replicas` says otherwise.
pub const DEFAULT_MAX_REPLICAS: u64 = 10_000;

/// The shortest node certificate lifetime `cluster update --cert-ttl` takes.
pub const MIN_CERT_TTL_SECS: u64 = 10;
/// The longest: the CA's own lifetime (ten years).
pub const MAX_CERT_TTL_SECS: u64 = 10 * 365 * 24 * 3600;
/// The highest `--max-replicas`.
pub const MAX_MAX_REPLICAS: u64 = 1_000_000;

impl Settings {
    pub fn node_cert_ttl(&self) -> std::time::Duration {
        match self.node_cert_ttl_secs {
            0 => crate::pki::ca::NODE_TTL,
            // Bounded again here: a value stored before the bound existed
            // must not overflow the clock arithmetic of every renewal.
            s => std::time::Duration::from_secs(s.clamp(MIN_CERT_TTL_SECS, MAX_CERT_TTL_SECS)),
        }
    }

    pub fn max_replicas(&self) -> u64 {
        match self.max_replicas {
            0 => DEFAULT_MAX_REPLICAS,
            n => n,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Availability {
    #[default]
    Active,
    Pause,
    Drain,
}

impl Availability {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Pause => "pause",
            Self::Drain => "drain",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeStatus {
    #[default]
    Unknown,
    Ready,
    Down,
}

impl NodeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Ready => "ready",
            Self::Down => "down",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub id: String,
    pub hostname: String,
    /// Manager or worker.
    pub role: Role,
    /// The role its current certificate carries (differs from `role`
    /// between a promote/demote and the node's renewal; none before its
    /// first session).
    #[serde(default, deserialize_with = "role_or_none")]
    pub cert_role: Option<Role>,
    /// Where its API listens (what managers and the dispatcher dial).
    pub addr: String,
    pub availability: Availability,
    pub labels: BTreeMap<String, String>,
    pub cpus: f64,
    pub memory: u64,
    pub status: NodeStatus,
    pub message: String,
    pub agent_version: String,
    pub updated_ms: i64,
    /// It has held a manager certificate: once demoted, that certificate
    /// (which lives on until it expires) is refused for manager calls.
    #[serde(default)]
    pub was_manager: bool,
    /// The IPv4 networks of its own interfaces (no container subnet is
    /// leased over them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<ipnet::Ipv4Net>,
    /// Its WireGuard public key (base64), which the nodes of encrypted
    /// networks reach it with; a new one with each node certificate.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub wg_key: String,
    /// The OS version it runs (empty until it reports one).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub os_version: String,
    /// Versions that failed to upgrade it, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_upgrades: Vec<super::os::FailedUpgrade>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// `replicas` tasks, kept running.
    #[default]
    Replicated,
    /// One task per eligible node, kept running.
    Global,
    /// Tasks run to completion until `replicas` have completed, at most
    /// `max_concurrent` at once.
    ReplicatedJob,
    /// One task per eligible node, run to completion.
    GlobalJob,
}

impl Mode {
    pub const ALL: [Mode; 4] = [Self::Replicated, Self::Global, Self::ReplicatedJob, Self::GlobalJob];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Replicated => "replicated",
            Self::Global => "global",
            Self::ReplicatedJob => "replicated-job",
            Self::GlobalJob => "global-job",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// One task per node.
    pub fn global(self) -> bool {
        matches!(self, Self::Global | Self::GlobalJob)
    }

    /// Tasks run to completion.
    pub fn job(self) -> bool {
        matches!(self, Self::ReplicatedJob | Self::GlobalJob)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartCondition {
    /// Replace a task however it ended.
    #[default]
    Any,
    /// Replace a task that failed; one that completed (exit 0) stays done.
    OnFailure,
    /// Never replace a task that ended by itself.
    None,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RestartPolicy {
    pub condition: RestartCondition,
    /// Wait before starting a replacement.
    pub delay_ms: u64,
    /// Replacements per slot (0: no limit), counted within `window_ms` when set.
    pub max_attempts: u32,
    pub window_ms: u64,
}

/// A port a service publishes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Port {
    /// Where clients reach it: on every node (ingress), on the nodes that
    /// run a task (local), or on the task's node's own stack (host).
    pub published: u16,
    /// Where its tasks listen.
    pub target: u16,
    pub protocol: Protocol,
    #[serde(default, skip_serializing_if = "is_default")]
    pub mode: PublishMode,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

impl Protocol {
    pub const ALL: [Protocol; 2] = [Self::Tcp, Self::Udp];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a published port reaches the tasks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PublishMode {
    /// The routing mesh: the port answers on every node and reaches a
    /// ready task wherever it runs (Swarm's ingress mode).
    #[default]
    Ingress,
    /// The port answers on every node but reaches only that node's ready
    /// tasks, keeping the client's source address (Kubernetes'
    /// `externalTrafficPolicy: Local`).
    Local,
    /// The task runs on its node's own stack and listens there itself:
    /// one task per node and port.
    Host,
}

impl PublishMode {
    pub const ALL: [PublishMode; 3] = [Self::Ingress, Self::Local, Self::Host];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ingress => "ingress",
            Self::Local => "local",
            Self::Host => "host",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// Carried by the routing mesh (not by the task's own stack).
    pub fn mesh(self) -> bool {
        self != Self::Host
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceSpec {
    pub name: String,
    /// Its namespace (empty: `default`); the secrets, configs and volumes
    /// it names are that namespace's.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    pub image: String,
    /// What each task runs (the same shape a container's spec has).
    #[serde(flatten)]
    pub process: Process,
    pub mode: Mode,
    /// Tasks (replicated), or completions (replicated job).
    pub replicas: u64,
    /// Replicated jobs: tasks running at once (0: `replicas`).
    #[serde(default, skip_serializing_if = "is_default")]
    pub max_concurrent: u64,
    pub reserve_cpus: f64,
    pub reserve_memory: u64,
    pub limit_cpus: f64,
    pub limit_memory: u64,
    pub limit_pids: i64,
    pub constraints: Vec<String>,
    pub restart: RestartPolicy,
    pub ports: Vec<Port>,
    pub labels: BTreeMap<String, String>,
    /// Startup, liveness and readiness probes.
    #[serde(default, skip_serializing_if = "is_default")]
    pub health: HealthChecks,
    /// How an update replaces tasks.
    #[serde(default, skip_serializing_if = "is_default")]
    pub update: UpdatePolicy,
    /// How a rollback replaces them.
    #[serde(default, skip_serializing_if = "is_default")]
    pub rollback: UpdatePolicy,
    /// How its tasks are stopped.
    #[serde(default, skip_serializing_if = "is_default")]
    pub stop: StopPolicy,
    /// Jobs: run on this schedule rather than once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<CronSchedule>,
    /// Replicated: a stable identity per slot (hostname `<service>.<slot>`),
    /// slots started in order and stopped in reverse, never two tasks of a
    /// slot alive at once.
    #[serde(default, skip_serializing_if = "is_default")]
    pub stateful: bool,
    /// Replicated: the replica count follows the tasks' usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscale: Option<Autoscale>,
    /// Its own namespace on the overlay, or the node's stack.
    #[serde(default, skip_serializing_if = "is_default")]
    pub network: NetworkMode,
    /// On the overlay: the networks its tasks join, in order (none: the
    /// `default` one). See [`Self::networks`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<String>,
    /// Secrets mounted into its tasks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<FileRef>,
    /// Configs mounted into its tasks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub configs: Vec<FileRef>,
    /// Volumes and tmpfs its tasks mount.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<ServiceMount>,
}

impl ServiceSpec {
    /// Whether tasks of `self` run what tasks of `other` would: they differ
    /// at most in the replica count, the service's own labels and the
    /// update and rollback policies (none of which a task runs by).
    pub fn runs_like(&self, other: &ServiceSpec) -> bool {
        // Every field named: a new one must be placed on one side or the other.
        let ServiceSpec {
            name,
            namespace,
            image,
            process,
            mode,
            replicas: _,
            max_concurrent: _,
            reserve_cpus,
            reserve_memory,
            limit_cpus,
            limit_memory,
            limit_pids,
            constraints,
            restart,
            ports,
            labels: _,
            health,
            update: _,
            rollback: _,
            stop,
            cron: _,
            stateful,
            autoscale: _,
            network,
            networks,
            secrets,
            configs,
            mounts,
        } = self;
        *name == other.name
            && *namespace == other.namespace
            && *image == other.image
            && *process == other.process
            && *mode == other.mode
            && *reserve_cpus == other.reserve_cpus
            && *reserve_memory == other.reserve_memory
            && *limit_cpus == other.limit_cpus
            && *limit_memory == other.limit_memory
            && *limit_pids == other.limit_pids
            && *constraints == other.constraints
            && *restart == other.restart
            && *ports == other.ports
            && *health == other.health
            && *stop == other.stop
            && *stateful == other.stateful
            && *network == other.network
            && *networks == other.networks
            && *secrets == other.secrets
            && *configs == other.configs
            && *mounts == other.mounts
    }

    /// What it mounts of kind `kind`.
    pub fn files(&self, kind: PayloadKind) -> &[FileRef] {
        match kind {
            PayloadKind::Secret => &self.secrets,
            PayloadKind::Config => &self.configs,
        }
    }

    /// Every secret and config version it mounts (their names scoped to
    /// its namespace, as nodes hold them).
    pub fn file_keys(&self) -> impl Iterator<Item = FileKey> + '_ {
        PayloadKind::ALL
            .into_iter()
            .flat_map(move |k| self.files(k).iter().map(move |f| (k, self.scoped(&f.name), f.version)))
    }

    /// The same, to change.
    pub fn files_mut(&mut self, kind: PayloadKind) -> &mut Vec<FileRef> {
        match kind {
            PayloadKind::Secret => &mut self.secrets,
            PayloadKind::Config => &mut self.configs,
        }
    }

    /// Its key among services (its name, scoped to its namespace).
    pub fn key(&self) -> String {
        crate::model::namespace::scoped(&self.namespace, &self.name)
    }

    /// The key of one of its secrets, configs or volumes named `name`.
    pub fn scoped(&self, name: &str) -> String {
        crate::model::namespace::scoped(&self.namespace, name)
    }

    /// The keys of the networks its tasks join, in order (those of its
    /// namespace, or the shared `default`: [`network_key`]): the first
    /// holds their default route and resolver. None on the node's own stack.
    pub fn networks(&self) -> Vec<String> {
        match self.network {
            NetworkMode::Host => Vec::new(),
            NetworkMode::Overlay if self.networks.is_empty() => vec![DEFAULT_NETWORK.to_string()],
            NetworkMode::Overlay => self.networks.iter().map(|n| network_key(&self.namespace, n)).collect(),
        }
    }
}

/// A person's certificate the cluster issued (`cluster init`, `user cert
/// create`, `config renew`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PersonCert {
    pub serial: String,
    pub name: String,
    pub role: Role,
    pub issued_ms: i64,
    pub expires_ms: i64,
    /// Who asked for it (the admin's name, or the person renewing).
    pub issued_by: String,
    /// When it was revoked, if it was.
    pub revoked_ms: Option<i64>,
    /// The namespaces it is limited to (empty: the whole cluster).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
}

/// A revoked certificate: refused until it expires.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RevokedCert {
    pub name: String,
    /// 0 when unknown (a serial revoked without a record): kept for good.
    pub expires_ms: i64,
    pub revoked_ms: i64,
}

/// A node removed with `node rm`, remembered so its certificate cannot
/// bring it back.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RemovedNode {
    pub hostname: String,
    pub removed_ms: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Service {
    pub id: String,
    pub spec: ServiceSpec,
    /// Bumped by every update; tasks of older versions are replaced.
    pub spec_version: u64,
    pub previous_spec: Option<ServiceSpec>,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// The latest update that replaced tasks (none before the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_status: Option<UpdateStatus>,
    /// Cron jobs: the schedule's progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron_status: Option<CronStatus>,
    /// Autoscaled services: the last measurement and decisions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscale_status: Option<AutoscaleStatus>,
    /// Services on the overlay: their virtual IP per network, given at
    /// creation and kept until removal.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vips: BTreeMap<String, std::net::Ipv4Addr>,
}

/// DESIGN.md's task states, in order; from `Complete` on a task is over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    #[default]
    New,
    Pending,
    Assigned,
    Accepted,
    Preparing,
    Starting,
    Running,
    Complete,
    Failed,
    Shutdown,
    Rejected,
    Orphaned,
}

impl TaskState {
    pub fn terminal(self) -> bool {
        self >= TaskState::Complete
    }

    pub const ALL: [TaskState; 12] = [
        Self::New,
        Self::Pending,
        Self::Assigned,
        Self::Accepted,
        Self::Preparing,
        Self::Starting,
        Self::Running,
        Self::Complete,
        Self::Failed,
        Self::Shutdown,
        Self::Rejected,
        Self::Orphaned,
    ];

    /// The state named `s` (as [`Self::as_str`] spells it).
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// A state name as nodes report it (`New` for anything unknown).
    pub fn parse(s: &str) -> Self {
        Self::from_name(s).unwrap_or_default()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Pending => "pending",
            Self::Assigned => "assigned",
            Self::Accepted => "accepted",
            Self::Preparing => "preparing",
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Complete => "complete",
            Self::Failed => "failed",
            Self::Shutdown => "shutdown",
            Self::Rejected => "rejected",
            Self::Orphaned => "orphaned",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    pub service_id: String,
    pub service: String,
    /// 1.. for replicated services, 0 for global ones (they are keyed by node).
    pub slot: u64,
    /// Empty until scheduled.
    pub node: String,
    /// `Running` or `Shutdown`: what the managers want.
    pub desired: TaskState,
    /// What the node last reported (or the managers decided: pending, orphaned).
    pub state: TaskState,
    pub message: String,
    pub error: String,
    pub container: String,
    pub exit_code: Option<i32>,
    /// The service spec this task runs, and its version.
    pub spec: ServiceSpec,
    pub spec_version: u64,
    /// Not to be scheduled before (restart delay).
    pub not_before_ms: i64,
    /// It ended by itself while wanted running (counts as a restart attempt).
    pub ended_alone: bool,
    /// Restart attempts of its slot so far, counted since `window_start_ms`.
    pub attempt: u32,
    pub window_start_ms: i64,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// What its probes say, as its node reported.
    #[serde(default, skip_serializing_if = "is_default")]
    pub health: Health,
    /// The last probe failure (`readiness: HTTP 503 from :8080/ready`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub probe: String,
    /// Since when it has been ready (0: not ready now).
    #[serde(default, skip_serializing_if = "is_default")]
    pub ready_ms: i64,
    /// Cron jobs: the run it belongs to.
    #[serde(default, skip_serializing_if = "is_default")]
    pub run: u64,
    /// Its address on each network it joined, as its node reported.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub addresses: BTreeMap<String, std::net::Ipv4Addr>,
    /// The named volumes it mounts, name → id: set by the managers when
    /// they place it (a stateful slot's volume made then on first placement).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub volumes: BTreeMap<String, String>,
    /// The size limits of the named volumes it mounts that have one, name
    /// → bytes: set with `volumes`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub volume_sizes: BTreeMap<String, u64>,
    /// The named volumes it mounts that are on NFS, name → where.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub nfs: BTreeMap<String, super::volume::Nfs>,
}

impl Task {
    /// Wanted running and not over yet.
    pub fn live(&self) -> bool {
        self.desired == TaskState::Running && !self.state.terminal()
    }

    /// Its address on its first network (where its probes reach it).
    pub fn address(&self) -> Option<std::net::Ipv4Addr> {
        self.spec.networks().first().and_then(|n| self.addresses.get(n)).copied()
    }

    /// Running and ready (its readiness probe passes, or it has none).
    pub fn ready(&self) -> bool {
        self.state == TaskState::Running && self.health == Health::Ready
    }

    /// Whether `other` tells its node the same as this: they differ at
    /// most in what the node itself reports (state, message, error,
    /// container, exit code) and the managers' bookkeeping of it, so a
    /// node's own report is not echoed back to it.
    pub fn same_orders(&self, other: &Task) -> bool {
        // Every field named: a new one must be placed on one side or the other.
        let Task {
            id,
            service_id,
            service,
            slot,
            node,
            desired,
            state: _,
            message: _,
            error: _,
            container: _,
            exit_code: _,
            spec,
            spec_version,
            not_before_ms,
            ended_alone: _,
            attempt,
            window_start_ms,
            created_ms,
            updated_ms: _,
            health: _,
            probe: _,
            ready_ms: _,
            run,
            addresses: _,
            volumes,
            volume_sizes,
            nfs,
        } = self;
        *id == other.id
            && *service_id == other.service_id
            && *service == other.service
            && *slot == other.slot
            && *node == other.node
            && *desired == other.desired
            && *spec_version == other.spec_version
            && *not_before_ms == other.not_before_ms
            && *attempt == other.attempt
            && *window_start_ms == other.window_start_ms
            && *created_ms == other.created_ms
            && *run == other.run
            && *volumes == other.volumes
            && *volume_sizes == other.volume_sizes
            && *nfs == other.nfs
            && *spec == other.spec
    }
}

/// The cluster's two join tokens (made on first use, rotated per role).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tokens {
    pub manager: String,
    pub worker: String,
}

#[cfg(test)]
mod tests {
    use super::TaskState;

    #[test]
    fn defaults_of_later_fields_stay_out_of_the_encoding_and_come_back() {
        use super::{ServiceSpec, Task, UpdatePolicy};
        let t = Task::default();
        let json = serde_json::to_value(&t).unwrap();
        for k in ["health", "probe", "ready_ms", "run"] {
            assert!(json.get(k).is_none(), "{k} encoded while default");
        }
        for k in ["health", "update", "rollback", "stop", "cron", "stateful", "max_concurrent"] {
            assert!(json["spec"].get(k).is_none(), "spec.{k} encoded while default");
        }
        let back: Task = rmp_serde::from_slice(&rmp_serde::to_vec_named(&t).unwrap()).unwrap();
        assert_eq!(back, t);
        let spec = ServiceSpec { update: UpdatePolicy { parallelism: 4, ..Default::default() }, ..Default::default() };
        let back: ServiceSpec = rmp_serde::from_slice(&rmp_serde::to_vec_named(&spec).unwrap()).unwrap();
        assert_eq!(back, spec);
    }

    #[test]
    fn task_state_names_are_the_serde_names() {
        for t in TaskState::ALL {
            let json = serde_json::to_value(t).unwrap();
            assert_eq!(json.as_str(), Some(t.as_str()));
            assert_eq!(TaskState::from_name(t.as_str()), Some(t));
        }
        assert_eq!(TaskState::from_name("sleeping"), None);
        assert_eq!(TaskState::parse("sleeping"), TaskState::New);
    }
}
