//! `talaria serve`: the four units in one process on a private bus — for a laptop, a container
//! or CI. The same service objects the unit daemons host, the same D-Bus interfaces between
//! them; only the hosting differs. The bus is a private `dbus-daemon` in `<home>/run`, so
//! `busctl --address=…` can watch and call the units exactly as on a system bus.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use talaria_agent::TalariaHome;
use talaria_agent::daemon::AgentUnit;
use talaria_agent::endpoint::EndpointArgs;
use talaria_daemon::{Activity, BusTarget, Callers, Listener, PrivateBus};
use tokio_util::sync::CancellationToken;

use crate::context;

/// `talaria serve`'s options.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub endpoint: EndpointArgs,

    /// Where the OpenAI-compatible HTTP API listens (repeatable).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8642")]
    pub listen: Vec<String>,

    /// Where sessions started through the API or by jobs work (the policies'
    /// `${workspace}`). Default: the current directory.
    #[arg(long, value_name = "DIR")]
    pub workspace: Option<PathBuf>,

    /// The HTTP API's timeouts, sizes, connection cap and per-key limits.
    #[command(flatten)]
    pub http_limits: talaria_gateway::LimitArgs,
}

/// The private bus in `<home>/run` (mode 0700: only this user reaches the socket).
fn private_bus(dir: &Path) -> anyhow::Result<PrivateBus> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    Ok(PrivateBus::start(dir, "")?)
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let home: TalariaHome = context::home()?;
    home.ensure()
        .with_context(|| format!("cannot create {}", home.root().display()))?;
    let workspace = match args.workspace {
        Some(dir) => dir,
        None => std::env::current_dir().context("cannot read the current directory")?,
    };
    let mut listeners = Vec::new();
    for address in &args.listen {
        let listener = std::net::TcpListener::bind(address)
            .with_context(|| format!("cannot listen on {address}"))?;
        listener.set_nonblocking(true)?;
        listeners.push(Listener::Tcp(listener));
    }
    let this_binary = std::env::current_exe().context("cannot find the talaria binary")?;
    let bus = private_bus(&home.root().join("run"))?;
    let target = BusTarget::Address(bus.address.clone());
    let activity = Activity::default();
    let me = || Callers::own_and([]);

    let executor = talaria_executor::daemon::serve(
        home.root(),
        &this_binary,
        me(),
        target.builder()?,
        activity.clone(),
    )
    .await
    .map_err(anyhow::Error::msg)?;
    let agent = talaria_agent::daemon::serve(
        AgentUnit {
            home: home.clone(),
            workspace,
            endpoint: args.endpoint,
            callers: me(),
            // The scheduler runs in this process, as this user.
            deputies: me(),
        },
        target.builder()?,
        activity.clone(),
    )
    .await
    .map_err(anyhow::Error::msg)?;
    let mut scheduler_config =
        talaria_scheduler::SchedulerConfig::new(home.root().join("scheduler"));
    // Only this user is on the private bus: nobody else to ask polkit about.
    scheduler_config.polkit = talaria_scheduler::Polkit::Disabled;
    let scheduler =
        talaria_scheduler::Scheduler::start(scheduler_config, target.builder()?, activity.clone())
            .await?;
    let gateway_dir = home.root().join("gateway");
    let (keys, key_file) = talaria_gateway::keys::environment_or_generated(&gateway_dir)?;
    let gateway_bus = target.builder()?.build().await?;
    let mut gateway_config = talaria_gateway::GatewayConfig::new(gateway_dir, keys);
    gateway_config.limits = args.http_limits.limits().map_err(anyhow::Error::msg)?;
    talaria_gateway::daemon::fit_open_files(&mut gateway_config.limits);
    let gateway =
        talaria_gateway::Gateway::start(gateway_config, gateway_bus, activity.clone()).await?;

    let stop = CancellationToken::new();
    let jobs = tokio::spawn({
        let scheduler = scheduler.clone();
        async move { scheduler.run(None).await }
    });
    eprintln!("talaria serve: the four units are up on {}", bus.address);
    for address in &args.listen {
        eprintln!(
            "  OpenAI-compatible API: http://{address}/v1 (GET /healthz, /v1/models; POST /v1/chat/completions)"
        );
    }
    if let Some(path) = key_file {
        eprintln!("  API key (Authorization: Bearer …): in {}", path.display());
    }
    eprintln!("  Ctrl+C stops them; turns in flight resume on the next start.");
    talaria_daemon::notify_ready("talaria serve ready");
    let outcome = {
        let http = gateway.serve(listeners, stop.clone());
        tokio::pin!(http);
        let outcome = tokio::select! {
            stopped = talaria_daemon::wait_for_stop(&activity, None) => { stopped?; None }
            result = &mut http => Some(result),
        };
        talaria_daemon::notify_stopping("talaria serve stopping");
        stop.cancel();
        if outcome.is_none() {
            let _ = http.await;
        }
        outcome
    };
    let _ = tokio::time::timeout(Duration::from_secs(20), activity.drained()).await;
    jobs.abort();
    let interrupted = scheduler.shutdown().await?;
    if interrupted > 0 {
        eprintln!(
            "talaria serve: {interrupted} job run(s) interrupted; they resume on the next start"
        );
    }
    gateway.close().await;
    drop(agent);
    drop(executor);
    drop(bus);
    if let Some(Err(e)) = outcome {
        return Err(e.into());
    }
    Ok(())
}
