//! The agent unit's daemon. Everything but option parsing lives in `talaria_agent::daemon`.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The agent holds the model key: no core dumps, and processes of the same uid (the
    // executor unit's tools run as it) cannot read its memory through /proc or ptrace.
    // SAFETY: prctl(PR_SET_DUMPABLE) only changes this process's flag.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0) };
    let args = talaria_agent::daemon::Args::parse();
    talaria_daemon::init_logging();
    talaria_agent::daemon::run(args)
        .await
        .map_err(anyhow::Error::msg)
}
