//! What the agent remembers of a container, on STATE, one JSON file each:
//! the request as given, the image it was made from, and its lifecycle.

use serde::{Deserialize, Serialize};

use crate::fields;

use orc_proto::container as pb;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MountSpec {
    pub kind: String,
    pub source: String,
    pub target: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Limits {
    pub cpus: f64,
    pub memory: u64,
    pub pids: i64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum RestartCondition {
    #[default]
    No,
    Always,
    OnFailure,
    UnlessStopped,
}

/// What is wrong with a container spec.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RunSpecError {
    #[error("an image is required")]
    NoImage,
    #[error("container name {0:?} may only hold [a-zA-Z0-9_.-] and must start with a letter or digit")]
    BadName(String),
    #[error("mount type {0:?} is not bind or tmpfs")]
    BadMountType(String),
    #[error("mount target {0:?} must be an absolute path")]
    RelativeTarget(String),
    #[error("bind mount source {0:?} must be an absolute path on the node")]
    RelativeSource(String),
    #[error("cpus {0} must be a positive number")]
    BadCpus(f64),
    #[error("memory limit {0} bytes is below the minimum of 6 MiB")]
    MemoryTooSmall(u64),
    #[error("pids limit {0} must not be negative")]
    NegativePids(i64),
    #[error("restart policy {0:?} is not one of no, always, on-failure, unless-stopped")]
    BadRestart(String),
    #[error("network {0:?} is named twice: a container joins each network once")]
    NetworkTwice(String),
    #[error(transparent)]
    Field(#[from] crate::fields::FieldError),
}

impl RestartCondition {
    pub fn parse(s: &str) -> Result<Self, RunSpecError> {
        match s {
            "" | "no" | "none" => Ok(Self::No),
            "always" => Ok(Self::Always),
            "on-failure" => Ok(Self::OnFailure),
            "unless-stopped" => Ok(Self::UnlessStopped),
            other => Err(RunSpecError::BadRestart(other.to_string())),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::No => "no",
            Self::Always => "always",
            Self::OnFailure => "on-failure",
            Self::UnlessStopped => "unless-stopped",
        }
    }
}

/// What runs in a container, over the image's defaults: the one shape a
/// service spec and a container spec share (flattened into both when
/// stored, so the stored fields are the same as before it existed).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Process {
    /// Replaces the image's entrypoint when not empty.
    pub command: Vec<String>,
    /// Replaces the image's cmd when not empty (or when `command` is given).
    pub args: Vec<String>,
    /// `KEY=VALUE`, over the image's.
    pub env: Vec<String>,
    /// `user`, `uid`, `user:group` or `uid:gid`; empty: the image's.
    pub user: String,
    /// Absolute; empty: the image's.
    pub workdir: String,
}

impl Process {
    /// Every field within [`fields`]' bounds; env entries are `KEY=VALUE`;
    /// the working directory is absolute.
    pub fn validate(&self) -> Result<(), fields::FieldError> {
        fields::list("command", &self.command)?;
        fields::list("args", &self.args)?;
        fields::env("env", &self.env)?;
        fields::text("user", &self.user, 256)?;
        fields::text("workdir", &self.workdir, fields::MAX_STRING)?;
        if !self.workdir.is_empty() && !self.workdir.starts_with('/') {
            return Err(fields::FieldError::new("workdir", format!("{:?} must be an absolute path", self.workdir)));
        }
        Ok(())
    }
}

/// A validated `pb::ContainerSpec` (registry credentials are not kept).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RunSpec {
    pub name: String,
    pub image: String,
    #[serde(flatten)]
    pub process: Process,
    pub mounts: Vec<MountSpec>,
    pub read_only: bool,
    pub limits: Limits,
    pub restart: RestartCondition,
    pub max_attempts: u32,
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// Its own hostname (in a UTS namespace of its own); empty: the node's.
    #[serde(default)]
    pub hostname: String,
    /// The network namespace it joins (a task's on the overlay); none:
    /// the node's own network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<std::path::PathBuf>,
    /// The cluster networks a standalone container joins, in order (a
    /// task's are its service's, not these).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<String>,
}

impl RunSpec {
    pub fn from_proto(s: &pb::ContainerSpec) -> Result<Self, RunSpecError> {
        if s.image.trim().is_empty() {
            return Err(RunSpecError::NoImage);
        }
        if !s.name.is_empty() && !valid_name(&s.name) {
            return Err(RunSpecError::BadName(s.name.clone()));
        }
        fields::text("image", &s.image, fields::MAX_STRING)?;
        let process = Process {
            command: s.command.clone(),
            args: s.args.clone(),
            env: s.env.clone(),
            user: s.user.clone(),
            workdir: s.workdir.clone(),
        };
        process.validate()?;
        fields::labels("labels", &s.labels.clone().into_iter().collect())?;
        if s.mounts.len() > fields::MAX_LIST {
            return Err(fields::FieldError::new("mounts", format!("at most {} mounts", fields::MAX_LIST)).into());
        }
        let mounts = s
            .mounts
            .iter()
            .map(|m| {
                let kind = if m.r#type.is_empty() { "bind".to_string() } else { m.r#type.clone() };
                if kind != "bind" && kind != "tmpfs" {
                    return Err(RunSpecError::BadMountType(kind));
                }
                if !m.target.starts_with('/') {
                    return Err(RunSpecError::RelativeTarget(m.target.clone()));
                }
                fields::text("mount target", &m.target, fields::MAX_STRING)?;
                fields::text("mount source", &m.source, fields::MAX_STRING)?;
                if kind == "bind" && !m.source.starts_with('/') {
                    return Err(RunSpecError::RelativeSource(m.source.clone()));
                }
                Ok(MountSpec { kind, source: m.source.clone(), target: m.target.clone(), read_only: m.read_only })
            })
            .collect::<Result<_, RunSpecError>>()?;
        let r = s.resources.unwrap_or_default();
        if r.cpus < 0.0 || !r.cpus.is_finite() {
            return Err(RunSpecError::BadCpus(r.cpus));
        }
        if r.memory != 0 && r.memory < 6 * 1024 * 1024 {
            return Err(RunSpecError::MemoryTooSmall(r.memory));
        }
        if r.pids < 0 {
            return Err(RunSpecError::NegativePids(r.pids));
        }
        let restart = s.restart.clone().unwrap_or_default();
        fields::list("networks", &s.networks)?;
        let mut networks: Vec<String> = Vec::new();
        for n in s.networks.iter().map(|n| n.trim()) {
            fields::text("network", n, 64)?;
            if networks.iter().any(|m| m == n) {
                return Err(RunSpecError::NetworkTwice(n.to_string()));
            }
            networks.push(n.to_string());
        }
        Ok(Self {
            name: s.name.clone(),
            image: s.image.trim().to_string(),
            process,
            mounts,
            read_only: s.read_only,
            limits: Limits { cpus: r.cpus, memory: r.memory, pids: r.pids },
            restart: RestartCondition::parse(&restart.condition)?,
            max_attempts: restart.max_attempts,
            labels: s.labels.clone().into_iter().collect(),
            hostname: String::new(),
            netns: None,
            networks,
        })
    }

    pub fn to_proto(&self) -> pb::ContainerSpec {
        pb::ContainerSpec {
            name: self.name.clone(),
            image: self.image.clone(),
            command: self.process.command.clone(),
            args: self.process.args.clone(),
            env: self.process.env.clone(),
            user: self.process.user.clone(),
            workdir: self.process.workdir.clone(),
            mounts: self
                .mounts
                .iter()
                .map(|m| pb::Mount {
                    r#type: m.kind.clone(),
                    source: m.source.clone(),
                    target: m.target.clone(),
                    read_only: m.read_only,
                })
                .collect(),
            read_only: self.read_only,
            resources: Some(pb::Resources {
                cpus: self.limits.cpus,
                memory: self.limits.memory,
                pids: self.limits.pids,
            }),
            restart: Some(pb::RestartPolicy {
                condition: self.restart.as_str().into(),
                max_attempts: self.max_attempts,
            }),
            auth: None,
            labels: self.labels.clone().into_iter().collect(),
            networks: self.networks.clone(),
        }
    }
}

pub fn valid_name(n: &str) -> bool {
    n.len() <= 128
        && n.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && n.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

pub use crate::shim_contract::ExitInfo;

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Created,
    Running,
    Exited,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Exited => "exited",
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub spec: RunSpec,
    /// Normalized image name and the image's config digest and diff ids at
    /// creation (kept so re-tagging the name does not change the container).
    pub image: String,
    pub image_id: String,
    pub layers: Vec<String>,
    pub status: Status,
    pub pid: i32,
    pub created: i64,
    pub started: i64,
    pub exit: Option<ExitInfo>,
    pub restart_count: u32,
    /// Stopped through the API: `unless-stopped` and `always` leave it be
    /// until started again.
    pub stopped_by_user: bool,
}

impl ContainerRecord {
    pub fn name(&self) -> &str {
        if self.spec.name.is_empty() {
            &self.id[..12.min(self.id.len())]
        } else {
            &self.spec.name
        }
    }

    pub fn to_proto(&self) -> pb::Container {
        pb::Container {
            id: self.id.clone(),
            name: self.name().to_string(),
            image: self.image.clone(),
            image_id: self.image_id.clone(),
            state: self.status.as_str().into(),
            pid: if self.status == Status::Running { self.pid } else { 0 },
            created: self.created,
            started: self.started,
            finished: self.exit.map(|e| e.finished).unwrap_or(0),
            exit: self.exit.map(ExitInfo::to_proto),
            restart_count: self.restart_count,
            spec: Some(self.spec.to_proto()),
            // The API fills them from the node's network.
            addresses: Default::default(),
        }
    }

    /// Whether the restart policy brings the container back after `exit`.
    pub fn should_restart(&self, exit: &ExitInfo) -> bool {
        if self.stopped_by_user {
            return false;
        }
        match self.spec.restart {
            RestartCondition::No => false,
            RestartCondition::Always | RestartCondition::UnlessStopped => true,
            RestartCondition::OnFailure => {
                exit.failed() && (self.spec.max_attempts == 0 || self.restart_count < self.spec.max_attempts)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(f: impl FnOnce(&mut pb::ContainerSpec)) -> Result<RunSpec, String> {
        let mut s = pb::ContainerSpec { image: "busybox".into(), ..Default::default() };
        f(&mut s);
        RunSpec::from_proto(&s).map_err(|e| e.to_string())
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        assert!(spec(|s| s.image.clear()).unwrap_err().contains("image is required"));
        assert!(spec(|s| s.name = "-x".into()).unwrap_err().contains("container name"));
        assert!(spec(|s| s.env = vec!["NOEQUALS".into()]).unwrap_err().contains("KEY=VALUE"));
        assert!(spec(|s| s.mounts = vec![pb::Mount { target: "rel".into(), ..Default::default() }])
            .unwrap_err()
            .contains("absolute"));
        assert!(spec(
            |s| s.mounts = vec![pb::Mount { r#type: "nfs".into(), target: "/x".into(), ..Default::default() }]
        )
        .unwrap_err()
        .contains("bind or tmpfs"));
        assert!(spec(|s| s.resources = Some(pb::Resources { memory: 1024, ..Default::default() }))
            .unwrap_err()
            .contains("6 MiB"));
        assert!(spec(|s| s.restart = Some(pb::RestartPolicy { condition: "sometimes".into(), max_attempts: 0 }))
            .unwrap_err()
            .contains("unless-stopped"));
        assert!(spec(|s| s.networks = vec!["back".into(), " back".into()]).unwrap_err().contains("named twice"));
        let ok =
            spec(|s| s.restart = Some(pb::RestartPolicy { condition: "on-failure".into(), max_attempts: 2 })).unwrap();
        assert_eq!(RunSpec::from_proto(&ok.to_proto()).unwrap(), ok);
        let joined = spec(|s| s.networks = vec!["back".into(), "front".into()]).unwrap();
        assert_eq!(joined.networks, ["back", "front"]);
        assert_eq!(RunSpec::from_proto(&joined.to_proto()).unwrap(), joined);
    }

    #[test]
    fn the_process_is_stored_flat_as_before() {
        let stored = r#"{"name":"web","image":"busybox","command":["sh"],"args":["-c","true"],"env":["A=1"],
            "user":"www","workdir":"/srv","mounts":[],"read_only":false,"limits":{"cpus":0.0,"memory":0,"pids":0},
            "restart":"no","max_attempts":0}"#;
        let r: RunSpec = serde_json::from_str(stored).unwrap();
        assert_eq!(r.process.args, ["-c", "true"]);
        assert_eq!((r.process.user.as_str(), r.process.workdir.as_str()), ("www", "/srv"));
        let back = serde_json::to_value(&r).unwrap();
        assert_eq!(back["env"], serde_json::json!(["A=1"]));
        assert!(back.get("process").is_none());
    }

    #[test]
    fn restart_policies() {
        let mut r = ContainerRecord {
            spec: RunSpec { restart: RestartCondition::OnFailure, max_attempts: 2, ..Default::default() },
            ..Default::default()
        };
        let ok = ExitInfo::default();
        let failed = ExitInfo { code: 1, ..Default::default() };
        assert!(!r.should_restart(&ok));
        assert!(r.should_restart(&failed));
        r.restart_count = 2;
        assert!(!r.should_restart(&failed));
        r.spec.restart = RestartCondition::Always;
        assert!(r.should_restart(&ok));
        r.stopped_by_user = true;
        assert!(!r.should_restart(&ok));
        r.spec.restart = RestartCondition::No;
        r.stopped_by_user = false;
        assert!(!r.should_restart(&failed));
    }
}
