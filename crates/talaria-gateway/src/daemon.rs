//! The `talaria-gatewayd` daemon: command line, where state and keys come from, listeners
//! (socket-activated or bound), and the stop sequence.
//!
//! On SIGTERM (or idle exit) the daemon stops accepting connections, lets the requests in
//! flight finish for `--stop-grace` seconds — their answers are written to the outbox either
//! way — releases its bus name and exits 0. Under socket activation the service manager keeps
//! the listening socket, so a connection that arrives after an idle exit starts it again.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use talaria_daemon::{Activity, Callers, DaemonArgs, Listener};
use tokio_util::sync::CancellationToken;

use crate::{ApiKeys, Gateway, GatewayConfig, GatewayError, LimitArgs, ListenAddr, listen};

/// The unit's name in logs and status messages.
pub const UNIT: &str = "talaria-gatewayd";

/// The address bound when neither socket activation nor `--listen` gives one.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8642";

/// The gateway daemon: Talaria's OpenAI-compatible HTTP API and `org.talaria.Gateway1`.
///
/// API keys come from the credential `gateway-key` ($CREDENTIALS_DIRECTORY, one key per line)
/// or from $TALARIA_GATEWAY_KEY; each must have at least 32 characters.
#[derive(Debug, clap::Parser)]
#[command(name = "talaria-gatewayd", version)]
pub struct Args {
    #[command(flatten)]
    pub daemon: DaemonArgs,

    /// Where `gateway.db` lives. Default: $STATE_DIRECTORY, else $TALARIA_HOME/gateway, else
    /// ~/.talaria/gateway.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Listen on HOST:PORT or unix:PATH (repeatable). Ignored when the service manager passes
    /// sockets named `http`. Default: 127.0.0.1:8642.
    #[arg(long = "listen", value_name = "ADDR")]
    pub listen: Vec<ListenAddr>,

    /// Also let this user (name or uid) call org.talaria.Gateway1 (repeatable); this
    /// process's own uid and root always may.
    #[arg(long = "allow-user", value_name = "NAME|UID")]
    pub allow_user: Vec<String>,

    /// How long a request waits for the agent's answer, resubmissions after agent restarts
    /// included, before the client gets 503/504 (the request stays queued).
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    pub turn_timeout: u64,

    /// Another model name to list in /v1/models; requests naming it use the agent's default
    /// model (repeatable; `talaria` is always listed).
    #[arg(long = "model-name", value_name = "NAME")]
    pub model_name: Vec<String>,

    /// How long requests in flight get to finish after SIGTERM.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub stop_grace: u64,

    #[command(flatten)]
    pub limits: LimitArgs,
}

/// File descriptors kept for everything but client connections: the bus, the database and
/// its journal, listeners, logs.
const RESERVED_FDS: usize = 64;

/// Raises the open-file limit so `limits.max_connections` connections fit; where the hard
/// limit does not allow it, lowers the cap to what fits and says so.
pub fn fit_open_files(limits: &mut crate::HttpLimits) {
    let wanted = limits.max_connections.saturating_add(RESERVED_FDS);
    match talaria_daemon::raise_open_files(u64::try_from(wanted).unwrap_or(u64::MAX)) {
        Ok(soft) => {
            let fits = usize::try_from(soft)
                .unwrap_or(usize::MAX)
                .saturating_sub(RESERVED_FDS)
                .max(1);
            if fits < limits.max_connections {
                tracing::warn!(
                    max_connections = limits.max_connections,
                    open_files = soft,
                    lowered_to = fits,
                    "the open-file limit is too low for --max-connections; lowering it"
                );
                limits.max_connections = fits;
            }
        }
        Err(error) => tracing::warn!(%error, "cannot read or raise the open-file limit"),
    }
}

/// `$STATE_DIRECTORY` (its first entry), else `$TALARIA_HOME/gateway`, else
/// `~/.talaria/gateway`.
pub fn default_state_dir() -> Option<PathBuf> {
    talaria_daemon::default_state_dir("gateway")
}

impl Args {
    /// The configuration these options and the environment describe.
    ///
    /// # Errors
    /// No usable API key, an unknown `--allow-user`, or no state directory.
    pub fn config(&self) -> Result<GatewayConfig, GatewayError> {
        let keys = ApiKeys::from_environment()?;
        let mut uids = Vec::new();
        for user in &self.allow_user {
            uids.push(
                talaria_daemon::resolve_user(user)
                    .map_err(|e| GatewayError::Config(format!("--allow-user: {e}")))?,
            );
        }
        let state_dir = self
            .state_dir
            .clone()
            .or_else(default_state_dir)
            .ok_or_else(|| {
                GatewayError::Config(
                "no state directory: pass --state-dir or set STATE_DIRECTORY, TALARIA_HOME or HOME"
                    .into(),
            )
            })?;
        let mut config = GatewayConfig::new(state_dir, keys);
        config.callers = Callers::own_and(uids);
        config.turn_timeout = Duration::from_secs(self.turn_timeout.max(1));
        config.model_names.extend(self.model_name.iter().cloned());
        config.grace = Duration::from_secs(self.stop_grace);
        config.limits = self.limits.limits().map_err(GatewayError::Config)?;
        Ok(config)
    }
}

/// Runs the daemon until SIGTERM/SIGINT or idle exit. `activated` are the sockets the service
/// manager passed (see [`talaria_daemon::activated_listeners`]); without them `--listen` is
/// bound.
///
/// # Errors
/// Bad configuration (no API key, a key shorter than 32 characters, …), the bus, the
/// database or a listener failing at start.
pub async fn run(args: Args, activated: Vec<Listener>) -> Result<(), GatewayError> {
    let mut config = args.config()?;
    fit_open_files(&mut config.limits);
    let listeners = if activated.is_empty() {
        let addresses = if args.listen.is_empty() {
            vec![
                DEFAULT_LISTEN
                    .parse::<ListenAddr>()
                    .map_err(GatewayError::Config)?,
            ]
        } else {
            args.listen.clone()
        };
        addresses
            .iter()
            .map(listen::bind)
            .collect::<Result<Vec<_>, _>>()?
    } else {
        tracing::info!(
            sockets = activated.len(),
            "using sockets from the service manager"
        );
        activated
    };
    let bus_target = args.daemon.bus_target();
    let bus = bus_target.builder()?.build().await?;
    tracing::info!(bus = %bus_target, "connected");
    let activity = Activity::default();
    let grace = config.grace;
    let gateway = Gateway::start(config, bus, activity.clone()).await?;
    let shutdown = CancellationToken::new();
    // The serving future is dropped when the daemon is told to stop; the guard then starts
    // the graceful shutdown of open connections, which `run_until_stopped` waits for.
    let stop_on_drop = shutdown.clone().drop_guard();
    let serving = gateway.serve(listeners, shutdown);
    let failed = OnceLock::new();
    let (stop, drained) =
        talaria_daemon::run_until_stopped(UNIT, &activity, args.daemon.idle_exit(), grace, async {
            let _stop_on_drop = stop_on_drop;
            tokio::select! {
                served = serving => {
                    if let Err(error) = served {
                        let _ = failed.set(error);
                    }
                }
                // Without the bus there is no agent to answer: exit, and let the service
                // manager start a gateway with a fresh connection.
                () = gateway.bus().closed() => {
                    let _ = failed.set(GatewayError::BusClosed);
                }
            }
        })
        .await?;
    gateway.close().await;
    tracing::info!(?stop, drained, "stopped");
    match failed.into_inner() {
        Some(error) => Err(error),
        None => Ok(()),
    }
}
