//! What the agent's answers mean for the gateway: how a turn's end (from the shared agent
//! client in [`talaria_bus::client`]) becomes an outbox [`Outcome`], and which OpenAI
//! `finish_reason` each stop reason is.
//!
//! The gateway does not talk to `org.talaria.Agent1` itself any more: submitting, following
//! the agent's name and resubmitting are [`talaria_bus::AgentClient`]'s job, shared with the
//! scheduler. This module never sees the bus.

use talaria_bus::StopReason;
use talaria_bus::client::{Refusal, RefusalReason, TurnEnd};
use talaria_bus::turn::TurnEvent;

use crate::store::{Answer, FailureCode, Outcome, StoredFailure};

/// OpenAI's `finish_reason` for a turn that ended with an answer.
#[must_use]
pub fn finish_reason(stop: StopReason) -> &'static str {
    match stop {
        StopReason::Completed => "stop",
        // The turn ran out of its budget of model calls: the answer is cut short by a limit,
        // which is what `length` tells an OpenAI client.
        StopReason::BudgetExhausted => "length",
        // Someone stopped the turn: the text is what the model had said until then, not a
        // finished answer. OpenAI has no "cancelled"; `length` is the reason clients already
        // read as "incomplete, not a natural end", while `stop` would pass a fragment off as
        // the whole answer.
        StopReason::Interrupted => "length",
    }
}

/// The outbox outcome of a turn's end.
#[must_use]
pub fn outcome_of(end: TurnEnd) -> Outcome {
    match end {
        TurnEnd::Answered { text, stop, .. } => Outcome::Answered(Answer {
            text,
            finish_reason: finish_reason(stop).into(),
        }),
        TurnEnd::Failed { kind, message } => Outcome::Failed(StoredFailure {
            code: FailureCode::AgentError,
            kind: Some(kind.as_str().to_owned()),
            message,
        }),
        TurnEnd::Refused(refusal) => Outcome::Failed(refused(refusal)),
        TurnEnd::Unreadable(error) => Outcome::Failed(StoredFailure {
            code: FailureCode::AgentError,
            kind: Some("protocol".into()),
            message: format!("the agent's answer could not be read: {error}"),
        }),
    }
}

/// The outcome a final event for a turn nobody waits for carries; `None` when the event is not
/// final (a still-alive error is not: the request stays pending and is resubmitted).
#[must_use]
pub fn unclaimed_outcome(event: TurnEvent) -> Option<Outcome> {
    match event {
        TurnEvent::Done {
            text,
            stop,
            session_key,
        } => Some(outcome_of(TurnEnd::Answered {
            text,
            stop,
            session_key,
        })),
        TurnEvent::Error {
            message,
            kind,
            alive: false,
        } => Some(outcome_of(TurnEnd::Failed { kind, message })),
        TurnEvent::Error { alive: true, .. }
        | TurnEvent::TextDelta { .. }
        | TurnEvent::ToolStarted { .. }
        | TurnEvent::ToolFinished { .. }
        | TurnEvent::Notice { .. } => None,
    }
}

fn refused(refusal: Refusal) -> StoredFailure {
    let code = match refusal.reason {
        RefusalReason::UnknownSession => FailureCode::UnknownSession,
        RefusalReason::AccessDenied => FailureCode::AccessDenied,
        RefusalReason::InvalidArgs => FailureCode::InvalidRequest,
        RefusalReason::Unsendable => FailureCode::Unsendable,
        RefusalReason::Agent => FailureCode::AgentError,
    };
    StoredFailure {
        code,
        kind: match refusal.reason {
            RefusalReason::Agent => refusal.error_name,
            RefusalReason::UnknownSession
            | RefusalReason::AccessDenied
            | RefusalReason::InvalidArgs
            | RefusalReason::Unsendable => None,
        },
        message: refusal.message,
    }
}

#[cfg(test)]
mod tests {
    use talaria_bus::TurnErrorKind;

    use super::*;

    #[test]
    fn every_stop_reason_has_its_finish_reason() {
        let answered = |stop| {
            outcome_of(TurnEnd::Answered {
                text: "hi".into(),
                stop,
                session_key: "api:x".into(),
            })
        };
        for (stop, reason) in [
            (StopReason::Completed, "stop"),
            (StopReason::BudgetExhausted, "length"),
            (StopReason::Interrupted, "length"),
        ] {
            assert_eq!(
                answered(stop),
                Outcome::Answered(Answer {
                    text: "hi".into(),
                    finish_reason: reason.into()
                })
            );
        }
    }

    #[test]
    fn a_still_alive_error_is_not_an_outcome() {
        let error = |alive| TurnEvent::Error {
            message: "disk full".into(),
            kind: TurnErrorKind::Store,
            alive,
        };
        assert_eq!(unclaimed_outcome(error(true)), None);
        let Some(Outcome::Failed(failure)) = unclaimed_outcome(error(false)) else {
            panic!("a final error fails the request");
        };
        assert_eq!(failure.kind.as_deref(), Some("store"));
        assert_eq!(failure.message, "disk full");
    }
}
