//! `talaria-executord`: hosts [`ExecutorService`] on a bus. The binary and the all-in-one
//! `talaria serve` both go through [`serve`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use talaria_daemon::{Activity, Callers, DaemonArgs};

use crate::approval::Approval;
use crate::bus::ExecutorService;
use crate::tools::SandboxedTools;

/// How long commands in flight get to finish after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(20);

/// `talaria-executord`'s command line.
#[derive(Debug, clap::Parser)]
#[command(
    name = "talaria-executord",
    version,
    about = "Talaria's executor unit: runs tool commands in policy sandboxes for the agent unit, over D-Bus"
)]
pub struct Args {
    #[command(flatten)]
    pub daemon: DaemonArgs,

    /// The Talaria home (policies, container state), the agent's. Default:
    /// $STATE_DIRECTORY/home, else $TALARIA_HOME, else ~/.talaria.
    #[arg(long, value_name = "DIR")]
    pub home: Option<PathBuf>,

    /// The only user whose calls are served: the agent unit's (name or uid). Default: the
    /// user this daemon runs as.
    #[arg(long, value_name = "USER")]
    pub agent_user: Option<String>,
}

/// Builds the executor for `home` and serves it on `bus` under `org.talaria.Executor1`
/// (object registered before the name is requested). `this_binary` provides the sandbox
/// helper modes. The returned connection keeps serving until dropped.
///
/// # Errors
/// Policies that do not load, or the bus refusing the connection or the name.
pub async fn serve(
    home: &Path,
    this_binary: &Path,
    callers: Callers,
    bus: zbus::connection::Builder<'static>,
    activity: Activity,
) -> Result<zbus::Connection, String> {
    std::fs::create_dir_all(home)
        .map_err(|e| format!("cannot create the Talaria home {}: {e}", home.display()))?;
    let executor = Arc::new(crate::setup::standard(home, this_binary)?);
    // A daemon has nobody to ask: `prompt` rules are refused, saying how to get approval.
    let tools = SandboxedTools::new(
        executor,
        Approval::Unavailable {
            place: "a session served over the bus",
        },
    );
    let service = ExecutorService::new(Arc::new(tools), callers, activity);
    bus.serve_at(talaria_bus::paths::EXECUTOR, service)
        .name(talaria_bus::names::EXECUTOR)
        .build()
        .await
        .map_err(|e| format!("cannot serve {}: {e}", talaria_bus::names::EXECUTOR))
}

/// The daemon: serve until SIGTERM or idle, then exit.
///
/// # Errors
/// Anything that stops it from starting, as a message for stderr.
pub async fn run(args: Args) -> Result<(), String> {
    let home = args
        .home
        .or_else(talaria_daemon::unit_home)
        .ok_or("no Talaria home: pass --home or set STATE_DIRECTORY or TALARIA_HOME")?;
    let agent = match &args.agent_user {
        Some(user) => talaria_daemon::resolve_user(user)?,
        None => talaria_daemon::own_uid(),
    };
    let this_binary = std::env::current_exe()
        .map_err(|e| format!("cannot find this binary for the sandbox helper: {e}"))?;
    let target = args.daemon.bus_target();
    let activity = Activity::default();
    let builder = target.builder().map_err(|e| format!("{target}: {e}"))?;
    let connection = serve(
        &home,
        &this_binary,
        Callers::only([agent]),
        builder,
        activity.clone(),
    )
    .await
    .map_err(|e| format!("{e} (on {target})"))?;
    tracing::info!(home = %home.display(), agent_uid = agent, bus = %target, "serving org.talaria.Executor1");
    let (stop, _) = talaria_daemon::run_until_stopped(
        "executor",
        &activity,
        args.daemon.idle_exit(),
        STOP_GRACE,
        talaria_daemon::bus_closed(&connection),
    )
    .await
    .map_err(|e| e.to_string())?;
    tracing::info!(?stop, "executor stopped");
    drop(connection);
    Ok(())
}
