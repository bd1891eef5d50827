//! The one client of `org.talaria.Agent1` that every unit asking for turns uses (the gateway,
//! the scheduler, and every chat platform later): submitting a turn under its request id,
//! following the agent's well-known name as it changes owner, resubmitting the same request
//! id whenever the agent restarts or cannot be reached, and handing each turn its typed
//! [`TurnEvent`]s.
//!
//! One dispatcher reads the agent's `TurnEvent` signals and the owner changes of its name from
//! a single ordered stream. That is what makes recovery exact: a `done` the agent sent before
//! it exited is seen before the owner change that follows it, so a finished turn is never
//! resubmitted just because the agent went idle. Signals are accepted only from the current
//! owner of the agent's name (the bus never reuses unique names), so another client on the
//! bus cannot forge answers.
//!
//! The request id is the agent's idempotency key: submitting it again never runs the turn
//! twice — the agent re-sends a finished turn's outcome, sends a running turn's remaining
//! events to the new submitter, or resumes a turn a crash (or a failed store) interrupted. So
//! this module resubmits freely, and never under a new id. An `error` that says the request is
//! still alive (the agent could not store the outcome and keeps the request) is never final
//! here: the driver submits the same id again and picks the resumed turn up.
//!
//! It must never decide what a turn means for its caller (HTTP status, delivery, retries of
//! the caller's own); it reports, through [`TurnObserver`] and [`TurnEnd`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use talaria_core::Surface;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use zbus::export::ordered_stream::{self, OrderedStreamExt};
use zbus::message::Type as MessageType;
use zbus::{Connection, MatchRule, MessageStream, OwnedVariant, Str};

use crate::turn::{EventError, StopReason, TurnErrorKind, TurnEvent};
use crate::{AgentProxy, TurnEventKind, VariantDict, names, paths};

/// What the dispatcher tells a waiting turn.
#[derive(Debug, Clone)]
pub enum LinkEvent {
    /// A `TurnEvent` for this turn from the agent.
    Turn(TurnEvent),
    /// A `TurnEvent` for this turn that this version cannot decode.
    Malformed(EventError),
    /// The agent's name changed hands (`None`: nobody owns it now). Whatever the old owner
    /// was doing for this turn will not reach us any more.
    OwnerChanged { owner: Option<String> },
}

/// Why the agent refused a `SubmitTurn` for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalReason {
    /// The session key is unknown and `create` was not set.
    UnknownSession,
    /// The caller may not use this session or request id (or the bus refused the call).
    AccessDenied,
    /// The agent rejected an argument.
    InvalidArgs,
    /// The call could not be put on the bus at all (a value the wire format refuses, a message
    /// too large): sending it again would fail the same way.
    Unsendable,
    /// Another error of the agent's own; [`Refusal::error_name`] names it.
    Agent,
}

/// A final refusal of `SubmitTurn`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: RefusalReason,
    /// The D-Bus error name, when the refusal was an error reply.
    pub error_name: Option<String>,
    pub message: String,
}

/// Why `SubmitTurn` failed.
#[derive(Debug, Clone)]
pub enum SubmitError {
    /// The agent is not there (yet), went away or did not answer: try again.
    Transient(String),
    /// The agent refused the request for good.
    Refused(Refusal),
}

/// How big the bus may let the signal queue grow before it pushes back on the connection.
const SIGNAL_QUEUE: usize = 4096;

#[derive(Debug)]
struct Inner {
    proxy: AgentProxy<'static>,
    subscribers: Mutex<HashMap<String, mpsc::UnboundedSender<LinkEvent>>>,
    owner: watch::Sender<Option<String>>,
}

/// The client. Cheap to clone; the dispatcher runs until the `stopping` token given to
/// [`AgentClient::connect`] is cancelled, the connection closes or the last clone is dropped.
#[derive(Debug, Clone)]
pub struct AgentClient {
    inner: Arc<Inner>,
}

/// A turn's share of the dispatcher: its events until dropped.
#[derive(Debug)]
pub struct Subscription {
    turn_id: String,
    events: mpsc::UnboundedReceiver<LinkEvent>,
    client: AgentClient,
}

impl Subscription {
    /// The next event; `None` when the dispatcher stopped (the bus connection closed).
    pub async fn recv(&mut self) -> Option<LinkEvent> {
        self.events.recv().await
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Ok(mut subscribers) = self.client.inner.subscribers.lock() {
            subscribers.remove(&self.turn_id);
        }
    }
}

/// A final event for a turn nobody waits for (its waiter gave up): the caller may still want
/// to record it.
#[derive(Debug)]
pub struct Unclaimed {
    pub turn_id: String,
    pub event: TurnEvent,
}

/// The arguments of one `SubmitTurn`.
#[derive(Debug, Clone, Copy)]
pub struct TurnRequest<'a> {
    /// The idempotency key and turn id; see [`crate::ids::check_request_id`].
    pub request_id: &'a str,
    pub session_key: &'a str,
    pub text: &'a str,
    /// Start the session if the key is new.
    pub create: bool,
    pub model: Option<&'a str>,
    /// The person the caller vouches for (`None`: the agent's default user).
    pub user: Option<&'a str>,
    /// The uid whose turn this is when the caller runs it for someone else (the scheduler,
    /// for a job's creator); the agent accepts another uid only from its deputies.
    pub on_behalf_of: Option<u32>,
    /// Who that person is to the sandbox.
    pub surface: Surface,
}

impl TurnRequest<'_> {
    fn options(&self) -> VariantDict {
        let text = |value: &str| OwnedVariant::from(Str::from(value.to_owned()));
        let mut options = VariantDict::new();
        options.insert("request_id".into(), text(self.request_id));
        options.insert("create".into(), OwnedVariant::from(self.create));
        options.insert("surface".into(), text(self.surface.name()));
        if let Some(user) = self.user {
            options.insert("user".into(), text(user));
        }
        if let Some(model) = self.model {
            options.insert("model".into(), text(model));
        }
        if let Some(uid) = self.on_behalf_of {
            options.insert("on_behalf_of".into(), OwnedVariant::from(uid));
        }
        options
    }
}

fn rule(builder: zbus::match_rule::Builder<'static>) -> zbus::Result<MatchRule<'static>> {
    builder.build()
}

impl AgentClient {
    /// Subscribes to the agent's signals and its name's owner changes on `bus`, and starts
    /// the dispatcher. Final events for turns without a subscriber go to `unclaimed`, when
    /// given.
    ///
    /// # Errors
    /// The bus refuses the match rules or the proxy.
    pub async fn connect(
        bus: &Connection,
        unclaimed: Option<mpsc::UnboundedSender<Unclaimed>>,
        stopping: CancellationToken,
    ) -> zbus::Result<Self> {
        let proxy = AgentProxy::builder(bus)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await?;
        let queue = std::num::NonZeroUsize::new(SIGNAL_QUEUE);
        let turn_events = MessageStream::for_match_rule(
            rule(
                MatchRule::builder()
                    .msg_type(MessageType::Signal)
                    .interface(names::AGENT)
                    .member("TurnEvent")
                    .path(paths::AGENT),
            )?,
            bus,
            queue,
        )
        .await?;
        let owner_changes = MessageStream::for_match_rule(
            rule(
                MatchRule::builder()
                    .msg_type(MessageType::Signal)
                    .sender("org.freedesktop.DBus")
                    .interface("org.freedesktop.DBus")
                    .member("NameOwnerChanged")
                    .arg(0, names::AGENT),
            )?,
            bus,
            queue,
        )
        .await?;
        // Asked after subscribing: a change in between is also in the stream, in order.
        let dbus = zbus::fdo::DBusProxy::new(bus).await?;
        let owner = match dbus
            .get_name_owner(zbus::names::BusName::from_static_str(names::AGENT)?)
            .await
        {
            Ok(owner) => Some(owner.to_string()),
            Err(_) => None,
        };
        tracing::info!(agent = names::AGENT, owner = ?owner, "watching the agent");
        let client = Self {
            inner: Arc::new(Inner {
                proxy,
                subscribers: Mutex::new(HashMap::new()),
                owner: watch::Sender::new(owner),
            }),
        };
        let dispatcher = Arc::downgrade(&client.inner);
        tokio::spawn(async move {
            let mut stream = ordered_stream::join(turn_events, owner_changes);
            loop {
                let message = tokio::select! {
                    message = stream.next() => message,
                    () = stopping.cancelled() => None,
                };
                let Some(message) = message else {
                    break;
                };
                let Some(inner) = dispatcher.upgrade() else {
                    break;
                };
                let Ok(message) = message else {
                    continue;
                };
                Self { inner }.dispatch(&message, unclaimed.as_ref());
            }
            tracing::debug!("agent dispatcher stopped");
            if let Some(inner) = dispatcher.upgrade()
                && let Ok(mut subscribers) = inner.subscribers.lock()
            {
                // Dropping the senders ends every waiting turn's stream.
                subscribers.clear();
            }
        });
        Ok(client)
    }

    fn dispatch(
        &self,
        message: &zbus::Message,
        unclaimed: Option<&mpsc::UnboundedSender<Unclaimed>>,
    ) {
        let header = message.header();
        let member = header.member().map(|m| m.as_str().to_owned());
        match member.as_deref() {
            Some("NameOwnerChanged") => {
                let Ok((name, _old, new)) =
                    message.body().deserialize::<(String, String, String)>()
                else {
                    return;
                };
                if name != names::AGENT {
                    return;
                }
                let owner = (!new.is_empty()).then_some(new);
                tracing::info!(agent = names::AGENT, owner = ?owner, "agent owner changed");
                self.inner.owner.send_replace(owner.clone());
                if let Ok(subscribers) = self.inner.subscribers.lock() {
                    for events in subscribers.values() {
                        let _ = events.send(LinkEvent::OwnerChanged {
                            owner: owner.clone(),
                        });
                    }
                }
            }
            Some("TurnEvent") => {
                let sender = header.sender().map(|s| s.as_str().to_owned());
                let owner = self.inner.owner.borrow().clone();
                if sender.is_none() || sender != owner {
                    tracing::warn!(sender = ?sender, owner = ?owner, "ignoring a TurnEvent not sent by the agent");
                    return;
                }
                let Ok((turn_id, kind, payload)) =
                    message.body().deserialize::<(String, String, String)>()
                else {
                    tracing::warn!("ignoring a TurnEvent whose arguments are not (sss)");
                    return;
                };
                let event = match TurnEvent::from_wire(&kind, &payload) {
                    Ok(event) => LinkEvent::Turn(event),
                    Err(error) => {
                        tracing::warn!(turn_id, %error, "a turn event this client cannot decode");
                        LinkEvent::Malformed(error)
                    }
                };
                let delivered = match self.inner.subscribers.lock() {
                    Ok(subscribers) => subscribers
                        .get(&turn_id)
                        .is_some_and(|events| events.send(event.clone()).is_ok()),
                    Err(_) => false,
                };
                if !delivered
                    && let LinkEvent::Turn(event) = event
                    && event.is_final()
                    && let Some(unclaimed) = unclaimed
                {
                    let _ = unclaimed.send(Unclaimed { turn_id, event });
                }
            }
            _ => {}
        }
    }

    /// Events for `turn_id` from now on. Subscribe before submitting, so nothing is missed.
    pub fn subscribe(&self, turn_id: &str) -> Subscription {
        let (sender, events) = mpsc::unbounded_channel();
        if let Ok(mut subscribers) = self.inner.subscribers.lock() {
            subscribers.insert(turn_id.to_owned(), sender);
        }
        Subscription {
            turn_id: turn_id.to_owned(),
            events,
            client: self.clone(),
        }
    }

    /// The unique name that owns the agent's name now, as last seen on the bus.
    pub fn owner(&self) -> Option<String> {
        self.inner.owner.borrow().clone()
    }

    /// The owner of the agent's name, updated as it changes.
    pub fn watch_owner(&self) -> watch::Receiver<Option<String>> {
        self.inner.owner.subscribe()
    }

    /// One `SubmitTurn` with the request id as idempotency key and turn id.
    ///
    /// # Errors
    /// [`SubmitError::Transient`] when trying again may help, [`SubmitError::Refused`] when
    /// the agent refused the request.
    pub async fn submit(&self, turn: &TurnRequest<'_>) -> Result<(), SubmitError> {
        match self
            .inner
            .proxy
            .submit_turn(turn.session_key, turn.text, &turn.options())
            .await
        {
            Ok(turn_id) => {
                if turn_id != turn.request_id {
                    // The contract says the turn id is the request id; events carry the turn
                    // id, so a different one would never reach this turn.
                    tracing::warn!(
                        request_id = turn.request_id,
                        turn_id,
                        "the agent returned a turn id that is not the request id"
                    );
                }
                Ok(())
            }
            Err(error) => Err(classify(&error)),
        }
    }

    /// Runs one turn to its end: submits it, resubmits the same request id whenever the agent
    /// restarts, cannot be reached or reports that it keeps the request alive, and reports
    /// progress to `observer`. Returns how the turn ended, or why it stopped waiting.
    ///
    /// # Errors
    /// [`GaveUp`] when a limit ran out, `stopping` was cancelled or the bus connection closed;
    /// the request may still finish in the agent, and submitting it again picks it up.
    pub async fn run_turn(
        &self,
        turn: &TurnRequest<'_>,
        limits: &TurnLimits,
        stopping: &CancellationToken,
        observer: &mut (dyn TurnObserver + Send),
    ) -> Result<TurnEnd, GaveUp> {
        let started = Instant::now();
        let deadline = started + limits.turn;
        let mut events = self.subscribe(turn.request_id);
        let mut ever_accepted = false;
        let mut next_submit = Some(started);
        let mut backoff = limits.first_backoff;
        let mut last_error = String::from("not submitted yet");
        // When the agent was last seen unreachable, in the current stretch of absence.
        let mut absent_since: Option<Instant> = None;
        let gave_up = |ever_accepted: bool, last_error: &str| {
            let waited = started.elapsed();
            if ever_accepted {
                GaveUp::TimedOut { waited }
            } else {
                GaveUp::Unavailable {
                    waited,
                    last_error: last_error.to_owned(),
                }
            }
        };
        let next_backoff = |backoff: &mut Duration| {
            let pause = *backoff;
            *backoff = (*backoff * 2).min(limits.max_backoff);
            pause
        };
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(gave_up(ever_accepted, &last_error));
            }
            if let Some(since) = absent_since
                && now >= since + limits.agent_absent
            {
                return Err(GaveUp::Unavailable {
                    waited: started.elapsed(),
                    last_error,
                });
            }
            if next_submit.is_some_and(|at| at <= now) {
                next_submit = None;
                let limit = limits.call_timeout.min(deadline - now);
                let submitted = tokio::select! {
                    submitted = tokio::time::timeout(limit, self.submit(turn)) => submitted,
                    () = stopping.cancelled() => return Err(GaveUp::Stopping("stopping".into())),
                };
                match submitted {
                    Ok(Ok(())) => {
                        tracing::debug!(request_id = turn.request_id, "the agent took the turn");
                        ever_accepted = true;
                        absent_since = None;
                        observer.accepted().await;
                    }
                    Ok(Err(SubmitError::Refused(refusal))) => return Ok(TurnEnd::Refused(refusal)),
                    Ok(Err(SubmitError::Transient(why))) => {
                        tracing::debug!(
                            request_id = turn.request_id,
                            why,
                            ?backoff,
                            "the agent is not reachable; submitting again"
                        );
                        last_error = why;
                        absent_since.get_or_insert(now);
                        next_submit = Some(Instant::now() + next_backoff(&mut backoff));
                    }
                    Err(_) => {
                        last_error = format!("SubmitTurn got no reply within {limit:?}");
                        absent_since.get_or_insert(now);
                        next_submit = Some(Instant::now() + next_backoff(&mut backoff));
                    }
                }
                continue;
            }
            let retry_at = next_submit.unwrap_or(deadline);
            let absent_deadline =
                absent_since.map_or(deadline, |since| since + limits.agent_absent);
            tokio::select! {
                event = events.recv() => match event {
                    None => return Err(GaveUp::Stopping("the bus connection closed".into())),
                    Some(LinkEvent::Turn(event)) => {
                        backoff = limits.first_backoff;
                        match event {
                            TurnEvent::Done { text, stop, session_key } => {
                                return Ok(TurnEnd::Answered { text, stop, session_key });
                            }
                            TurnEvent::Error { message, kind, alive: false } => {
                                return Ok(TurnEnd::Failed { kind, message });
                            }
                            TurnEvent::Error { ref message, kind, alive: true } => {
                                // The agent keeps the request and resumes it when asked again:
                                // ask again (after a pause, so a store that keeps failing is
                                // not hammered), and never report this as the end.
                                tracing::warn!(request_id = turn.request_id, kind = kind.as_str(), message,
                                    "the agent keeps the request to resume it; submitting again");
                                observer.progress(&event);
                                next_submit = Some(Instant::now() + next_backoff(&mut backoff));
                            }
                            TurnEvent::TextDelta { .. }
                            | TurnEvent::ToolStarted { .. }
                            | TurnEvent::ToolFinished { .. }
                            | TurnEvent::Notice { .. } => observer.progress(&event),
                        }
                    }
                    Some(LinkEvent::Malformed(error)) => match &error {
                        // The end of the turn, unreadable: failing it is the only answer that
                        // does not hang the caller until its deadline.
                        EventError::Malformed { kind: TurnEventKind::Done | TurnEventKind::Error, .. } => {
                            return Ok(TurnEnd::Unreadable(error));
                        }
                        // Progress this version cannot read (or a kind added later): the
                        // final event carries the whole answer anyway.
                        EventError::Malformed { .. } | EventError::UnknownKind(_) | EventError::Encode { .. } => {}
                    },
                    Some(LinkEvent::OwnerChanged { owner }) => {
                        // Whatever the old owner was doing for us is lost; the same request
                        // id makes the new one (or the activation this call triggers) resume
                        // it, or re-send its outcome.
                        tracing::info!(request_id = turn.request_id, owner = ?owner, "the agent changed; submitting again");
                        if owner.is_some() {
                            next_submit = Some(Instant::now());
                        } else {
                            // Backing off here too keeps an agent that crashes on this very
                            // request from being activated again in a tight loop; progress
                            // (any turn event) is what resets the backoff.
                            absent_since.get_or_insert_with(Instant::now);
                            next_submit = Some(Instant::now() + next_backoff(&mut backoff));
                        }
                    }
                },
                () = tokio::time::sleep_until(retry_at), if next_submit.is_some() => {}
                () = tokio::time::sleep_until(deadline.min(absent_deadline)) => {}
                () = stopping.cancelled() => return Err(GaveUp::Stopping("stopping".into())),
            }
        }
    }
}

/// How long [`AgentClient::run_turn`] waits.
#[derive(Debug, Clone, Copy)]
pub struct TurnLimits {
    /// How long one turn may take, from the first submission, resubmissions included.
    pub turn: Duration,
    /// How long to keep resubmitting while the agent is unreachable, per stretch of absence.
    pub agent_absent: Duration,
    /// The first pause between resubmissions; it doubles up to `max_backoff` and is reset by
    /// any event of the turn.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// How long one `SubmitTurn` call may take (it includes D-Bus activation of the agent).
    pub call_timeout: Duration,
}

impl Default for TurnLimits {
    fn default() -> Self {
        Self {
            turn: Duration::from_secs(3600),
            agent_absent: Duration::from_secs(600),
            first_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
            call_timeout: Duration::from_secs(30),
        }
    }
}

/// What a caller of [`AgentClient::run_turn`] hears while the turn runs.
#[async_trait::async_trait]
pub trait TurnObserver {
    /// The agent took the request (after each successful submission).
    async fn accepted(&mut self);
    /// A progress event, or an error after which the agent keeps the request alive.
    fn progress(&mut self, event: &TurnEvent);
}

/// An observer that only logs.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogObserver;

#[async_trait::async_trait]
impl TurnObserver for LogObserver {
    async fn accepted(&mut self) {}

    fn progress(&mut self, event: &TurnEvent) {
        if let TurnEvent::Notice { text } = event {
            tracing::info!(notice = text, "agent notice");
        }
    }
}

/// How a turn ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnEnd {
    /// `done`.
    Answered {
        text: String,
        stop: StopReason,
        session_key: String,
    },
    /// A final `error` (the agent keeps nothing).
    Failed {
        kind: TurnErrorKind,
        message: String,
    },
    /// The agent refused the submission.
    Refused(Refusal),
    /// The final event could not be decoded.
    Unreadable(EventError),
}

/// Why [`AgentClient::run_turn`] stopped waiting without an end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GaveUp {
    #[error("the agent was unreachable for {waited:?}: {last_error}")]
    Unavailable {
        waited: Duration,
        last_error: String,
    },
    #[error("the agent took the turn but did not finish it within {waited:?}")]
    TimedOut { waited: Duration },
    #[error("stopped waiting for the agent: {0}")]
    Stopping(String),
}

/// Sorts a failed call to a Talaria unit into "try again" and "give up".
pub fn classify(error: &zbus::Error) -> SubmitError {
    let Some((name, message)) = crate::error_parts(error) else {
        return match error {
            // Not an error reply: our own connection or the transport failed.
            zbus::Error::InputOutput(_)
            | zbus::Error::Connection(..)
            | zbus::Error::Handshake(_) => SubmitError::Transient(error.to_string()),
            // The call could not be encoded (a value the wire format refuses, a message too
            // large): it would fail the same way every time, so it fails now, for good.
            other => SubmitError::Refused(Refusal {
                reason: RefusalReason::Unsendable,
                error_name: None,
                message: format!("the request cannot be encoded for the bus: {other}"),
            }),
        };
    };
    let refused = |reason| {
        SubmitError::Refused(Refusal {
            reason,
            error_name: Some(name.clone()),
            message: message.clone(),
        })
    };
    match name.as_str() {
        "org.talaria.Error.UnknownSession" => refused(RefusalReason::UnknownSession),
        "org.talaria.Error.AccessDenied"
        | "org.freedesktop.DBus.Error.AccessDenied"
        | "org.freedesktop.DBus.Error.AuthFailed"
        | "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired" => {
            refused(RefusalReason::AccessDenied)
        }
        "org.talaria.Error.InvalidArgs" | "org.freedesktop.DBus.Error.InvalidArgs" => {
            refused(RefusalReason::InvalidArgs)
        }
        // Every other bus-level error (ServiceUnknown, NameHasNoOwner, NoReply, Disconnected,
        // Timeout, Spawn.*, LimitsExceeded, UnknownObject while the unit starts, …) means
        // the unit was not there to take the request.
        other if other.starts_with("org.freedesktop.DBus.Error.") => {
            SubmitError::Transient(format!("{other}: {message}"))
        }
        // The unit's own errors are its answer.
        _ => refused(RefusalReason::Agent),
    }
}

/// Whether a failed call means "the peer is not there right now", worth retrying.
pub fn is_transient(error: &zbus::Error) -> bool {
    matches!(classify(error), SubmitError::Transient(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_errors_are_retried_and_agent_refusals_are_final() {
        let fdo = |error: zbus::fdo::Error| zbus::Error::FDO(Box::new(error));
        let transient = [
            fdo(zbus::fdo::Error::ServiceUnknown("no agent".into())),
            fdo(zbus::fdo::Error::NoReply("crashed".into())),
            fdo(zbus::fdo::Error::Disconnected("gone".into())),
            zbus::Error::InputOutput(std::sync::Arc::new(std::io::Error::other("closed"))),
        ];
        for error in &transient {
            assert!(is_transient(error), "{error}");
        }
        let reason = |error: zbus::fdo::Error| match classify(&fdo(error)) {
            SubmitError::Refused(refusal) => Some(refusal.reason),
            SubmitError::Transient(_) => None,
        };
        assert_eq!(
            reason(zbus::fdo::Error::AccessDenied("not yours".into())),
            Some(RefusalReason::AccessDenied)
        );
        assert_eq!(
            reason(zbus::fdo::Error::InvalidArgs("bad id".into())),
            Some(RefusalReason::InvalidArgs)
        );
        // Encoding failures are not retried: the same request would fail the same way.
        for error in [zbus::Error::ExcessData, zbus::Error::Failure("bad".into())] {
            assert!(
                matches!(
                    classify(&error),
                    SubmitError::Refused(Refusal {
                        reason: RefusalReason::Unsendable,
                        ..
                    })
                ),
                "{error}"
            );
        }
    }
}
