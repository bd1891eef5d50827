//! `talaria-sandbox`: run one command confined by a `SandboxSpec`, or report what this host can
//! enforce. Everything lives in the library; see its docs for the order of steps and the exit
//! codes.

fn main() {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    std::process::exit(talaria_sandbox::cli::main_with_args(&args));
}
