//! Indexes of the cluster database: what the hot paths ask without a scan.
//! Kept by [`super::ClusterState`] on every change; cheap to clone.

use crate::model::objects::{Node, Protocol, PublishMode, Service, Task, TaskState};

type Ids = imbl::OrdSet<String>;

/// What a node's tasks hold: what the scheduler weighs a node by.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    /// Reserved CPUs, in thousandths (integers: sums and differences stay exact).
    pub milli_cpus: i64,
    pub memory: u64,
    /// Published host ports, with how many tasks publish each.
    pub ports: std::collections::BTreeMap<u16, u32>,
    pub tasks: u32,
}

/// Whether `t` holds resources on its node: wanted running, not over, placed.
pub fn holds(t: &Task) -> bool {
    // Placed: a global task names its node before the scheduler places it.
    t.desired == TaskState::Running && t.state >= TaskState::Assigned && !t.state.terminal() && !t.node.is_empty()
}

/// CPUs as thousandths.
pub fn milli(cpus: f64) -> i64 {
    (cpus * 1000.0).round() as i64
}

impl Usage {
    /// Adds (`sign` 1) or removes (-1) what `t` holds.
    pub fn count(&mut self, t: &Task, sign: i64) {
        self.milli_cpus += sign * milli(t.spec.reserve_cpus);
        self.memory = if sign > 0 {
            self.memory.saturating_add(t.spec.reserve_memory)
        } else {
            self.memory.saturating_sub(t.spec.reserve_memory)
        };
        for p in t.spec.ports.iter().filter(|p| p.mode == PublishMode::Host) {
            let n = self.ports.entry(p.published).or_default();
            if sign > 0 {
                *n += 1;
            } else {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.ports.remove(&p.published);
                }
            }
        }
        self.tasks = if sign > 0 { self.tasks + 1 } else { self.tasks.saturating_sub(1) };
    }
}

/// A service's tasks as `service ls` counts them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Wanted running (whatever their state).
    pub wanted: u32,
    /// Wanted running and running.
    pub running: u32,
}

impl Counts {
    fn count(&mut self, t: &Task, sign: i64) {
        let step = |n: &mut u32| *n = if sign > 0 { *n + 1 } else { n.saturating_sub(1) };
        if t.desired == TaskState::Running {
            step(&mut self.wanted);
            if t.state == TaskState::Running {
                step(&mut self.running);
            }
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Index {
    /// Node id ("" for tasks not placed yet) → its tasks.
    by_node: imbl::HashMap<String, Ids>,
    /// Service id → its tasks (every slot, current and kept history).
    by_service: imbl::HashMap<String, Ids>,
    /// Hostname → node ids.
    by_hostname: imbl::HashMap<String, Ids>,
    /// Node id → what its tasks hold ([`holds`]).
    usage: imbl::HashMap<String, Usage>,
    /// Service id → node id → its tasks there that hold resources.
    per_service: imbl::HashMap<String, imbl::HashMap<String, u32>>,
    /// Tasks wanted running and waiting to be placed (state pending).
    pending: Ids,
    /// Service id → its tasks counted ([`Counts`]).
    counts: imbl::HashMap<String, Counts>,
    /// (protocol, port) → the services publishing it in host mode.
    host_ports: imbl::HashMap<(Protocol, u16), Ids>,
}

fn host_ports(s: &Service) -> impl Iterator<Item = (Protocol, u16)> + '_ {
    s.spec.ports.iter().filter(|p| p.mode == PublishMode::Host).map(|p| (p.protocol, p.published))
}

fn add(m: &mut imbl::HashMap<String, Ids>, k: &str, id: &str) {
    m.entry(k.to_string()).or_default().insert(id.to_string());
}

fn remove(m: &mut imbl::HashMap<String, Ids>, k: &str, id: &str) {
    if let Some(set) = m.get_mut(k) {
        set.remove(id);
        if set.is_empty() {
            m.remove(k);
        }
    }
}

static EMPTY: std::sync::LazyLock<Ids> = std::sync::LazyLock::new(Ids::new);

impl Index {
    pub(super) fn add_task(&mut self, id: &str, t: &Task) {
        add(&mut self.by_node, &t.node, id);
        add(&mut self.by_service, &t.service_id, id);
        self.count(id, t, 1);
    }

    pub(super) fn remove_task(&mut self, id: &str, t: &Task) {
        remove(&mut self.by_node, &t.node, id);
        remove(&mut self.by_service, &t.service_id, id);
        self.count(id, t, -1);
    }

    fn count(&mut self, id: &str, t: &Task, sign: i64) {
        let c = self.counts.entry(t.service_id.clone()).or_default();
        c.count(t, sign);
        if *c == Counts::default() {
            self.counts.remove(&t.service_id);
        }
        if t.desired == TaskState::Running && t.state == TaskState::Pending {
            if sign > 0 {
                self.pending.insert(id.to_string());
            } else {
                self.pending.remove(id);
            }
        }
        if !holds(t) {
            return;
        }
        self.usage.entry(t.node.clone()).or_default().count(t, sign);
        if self.usage.get(&t.node).is_some_and(|u| *u == Usage::default()) {
            self.usage.remove(&t.node);
        }
        let per = self.per_service.entry(t.service_id.clone()).or_default();
        let n = per.entry(t.node.clone()).or_default();
        *n = if sign > 0 { *n + 1 } else { n.saturating_sub(1) };
        if *n == 0 {
            per.remove(&t.node);
        }
        if per.is_empty() {
            self.per_service.remove(&t.service_id);
        }
    }

    /// What the tasks on `node` hold.
    pub fn usage(&self, node: &str) -> Usage {
        self.usage.get(node).cloned().unwrap_or_default()
    }

    /// Service id → node id → tasks holding resources there.
    pub fn per_service(&self) -> &imbl::HashMap<String, imbl::HashMap<String, u32>> {
        &self.per_service
    }

    /// The tasks of service `id`, counted.
    pub fn counts(&self, service: &str) -> Counts {
        self.counts.get(service).copied().unwrap_or_default()
    }

    /// Ids of the tasks waiting to be placed.
    pub fn pending(&self) -> &Ids {
        &self.pending
    }

    pub(super) fn add_service(&mut self, id: &str, s: &Service) {
        for port in host_ports(s) {
            self.host_ports.entry(port).or_default().insert(id.to_string());
        }
    }

    pub(super) fn remove_service(&mut self, id: &str, s: &Service) {
        for port in host_ports(s) {
            if let Some(set) = self.host_ports.get_mut(&port) {
                set.remove(id);
                if set.is_empty() {
                    self.host_ports.remove(&port);
                }
            }
        }
    }

    /// Ids of the services publishing `port`/`protocol` in host mode.
    pub fn host_port(&self, protocol: Protocol, port: u16) -> &Ids {
        self.host_ports.get(&(protocol, port)).unwrap_or(&EMPTY)
    }

    pub(super) fn add_node(&mut self, id: &str, n: &Node) {
        add(&mut self.by_hostname, &n.hostname, id);
    }

    pub(super) fn remove_node(&mut self, id: &str, n: &Node) {
        remove(&mut self.by_hostname, &n.hostname, id);
    }

    /// Ids of the tasks on `node` ("": not placed yet).
    pub fn tasks_on(&self, node: &str) -> &Ids {
        self.by_node.get(node).unwrap_or(&EMPTY)
    }

    /// Ids of the tasks of service `id`.
    pub fn tasks_of(&self, service: &str) -> &Ids {
        self.by_service.get(service).unwrap_or(&EMPTY)
    }

    /// Ids of the nodes named `hostname`.
    pub fn nodes_named(&self, hostname: &str) -> &Ids {
        self.by_hostname.get(hostname).unwrap_or(&EMPTY)
    }
}
