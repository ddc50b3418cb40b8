//! Runs a task's probes on its node: one tokio task per probed task (no
//! process per probe beyond an exec probe's own command in the container),
//! one probe at a time, each role on its own interval, the first right
//! after the start. Results go to the executor, which reports the task's
//! health in the next heartbeat and restarts it when the probes say so.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::executor::Executor;
use super::health::{Machine, Verdict};
use super::runtime::TaskRuntime;
use crate::cluster::objects::{HealthChecks, Probe, ProbeAction, ProbeRole};

/// Where a task's port is reached from its node: its overlay address, or
/// loopback for a task on the node's own network.
fn target(addr: Option<Ipv4Addr>, port: u16) -> SocketAddr {
    SocketAddr::from((addr.unwrap_or(Ipv4Addr::LOCALHOST), port))
}

/// Probes task `task` (container `container`) until its container stops
/// running or the probes restart it.
pub async fn watch(ex: Arc<Executor>, task: String, container: String, addr: Option<Ipv4Addr>, checks: HealthChecks) {
    let mut m = Machine::new(checks);
    let started = Instant::now();
    let http = http_client();
    let mut due: BTreeMap<ProbeRole, Instant> = BTreeMap::new();
    loop {
        let next = m
            .active()
            .into_iter()
            .map(|(r, p)| (due.get(&r).copied().unwrap_or(started), r, p.clone()))
            .min_by_key(|(at, _, _)| *at);
        let Some((at, role, probe)) = next else { return };
        tokio::time::sleep_until(at.into()).await;
        if !ex.probing(&task, &container) {
            return;
        }
        let result = run(ex.runtime(), &http, &container, addr, &probe).await;
        due.insert(role, Instant::now() + Duration::from_millis(probe.interval_ms));
        if let Err(why) = &result {
            tracing::debug!(task = %task, role = role.as_str(), %why, "probe failed");
        }
        let verdict = m.record(role, started.elapsed().as_millis() as u64, result);
        ex.probed(&task, m.health(), &m.last_failure);
        if let Verdict::Restart(why) = verdict {
            tracing::warn!(task = %task, %why, "restarting the task: its probe failed");
            ex.fail(&task, &container, why, None).await;
            return;
        }
    }
}

fn http_client() -> Option<reqwest::Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .inspect_err(|e| tracing::warn!(error = %e, "no HTTP client for probes"))
        .ok()
}

/// One run of `probe` against `container`, within its timeout.
async fn run(
    rt: &dyn TaskRuntime,
    http: &Option<reqwest::Client>,
    container: &str,
    addr: Option<Ipv4Addr>,
    probe: &Probe,
) -> Result<(), String> {
    let attempt = async {
        match &probe.action {
            ProbeAction::Exec { command } => match rt.exec(container, command).await {
                Ok(0) => Ok(()),
                Ok(code) => Err(format!("{} exited with {code}", command.join(" "))),
                Err(e) => Err(e.to_string()),
            },
            ProbeAction::Http { port, path } => {
                let Some(client) = http else { return Err("no HTTP client on this node".to_string()) };
                let url = format!("http://{}{path}", target(addr, *port));
                let r = client.get(&url).send().await.map_err(|e| format!("GET {url}: {e}"))?;
                let code = r.status().as_u16();
                if (200..400).contains(&code) {
                    Ok(())
                } else {
                    Err(format!("GET :{port}{path}: HTTP {code}"))
                }
            }
            ProbeAction::Tcp { port } => tokio::net::TcpStream::connect(target(addr, *port))
                .await
                .map(drop)
                .map_err(|e| format!("connect to port {port}: {e}")),
        }
    };
    match tokio::time::timeout(Duration::from_millis(probe.timeout_ms), attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {} ms", probe.timeout_ms)),
    }
}
