//! Developer tasks: `cargo xtask image | qemu | test | e2e | bench | check-kernel`.

mod bench;
mod bundle;
mod deps;
mod image;
mod kernel;
mod live;
mod nfs_server;
mod qemu;
mod test;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the OS image under target/orc/.
    Image {
        /// A kernel directory (vmlinuz, config, lib/modules/<ver>/) instead of Debian's.
        #[arg(long)]
        kernel: Option<PathBuf>,
    },
    /// Check a kernel against kernel-config/ (Debian's by default).
    CheckKernel {
        #[arg(long)]
        kernel: Option<PathBuf>,
    },
    /// Boot a local cluster in QEMU (up, the default), stop it (down), or show it (status).
    Qemu {
        #[arg(value_parser = ["up", "down", "status"], default_value = "up")]
        action: String,
        /// The cluster definition (nodes, roles, memory, disks, kernel arguments).
        #[arg(long, default_value = "qemu/local.toml")]
        cluster: PathBuf,
        /// node1..nodeN instead of the definition's nodes (3 managers from 3 on).
        #[arg(long, conflicts_with = "cluster")]
        nodes: Option<u8>,
    },
    /// Run every test tier: unit, process-level, VM end-to-end (after fmt and clippy).
    Test {
        /// Only tests whose name contains this (cargo test's filter); for your own loops.
        filter: Option<String>,
    },
    /// Build the image and run the VM end-to-end tests only.
    E2e,
    /// Run a benchmark and write bench/results/<name>.md.
    Bench { name: String },
    /// (internal) The L2 frame hub for `qemu`.
    #[command(hide = true)]
    Hub { socket: PathBuf },
}

fn main() -> anyhow::Result<()> {
    match Args::parse().cmd {
        Cmd::Image { kernel } => image::build(&image::ImageOptions { kernel }).map(|_| ()),
        Cmd::CheckKernel { kernel } => {
            deps::ensure()?;
            let k = match kernel {
                Some(d) => kernel::from_dir(&d)?,
                None => kernel::debian(&image::out_dir().join("cache"))?,
            };
            kernel::check(&k, &image::workspace())?;
            let (boot, late) = kernel::module_order(&k, &image::workspace())?;
            println!(
                "kernel {} has every option orc needs; {} modules to load at boot, {} after the agent starts",
                k.version,
                boot.len(),
                late.len()
            );
            Ok(())
        }
        Cmd::Qemu { action, cluster, nodes } => match action.as_str() {
            "down" => qemu::down(),
            "status" => qemu::status(),
            _ => qemu::up(&cluster, nodes),
        },
        Cmd::Test { filter } => test::all(filter.as_deref()),
        Cmd::E2e => test::e2e(),
        Cmd::Bench { name } => bench::run(&name),
        Cmd::Hub { socket } => Ok(orc_e2e::hub::run(&socket)?),
    }
}
