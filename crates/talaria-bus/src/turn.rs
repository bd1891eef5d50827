//! The turn protocol: what the agent says about a turn on `Agent1.TurnEvent`, as one typed
//! [`TurnEvent`] that the agent serializes once ([`TurnEvent::to_wire`]) and every client
//! decodes once ([`TurnEvent::from_wire`]).
//!
//! On the wire an event is the signal's `kind` argument (a [`TurnEventKind`] spelling) and a
//! JSON object `payload` holding the variant's fields. Decoding never panics: an unknown kind,
//! a payload that is not the kind's object, or an unknown stop reason or error kind is an
//! [`EventError`] naming what was wrong. Fields this version does not know are ignored, so the
//! agent may add one without breaking older clients; a new *kind* or enum value is a contract
//! change and must be rolled out to the clients first.

use serde::{Deserialize, Serialize};

use crate::TurnEventKind;

/// Why a turn ended with an answer (`done`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model answered without asking for more tools.
    Completed,
    /// The turn used its whole budget of model calls (`agent.max_iterations`) while the model
    /// still wanted tools: the answer is what the model had said so far.
    BudgetExhausted,
    /// Someone stopped the turn (`CancelTurn`): the answer is the text produced until then.
    Interrupted,
}

impl StopReason {
    /// The wire spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::BudgetExhausted => "budget_exhausted",
            Self::Interrupted => "interrupted",
        }
    }
}

/// What failed when a turn ended with `error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TurnErrorKind {
    /// The turn itself failed (the model provider, a store read, a bad session): the request is
    /// finished and failed; asking again re-sends this error.
    Turn,
    /// The agent produced an outcome but could not store it. It keeps the request running and
    /// resumes it when the request id is submitted again (or at its next start).
    Store,
}

impl TurnErrorKind {
    /// The wire spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Turn => "turn",
            Self::Store => "store",
        }
    }
}

/// One event of a turn, as the agent reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "payload", rename_all = "snake_case")]
pub enum TurnEvent {
    /// A piece of the assistant's text.
    TextDelta { text: String },
    /// A tool call began; `summary` is a one-line description of the call.
    ToolStarted { summary: String },
    /// A tool call ended.
    ToolFinished {
        summary: String,
        ok: bool,
        duration_ms: u64,
    },
    /// Something the user should know that does not end the turn (a fallback model answered,
    /// the context was compressed).
    Notice { text: String },
    /// The turn ended with an answer; no more events follow for this turn id.
    Done {
        text: String,
        stop: StopReason,
        session_key: String,
    },
    /// The turn ended without an answer. When `alive` is true the agent keeps the request and
    /// will resume it (submitting the same request id again picks the resumed turn up): a
    /// client must not record it as a final failure. When false, no more events follow.
    Error {
        message: String,
        kind: TurnErrorKind,
        alive: bool,
    },
}

/// A `TurnEvent` signal this version cannot decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("unknown turn event kind {0:?}")]
    UnknownKind(String),
    #[error("malformed {kind} turn event payload {payload:?}: {reason}")]
    Malformed {
        kind: TurnEventKind,
        payload: String,
        reason: String,
    },
    #[error("cannot encode a {kind} turn event: {reason}")]
    Encode { kind: TurnEventKind, reason: String },
}

/// Payloads longer than this are cut in error messages (they may be whole answers).
const PAYLOAD_IN_ERRORS: usize = 200;

impl TurnEvent {
    /// The kind, as the signal's `kind` argument spells it.
    #[must_use]
    pub fn kind(&self) -> TurnEventKind {
        match self {
            Self::TextDelta { .. } => TurnEventKind::TextDelta,
            Self::ToolStarted { .. } => TurnEventKind::ToolStarted,
            Self::ToolFinished { .. } => TurnEventKind::ToolFinished,
            Self::Notice { .. } => TurnEventKind::Notice,
            Self::Done { .. } => TurnEventKind::Done,
            Self::Error { .. } => TurnEventKind::Error,
        }
    }

    /// Whether the turn is over from the client's point of view: `done`, or an `error` after
    /// which the agent keeps nothing. A still-alive error is not final.
    #[must_use]
    pub fn is_final(&self) -> bool {
        match self {
            Self::Done { .. } => true,
            Self::Error { alive, .. } => !alive,
            Self::TextDelta { .. }
            | Self::ToolStarted { .. }
            | Self::ToolFinished { .. }
            | Self::Notice { .. } => false,
        }
    }

    /// The signal's `(kind, payload)` arguments.
    ///
    /// # Errors
    /// Never for the events defined here (their fields are strings, numbers and booleans);
    /// the error exists so a future variant cannot make the emitter panic.
    pub fn to_wire(&self) -> Result<(&'static str, String), EventError> {
        let kind = self.kind();
        let encode = |reason: String| EventError::Encode { kind, reason };
        let value = serde_json::to_value(self).map_err(|e| encode(e.to_string()))?;
        let payload = value
            .get("payload")
            .ok_or_else(|| encode("no payload".into()))?;
        Ok((kind.as_str(), payload.to_string()))
    }

    /// Decodes the signal's `kind` and `payload` arguments.
    ///
    /// # Errors
    /// [`EventError::UnknownKind`] for a kind this version does not know,
    /// [`EventError::Malformed`] for a payload that is not that kind's JSON object (a missing
    /// field, a wrong type, an unknown stop reason or error kind).
    pub fn from_wire(kind: &str, payload: &str) -> Result<Self, EventError> {
        let known: TurnEventKind = kind
            .parse()
            .map_err(|_| EventError::UnknownKind(kind.to_owned()))?;
        let malformed = |reason: String| EventError::Malformed {
            kind: known,
            payload: payload.chars().take(PAYLOAD_IN_ERRORS).collect(),
            reason,
        };
        let payload_value: serde_json::Value =
            serde_json::from_str(payload).map_err(|e| malformed(e.to_string()))?;
        if !payload_value.is_object() {
            return Err(malformed("the payload is not a JSON object".into()));
        }
        let tagged = serde_json::json!({"kind": known.as_str(), "payload": payload_value});
        serde_json::from_value(tagged).map_err(|e| malformed(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_round_trips_through_its_wire_form() {
        let events = [
            TurnEvent::TextDelta { text: "hé".into() },
            TurnEvent::ToolStarted {
                summary: "terminal: ls".into(),
            },
            TurnEvent::ToolFinished {
                summary: "terminal: ls".into(),
                ok: true,
                duration_ms: 12,
            },
            TurnEvent::Notice {
                text: "compressed".into(),
            },
            TurnEvent::Done {
                text: "hi".into(),
                stop: StopReason::BudgetExhausted,
                session_key: "api:x".into(),
            },
            TurnEvent::Error {
                message: "disk full".into(),
                kind: TurnErrorKind::Store,
                alive: true,
            },
        ];
        for event in events {
            let (kind, payload) = event.to_wire().unwrap();
            assert_eq!(kind, event.kind().as_str());
            assert!(!payload.contains("\"payload\""), "{payload}");
            assert_eq!(TurnEvent::from_wire(kind, &payload).unwrap(), event);
        }
    }

    #[test]
    fn the_payload_is_the_variant_fields() {
        let (kind, payload) = TurnEvent::Error {
            message: "m".into(),
            kind: TurnErrorKind::Turn,
            alive: false,
        }
        .to_wire()
        .unwrap();
        assert_eq!(kind, "error");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&payload).unwrap(),
            serde_json::json!({"message": "m", "kind": "turn", "alive": false})
        );
    }
}
