//! The agent unit's daemon.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = talaria_agent::daemon::Args::parse();
    talaria_daemon::init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("talaria-agentd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(talaria_agent::daemon::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("talaria-agentd: {message}");
            ExitCode::FAILURE
        }
    }
}
