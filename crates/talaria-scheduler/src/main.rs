//! `talaria-schedulerd`: the scheduler unit's daemon. Everything but option parsing lives in
//! the library (`talaria_scheduler::daemon`).

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = talaria_scheduler::daemon::Args::parse();
    talaria_daemon::init_logging();
    talaria_scheduler::daemon::run(args).await
}
