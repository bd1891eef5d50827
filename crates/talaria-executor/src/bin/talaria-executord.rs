//! The executor unit's daemon. Also the sandbox and OCI helper (hidden first arguments), so
//! one binary carries everything the unit runs.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // Helper modes fork: they must run before any thread exists.
    if let Some(code) = talaria_executor::setup::run_helper_mode(&args) {
        return ExitCode::from(code);
    }
    let args = talaria_executor::daemon::Args::parse();
    talaria_daemon::init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("talaria-executord: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(talaria_executor::daemon::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("talaria-executord: {message}");
            ExitCode::FAILURE
        }
    }
}
