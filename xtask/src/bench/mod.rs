//! `cargo xtask bench <name>`, and what the benchmarks share. One file per
//! benchmark: [`boot`], [`container`] (container-start), [`run`],
//! [`cluster`], [`scale`], [`update`], [`network`], [`data`], [`upgrade`], [`upgrade_cluster`]; [`dockerd`]: Docker as a peer.

mod boot;
mod cluster;
mod container;
mod data;
mod dockerd;
mod network;
mod run;
mod scale;
pub(crate) mod update;
mod upgrade;
mod upgrade_cluster;

use anyhow::bail;

pub fn run(name: &str) -> anyhow::Result<()> {
    match name {
        "boot" => boot::run(),
        "container-start" => container::run(),
        "run" => run::run(),
        "cluster" => cluster::run(),
        "scale" => scale::run(),
        "update" => update::run(),
        "network" => network::run(),
        "data" => data::run(),
        "upgrade" => upgrade::run(),
        "upgrade-cluster" => upgrade_cluster::run(),
        other => bail!(
            "unknown benchmark {other:?}; benchmarks: boot, container-start, run, cluster, scale, update, network, data, upgrade, upgrade-cluster"
        ),
    }
}

pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// A results-table row: orc's median, the peer's, and the ratio, from
/// seconds measured per round (`[orc, peer]`).
pub fn versus_row(name: &str, v: &mut [Vec<f64>; 2]) -> String {
    let (o, s) = (median(&mut v[0]), median(&mut v[1]));
    format!("| {name} | {o:.2} s | {s:.2} s | {:.2}× |\n", s / o)
}

/// Cores, CPU model and kernel of this machine, for the results file.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{} cores ({cpu}), host kernel {}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        kernel.trim()
    )
}
