//! `talaria-sandbox`: run one command confined by a `SandboxSpec`, or report what this host can
//! enforce. Everything lives in the library; see its docs for the order of steps and the exit
//! codes.

use talaria_sandbox::cli::{Invocation, USAGE};
use talaria_sandbox::{EXIT_SETUP_FAILED, probe};

fn main() {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let code = match Invocation::parse(&args) {
        Ok(Invocation::Help) => {
            println!("{USAGE}");
            0
        }
        Ok(Invocation::Probe) => match serde_json::to_string_pretty(&probe::probe()) {
            Ok(json) => {
                println!("{json}");
                0
            }
            Err(e) => {
                eprintln!("talaria-sandbox: cannot render the probe report: {e}");
                1
            }
        },
        Ok(Invocation::Run(source)) => match source.read() {
            Ok(spec) => talaria_sandbox::run(spec),
            Err(e) => {
                eprintln!("talaria-sandbox: {e}");
                EXIT_SETUP_FAILED
            }
        },
        Err(e) => {
            eprintln!("talaria-sandbox: {e}");
            EXIT_SETUP_FAILED
        }
    };
    std::process::exit(code);
}
