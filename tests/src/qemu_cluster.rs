//! QEMU nodes made into one cluster: the first is bootstrapped through its
//! forwarded API port, the others join with the token of their role (from
//! the cluster definition, `qemu/*.toml`), each through the first node's L2
//! address (10.42.0.x:7443). Used by `cargo xtask qemu` and the VM tests.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use orc_proto::cluster::cluster_client::ClusterClient;
use orc_proto::cluster::nodes_client::NodesClient;
use orcctl::config::Context;
use orcctl::connect::Trust;

use crate::cluster_def::NodeRole;
use crate::qemu::Node;

fn api(n: &Node) -> String {
    format!("127.0.0.1:{}", n.spec.api_port)
}

/// The node's address on the L2 network (what it advertises).
pub fn l2_addr(n: &Node) -> Option<String> {
    n.spec.l2.as_ref().map(|(_, i)| format!("10.42.0.{}:7443", 10 + *i as u32))
}

/// The node's cluster id, when it is a member the context can reach.
async fn member_of(n: &Node, ctx: &Context) -> Option<String> {
    let mut c = orcctl::cmd::machine::client(&api(n), &Trust::Cluster(ctx.clone())).await.ok()?;
    let v = c.version(orc_proto::machine::VersionRequest {}).await.ok()?.into_inner();
    (!v.maintenance).then_some(v.cluster_id)
}

/// Bootstraps (or, with `known`, finds) the cluster and joins every node;
/// returns the context, its endpoints the managers' forwarded ports.
/// Waits until every node is ready and every manager a voter.
pub fn form(
    nodes: &[Node],
    roles: &[NodeRole],
    known: Option<Context>,
    limit: Duration,
) -> anyhow::Result<(String, Context)> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    anyhow::ensure!(roles.len() == nodes.len(), "{} roles for {} nodes", roles.len(), nodes.len());
    rt.block_on(form_async(nodes, roles, known, limit))
}

async fn form_async(
    nodes: &[Node],
    roles: &[NodeRole],
    known: Option<Context>,
    limit: Duration,
) -> anyhow::Result<(String, Context)> {
    let start = Instant::now();
    let first = &nodes[0];
    let (cluster_id, mut ctx) = loop {
        anyhow::ensure!(
            start.elapsed() < limit,
            "{} did not come up; see {}",
            first.spec.name,
            first.console_path().display()
        );
        if let Some(ctx) = &known {
            if let Some(id) = member_of(first, ctx).await {
                break (id, ctx.clone());
            }
        }
        if let Some(fp) = first.fingerprint(0, Duration::from_secs(1)) {
            let (r, ctx) = orcctl::cmd::cluster::bootstrap(&api(first), &Trust::Pinned(fp), "qemu", "admin").await?;
            break (r.cluster_id, ctx);
        }
    };
    ctx.endpoints = nodes.iter().zip(roles).filter(|(_, r)| **r == NodeRole::Manager).map(|(n, _)| api(n)).collect();
    if ctx.endpoints.is_empty() {
        ctx.endpoints.push(api(first));
    }
    let trust = Trust::Cluster(ctx.clone());
    let manager = l2_addr(first).context("nodes need the L2 network to form a cluster")?;
    let mut cluster = ClusterClient::new(orcctl::connect::channel(&api(first), &trust).await?);
    let mut tokens = Vec::new();
    for role in ["manager", "worker"] {
        let req = orc_proto::cluster::JoinTokenRequest { role: role.into(), rotate: false };
        tokens.push(cluster.join_token(req).await?.into_inner().token);
    }
    let (mt, wt) = (&tokens[0], &tokens[1]);
    for (i, n) in nodes.iter().enumerate().skip(1) {
        let t = if roles[i] == NodeRole::Manager { mt } else { wt };
        loop {
            anyhow::ensure!(
                start.elapsed() < limit,
                "{} did not join; see {}",
                n.spec.name,
                n.console_path().display()
            );
            if member_of(n, &ctx).await.is_some_and(|id| id == cluster_id) {
                break;
            }
            let Some(fp) = n.fingerprint(0, Duration::from_secs(1)) else { continue };
            let joined = async {
                let mut c = orcctl::cmd::machine::client(&api(n), &Trust::Pinned(fp)).await?;
                c.join(orc_proto::machine::JoinRequest {
                    token: t.clone(),
                    manager: manager.clone(),
                    ..Default::default()
                })
                .await?;
                anyhow::Ok(())
            };
            match joined.await {
                Ok(()) => break,
                Err(e) => {
                    eprintln!("{}: joining: {e:#}; retrying", n.spec.name);
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }
    }
    // Every node ready, every manager a voter.
    loop {
        // (ready nodes, managers, managers voting); a reused cluster keeps the roles it has.
        let mut seen = (0, 0, 0);
        if let Ok((_, ch)) = orcctl::connect::manager(&ctx.endpoints, &trust).await {
            if let Ok(r) = NodesClient::new(ch).list(orc_proto::cluster::ListNodesRequest {}).await {
                let list = r.into_inner().nodes;
                seen.0 = list.iter().filter(|n| n.status == "ready").count();
                seen.1 = list.iter().filter(|n| n.role == "manager").count();
                seen.2 =
                    list.iter().filter(|n| n.manager_status == "leader" || n.manager_status == "reachable").count();
            }
        }
        if seen.0 == nodes.len() && seen.1 > 0 && seen.1 == seen.2 {
            break;
        }
        anyhow::ensure!(
            start.elapsed() < limit,
            "the cluster did not form: {} of {} nodes ready, {} of {} managers voting",
            seen.0,
            nodes.len(),
            seen.2,
            seen.1
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok((cluster_id, ctx))
}

/// Writes the context as `name` and makes it current.
pub fn save(config: &Path, name: &str, ctx: Context) -> anyhow::Result<()> {
    orcctl::cmd::cluster::save_context(config, name, ctx)?;
    Ok(())
}
