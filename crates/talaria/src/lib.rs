//! The `talaria` command line: chat, sessions, config and doctor.
//!
//! This crate wires the library crates together (configuration, model endpoint, store, agent)
//! and owns everything a person sees in a terminal. Errors become one line on stderr and a
//! non-zero exit; `anyhow` is used only here, at the edge.

mod chat;
mod cli;
mod config_cmd;
mod context;
mod context_cmd;
mod doctor;
mod export;
mod insights_cmd;
mod memory_cmd;
mod migrate_cmd;
mod model_cmd;
mod policy_cmd;
mod sandbox_cmd;
mod sandboxed;
mod serve;
mod sessions_cmd;
mod skills_cmd;
mod terminal;

use std::process::ExitCode;

use clap::Parser;

/// Exit status for failures other than the ones a command documents itself.
const EXIT_FAILURE: u8 = 1;

/// A failure that carries its own exit status (e.g. 1 for "search found nothing", 130 for an
/// interrupted one-shot turn) and may have nothing more to say.
#[derive(Debug)]
pub(crate) struct Exit {
    pub code: u8,
    pub message: Option<String>,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message.as_deref().unwrap_or(""))
    }
}

impl std::error::Error for Exit {}

pub fn main() -> ExitCode {
    // The sandbox helper mode must run before any thread exists: it forks.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(code) = talaria_executor::setup::run_helper_mode(&args) {
        return ExitCode::from(code);
    }
    let cli = cli::Cli::parse();
    // A one-shot answer is read by scripts: its stderr carries the one line that matters
    // (retries and other warnings only with -v).
    let one_shot = matches!(&cli.command, cli::Command::Chat(args) if args.query.is_some());
    init_logging(cli.verbose, one_shot);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("talaria: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Errors can quote a provider's answer or a model's argument: made safe to print.
            if let Some(exit) = error.downcast_ref::<Exit>() {
                if let Some(message) = &exit.message {
                    eprintln!("talaria: {}", terminal::safe(message));
                }
                return ExitCode::from(exit.code);
            }
            eprintln!("talaria: error: {}", terminal::safe(&format!("{error:#}")));
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn init_logging(verbose: bool, one_shot: bool) {
    use std::io::IsTerminal;
    let default = match (verbose, one_shot) {
        (true, _) => "info",
        (false, true) => "error",
        (false, false) => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("TALARIA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .without_time()
        .try_init();
}
