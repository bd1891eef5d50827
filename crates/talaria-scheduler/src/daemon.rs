//! The `talaria-schedulerd` daemon: command-line options, then [`Scheduler`] hosted under
//! [`talaria_daemon::run_until_stopped`].
//!
//! `--idle-exit` applies only while no job is scheduled: a scheduler with jobs stays up and
//! sleeps until the next one is due (it is what fires them). On SIGTERM, runs still going
//! after the grace period are recorded as interrupted and run again, with the same run ids,
//! on the next start. Losing the bus is an error exit (status 1), so the service manager
//! restarts a scheduler whose jobs would otherwise never fire.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use talaria_daemon::{Activity, Callers, DaemonArgs};

use crate::authz::Polkit;
use crate::scheduler::{Scheduler, SchedulerConfig};

/// How long runs in flight get to finish after SIGTERM.
const GRACE: Duration = Duration::from_secs(10);

/// The daemon's command line.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "talaria-schedulerd",
    version,
    about = "Talaria's scheduler: runs cron and interval jobs as agent turns and delivers the answers"
)]
pub struct Args {
    #[command(flatten)]
    pub daemon: DaemonArgs,

    /// Where `scheduler.db` lives. Default: `$STATE_DIRECTORY` (set by systemd), else
    /// `$TALARIA_HOME/scheduler`, else `~/.talaria/scheduler`.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Another user allowed to call the scheduler without polkit (repeatable). Root and the
    /// scheduler's own user always are.
    #[arg(long = "allow-user", value_name = "NAME|UID")]
    pub allow_users: Vec<String>,
}

impl Args {
    /// The state directory these options and the environment name.
    ///
    /// # Errors
    /// None of `--state-dir`, `STATE_DIRECTORY`, `TALARIA_HOME` or `HOME` is set.
    pub fn state_dir(&self) -> anyhow::Result<PathBuf> {
        if let Some(dir) = &self.state_dir {
            return Ok(dir.clone());
        }
        talaria_daemon::default_state_dir("scheduler")
            .context("no --state-dir, STATE_DIRECTORY, TALARIA_HOME or HOME")
    }

    /// The scheduler configuration these options describe.
    ///
    /// # Errors
    /// An `--allow-user` that names no user, or no state directory.
    pub fn config(&self) -> anyhow::Result<SchedulerConfig> {
        let mut uids = Vec::new();
        for user in &self.allow_users {
            uids.push(
                talaria_daemon::resolve_user(user)
                    .map_err(anyhow::Error::msg)
                    .context("--allow-user")?,
            );
        }
        let mut config = SchedulerConfig::new(self.state_dir()?);
        config.callers = Callers::own_and(uids);
        config.polkit = Polkit::for_service_bus(&self.daemon.bus_target());
        Ok(config)
    }
}

/// Runs the daemon until SIGTERM/SIGINT (or idle exit with no jobs).
///
/// # Errors
/// Bad options, or a scheduler that cannot start or record its interrupted runs.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let config = args.config()?;
    let bus = args.daemon.bus_target();
    let activity = Activity::default();
    let builder = bus
        .builder()
        .with_context(|| format!("bad bus address for {bus}"))?;
    let scheduler = Scheduler::start(config, builder, activity.clone())
        .await
        .with_context(|| format!("cannot start the scheduler on {bus}"))?;
    // Fire jobs until stopped, idle (with no jobs) or the bus goes away. Without its bus the
    // scheduler can do nothing, but its jobs still need firing: that exit is a failure, so
    // `Restart=on-failure` brings it back.
    let bus_lost = std::sync::atomic::AtomicBool::new(false);
    let serve = async {
        tokio::select! {
            () = scheduler.run(args.daemon.idle_exit()) => {}
            () = talaria_daemon::bus_closed(scheduler.connection()) => {
                bus_lost.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
    };
    let (stop, drained) =
        talaria_daemon::run_until_stopped("talaria-schedulerd", &activity, None, GRACE, serve)
            .await?;
    let interrupted = scheduler.shutdown().await?;
    tracing::info!(?stop, drained, interrupted, "stopped");
    if bus_lost.load(std::sync::atomic::Ordering::SeqCst) {
        anyhow::bail!("the connection to {bus} closed");
    }
    Ok(())
}
