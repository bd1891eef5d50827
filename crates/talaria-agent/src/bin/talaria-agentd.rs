//! The agent unit's daemon. Everything but option parsing lives in `talaria_agent::daemon`.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = talaria_agent::daemon::Args::parse();
    talaria_daemon::init_logging();
    talaria_agent::daemon::run(args)
        .await
        .map_err(anyhow::Error::msg)
}
