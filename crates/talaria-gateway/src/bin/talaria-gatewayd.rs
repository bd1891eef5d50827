//! `talaria-gatewayd`: the gateway unit's daemon. Everything but process setup lives in
//! `talaria_gateway::daemon`.

use anyhow::Context;
use clap::Parser;
use talaria_gateway::daemon::{Args, UNIT, run};

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    talaria_daemon::init_logging();
    // First, while this process has one thread: this reads and clears LISTEN_* variables.
    let activated = talaria_daemon::activated_listeners("http")
        .context("sockets passed by the service manager")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime
        .block_on(run(args, activated))
        .with_context(|| format!("{UNIT} failed"))
}
