//! `talaria-oci-helper --state DIR [--images DIR]`: the per-session OCI container helper. See
//! [`talaria_oci::helper`] and [`talaria_oci::protocol`].

use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    // stdout is the protocol; logs go to stderr only. libcgroups warns about every cgroup v1
    // controller the host lacks, on every container.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            EnvFilter::try_from_env("TALARIA_OCI_LOG")
                .unwrap_or_else(|_| EnvFilter::new("warn,libcgroups=error")),
        )
        .init();
    let args = match talaria_oci::helper::HelperArgs::parse(std::env::args_os().skip(1)) {
        Ok(args) => args,
        Err(usage) => {
            eprintln!("talaria-oci-helper: {usage}");
            return std::process::ExitCode::from(2);
        }
    };
    match talaria_oci::helper::serve(&args) {
        Ok(_) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("talaria-oci-helper: {e}");
            std::process::ExitCode::from(125)
        }
    }
}
