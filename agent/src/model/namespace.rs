//! Namespaces: where services, secrets, configs and volumes live, each
//! name unique within its namespace, and what a namespace may hold.
//!
//! `default` always exists and is where objects of older stores are: an
//! object's `namespace` field is empty there, and its table key is its
//! bare name. In any other namespace the key is `<namespace>/<name>`
//! ([`scoped`]); names hold no `/`, so keys never collide.

use serde::{Deserialize, Serialize};

/// The namespace of every object that names none.
pub const DEFAULT_NAMESPACE: &str = "default";

/// A namespace's name: a DNS label (1-63 lowercase letters, digits and
/// '-', starting and ending with a letter or digit), as Kubernetes has it.
pub fn valid_namespace_name(n: &str) -> bool {
    super::network::dns_label(n, 63)
}

/// The namespace as objects store it: empty for `default`.
pub fn stored(namespace: &str) -> String {
    if namespace == DEFAULT_NAMESPACE {
        String::new()
    } else {
        namespace.to_string()
    }
}

/// The namespace a stored field names (empty: `default`).
pub fn shown(stored: &str) -> &str {
    if stored.is_empty() {
        DEFAULT_NAMESPACE
    } else {
        stored
    }
}

/// The table key of `name` in `namespace` (bare in `default`).
pub fn scoped(namespace: &str, name: &str) -> String {
    match shown(namespace) {
        DEFAULT_NAMESPACE => name.to_string(),
        ns => format!("{ns}/{name}"),
    }
}

/// What a namespace may hold at most; `None`: no cap.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    /// Reserved CPUs of its live tasks, in thousandths.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub milli_cpus: Option<i64>,
    /// Reserved memory of its live tasks, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    /// Live tasks (a service's replicas, a job's concurrent tasks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks: Option<u64>,
    /// Volumes (named and stateful slots' own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<u64>,
    /// Size limits of its volumes (named, slots' and anonymous ones)
    /// added up, bytes. With it, every volume there needs a size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_bytes: Option<u64>,
}

/// A namespace, at its name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespace {
    pub name: String,
    #[serde(default)]
    pub quota: Quota,
    pub created_ms: i64,
}

/// What a namespace holds, in the units of [`Quota`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Use {
    pub milli_cpus: i64,
    pub memory: u64,
    pub tasks: u64,
    pub volumes: u64,
    pub volume_bytes: u64,
    /// Volumes without a size limit (not allowed under a size quota).
    pub unsized_volumes: u64,
}

/// One quota a change would exceed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exceeded {
    pub what: &'static str,
    /// In use before the change.
    pub used: String,
    /// What the change adds.
    pub adds: String,
    pub limit: String,
}

impl std::fmt::Display for Exceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} quota: {} in use + {} more > limit {}", self.what, self.used, self.adds, self.limit)
    }
}

fn cpus(milli: i64) -> String {
    format!("{}", milli as f64 / 1000.0)
}

pub fn show_bytes(b: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if b.is_multiple_of(1024 * MIB) && b > 0 {
        format!("{}GiB", b / (1024 * MIB))
    } else if b.is_multiple_of(MIB) {
        format!("{}MiB", b / MIB)
    } else {
        format!("{b}B")
    }
}

/// `what` past `limit` when `more` is added to `now` (only growth counts).
fn over(
    what: &'static str,
    limit: Option<i128>,
    now: i128,
    more: i128,
    show: impl Fn(i128) -> String,
) -> Option<Exceeded> {
    let limit = limit?;
    (more > 0 && now + more > limit).then(|| Exceeded { what, used: show(now), adds: show(more), limit: show(limit) })
}

impl Quota {
    /// Every quota that `now` plus `more` exceeds. Only what grows is
    /// checked: a change that shrinks or keeps a figure passes even when
    /// the namespace is already over (a lowered quota does not block
    /// scaling down).
    pub fn exceeded(&self, now: &Use, more: &Use) -> Vec<Exceeded> {
        let wide = |n: u64| i128::from(n);
        let count = |n: i128| n.to_string();
        [
            over("cpu", self.milli_cpus.map(i128::from), now.milli_cpus.into(), more.milli_cpus.into(), |m| {
                cpus(m as i64)
            }),
            over("memory", self.memory.map(wide), wide(now.memory), wide(more.memory), |b| show_bytes(b as u64)),
            over("tasks", self.tasks.map(wide), wide(now.tasks), wide(more.tasks), count),
            over("volumes", self.volumes.map(wide), wide(now.volumes), wide(more.volumes), count),
            over("volume size", self.volume_bytes.map(wide), wide(now.volume_bytes), wide(more.volume_bytes), |b| {
                show_bytes(b as u64)
            }),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

impl Use {
    /// What `self` holds beyond `before` (negative figures as zero, except
    /// CPUs, which are signed).
    pub fn beyond(&self, before: &Use) -> Use {
        Use {
            milli_cpus: self.milli_cpus - before.milli_cpus,
            memory: self.memory.saturating_sub(before.memory),
            tasks: self.tasks.saturating_sub(before.tasks),
            volumes: self.volumes.saturating_sub(before.volumes),
            volume_bytes: self.volume_bytes.saturating_sub(before.volume_bytes),
            unsized_volumes: self.unsized_volumes.saturating_sub(before.unsized_volumes),
        }
    }

    pub fn add(&mut self, other: &Use) {
        self.milli_cpus += other.milli_cpus;
        self.memory = self.memory.saturating_add(other.memory);
        self.tasks += other.tasks;
        self.volumes += other.volumes;
        self.volume_bytes = self.volume_bytes.saturating_add(other.volume_bytes);
        self.unsized_volumes += other.unsized_volumes;
    }

    pub fn sub(&mut self, other: &Use) {
        self.milli_cpus -= other.milli_cpus;
        self.memory = self.memory.saturating_sub(other.memory);
        self.tasks = self.tasks.saturating_sub(other.tasks);
        self.volumes = self.volumes.saturating_sub(other.volumes);
        self.volume_bytes = self.volume_bytes.saturating_sub(other.volume_bytes);
        self.unsized_volumes = self.unsized_volumes.saturating_sub(other.unsized_volumes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_keys_stay_bare_and_others_are_prefixed() {
        assert_eq!(scoped("default", "web"), "web");
        assert_eq!(scoped("", "web"), "web");
        assert_eq!(scoped("team-a", "web"), "team-a/web");
        assert_eq!(stored("default"), "");
        assert_eq!(shown(""), "default");
        assert_eq!(shown("team-a"), "team-a");
    }

    #[test]
    fn names_are_dns_labels() {
        assert!(valid_namespace_name("team-a"));
        assert!(valid_namespace_name("a1"));
        for bad in ["", "Team", "a/b", "-a", "a-", "a.b", &"x".repeat(64)] {
            assert!(!valid_namespace_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn quota_names_what_it_caps_its_use_and_its_limit() {
        let q = Quota { memory: Some(1 << 30), tasks: Some(4), ..Default::default() };
        let now = Use { memory: 768 << 20, tasks: 3, ..Default::default() };
        let more = Use { memory: 512 << 20, tasks: 1, milli_cpus: 5000, ..Default::default() };
        let over = q.exceeded(&now, &more);
        assert_eq!(over.len(), 1, "{over:?}");
        assert_eq!(over[0].to_string(), "memory quota: 768MiB in use + 512MiB more > limit 1GiB");
        let more = Use { tasks: 2, ..Default::default() };
        assert_eq!(q.exceeded(&now, &more)[0].what, "tasks");
    }

    #[test]
    fn shrinking_passes_even_over_the_quota() {
        let q = Quota { tasks: Some(2), milli_cpus: Some(1000), ..Default::default() };
        let now = Use { tasks: 5, milli_cpus: 3000, ..Default::default() };
        let after = Use { tasks: 4, milli_cpus: 2500, ..Default::default() };
        assert!(q.exceeded(&now, &after.beyond(&now)).is_empty());
        let after = Use { tasks: 6, milli_cpus: 3000, ..Default::default() };
        assert_eq!(q.exceeded(&now, &after.beyond(&now)).len(), 1);
    }

    #[test]
    fn no_quota_caps_nothing() {
        let big = Use {
            milli_cpus: i64::MAX / 2,
            memory: u64::MAX / 2,
            tasks: 1 << 40,
            volumes: 1 << 40,
            volume_bytes: u64::MAX / 2,
            unsized_volumes: 1,
        };
        assert!(Quota::default().exceeded(&Use::default(), &big).is_empty());
    }
}
