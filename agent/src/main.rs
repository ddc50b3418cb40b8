use clap::Parser;

/// orc-agent: the node agent.
#[derive(Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: orc_agent::config::Config,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Run one container (started by the agent, not by people).
    #[command(hide = true)]
    Shim(orc_agent::shim_contract::ShimArgs),
}

fn main() -> std::process::ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ORC_LOG").unwrap_or_else(|_| "info".into());
    let args = Args::parse();
    if let Some(Command::Shim(shim)) = args.command {
        // Not to stderr: the container's init is forked from this process
        // and its stderr is the container's, so libcontainer's own messages
        // in the child would land in the container log.
        let log = shim.dir.join("shim.log");
        match std::fs::OpenOptions::new().create(true).append(true).open(&log) {
            Ok(f) => tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(f))
                .init(),
            Err(e) => eprintln!("orc-agent shim: {}: {e}; logging nowhere", log.display()),
        }
        // Single-threaded from here on: no runtime before the container exists.
        return std::process::ExitCode::from(orc_agent::shim::main(shim).clamp(0, 255) as u8);
    }
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(false).with_writer(std::io::stderr).init();
    // Registries are reached with rustls (through reqwest) on the same
    // provider as the API.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("orc-agent: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match rt.block_on(orc_agent::run(args.config, shutdown)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "orc-agent stopped");
            std::process::ExitCode::FAILURE
        }
    }
}
