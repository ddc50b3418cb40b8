//! Placing tasks on nodes: filters (availability, readiness, constraints,
//! resources, host ports), then spread by service (fewest tasks of the
//! service, then fewest tasks, then node id). Pure: the caller owns the
//! state and applies the placements. A task that fits nowhere gets a reason
//! that counts why each node was ruled out, for `orcctl service ps`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

pub use super::objects::Availability;

/// A node's role: the PKI's [`Role`] (manager or worker).
pub use crate::pki::role::Role as NodeRole;

#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub id: String,
    pub hostname: String,
    pub role: NodeRole,
    pub availability: Availability,
    pub ready: bool,
    pub labels: BTreeMap<String, String>,
    pub cpus: f64,
    pub memory: u64,
    pub reserved_cpus: f64,
    pub reserved_memory: u64,
    /// Host ports published by tasks already on the node.
    pub ports: BTreeSet<u16>,
    /// Tasks on the node (all services).
    pub tasks: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    Label(String),
    Role,
    Hostname,
    Id,
}

/// A placement constraint like `node.labels.zone==eu` or `node.role!=manager`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    pub field: Field,
    pub op: Op,
    pub value: String,
    text: String,
}

/// A constraint that does not parse, with what a good one looks like.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConstraintError {
    #[error("constraint {0:?} has no == or != (e.g. node.labels.zone==eu, node.role!=manager)")]
    NoOperator(String),
    #[error("constraint {text:?}: {field:?} is not node.labels.<key>, node.role, node.hostname or node.id")]
    UnknownField { text: String, field: String },
    #[error("constraint {0:?} has no value")]
    NoValue(String),
    #[error("constraint {0:?}: a role is manager or worker")]
    BadRole(String),
}

impl Constraint {
    pub fn parse(s: &str) -> Result<Self, ConstraintError> {
        let text = s.trim().to_string();
        let (lhs, op, value) = if let Some((l, v)) = text.split_once("!=") {
            (l, Op::Ne, v)
        } else if let Some((l, v)) = text.split_once("==") {
            (l, Op::Eq, v)
        } else {
            return Err(ConstraintError::NoOperator(s.to_string()));
        };
        let (lhs, value) = (lhs.trim(), value.trim());
        let field = match lhs {
            "node.role" => Field::Role,
            "node.hostname" => Field::Hostname,
            "node.id" => Field::Id,
            l => match l.strip_prefix("node.labels.") {
                Some(k) if !k.is_empty() => Field::Label(k.to_string()),
                _ => return Err(ConstraintError::UnknownField { text: s.to_string(), field: l.to_string() }),
            },
        };
        if value.is_empty() {
            return Err(ConstraintError::NoValue(s.to_string()));
        }
        if field == Field::Role && !matches!(value.parse(), Ok(NodeRole::Manager | NodeRole::Worker)) {
            return Err(ConstraintError::BadRole(s.to_string()));
        }
        Ok(Self { field, op, value: value.to_string(), text })
    }

    pub fn matches(&self, n: &NodeInfo) -> bool {
        let actual = match &self.field {
            Field::Label(k) => n.labels.get(k).map(String::as_str),
            Field::Role => Some(n.role.as_str()),
            Field::Hostname => Some(n.hostname.as_str()),
            Field::Id => Some(n.id.as_str()),
        };
        (actual == Some(self.value.as_str())) == (self.op == Op::Eq)
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// What one task of a service needs.
#[derive(Debug, Clone, Default)]
pub struct Demand {
    pub service: String,
    pub cpus: f64,
    pub memory: u64,
    pub constraints: Vec<Constraint>,
    pub ports: Vec<u16>,
    /// The node to take when it can: the one holding a stateful slot's volume.
    pub prefer: Option<String>,
}

/// Why nodes were ruled out, counted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Unplaceable {
    pub counts: BTreeMap<String, usize>,
    pub nodes: usize,
}

impl fmt::Display for Unplaceable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nodes == 0 {
            return write!(f, "{}: the cluster has no nodes", orc_proto::NO_SUITABLE_NODE);
        }
        let parts: Vec<String> = self.counts.iter().map(|(why, n)| format!("{n} {why}")).collect();
        write!(f, "{} ({} nodes: {})", orc_proto::NO_SUITABLE_NODE, self.nodes, parts.join(", "))
    }
}

/// The first reason `n` cannot take `d`, if any.
fn rule_out(n: &NodeInfo, d: &Demand) -> Option<String> {
    if !n.ready {
        return Some("down".into());
    }
    match n.availability {
        Availability::Drain => return Some("drained".into()),
        Availability::Pause => return Some("paused".into()),
        Availability::Active => {}
    }
    if let Some(c) = d.constraints.iter().find(|c| !c.matches(n)) {
        return Some(format!("not matching {c}"));
    }
    if d.cpus > 0.0 && n.cpus - n.reserved_cpus < d.cpus - 1e-9 {
        return Some(format!("with less than {} free CPUs", d.cpus));
    }
    if d.memory > 0 && n.memory.saturating_sub(n.reserved_memory) < d.memory {
        return Some(format!("with less than {} MiB free memory", d.memory >> 20));
    }
    if let Some(p) = d.ports.iter().find(|p| n.ports.contains(p)) {
        return Some(format!("with host port {p} taken"));
    }
    None
}

/// Tasks of each service (by id) on each node (by id).
pub type PerService = HashMap<String, HashMap<String, u32>>;

/// Places one task; `per_service` counts tasks of each service per node and
/// is updated, as are the chosen node's reservations, ports and task count.
pub fn place(nodes: &mut [NodeInfo], per_service: &mut PerService, d: &Demand) -> Result<String, Unplaceable> {
    let mut why = Unplaceable { nodes: nodes.len(), ..Default::default() };
    let mut best: Option<(u32, u32, &str, usize)> = None;
    let mine_per_node = per_service.get(&d.service);
    for (i, n) in nodes.iter().enumerate() {
        if let Some(reason) = rule_out(n, d) {
            *why.counts.entry(reason).or_default() += 1;
            continue;
        }
        let mine = mine_per_node.and_then(|m| m.get(&n.id)).copied().unwrap_or(0);
        // The preferred node sorts before every other.
        let mine = if d.prefer.as_deref() == Some(n.id.as_str()) { 0 } else { mine.saturating_add(1) };
        let key = (mine, n.tasks, n.id.as_str(), i);
        if best.is_none_or(|b| (key.0, key.1, key.2) < (b.0, b.1, b.2)) {
            best = Some(key);
        }
    }
    let Some((_, _, _, i)) = best else { return Err(why) };
    let n = &mut nodes[i];
    n.reserved_cpus += d.cpus;
    n.reserved_memory += d.memory;
    n.ports.extend(d.ports.iter().copied());
    n.tasks += 1;
    *per_service.entry(d.service.clone()).or_default().entry(n.id.clone()).or_default() += 1;
    Ok(n.id.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str) -> NodeInfo {
        NodeInfo {
            id: id.into(),
            hostname: format!("host-{id}"),
            role: NodeRole::Worker,
            availability: Availability::Active,
            ready: true,
            labels: BTreeMap::new(),
            cpus: 2.0,
            memory: 2 << 30,
            reserved_cpus: 0.0,
            reserved_memory: 0,
            ports: BTreeSet::new(),
            tasks: 0,
        }
    }

    fn demand() -> Demand {
        Demand { service: "web".into(), ..Default::default() }
    }

    #[test]
    fn spreads_by_service_then_load() {
        let mut nodes = vec![node("a"), node("b"), node("c")];
        nodes[0].tasks = 5; // busy with other services
        let mut per = HashMap::new();
        let placed: Vec<String> = (0..6).map(|_| place(&mut nodes, &mut per, &demand()).unwrap()).collect();
        assert_eq!(placed, ["b", "c", "a", "b", "c", "a"]);
        assert_eq!(per["web"]["a"], 2);
    }

    #[test]
    fn a_preferred_node_wins_when_it_can_take_the_task() {
        let mut nodes = vec![node("a"), node("b"), node("c")];
        let mut per = HashMap::new();
        let d = Demand { prefer: Some("c".into()), ..demand() };
        assert_eq!(place(&mut nodes, &mut per, &d).unwrap(), "c");
        assert_eq!(place(&mut nodes, &mut per, &d).unwrap(), "c", "even with the service's task on it");
        nodes[2].ready = false;
        assert_eq!(place(&mut nodes, &mut per, &d).unwrap(), "a", "down: spread as usual");
    }

    #[test]
    fn filters_and_reasons() {
        let mut nodes = vec![node("a"), node("b"), node("c"), node("d"), node("e")];
        nodes[0].availability = Availability::Drain;
        nodes[1].ready = false;
        nodes[2].labels.insert("zone".into(), "us".into());
        nodes[3].labels.insert("zone".into(), "eu".into());
        nodes[3].memory = 256 << 20;
        nodes[4].labels.insert("zone".into(), "eu".into());
        nodes[4].ports.insert(80);
        let d = Demand {
            memory: 512 << 20,
            constraints: vec![Constraint::parse("node.labels.zone==eu").unwrap()],
            ports: vec![80],
            ..demand()
        };
        let err = place(&mut nodes, &mut HashMap::new(), &d).unwrap_err();
        let text = err.to_string();
        for want in [
            "5 nodes",
            "1 drained",
            "1 down",
            "not matching node.labels.zone==eu",
            "512 MiB free memory",
            "host port 80 taken",
        ] {
            assert!(text.contains(want), "{want} missing from: {text}");
        }
        // Free the port: node e fits, and only e.
        nodes[4].ports.clear();
        assert_eq!(place(&mut nodes, &mut HashMap::new(), &d).unwrap(), "e");
        // Its port is now taken and its memory reserved.
        assert!(place(&mut nodes, &mut HashMap::new(), &d).is_err());
    }

    #[test]
    fn resources_run_out_and_pending_tasks_wait() {
        let mut nodes = vec![node("a")];
        let d = Demand { cpus: 0.75, ..demand() };
        let mut per = HashMap::new();
        assert!(place(&mut nodes, &mut per, &d).is_ok());
        assert!(place(&mut nodes, &mut per, &d).is_ok());
        let e = place(&mut nodes, &mut per, &d).unwrap_err();
        assert!(e.to_string().contains("free CPUs"), "{e}");
        // A node joins: the pending task fits there.
        nodes.push(node("b"));
        assert_eq!(place(&mut nodes, &mut per, &d).unwrap(), "b");
        assert_eq!(place(&mut [], &mut per, &d).unwrap_err().to_string(), "no suitable node: the cluster has no nodes");
    }

    #[test]
    fn constraints_parse_and_match() {
        let mut m = node("m1");
        m.role = NodeRole::Manager;
        assert!(Constraint::parse("node.role==manager").unwrap().matches(&m));
        assert!(!Constraint::parse("node.role != manager").unwrap().matches(&m));
        assert!(Constraint::parse("node.hostname==host-m1").unwrap().matches(&m));
        assert!(Constraint::parse("node.id!=m2").unwrap().matches(&m));
        assert!(!Constraint::parse("node.labels.ssd==true").unwrap().matches(&m));
        assert!(Constraint::parse("node.labels.ssd!=true").unwrap().matches(&m));
        for bad in ["node.labels.zone", "node.color==red", "node.role==boss", "node.labels.==x", "node.id=="] {
            assert!(Constraint::parse(bad).is_err(), "{bad}");
        }
    }
}
