//! The gateway's link to `org.talaria.Agent1`: submitting turns, and one dispatcher that
//! reads the agent's `TurnEvent` signals and the owner changes of its well-known name from a
//! single ordered stream and hands each to the turn that waits for it.
//!
//! Reading both from one stream is what makes recovery exact: a `done` the agent sent before
//! it exited is seen before the owner change that follows it, so a finished turn is never
//! resubmitted just because the agent went idle. Signals are accepted only from the current
//! owner of the agent's name (the bus's unique names are never reused), so another client on
//! the bus cannot forge answers. This module never decides what a turn means for HTTP.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use talaria_bus::{AgentProxy, TurnEventKind, VariantDict, names, paths};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use zbus::export::ordered_stream::{self, OrderedStreamExt};
use zbus::message::Type as MessageType;
use zbus::{Connection, MatchRule, MessageStream, OwnedVariant, Str};

use crate::store::{Answer, FailureCode, Outcome, StoredFailure};

/// What the dispatcher tells a waiting turn.
#[derive(Debug, Clone)]
pub enum LinkEvent {
    /// A `TurnEvent` for this turn from the agent.
    Turn {
        kind: TurnEventKind,
        payload: String,
    },
    /// The agent's name changed hands (`None`: nobody owns it now). Whatever the old owner
    /// was doing for this turn will not reach us any more.
    OwnerChanged { owner: Option<String> },
}

/// Why `SubmitTurn` failed.
#[derive(Debug, Clone)]
pub enum SubmitError {
    /// The agent is not there (yet), went away or did not answer: try again.
    Transient(String),
    /// The agent refused the request for good.
    Final(StoredFailure),
}

/// How big the bus may let the signal queue grow before it pushes back on the connection.
const SIGNAL_QUEUE: usize = 4096;

#[derive(Debug)]
struct Inner {
    proxy: AgentProxy<'static>,
    subscribers: Mutex<HashMap<String, mpsc::UnboundedSender<LinkEvent>>>,
    owner: watch::Sender<Option<String>>,
}

/// The link to the agent. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AgentLink {
    inner: Arc<Inner>,
}

/// A turn's share of the dispatcher: its events until dropped.
#[derive(Debug)]
pub struct Subscription {
    turn_id: String,
    events: mpsc::UnboundedReceiver<LinkEvent>,
    link: AgentLink,
}

impl Subscription {
    /// The next event; `None` when the dispatcher stopped (the bus connection closed).
    pub async fn recv(&mut self) -> Option<LinkEvent> {
        self.events.recv().await
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Ok(mut subscribers) = self.link.inner.subscribers.lock() {
            subscribers.remove(&self.turn_id);
        }
    }
}

/// A terminal event for a turn nobody waits for (its HTTP request gave up waiting): the
/// answer still belongs in the outbox.
#[derive(Debug)]
pub struct Unclaimed {
    pub turn_id: String,
    pub outcome: Outcome,
}

fn rule(builder: zbus::match_rule::Builder<'static>) -> zbus::Result<MatchRule<'static>> {
    builder.build()
}

impl AgentLink {
    /// Subscribes to the agent's signals and its name's owner changes on `bus`, and starts
    /// the dispatcher, which runs until `stopping` is cancelled or the connection closes.
    /// Terminal events for turns without a subscriber go to `unclaimed`.
    ///
    /// # Errors
    /// The bus refuses the match rules or the proxy.
    pub async fn connect(
        bus: &Connection,
        unclaimed: mpsc::UnboundedSender<Unclaimed>,
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
        let link = Self {
            inner: Arc::new(Inner {
                proxy,
                subscribers: Mutex::new(HashMap::new()),
                owner: watch::Sender::new(owner),
            }),
        };
        let dispatcher = Arc::downgrade(&link.inner);
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
                Self { inner }.dispatch(&message, &unclaimed);
            }
            tracing::debug!("agent dispatcher stopped");
            if let Some(inner) = dispatcher.upgrade()
                && let Ok(mut subscribers) = inner.subscribers.lock()
            {
                // Dropping the senders ends every waiting turn's stream.
                subscribers.clear();
            }
        });
        Ok(link)
    }

    fn dispatch(&self, message: &zbus::Message, unclaimed: &mpsc::UnboundedSender<Unclaimed>) {
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
                    return;
                };
                let Ok(kind) = kind.parse::<TurnEventKind>() else {
                    tracing::debug!(turn_id, kind, "ignoring a turn event of an unknown kind");
                    return;
                };
                let event = LinkEvent::Turn { kind, payload };
                let delivered = match self.inner.subscribers.lock() {
                    Ok(subscribers) => subscribers
                        .get(&turn_id)
                        .is_some_and(|events| events.send(event.clone()).is_ok()),
                    Err(_) => false,
                };
                if !delivered
                    && let LinkEvent::Turn { kind, payload } = event
                    && let Some(outcome) = terminal_outcome(kind, &payload)
                {
                    let _ = unclaimed.send(Unclaimed { turn_id, outcome });
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
            link: self.clone(),
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

    /// `SubmitTurn` with the request id as idempotency key and turn id.
    ///
    /// # Errors
    /// [`SubmitError::Transient`] when trying again may help, [`SubmitError::Final`] when the
    /// agent refused the request.
    pub async fn submit(&self, turn: &TurnRequest<'_>) -> Result<(), SubmitError> {
        let mut options = VariantDict::new();
        options.insert(
            "request_id".into(),
            OwnedVariant::from(Str::from(turn.request_id.to_owned())),
        );
        options.insert("create".into(), OwnedVariant::from(turn.create));
        options.insert(
            "user".into(),
            OwnedVariant::from(Str::from(turn.user.to_owned())),
        );
        // An API key holder is someone the owner let in, not the owner at the terminal: their
        // tool calls run under the allow-listed user's narrowed profile.
        options.insert(
            "surface".into(),
            OwnedVariant::from(Str::from(talaria_core::Surface::AllowlistedUser.name())),
        );
        if let Some(model) = turn.model {
            options.insert(
                "model".into(),
                OwnedVariant::from(Str::from(model.to_owned())),
            );
        }
        match self
            .inner
            .proxy
            .submit_turn(turn.session_key, turn.text, &options)
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
}

/// The arguments of one `SubmitTurn`.
#[derive(Debug, Clone, Copy)]
pub struct TurnRequest<'a> {
    pub request_id: &'a str,
    pub session_key: &'a str,
    pub text: &'a str,
    pub create: bool,
    pub model: Option<&'a str>,
    /// Who the agent is talking to: the API key's id, so each key holder has their own USER
    /// memory and search scope.
    pub user: &'a str,
}

/// Sorts a `SubmitTurn` failure into "try again" and "give up".
pub fn classify(error: &zbus::Error) -> SubmitError {
    let Some((name, message)) = talaria_bus::error_parts(error) else {
        return match error {
            // Not an error reply: our own connection or the transport failed.
            zbus::Error::InputOutput(_)
            | zbus::Error::Connection(..)
            | zbus::Error::Handshake(_) => SubmitError::Transient(error.to_string()),
            // The call could not be encoded (a value the wire format refuses, a message too
            // large): it would fail the same way every time, so it fails now, for good.
            other => SubmitError::Final(StoredFailure {
                code: FailureCode::Unsendable,
                kind: None,
                message: format!("the request cannot be encoded for the bus: {other}"),
            }),
        };
    };
    let final_failure = |code| {
        SubmitError::Final(StoredFailure {
            code,
            kind: None,
            message: message.clone(),
        })
    };
    match name.as_str() {
        "org.talaria.Error.UnknownSession" => final_failure(FailureCode::UnknownSession),
        "org.freedesktop.DBus.Error.AccessDenied"
        | "org.freedesktop.DBus.Error.AuthFailed"
        | "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired" => {
            final_failure(FailureCode::AccessDenied)
        }
        "org.freedesktop.DBus.Error.InvalidArgs" => final_failure(FailureCode::InvalidRequest),
        // Every other bus-level error (ServiceUnknown, NameHasNoOwner, NoReply, Disconnected,
        // Timeout, Spawn.*, LimitsExceeded, UnknownObject while the agent starts, …) means
        // the agent was not there to take the request.
        other if other.starts_with("org.freedesktop.DBus.Error.") => {
            SubmitError::Transient(format!("{other}: {message}"))
        }
        // The agent's own errors are its answer.
        _ => SubmitError::Final(StoredFailure {
            code: FailureCode::AgentError,
            kind: Some(name.clone()),
            message,
        }),
    }
}

/// The final outcome a `done` or `error` event carries; `None` for progress events.
pub fn terminal_outcome(kind: TurnEventKind, payload: &str) -> Option<Outcome> {
    let json: serde_json::Value = serde_json::from_str(payload).unwrap_or_default();
    let field = |name: &str| json.get(name).and_then(|v| v.as_str()).map(str::to_owned);
    match kind {
        TurnEventKind::TextDelta
        | TurnEventKind::ToolStarted
        | TurnEventKind::ToolFinished
        | TurnEventKind::Notice => None,
        TurnEventKind::Done => {
            let finish_reason = match field("stop").as_deref() {
                Some("length" | "max_tokens") => "length",
                _ => "stop",
            };
            Some(Outcome::Answered(Answer {
                text: field("text").unwrap_or_default(),
                finish_reason: finish_reason.into(),
            }))
        }
        TurnEventKind::Error => Some(Outcome::Failed(StoredFailure {
            code: FailureCode::AgentError,
            kind: field("kind"),
            message: field("message").unwrap_or_else(|| "the turn failed".into()),
        })),
    }
}

/// The `text` of a `text_delta` payload.
pub fn delta_text(payload: &str) -> Option<String> {
    let json: serde_json::Value = serde_json::from_str(payload).ok()?;
    json.get("text")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_events_become_outcomes() {
        assert_eq!(
            terminal_outcome(
                TurnEventKind::Done,
                r#"{"text":"hi","stop":"end_turn","session_key":"api:x"}"#
            ),
            Some(Outcome::Answered(Answer {
                text: "hi".into(),
                finish_reason: "stop".into()
            }))
        );
        let Some(Outcome::Failed(failure)) = terminal_outcome(
            TurnEventKind::Error,
            r#"{"message":"model down","kind":"provider"}"#,
        ) else {
            panic!("error events fail the turn");
        };
        assert_eq!(failure.message, "model down");
        assert_eq!(failure.kind.as_deref(), Some("provider"));
        assert_eq!(
            terminal_outcome(TurnEventKind::TextDelta, r#"{"text":"x"}"#),
            None
        );
        assert_eq!(delta_text(r#"{"text":"x"}"#).as_deref(), Some("x"));
    }

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
            assert!(
                matches!(classify(error), SubmitError::Transient(_)),
                "{error}"
            );
        }
        let code = |error: zbus::fdo::Error| match classify(&fdo(error)) {
            SubmitError::Final(failure) => Some(failure.code),
            SubmitError::Transient(_) => None,
        };
        assert_eq!(
            code(zbus::fdo::Error::AccessDenied("not yours".into())),
            Some(FailureCode::AccessDenied)
        );
        assert_eq!(
            code(zbus::fdo::Error::InvalidArgs("bad id".into())),
            Some(FailureCode::InvalidRequest)
        );
        // Encoding failures are not retried: the same request would fail the same way.
        for error in [zbus::Error::ExcessData, zbus::Error::Failure("bad".into())] {
            assert!(
                matches!(
                    classify(&error),
                    SubmitError::Final(StoredFailure {
                        code: FailureCode::Unsendable,
                        ..
                    })
                ),
                "{error}"
            );
        }
    }
}
