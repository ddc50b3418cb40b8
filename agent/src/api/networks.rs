//! `orc.cluster.v1.Networks`, on any manager: call the domain function in
//! [`crate::cluster::networks`], convert.

use std::sync::Arc;

use orc_proto::cluster as pb;
use orc_proto::cluster::networks_server::Networks;
use tonic::{Request, Response, Status};

use crate::cluster::networks::{self, NetworkRequest};
use crate::cluster::objects::{view, Network, Pool, SubnetLease, View, DEFAULT_NETWORK};
use crate::model::namespace::shown;
use crate::state::NodeState;

pub struct NetworksService {
    state: Arc<NodeState>,
}

impl NetworksService {
    pub fn new(state: Arc<NodeState>) -> Self {
        Self { state }
    }
}

/// What a caller sees of the networks: those of namespace `ns`, and
/// (when not limited to namespaces) where the nodes' leases are.
struct Seen<'a> {
    ns: &'a str,
    whole_cluster: bool,
}

/// A network as `ls` shows it (`detail`: with leases and tasks, as
/// `inspect`): of the shared `default`, only the services and tasks of
/// the caller's namespace.
fn to_proto(v: &View, n: &Network, seen: &Seen, detail: bool) -> pb::Network {
    let space: Option<Pool> = v.settings.network.map(|p| n.space(p));
    let key = n.key();
    let (services, _) = networks::users(v, &key, seen.ns);
    let mut out = pb::Network {
        id: n.id.clone(),
        name: n.name.clone(),
        namespace: seen.ns.to_string(),
        vni: n.vni,
        subnet: space.map(|s| s.cidr.to_string()).unwrap_or_default(),
        subnet_size: space.map(|s| u32::from(s.prefix)).unwrap_or_default(),
        builtin: n.name == DEFAULT_NETWORK,
        encrypted: n.encrypted,
        attachable: n.attachable,
        labels: n.labels.clone().into_iter().collect(),
        created_ms: n.created_ms,
        services,
        ..Default::default()
    };
    if !detail {
        return out;
    }
    let hostname = |id: &str| v.nodes.get(id).map(|x| x.hostname.clone()).unwrap_or_default();
    out.leases = v
        .leases
        .values()
        .filter(|l| seen.whole_cluster && l.network == key)
        .map(|l: &Arc<SubnetLease>| pb::NetworkLease {
            node_id: l.node.clone(),
            node_hostname: hostname(&l.node),
            subnet: l.subnet.to_string(),
        })
        .collect();
    out.tasks = v
        .tasks
        .values()
        .filter(|t| !t.state.terminal() && shown(&t.spec.namespace) == seen.ns)
        .filter_map(|t| {
            let a = t.addresses.get(&key)?;
            Some(pb::NetworkTask {
                id: t.id.clone(),
                service: t.service.clone(),
                slot: t.slot,
                node_hostname: hostname(&t.node),
                address: a.to_string(),
                state: t.state.as_str().into(),
            })
        })
        .collect();
    out.tasks.sort_by(|a, b| (&a.service, a.slot, &a.id).cmp(&(&b.service, b.slot, &b.id)));
    out
}

#[tonic::async_trait]
impl Networks for NetworksService {
    async fn create(&self, req: Request<pb::CreateNetworkRequest>) -> Result<Response<pb::Network>, Status> {
        let namespace = super::namespaces::of(&req)?;
        let whole_cluster = super::authz::scope(&req).whole_cluster();
        let r = req.into_inner();
        super::audit::target(&r.name);
        let size = match r.subnet_size {
            0 => None,
            n => Some(u8::try_from(n).map_err(|_| Status::invalid_argument(format!("subnet size /{n} is above /32")))?),
        };
        let r = NetworkRequest {
            namespace,
            name: r.name.trim().to_string(),
            subnet: Some(r.subnet.trim().to_string()).filter(|s| !s.is_empty()),
            subnet_size: size,
            encrypted: r.encrypted,
            attachable: r.attachable,
            labels: r.labels.into_iter().collect(),
        };
        let ns = r.namespace.clone();
        let (v, n) = networks::create(&self.state.raft, r).await?;
        Ok(Response::new(to_proto(&v, &n, &Seen { ns: &ns, whole_cluster }, false)))
    }

    async fn list(&self, req: Request<pb::ListNetworksRequest>) -> Result<Response<pb::ListNetworksResponse>, Status> {
        let ns = super::namespaces::of(&req)?;
        let seen = Seen { ns: &ns, whole_cluster: super::authz::scope(&req).whole_cluster() };
        let v = view(&self.state.raft).await?;
        let networks = networks::in_namespace(&v, &ns).iter().map(|n| to_proto(&v, n, &seen, false)).collect();
        Ok(Response::new(pb::ListNetworksResponse { networks }))
    }

    async fn inspect(&self, req: Request<pb::InspectNetworkRequest>) -> Result<Response<pb::Network>, Status> {
        let ns = super::namespaces::of(&req)?;
        let whole_cluster = super::authz::scope(&req).whole_cluster();
        let (v, n) = networks::inspect(&self.state.raft, &ns, req.into_inner().network.trim()).await?;
        Ok(Response::new(to_proto(&v, &n, &Seen { ns: &ns, whole_cluster }, true)))
    }

    async fn remove(
        &self,
        req: Request<pb::RemoveNetworkRequest>,
    ) -> Result<Response<pb::RemoveNetworkResponse>, Status> {
        let ns = super::namespaces::of(&req)?;
        let network = req.into_inner().network;
        super::audit::target(&network);
        let n = networks::remove(&self.state.raft, &ns, network.trim()).await?;
        Ok(Response::new(pb::RemoveNetworkResponse { name: n.name }))
    }
}
