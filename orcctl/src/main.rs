use clap::Parser;

fn main() -> std::process::ExitCode {
    let (args, notices) = orcctl::cli::current_args(std::env::args_os().collect());
    for n in notices {
        eprintln!("orcctl: notice: {n}");
    }
    let cli = orcctl::cli::Cli::parse_from(args);
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("orcctl: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(orcctl::cmd::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(orcctl::error::CliError::Exit(code)) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("orcctl: {e}");
            std::process::ExitCode::from(e.exit_code())
        }
    }
}
