//! `orcctl upgrade --all`: every node of the cluster to one version.
//! Workers first, `--batch` at a time, then managers one at a time — the
//! leader last, and only while every manager is in the quorum when there
//! are enough of them for it to survive one rebooting. Each batch is
//! drained (its services' tasks run and are ready elsewhere before it goes
//! down, as far as they can), upgraded and followed to its blessing as
//! `upgrade --nodes` does, then set back to the availability it had. The
//! first failure stops the run, saying which node and why; nodes already
//! on the version are skipped, so running the command again resumes.
//!
//! Driven from orcctl: each node verifies and writes the bundle itself and
//! blesses or falls back by itself, so a run cut short (orcctl killed, the
//! workstation gone) leaves no node half-done — at worst one still drained,
//! which the next run sets back: a node drained by a run carries the label
//! [`DRAINED_BY`] with its availability before, until it is set back.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use futures::future::join_all;
use orc_proto::cluster::namespaces_client::NamespacesClient;
use orc_proto::cluster::nodes_client::NodesClient;
use orc_proto::cluster::services_client::ServicesClient;
use orc_proto::cluster::{ListNamespacesRequest, ListNodesRequest, Node, Task, TasksRequest, UpdateNodeRequest};
use orc_proto::machine::VersionRequest;

use super::machine::client;
use super::status_err;
use super::upgrade::{say, upgrade_one, How};
use crate::connect::{in_namespace, manager, Trust};
use crate::error::CliError;

const POLL: Duration = Duration::from_secs(2);
/// How long the managers may be away (a manager rebooting) before a call gives up.
const MANAGERS_AWAY: Duration = Duration::from_secs(120);
const MANAGER: &str = "manager";
const READY: &str = "ready";
const DRAIN: &str = "drain";
const DEFAULT_NAMESPACE: &str = "default";
/// The label a node drained by `upgrade --all` carries until it is set
/// back: the availability it had before.
pub const DRAINED_BY: &str = "orc.upgrade.drained-from";
/// The fewest managers whose quorum survives one of them rebooting.
const QUORUM_SURVIVES: usize = 3;

/// The nodes not yet on `version`.
fn pending<'a>(nodes: &'a [Node], version: &str) -> impl Iterator<Item = &'a Node> + 'a {
    let version = version.to_string();
    nodes.iter().filter(move |n| n.os_version != version)
}

/// The workers to upgrade, by hostname, `batch` at a time.
fn worker_batches(nodes: &[Node], version: &str, batch: usize) -> Vec<Vec<Node>> {
    let mut workers: Vec<Node> = pending(nodes, version).filter(|n| n.role != MANAGER).cloned().collect();
    workers.sort_by(|a, b| a.hostname.cmp(&b.hostname));
    workers.chunks(batch.max(1)).map(<[Node]>::to_vec).collect()
}

/// The next manager to upgrade: followers by hostname, the leader last.
fn next_manager<'a>(nodes: &'a [Node], version: &str) -> Option<&'a Node> {
    pending(nodes, version)
        .filter(|n| n.role == MANAGER)
        .min_by(|a, b| (a.manager_status == "leader", &a.hostname).cmp(&(b.manager_status == "leader", &b.hostname)))
}

/// Why the managers' quorum is not whole, if it is not.
fn quorum_gap(nodes: &[Node]) -> Option<String> {
    nodes
        .iter()
        .filter(|n| n.role == MANAGER)
        .find(|n| n.status != READY || !matches!(n.manager_status.as_str(), "leader" | "reachable"))
        .map(|n| format!("manager {} is {} ({})", n.hostname, n.status, n.manager_status))
}

/// The availability to set `n` back to after its upgrade: the one it had
/// before a run drained it; None when someone else drained it.
fn before(n: &Node) -> Option<String> {
    match n.labels.get(DRAINED_BY) {
        Some(prev) => Some(prev.clone()),
        None => (n.availability != DRAIN).then(|| n.availability.clone()),
    }
}

/// A node that must be upgraded but is down.
fn down(nodes: &[Node], version: &str) -> Option<String> {
    pending(nodes, version).find(|n| n.status != READY).map(|n| {
        format!(
            "node {} ({}) is {}: bring it back, or remove it with `orcctl node rm {}`, then run this again",
            n.hostname, n.id, n.status, n.id
        )
    })
}

/// Whether a service's tasks run ready, none on `nodes` — but for those
/// the scheduler can place on no other node (pinned to a drained node, no
/// room left): waiting does not move them.
fn moved(tasks: &[Task], nodes: &BTreeSet<String>) -> bool {
    tasks.iter().all(|t| {
        let stuck = t.state == "pending" && t.message.starts_with(orc_proto::NO_SUITABLE_NODE);
        let ready = t.state == "running" && !matches!(t.health.as_str(), "starting" | "not-ready");
        stuck || (ready && !nodes.contains(&t.node_id))
    })
}

/// Where to reach each node: the endpoint given for it (matched by the
/// node id it reports), or its advertised address.
async fn reach(nodes: &[Node], given: &[String], trust: &Trust) -> Result<HashMap<String, String>, CliError> {
    let mut by_id: HashMap<String, String> = nodes.iter().map(|n| (n.id.clone(), n.addr.clone())).collect();
    for e in given {
        let mut c = client(e, trust).await?;
        let v = c.version(VersionRequest {}).await.map_err(status_err(e))?.into_inner();
        match by_id.get_mut(&v.node_id) {
            Some(addr) => *addr = e.clone(),
            None => {
                return Err(CliError::Usage(format!(
                    "{e} is node {:?}, which is not a member of this cluster: name only its nodes with --nodes",
                    v.node_id
                )))
            }
        }
    }
    Ok(by_id)
}

/// A call to a manager, retried while the managers are away.
struct Managers<'a> {
    endpoints: &'a [String],
    trust: &'a Trust,
}

impl Managers<'_> {
    async fn nodes(&self) -> Result<Vec<Node>, CliError> {
        let began = Instant::now();
        loop {
            let r = match manager(self.endpoints, self.trust).await {
                Ok((addr, ch)) => NodesClient::new(ch)
                    .list(ListNodesRequest {})
                    .await
                    .map(|r| r.into_inner().nodes)
                    .map_err(status_err(&addr)),
                Err(e) => Err(e),
            };
            match r {
                Ok(n) => return Ok(n),
                Err(e) if began.elapsed() > MANAGERS_AWAY => return Err(e),
                Err(_) => tokio::time::sleep(POLL).await,
            }
        }
    }

    async fn update(&self, req: UpdateNodeRequest) -> Result<(), CliError> {
        let (addr, ch) = manager(self.endpoints, self.trust).await?;
        NodesClient::new(ch).update(req).await.map_err(status_err(&addr))?;
        Ok(())
    }

    /// Drains `node`, labelled with the availability it had.
    async fn drain(&self, node: &Node, before: &str) -> Result<(), CliError> {
        let label_add = [(DRAINED_BY.to_string(), before.to_string())].into();
        self.update(UpdateNodeRequest {
            node: node.id.clone(),
            availability: DRAIN.into(),
            label_add,
            ..Default::default()
        })
        .await
    }

    /// Sets `node` back to `before`, its label gone.
    async fn set_back(&self, node: &Node, before: &str, out: crate::cli::Output) -> Result<(), CliError> {
        let label_rm = vec![DRAINED_BY.to_string()];
        self.update(UpdateNodeRequest {
            node: node.id.clone(),
            availability: before.into(),
            label_rm,
            ..Default::default()
        })
        .await?;
        say(out, &node.hostname, "undrained", &format!("{before} again"));
        Ok(())
    }

    /// Every namespace's name (`default` too).
    async fn namespaces(&self) -> Result<Vec<String>, CliError> {
        let (addr, ch) = manager(self.endpoints, self.trust).await?;
        let list = NamespacesClient::new(ch).list(ListNamespacesRequest {}).await.map_err(status_err(&addr))?;
        let mut names: Vec<String> = list.into_inner().namespaces.into_iter().map(|n| n.name).collect();
        if !names.iter().any(|n| n == DEFAULT_NAMESPACE) {
            names.push(DEFAULT_NAMESPACE.into());
        }
        Ok(names)
    }

    /// Tasks wanted running, in `ns`, of `service` and/or on `node`.
    async fn tasks(&self, ns: &str, service: &str, node: &str) -> Result<Vec<Task>, CliError> {
        let (addr, ch) = manager(self.endpoints, self.trust).await?;
        let req = TasksRequest { service: service.into(), running_only: true, node: node.into() };
        let r = ServicesClient::new(in_namespace(ch, ns)?).tasks(req).await.map_err(status_err(&addr))?;
        Ok(r.into_inner().tasks)
    }
}

/// Upgrades every node of the cluster not yet on `how.version`.
pub(super) async fn run(
    how: &How<'_>,
    given: &[String],
    endpoints: &[String],
    batch: usize,
    drain_timeout: Duration,
) -> Result<(), CliError> {
    let m = Managers { endpoints, trust: how.trust };
    let nodes = m.nodes().await?;
    let reach = reach(&nodes, given, how.trust).await?;
    if let Some(why) = down(&nodes, how.version) {
        return Err(CliError::Upgrade(why));
    }
    // Drained by a run cut short after the node was upgraded.
    for n in nodes.iter().filter(|n| n.os_version == how.version) {
        if let Some(b) = n.labels.get(DRAINED_BY) {
            m.set_back(n, b, how.out).await?;
        }
    }
    let todo: Vec<&str> = pending(&nodes, how.version).map(|n| n.hostname.as_str()).collect();
    if todo.is_empty() {
        say(how.out, "cluster", "done", &format!("every node runs {}", how.version));
        return Ok(());
    }
    say(
        how.out,
        "cluster",
        "plan",
        &format!(
            "upgrading {} of {} nodes to {} ({}): workers {} at a time, then managers one at a time",
            todo.len(),
            nodes.len(),
            how.version,
            todo.join(", "),
            batch
        ),
    );
    for b in worker_batches(&nodes, how.version, batch) {
        step(&b, &reach, how, &m, drain_timeout).await?;
    }
    // Done here, whether or not the managers' list shows the new version yet.
    let mut done = BTreeSet::new();
    loop {
        let nodes = m.nodes().await?;
        let managers = nodes.iter().filter(|n| n.role == MANAGER).count();
        let left: Vec<Node> = nodes.into_iter().filter(|n| !done.contains(&n.id)).collect();
        let Some(next) = next_manager(&left, how.version).cloned() else { break };
        if managers >= QUORUM_SURVIVES {
            wait_quorum(&m, how).await?;
        } else {
            say(
                how.out,
                &next.hostname,
                "quorum",
                &format!(
                    "{managers} manager(s): the quorum cannot outlive one rebooting, so the cluster's API pauses \
                     while {} does (tasks keep running)",
                    next.hostname
                ),
            );
        }
        step(std::slice::from_ref(&next), &reach, how, &m, drain_timeout).await?;
        done.insert(next.id);
    }
    say(how.out, "cluster", "done", &format!("every node runs {}", how.version));
    Ok(())
}

/// Until every manager is in the quorum.
async fn wait_quorum(m: &Managers<'_>, how: &How<'_>) -> Result<(), CliError> {
    let began = Instant::now();
    loop {
        let gap = quorum_gap(&m.nodes().await?);
        let Some(gap) = gap else { return Ok(()) };
        if began.elapsed() > how.timeout {
            return Err(CliError::Upgrade(format!(
                "the quorum is not whole ({gap}) after {} s: no manager is taken down until it is",
                how.timeout.as_secs()
            )));
        }
        say(how.out, "cluster", "quorum", &format!("waiting for the quorum: {gap}"));
        tokio::time::sleep(POLL).await;
    }
}

/// Drains `batch`, upgrades its nodes together, sets them back.
async fn step(
    batch: &[Node],
    reach: &HashMap<String, String>,
    how: &How<'_>,
    m: &Managers<'_>,
    drain_timeout: Duration,
) -> Result<(), CliError> {
    let ids: BTreeSet<String> = batch.iter().map(|n| n.id.clone()).collect();
    // The services with tasks on the batch, to see them run elsewhere.
    let mut services = BTreeSet::new();
    for ns in m.namespaces().await? {
        for n in batch {
            for t in m.tasks(&ns, "", &n.id).await? {
                services.insert((ns.clone(), t.service));
            }
        }
    }
    for n in batch {
        if let Some(b) = before(n) {
            m.drain(n, &b).await?;
        }
        say(how.out, &n.hostname, "draining", &format!("drained: its {} task(s) move to other nodes", n.tasks));
    }
    wait_moved(batch, &ids, &services, how, m, drain_timeout).await?;
    let results = join_all(batch.iter().map(|n| async move {
        let at = reach.get(&n.id).map(String::as_str).unwrap_or(n.addr.as_str());
        (n, upgrade_one(at, how).await)
    }))
    .await;
    for n in batch {
        if let Some(b) = before(n) {
            m.set_back(n, &b, how.out).await?;
        }
    }
    match results.into_iter().find(|(_, r)| r.is_err()) {
        Some((n, Err(e))) => Err(CliError::Upgrade(format!(
            "stopped at node {} ({}): {e}; nodes upgraded before it keep {}; fix the cause and run the same command \
             to go on",
            n.hostname, n.id, how.version
        ))),
        _ => Ok(()),
    }
}

/// Until the batch runs no task and its services' tasks run ready
/// elsewhere; past `drain_timeout`, says which do not and goes on (they
/// come back to the nodes once set back).
async fn wait_moved(
    batch: &[Node],
    ids: &BTreeSet<String>,
    services: &BTreeSet<(String, String)>,
    how: &How<'_>,
    m: &Managers<'_>,
    drain_timeout: Duration,
) -> Result<(), CliError> {
    let began = Instant::now();
    loop {
        let nodes = m.nodes().await?;
        let busy: Vec<&Node> = nodes.iter().filter(|n| ids.contains(&n.id) && n.tasks > 0).collect();
        let mut waiting = Vec::new();
        if busy.is_empty() {
            for (ns, s) in services {
                if !moved(&m.tasks(ns, s, "").await?, ids) {
                    waiting.push(if ns == DEFAULT_NAMESPACE { s.clone() } else { format!("{ns}/{s}") });
                }
            }
            if waiting.is_empty() {
                let names: Vec<&str> = batch.iter().map(|n| n.hostname.as_str()).collect();
                say(how.out, &names.join(","), "drained", "its tasks run elsewhere");
                return Ok(());
            }
        }
        if began.elapsed() > drain_timeout {
            let what = if busy.is_empty() {
                format!("services {} are not all running ready elsewhere", waiting.join(", "))
            } else {
                "tasks are still stopping".to_string()
            };
            say(
                how.out,
                "cluster",
                "drain-timeout",
                &format!("after {} s {what}: going on (--drain-timeout)", drain_timeout.as_secs()),
            );
            return Ok(());
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(host: &str, role: &str, status: &str, ms: &str, os: &str) -> Node {
        Node {
            id: format!("id-{host}"),
            hostname: host.into(),
            role: role.into(),
            status: status.into(),
            manager_status: ms.into(),
            os_version: os.into(),
            ..Default::default()
        }
    }

    fn cluster() -> Vec<Node> {
        vec![
            node("m1", MANAGER, READY, "leader", "1"),
            node("m2", MANAGER, READY, "reachable", "1"),
            node("m3", MANAGER, READY, "reachable", "2"),
            node("w3", "worker", READY, "", "1"),
            node("w1", "worker", READY, "", "1"),
            node("w2", "worker", READY, "", "2"),
            node("w4", "worker", READY, "", "1"),
        ]
    }

    #[test]
    fn workers_in_batches_by_name_skipping_those_done() {
        let hosts = |b: Vec<Vec<Node>>| -> Vec<Vec<String>> {
            b.into_iter().map(|b| b.into_iter().map(|n| n.hostname).collect()).collect()
        };
        assert_eq!(hosts(worker_batches(&cluster(), "2", 2)), [vec!["w1", "w3"], vec!["w4"]]);
        assert_eq!(hosts(worker_batches(&cluster(), "2", 1)), [vec!["w1"], vec!["w3"], vec!["w4"]]);
        assert!(worker_batches(&cluster(), "1", 1).len() == 1, "only w2 is not on 1");
    }

    #[test]
    fn managers_followers_first_leader_last() {
        let c = cluster();
        assert_eq!(next_manager(&c, "2").map(|n| n.hostname.as_str()), Some("m2"));
        let mut c = c;
        c[1].os_version = "2".into();
        assert_eq!(next_manager(&c, "2").map(|n| n.hostname.as_str()), Some("m1"));
        c[0].os_version = "2".into();
        assert_eq!(next_manager(&c, "2"), None);
    }

    #[test]
    fn quorum_and_down_nodes() {
        let mut c = cluster();
        assert_eq!(quorum_gap(&c), None);
        c[2].manager_status = "unreachable".into();
        assert!(quorum_gap(&c).unwrap().contains("m3"));
        assert_eq!(down(&c, "2"), None);
        c[4].status = "down".into();
        let why = down(&c, "2").unwrap();
        assert!(why.contains("w1") && why.contains("orcctl node rm id-w1"), "{why}");
        // A node already on the version may be down: nothing to do there.
        assert_eq!(down(&c, "1"), None);
    }

    #[test]
    fn set_back_to_what_it_was_before_any_run() {
        let mut n = node("w1", "worker", READY, "", "1");
        n.availability = "active".into();
        assert_eq!(before(&n).as_deref(), Some("active"));
        n.availability = DRAIN.into();
        assert_eq!(before(&n), None, "drained by someone else: left drained");
        n.labels.insert(DRAINED_BY.into(), "pause".into());
        assert_eq!(before(&n).as_deref(), Some("pause"), "drained by a run cut short");
    }

    #[test]
    fn moved_means_running_ready_and_elsewhere() {
        let drained: BTreeSet<String> = ["n1".to_string()].into();
        let t = |node: &str, state: &str, health: &str| Task {
            node_id: node.into(),
            state: state.into(),
            health: health.into(),
            ..Default::default()
        };
        assert!(moved(&[t("n2", "running", ""), t("n3", "running", "ready")], &drained));
        assert!(!moved(&[t("n2", "running", "starting")], &drained));
        assert!(!moved(&[t("n2", "pending", "")], &drained));
        assert!(!moved(&[t("n1", "running", "")], &drained));
        let stuck = Task {
            state: "pending".into(),
            message: "no suitable node (3 nodes: 3 not matching node.id==n1)".into(),
            ..Default::default()
        };
        assert!(moved(&[stuck, t("n2", "running", "")], &drained));
    }
}
