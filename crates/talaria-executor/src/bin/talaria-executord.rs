//! The executor unit's daemon. Also the sandbox and OCI helper (hidden first arguments), so
//! one binary carries everything the unit runs. Everything else lives in
//! `talaria_executor::daemon`.

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
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
        .and_then(|runtime| runtime.block_on(talaria_executor::daemon::run(args)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("talaria-executord: {message}");
            ExitCode::FAILURE
        }
    }
}
