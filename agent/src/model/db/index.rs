//! Indexes of the cluster database: what the hot paths ask without a scan.
//! Kept by [`super::ClusterState`] on every change; cheap to clone.

use crate::model::objects::{Node, Task};

type Ids = imbl::OrdSet<String>;

#[derive(Debug, Clone, Default)]
pub struct Index {
    /// Node id ("" for tasks not placed yet) → its tasks.
    by_node: imbl::HashMap<String, Ids>,
    /// Service id → its tasks (every slot, current and kept history).
    by_service: imbl::HashMap<String, Ids>,
    /// Hostname → node ids.
    by_hostname: imbl::HashMap<String, Ids>,
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
    }

    pub(super) fn remove_task(&mut self, id: &str, t: &Task) {
        remove(&mut self.by_node, &t.node, id);
        remove(&mut self.by_service, &t.service_id, id);
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
