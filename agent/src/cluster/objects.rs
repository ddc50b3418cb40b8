//! The objects of the replicated state ([`crate::model::objects`]) and the
//! [`View`] readers take of them: the typed, indexed state as of one
//! version ([`crate::model::db`]), with the lookups people use (by name, id
//! or unique id prefix).

use super::error::ClusterError;
use crate::lookup::{find, Found};
use crate::model::namespace::{scoped, shown, Namespace, DEFAULT_NAMESPACE};
pub use crate::model::objects::*;
use crate::raft::{RaftError, RaftHandle};

/// The state as of one version, typed and indexed: what readers work on.
/// Taking one is O(1) ([`super::db`]).
pub use crate::model::db::ClusterState as View;

impl View {
    /// A service by its key (its name, scoped to its namespace: [`scoped`]).
    pub fn service_by_name(&self, key: &str) -> Option<&Service> {
        self.service_names.get(key).and_then(|id| self.services.get(id)).map(|s| &**s)
    }

    /// A service of namespace `ns` by name, id or unique id prefix.
    pub fn find_service(&self, ns: &str, ident: &str) -> Result<&Service, ClusterError> {
        let ns = shown(ns);
        let here = |s: &&Service| shown(&s.spec.namespace) == ns;
        let exact =
            self.service_by_name(&scoped(ns, ident)).or_else(|| self.services.get(ident).map(|s| &**s).filter(here));
        let matches = self
            .services
            .range(ident.to_string()..)
            .take_while(|(id, _)| !ident.is_empty() && id.starts_with(ident))
            .map(|(_, s)| &**s)
            .filter(here);
        match find(exact, matches) {
            Found::One(s) => Ok(s),
            Found::Nothing => Err(ClusterError::NotFound(format!(
                "no service {ident:?} in namespace {ns} (see `orcctl -N {ns} service ls`)"
            ))),
            Found::Several(n) => {
                Err(ClusterError::InvalidArgument(format!("{ident:?} matches {n} services: give more of the id")))
            }
        }
    }

    /// A namespace by name; `default` exists even when never written.
    pub fn namespace(&self, name: &str) -> Option<Namespace> {
        match self.namespaces.get(name) {
            Some(n) => Some(Namespace::clone(n)),
            None if name == DEFAULT_NAMESPACE => Some(Namespace { name: name.into(), ..Default::default() }),
            None => None,
        }
    }

    /// A node by id, unique id prefix or hostname.
    pub fn find_node(&self, ident: &str) -> Result<&Node, ClusterError> {
        let named = self.index.nodes_named(ident).iter().filter_map(|id| self.nodes.get(id));
        let prefixed = self
            .nodes
            .range(ident.to_string()..)
            .take_while(|(id, _)| !ident.is_empty() && id.starts_with(ident))
            .map(|(_, n)| n);
        let mut matches: Vec<&Node> = named.chain(prefixed).map(|n| &**n).collect();
        matches.sort_by(|a, b| a.id.cmp(&b.id));
        matches.dedup_by(|a, b| a.id == b.id);
        match find(self.nodes.get(ident).map(|n| &**n), matches.into_iter()) {
            Found::One(n) => Ok(n),
            Found::Nothing => {
                Err(ClusterError::NotFound(format!("no node {ident:?} in the cluster (see `orcctl node ls`)")))
            }
            Found::Several(n) => {
                Err(ClusterError::InvalidArgument(format!("{ident:?} matches {n} nodes: use the node id")))
            }
        }
    }

    /// The tasks on `node` ("": not placed yet).
    pub fn tasks_on<'a>(&'a self, node: &str) -> impl Iterator<Item = &'a Task> + 'a {
        self.index.tasks_on(node).iter().filter_map(|id| self.tasks.get(id)).map(|t| &**t)
    }

    /// The tasks of service `id`.
    pub fn tasks_of<'a>(&'a self, service: &str) -> impl Iterator<Item = &'a Task> + 'a {
        self.index.tasks_of(service).iter().filter_map(|id| self.tasks.get(id)).map(|t| &**t)
    }

    /// Live tasks (wanted running, not over) on `node`.
    pub fn live_tasks_on(&self, node: &str) -> usize {
        // A live task on a node holds its resources there: the index counts them.
        if node.is_empty() {
            return self.tasks_on(node).filter(|t| t.live()).count();
        }
        self.index.usage(node).tasks as usize
    }
}

/// The objects, read linearizably on this manager.
pub async fn view(raft: &RaftHandle) -> Result<View, RaftError> {
    let s = raft.linearizable().await?;
    let a = s.sm.applied.read().await;
    Ok(a.state.clone())
}
