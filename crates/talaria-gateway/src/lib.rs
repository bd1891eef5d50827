//! Talaria's gateway unit: the OpenAI-compatible HTTP API in front of the agent, and
//! `org.talaria.Gateway1` through which the agent and scheduler deliver messages.
//!
//! The gateway owns the durable edge of the system. Every accepted HTTP request is written to
//! its inbox (`<state-dir>/gateway.db`) before the agent sees it, and every answer to its
//! outbox before a client does; a request is submitted to the agent under its own request id,
//! which the agent treats as an idempotency key, so when the agent crashes or restarts the
//! gateway simply submits it again and the client's request still completes — once. Requests
//! left unanswered when the gateway itself stopped are resubmitted when it starts.
//!
//! It must never link model, container or sandbox code (no `talaria-agent`, `-executor`,
//! `-oci`, `-sandbox`, `-llm`): it is the unit exposed to the network, and it talks to the
//! others over the bus only. API keys are kept as digests and never logged.
//!
//! # Hosting
//!
//! The daemon (`talaria-gatewayd`, see [`daemon`]) and an all-in-one host use the same API:
//!
//! ```no_run
//! # async fn host(bus: zbus::Connection, keys: talaria_gateway::ApiKeys) -> Result<(), talaria_gateway::GatewayError> {
//! use talaria_gateway::{Activity, Gateway, GatewayConfig, ListenAddr, Listener};
//! let config = GatewayConfig::new("/var/lib/talaria/gateway".into(), keys);
//! let activity = Activity::default();
//! let gateway = Gateway::start(config, bus, activity).await?;
//! let listener = talaria_gateway::listen::bind(&"127.0.0.1:8642".parse::<ListenAddr>().map_err(std::io::Error::other)?)?;
//! let stop = tokio_util::sync::CancellationToken::new();
//! gateway.serve(vec![listener], stop.clone()).await?; // returns after `stop.cancel()`
//! gateway.close().await;
//! # Ok(()) }
//! ```

pub mod agent;
pub mod api;
pub mod daemon;
pub mod keys;
pub mod limits;
pub mod listen;
pub mod openai;
pub mod platforms;
pub mod server;
pub mod service;
pub mod store;
pub mod turn;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use talaria_bus::{names, paths};
use talaria_daemon::Callers;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use zbus::Connection;
use zbus::fdo::{RequestNameFlags, RequestNameReply};

pub use keys::{ApiKeys, KeyError};
pub use limits::{HttpLimits, LimitArgs};
pub use listen::ListenAddr;
pub use talaria_daemon::{Activity, Listener};

use crate::api::Api;
use crate::limits::KeyLimits;
use crate::platforms::Registry;
use crate::platforms::api::ApiPlatform;
use crate::server::{Acceptor, Server};
use crate::service::GatewayService;
use crate::store::{Store, StoreError};
use crate::turn::{TurnContext, Turns};
use talaria_bus::AgentClient;
use talaria_bus::client::Unclaimed;

/// How long a request waits for the agent by default (`--turn-timeout`).
pub const DEFAULT_TURN_TIMEOUT: Duration = Duration::from_secs(600);
/// How long open connections get to finish after a stop, by default.
/// Shorter than the units' `TimeoutStopSec=30s`, so a stop never ends in SIGKILL.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(20);

/// Everything the gateway needs to know, with defaults in [`GatewayConfig::new`].
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Holds `gateway.db`; created (mode 0700) if missing.
    pub state_dir: PathBuf,
    /// Keys that may use the HTTP API.
    pub keys: ApiKeys,
    /// Who may call `org.talaria.Gateway1`.
    pub callers: Callers,
    /// How long one request waits for the agent, resubmissions included.
    pub turn_timeout: Duration,
    /// Names listed by `/v1/models` (`talaria` first); requests naming them use the agent's
    /// default model, any other name is passed on as the `model` option.
    pub model_names: Vec<String>,
    /// Timeouts, sizes, the connection cap and the per-key limits of the HTTP API.
    pub limits: HttpLimits,
    /// How long open connections get to finish once `serve` is told to stop.
    pub grace: Duration,
}

impl GatewayConfig {
    /// The defaults: own uid and root may call `Gateway1`, 600 s turn timeout, model
    /// `talaria`, [`HttpLimits::default`], 20 s grace.
    pub fn new(state_dir: PathBuf, keys: ApiKeys) -> Self {
        Self {
            state_dir,
            keys,
            callers: Callers::own_and([]),
            turn_timeout: DEFAULT_TURN_TIMEOUT,
            model_names: vec![api::DEFAULT_MODEL.to_owned()],
            limits: HttpLimits::default(),
            grace: DEFAULT_GRACE,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("bus: {0}")]
    Bus(#[from] zbus::Error),
    #[error(
        "{} already has an owner on this bus: is another gateway running?",
        names::GATEWAY
    )]
    NameTaken,
    #[error("{0}")]
    Listen(#[from] std::io::Error),
    #[error("no HTTP listener: pass --listen or start the gateway through its socket unit")]
    NoListener,
    #[error("{0}")]
    Config(String),
    #[error("the bus connection closed")]
    BusClosed,
}

/// A running gateway: the database is open, `Gateway1` is served and its name owned, the
/// agent is watched and unanswered requests are being resubmitted. HTTP comes with
/// [`Gateway::serve`].
#[derive(Debug)]
pub struct Gateway {
    api: Arc<Api>,
    limits: HttpLimits,
    bus: Connection,
    activity: Activity,
    stopping: CancellationToken,
    listening: Arc<AtomicBool>,
    grace: Duration,
}

impl Gateway {
    /// Opens the database, starts watching the agent, serves `org.talaria.Gateway1` at
    /// `/org/talaria/Gateway1` and then requests its name, and resubmits (in the background)
    /// every request accepted earlier but never answered. `activity` counts the work in
    /// flight: open connections, requests waiting for the agent, bus calls.
    ///
    /// # Errors
    /// The database cannot be opened, the bus refuses the subscriptions or the object, or
    /// another process owns `org.talaria.Gateway1`.
    pub async fn start(
        config: GatewayConfig,
        bus: Connection,
        activity: Activity,
    ) -> Result<Self, GatewayError> {
        let store = Store::open(&config.state_dir).await?;
        let stopping = CancellationToken::new();
        let (unclaimed, unclaimed_events) = mpsc::unbounded_channel();
        let link = AgentClient::connect(&bus, Some(unclaimed), stopping.child_token()).await?;
        tokio::spawn(record_unclaimed(
            store.clone(),
            unclaimed_events,
            stopping.child_token(),
        ));
        let turns = Turns::new(TurnContext {
            store: store.clone(),
            link: link.clone(),
            keys: config.keys.clone(),
            activity: activity.clone(),
            turn_timeout: config.turn_timeout,
            stopping: stopping.child_token(),
        });
        let listening = Arc::new(AtomicBool::new(false));
        // The platforms this gateway serves; chat platforms register here, each behind its
        // Cargo feature.
        let mut platforms = Registry::default();
        platforms.register(Arc::new(ApiPlatform::new(
            store.clone(),
            Arc::clone(&listening),
        )));
        bus.object_server()
            .at(
                paths::GATEWAY,
                GatewayService {
                    platforms,
                    callers: config.callers.clone(),
                    activity: activity.clone(),
                },
            )
            .await?;
        let reply = bus
            .request_name_with_flags(names::GATEWAY, RequestNameFlags::DO_NOT_QUEUE)
            .await;
        match reply {
            Ok(RequestNameReply::PrimaryOwner | RequestNameReply::AlreadyOwner) => {}
            Ok(RequestNameReply::Exists | RequestNameReply::InQueue) => {
                stopping.cancel();
                return Err(GatewayError::NameTaken);
            }
            Err(zbus::Error::NameTaken) => {
                stopping.cancel();
                return Err(GatewayError::NameTaken);
            }
            Err(error) => {
                stopping.cancel();
                return Err(error.into());
            }
        }
        tokio::spawn(resubmit_pending(
            Arc::clone(&turns),
            link.clone(),
            stopping.child_token(),
        ));
        let mut model_names = config.model_names.clone();
        if !model_names.iter().any(|m| m == api::DEFAULT_MODEL) {
            model_names.insert(0, api::DEFAULT_MODEL.to_owned());
        }
        let api = Arc::new(Api {
            keys: config.keys,
            store,
            turns,
            dbus: zbus::fdo::DBusProxy::new(&bus).await?,
            model_names,
            body_limit: config.limits.body_limit,
            key_limits: KeyLimits::new(&config.limits),
        });
        tracing::info!(state_dir = %config.state_dir.display(), keys = api.keys.len(), "gateway started");
        Ok(Self {
            api,
            limits: config.limits,
            bus,
            activity,
            stopping,
            listening,
            grace: config.grace,
        })
    }

    /// Serves the HTTP API on `listeners` until `shutdown` is cancelled, then stops accepting
    /// and gives open connections the configured grace period to finish (their requests'
    /// answers reach the outbox either way). The limits of [`GatewayConfig::limits`] apply
    /// to every connection (see [`server`]).
    ///
    /// # Errors
    /// No listener, or a listener the runtime cannot take.
    pub async fn serve(
        &self,
        listeners: Vec<Listener>,
        shutdown: CancellationToken,
    ) -> Result<(), GatewayError> {
        if listeners.is_empty() {
            return Err(GatewayError::NoListener);
        }
        let acceptors = listeners
            .into_iter()
            .map(Acceptor::new)
            .collect::<Result<Vec<_>, _>>()?;
        let server = Server::new(
            api::router(Arc::clone(&self.api)),
            self.limits.clone(),
            self.activity.clone(),
        );
        tracing::info!(limits = ?self.limits, "HTTP limits");
        self.listening.store(true, Ordering::SeqCst);
        let accepting = acceptors.into_iter().map(|acceptor| {
            tokio::spawn(Arc::clone(&server).accept_loop(acceptor, shutdown.clone()))
        });
        futures_util::future::join_all(accepting).await;
        // Stopped accepting; every connection was told to finish its request and close.
        let grace = self.grace;
        if tokio::time::timeout(grace, server.connections().closed())
            .await
            .is_err()
        {
            tracing::warn!(
                ?grace,
                open = server.connections().len(),
                "connections still open after the grace period"
            );
        }
        self.listening.store(false, Ordering::SeqCst);
        Ok(())
    }

    /// The bus connection the gateway serves on.
    pub fn bus(&self) -> &Connection {
        &self.bus
    }

    /// Stops resubmitting and watching the agent, unregisters `Gateway1` and releases its
    /// name. Requests still waiting stay pending in the inbox for the next start.
    pub async fn close(self) {
        self.stopping.cancel();
        let _ = self
            .bus
            .object_server()
            .remove::<GatewayService, _>(paths::GATEWAY)
            .await;
        let _ = self.bus.release_name(names::GATEWAY).await;
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stopping.cancel();
    }
}

/// Answers that arrive for requests nobody waits for any more still go to the outbox.
async fn record_unclaimed(
    store: Store,
    mut events: mpsc::UnboundedReceiver<Unclaimed>,
    stopping: CancellationToken,
) {
    loop {
        let event = tokio::select! {
            event = events.recv() => event,
            () = stopping.cancelled() => None,
        };
        let Some(Unclaimed { turn_id, event }) = event else {
            return;
        };
        let Some(outcome) = crate::agent::unclaimed_outcome(event) else {
            continue;
        };
        match store.finish(&turn_id, outcome).await {
            Ok(Some(_)) => tracing::info!(request_id = turn_id, "recorded a late outcome"),
            Ok(None) => tracing::debug!(turn_id, "outcome for a turn this gateway never sent"),
            Err(error) => {
                tracing::warn!(request_id = turn_id, %error, "cannot record a late outcome")
            }
        }
    }
}

/// Resubmits unanswered requests now and whenever the agent's name gets a new owner.
async fn resubmit_pending(turns: Arc<Turns>, link: AgentClient, stopping: CancellationToken) {
    let mut owner = link.watch_owner();
    loop {
        match turns.recover().await {
            Ok(0) => {}
            Ok(started) => tracing::info!(started, "resubmitting unanswered requests"),
            Err(error) => tracing::error!(%error, "cannot read the inbox to resubmit requests"),
        }
        loop {
            tokio::select! {
                changed = owner.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    if owner.borrow_and_update().is_some() {
                        break;
                    }
                }
                () = stopping.cancelled() => return,
            }
        }
    }
}
