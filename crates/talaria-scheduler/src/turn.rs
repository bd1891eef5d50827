//! Asking the agent for one run's turn and waiting for its answer, through the agent client
//! the gateway uses too ([`talaria_bus::AgentClient`]).
//!
//! The run id is the turn's `request_id`: the agent runs a request id at most once and, asked
//! again, re-emits the result. So when the agent goes away mid-turn (it crashed or is being
//! restarted), or says it keeps the request alive after failing to store it, the client
//! submits the same request again and the turn still happens exactly once.
//!
//! It must never submit a run under a new request id, and never wait forever: every wait is
//! bounded by [`TurnLimits`].

use std::time::Duration;

use talaria_bus::AgentClient;
use talaria_bus::client::{GaveUp, LogObserver, Refusal, TurnEnd, TurnRequest};
use talaria_core::Surface;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use talaria_bus::client::TurnLimits;

/// The scheduler's limits: a job may take an hour, and the agent may be away ten minutes.
#[must_use]
pub fn default_limits() -> TurnLimits {
    TurnLimits {
        turn: Duration::from_secs(3600),
        agent_absent: Duration::from_secs(600),
        first_backoff: Duration::from_millis(250),
        max_backoff: Duration::from_secs(15),
        call_timeout: Duration::from_secs(30),
    }
}

/// Why a turn produced no answer.
#[derive(Debug, thiserror::Error)]
pub enum TurnError {
    #[error("the agent reported an error: {message}")]
    Agent { kind: &'static str, message: String },
    #[error("the agent refused the turn: {}", .0.message)]
    Refused(Refusal),
    #[error("the agent's answer could not be read: {0}")]
    Unreadable(talaria_bus::turn::EventError),
    #[error(transparent)]
    GaveUp(#[from] GaveUp),
}

/// Runs `prompt` as a turn in session `cron:<job_id>` with request id `run_id`, for the person
/// `owner_uid` who created the job, and returns the agent's final answer.
///
/// # Errors
/// The agent's own error, a refusal, or the limits running out.
pub async fn ask_agent(
    agent: &AgentClient,
    job_id: &str,
    owner_uid: u32,
    run_id: &str,
    prompt: &str,
    limits: TurnLimits,
) -> Result<String, TurnError> {
    let session_key = format!("cron:{job_id}");
    let turn = TurnRequest {
        request_id: run_id,
        session_key: &session_key,
        text: prompt,
        create: true,
        model: None,
        user: None,
        // The turn is the job owner's (their sessions, memory and workspace), not the
        // scheduler's: the agent accepts this from the scheduler's user only.
        on_behalf_of: Some(owner_uid),
        // A job's turn speaks for whoever created the job, not for the owner at a terminal:
        // its tool calls run narrowed, and what it writes to memory waits for approval.
        surface: Surface::AllowlistedUser,
    };
    let started = Instant::now();
    // A run is stopped by aborting its task; nothing else cancels the wait.
    let never = CancellationToken::new();
    let end = agent
        .run_turn(&turn, &limits, &never, &mut LogObserver)
        .await?;
    tracing::debug!(run_id, elapsed = ?started.elapsed(), "turn ended");
    match end {
        TurnEnd::Answered { text, .. } => Ok(text),
        TurnEnd::Failed { kind, message } => Err(TurnError::Agent {
            kind: kind.as_str(),
            message,
        }),
        TurnEnd::Refused(refusal) => Err(TurnError::Refused(refusal)),
        TurnEnd::Unreadable(error) => Err(TurnError::Unreadable(error)),
    }
}
