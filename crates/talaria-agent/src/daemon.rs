//! `talaria-agentd`: hosts [`AgentService`] on a bus, with [`ExecutorClient`](talaria_bus::exec::ExecutorClient) sending tool calls to
//! the executor unit. The binary and the all-in-one `talaria serve` both go through [`serve`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use talaria_daemon::{Activity, Callers, DaemonArgs};

use crate::agent::{Agent, AgentSettings};
use crate::bus::{AgentService, AgentServiceConfig};
use crate::endpoint::{self, EndpointArgs};
use crate::home::TalariaHome;

/// How long turns in flight get to finish after SIGTERM; the rest resume on the next start.
const STOP_GRACE: Duration = Duration::from_secs(20);

/// `talaria-agentd`'s command line.
#[derive(Debug, clap::Parser)]
#[command(
    name = "talaria-agentd",
    version,
    about = "Talaria's agent unit: the tool-calling loop, served as org.talaria.Agent1 over D-Bus"
)]
pub struct Args {
    #[command(flatten)]
    pub daemon: DaemonArgs,

    #[command(flatten)]
    pub endpoint: EndpointArgs,

    /// The Talaria home (database, config.toml, memories). Default: $STATE_DIRECTORY/home,
    /// else $TALARIA_HOME, else ~/.talaria.
    #[arg(long, value_name = "DIR")]
    pub home: Option<PathBuf>,

    /// Where sessions started over the bus work (the policies' `${workspace}`); must be
    /// outside the home. Default: $STATE_DIRECTORY/workspace, else talaria-workspace next to
    /// the home.
    #[arg(long, value_name = "DIR")]
    pub workspace: Option<PathBuf>,

    /// Another user (name or uid) allowed to call the agent, besides root and the agent's own
    /// user; repeatable (the gateway's and the scheduler's users).
    #[arg(long = "allow-user", value_name = "USER")]
    pub allow_users: Vec<String>,

    /// A user (name or uid) that may submit turns on behalf of another uid (the scheduler's
    /// user, running a job for the person who created it); repeatable. Nobody else may.
    #[arg(long = "deputy-user", value_name = "USER")]
    pub deputy_users: Vec<String>,
}

/// What [`serve`] needs.
#[derive(Debug)]
pub struct AgentUnit {
    pub home: TalariaHome,
    pub workspace: PathBuf,
    pub endpoint: EndpointArgs,
    pub callers: Callers,
    /// Who may submit on behalf of another uid.
    pub deputies: Callers,
}

/// Builds the agent for `unit.home` and serves it on `bus` as `org.talaria.Agent1` (object
/// registered before the name is requested), then resumes turns an earlier stop or crash
/// interrupted. Tools go to `org.talaria.Executor1` on the same bus. The returned connection
/// keeps serving until dropped.
///
/// # Errors
/// A bad configuration or endpoint, a store that cannot open, or the bus refusing us.
pub async fn serve(
    unit: AgentUnit,
    bus: zbus::connection::Builder<'static>,
    activity: Activity,
) -> Result<zbus::Connection, String> {
    let home = unit.home;
    home.ensure()
        .map_err(|e| format!("cannot create {}: {e}", home.root().display()))?;
    let config = home.load_config()?;
    let endpoint = endpoint::resolve(&unit.endpoint, &config, &home.config_file())
        .map_err(|e| format!("{e:#}"))?;
    let provider = endpoint::provider(&endpoint, &config).map_err(|e| format!("{e:#}"))?;
    let default_model = endpoint::choose_model(&endpoint, provider.as_ref())
        .await
        .map_err(|e| format!("{e:#}"))?;
    let store = talaria_store::Store::open(&home.database())
        .await
        .map_err(|e| e.to_string())?;
    let connection = bus
        .build()
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let tools = talaria_bus::exec::ExecutorClient::new(&connection)
        .await
        .map_err(|e| format!("cannot reach the executor's interface: {e}"))?;
    let catalogue =
        talaria_llm::Catalogue::builtin_with(&config.providers).map_err(|e| format!("{e:#}"))?;
    let agent = Agent::new(
        provider,
        Arc::new(tools),
        store.clone(),
        home.clone(),
        AgentSettings::from_config(&config),
    )
    // Context windows and prices for compression, tool_search and cost accounting.
    .with_catalogue(Arc::new(catalogue), &endpoint.provider.name);
    let curator = talaria_skills::CuratorPolicy {
        stale_after_days: config.skills.stale_after_days,
        archive_after_days: config.skills.archive_after_days,
    };
    let service = AgentService::new(
        agent,
        AgentServiceConfig {
            default_model,
            workspace: unit.workspace,
            callers: unit.callers,
            deputies: unit.deputies,
            restore: Some(Arc::new(ProviderRestore {
                endpoint,
                config,
                config_path: home.config_file(),
            })),
        },
        activity.clone(),
    );
    tokio::spawn(curate_when_idle(store, home.clone(), curator, activity));
    connection
        .object_server()
        .at(talaria_bus::paths::AGENT, service.clone())
        .await
        .map_err(|e| e.to_string())?;
    connection
        .request_name(talaria_bus::names::AGENT)
        .await
        .map_err(|e| format!("cannot own {}: {e}", talaria_bus::names::AGENT))?;
    let resumed = service.resume_interrupted(&connection).await?;
    if resumed > 0 {
        tracing::info!(resumed, "resumed interrupted turns");
    }
    Ok(connection)
}

/// What a bus session needs to get its stored provider back when it is resumed (a session
/// switched with `talaria model set --session` keeps its provider).
#[derive(Debug)]
pub struct ProviderRestore {
    pub endpoint: endpoint::Endpoint,
    pub config: talaria_core::Config,
    pub config_path: PathBuf,
}

/// How often the curator runs, at most.
const CURATOR_PERIOD: Duration = Duration::from_secs(24 * 60 * 60);
/// How long the agent must have been idle before the curator runs.
const CURATOR_IDLE: Duration = Duration::from_secs(60);

/// Runs the skills curator (item: active → stale → archived by disuse) once a day when the
/// agent has been idle for a minute. The last run's time is the newest report in
/// `<home>/curator/`, so a D-Bus-activated agent that comes and goes still curates daily.
async fn curate_when_idle(
    store: talaria_store::Store,
    home: TalariaHome,
    policy: talaria_skills::CuratorPolicy,
    activity: Activity,
) {
    let dir = home.root().join("curator");
    let registry = talaria_skills::Registry::new(store.clone(), home.root().join("skills"));
    loop {
        let last = last_report_age(&dir);
        if let Some(wait) = last.and_then(|age| CURATOR_PERIOD.checked_sub(age)) {
            tokio::time::sleep(wait).await;
            continue;
        }
        activity.idle_for(CURATOR_IDLE).await;
        let now = jiff::Timestamp::now().as_millisecond();
        match talaria_skills::curator::run(&registry, &store, policy, now, false).await {
            Ok(report) => {
                let when = crate::format_time(now);
                match talaria_skills::curator::write_report(&report, &dir, &when) {
                    Ok((file, _)) => {
                        tracing::info!(changes = report.changes.len(), report = %file.display(), "curator ran")
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "curator ran but its report could not be written")
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "curator failed; trying again later"),
        }
        tokio::time::sleep(CURATOR_PERIOD).await;
    }
}

/// How long ago the newest (non-dry-run) curator report was written.
fn last_report_age(dir: &std::path::Path) -> Option<Duration> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("report-") && !name.ends_with("-dry-run.md")
        })
        .filter_map(|e| e.metadata().ok()?.modified().ok()?.elapsed().ok())
        .min()
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
    let workspace = args
        .workspace
        .unwrap_or_else(|| talaria_daemon::unit_workspace(&home));
    let allowed = args
        .allow_users
        .iter()
        .map(|user| talaria_daemon::resolve_user(user))
        .collect::<Result<Vec<_>, _>>()?;
    let deputies = args
        .deputy_users
        .iter()
        .map(|user| talaria_daemon::resolve_user(user))
        .collect::<Result<Vec<_>, _>>()?;
    let target = args.daemon.bus_target();
    let activity = Activity::default();
    let builder = target.builder().map_err(|e| format!("{target}: {e}"))?;
    let connection = serve(
        AgentUnit {
            home: TalariaHome::new(&home),
            workspace,
            endpoint: args.endpoint,
            callers: Callers::own_and(allowed),
            deputies: Callers::only(deputies),
        },
        builder,
        activity.clone(),
    )
    .await
    .map_err(|e| format!("{e} (on {target})"))?;
    tracing::info!(home = %home.display(), bus = %target, "serving org.talaria.Agent1");
    let (stop, drained) = talaria_daemon::run_until_stopped(
        "agent",
        &activity,
        args.daemon.idle_exit(),
        STOP_GRACE,
        talaria_daemon::bus_closed(&connection),
    )
    .await
    .map_err(|e| e.to_string())?;
    tracing::info!(?stop, drained, "agent stopped");
    drop(connection);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_curator_schedule_counts_only_real_runs() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(last_report_age(dir.path()), None, "never ran");
        std::fs::write(dir.path().join("report-1-dry-run.md"), "x").unwrap();
        assert_eq!(last_report_age(dir.path()), None, "a dry run is not a run");
        std::fs::write(dir.path().join("report-2.md"), "x").unwrap();
        let age = last_report_age(dir.path()).unwrap();
        assert!(age < CURATOR_PERIOD, "{age:?}");
    }
}
