//! Asking the agent for one run's turn and waiting for its answer.
//!
//! The run id is the turn's `request_id`: the agent runs a request id at most once and, asked
//! again, re-emits the result. So when the agent goes away mid-turn (it crashed or is being
//! restarted) this module submits the same request again until the agent is back, and the
//! turn still happens exactly once.
//!
//! It must never submit a run under a new request id, and never wait forever: every wait is
//! bounded by [`TurnLimits`].

use std::time::Duration;

use futures_util::StreamExt;
use talaria_bus::{AgentProxy, TurnEventKind, VariantDict, names};
use tokio::time::Instant;
use zbus::{Connection, OwnedVariant, fdo};

/// How long to wait for the agent.
#[derive(Debug, Clone, Copy)]
pub struct TurnLimits {
    /// How long to keep resubmitting while the agent is unreachable.
    pub agent_absent: Duration,
    /// How long one turn may take, from the first submission.
    pub turn: Duration,
    /// The first pause between resubmissions; it doubles up to `max_backoff`.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for TurnLimits {
    fn default() -> Self {
        Self {
            agent_absent: Duration::from_secs(600),
            turn: Duration::from_secs(3600),
            first_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(15),
        }
    }
}

/// Why a turn produced no answer.
#[derive(Debug, thiserror::Error)]
pub enum TurnError {
    #[error("the agent reported an error: {0}")]
    Agent(String),
    #[error("the agent refused the turn: {0}")]
    Refused(zbus::Error),
    #[error("the agent was unreachable for {0:?}: {1}")]
    Unreachable(Duration, String),
    #[error("no answer from the agent within {0:?}")]
    TimedOut(Duration),
    #[error("bus error while waiting for the agent: {0}")]
    Bus(zbus::Error),
}

/// Whether a failed call means "the peer is not there right now" — worth retrying.
pub(crate) fn is_transient(error: &zbus::Error) -> bool {
    match error {
        zbus::Error::FDO(fdo) => matches!(
            **fdo,
            zbus::fdo::Error::ServiceUnknown(_)
                | zbus::fdo::Error::NameHasNoOwner(_)
                | zbus::fdo::Error::NoReply(_)
                | zbus::fdo::Error::Disconnected(_)
                | zbus::fdo::Error::TimedOut(_)
                | zbus::fdo::Error::Timeout(_)
                | zbus::fdo::Error::NoServer(_)
                | zbus::fdo::Error::SpawnChildExited(_)
                | zbus::fdo::Error::SpawnChildSignaled(_)
                | zbus::fdo::Error::SpawnFailed(_)
        ),
        zbus::Error::MethodError(name, _, _) => matches!(
            name.as_str(),
            "org.freedesktop.DBus.Error.ServiceUnknown"
                | "org.freedesktop.DBus.Error.NameHasNoOwner"
                | "org.freedesktop.DBus.Error.NoReply"
        ),
        zbus::Error::InputOutput(_) => true,
        _ => false,
    }
}

/// Doubling pauses between attempts, within a deadline.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub(crate) fn new(first: Duration, max: Duration) -> Self {
        Self { next: first, max }
    }

    /// Sleeps before the next attempt; `false` when that would pass `deadline`.
    pub(crate) async fn wait(&mut self, deadline: Instant) -> bool {
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        let pause = self.next.min(deadline - now);
        self.next = (self.next * 2).min(self.max);
        tokio::time::sleep(pause).await;
        true
    }
}

/// Runs `prompt` as a turn in session `cron:<job_id>` with request id `run_id`, for the person
/// `owner_uid` who created the job, and returns the agent's final answer.
///
/// # Errors
/// The agent's own error, a refusal, or the limits running out.
pub async fn ask_agent(
    connection: &Connection,
    job_id: &str,
    owner_uid: u32,
    run_id: &str,
    prompt: &str,
    limits: TurnLimits,
) -> Result<String, TurnError> {
    let session_key = format!("cron:{job_id}");
    let options = VariantDict::from([
        (
            "request_id".to_owned(),
            OwnedVariant::from(zbus::Str::from(run_id.to_owned())),
        ),
        ("create".to_owned(), OwnedVariant::from(true)),
        // The turn is the job owner's (their sessions, memory and workspace), not the
        // scheduler's: the agent accepts this from the scheduler's user only.
        ("on_behalf_of".to_owned(), OwnedVariant::from(owner_uid)),
        // A job's turn speaks for whoever created the job, not for the owner at a terminal:
        // its tool calls run narrowed, and what it writes to memory waits for approval.
        (
            "surface".to_owned(),
            OwnedVariant::from(zbus::Str::from(
                talaria_core::Surface::AllowlistedUser.name(),
            )),
        ),
    ]);
    let turn_deadline = Instant::now() + limits.turn;
    let mut backoff = Backoff::new(limits.first_backoff, limits.max_backoff);
    // When the agent first became unreachable in the current stretch of absence.
    let mut absent_since: Option<Instant> = None;
    let mut submissions = 0_u32;
    loop {
        // A fresh proxy per attempt resolves the agent's current unique name, so events from
        // a restarted agent are not filtered out as coming from a stranger.
        let attempt = async {
            let agent = AgentProxy::builder(connection)
                .cache_properties(zbus::proxy::CacheProperties::No)
                .build()
                .await?;
            // Subscribe before submitting: a quick agent may finish before submit returns.
            let events = agent.receive_turn_event_with_args(&[(0, run_id)]).await?;
            let owners = agent.inner().receive_owner_changed().await?;
            let turn_id = agent.submit_turn(&session_key, prompt, &options).await?;
            // Who took the turn, so its own name acquisition (activation) is not mistaken for
            // a restart.
            let owner = fdo::DBusProxy::new(connection)
                .await?
                .get_name_owner(names::AGENT.try_into()?)
                .await
                .ok()
                .map(|owner| owner.to_string());
            Ok::<_, zbus::Error>((events, owners, turn_id, owner))
        };
        let submitted = match tokio::time::timeout_at(turn_deadline, attempt).await {
            Err(_) => return Err(TurnError::TimedOut(limits.turn)),
            Ok(result) => result,
        };
        submissions += 1;
        let (mut events, mut owners, turn_id, owner) = match submitted {
            Ok(streams) => streams,
            Err(error) if is_transient(&error) => {
                let since = *absent_since.get_or_insert_with(Instant::now);
                let deadline = (since + limits.agent_absent).min(turn_deadline);
                tracing::info!(run_id, %error, "the agent is unreachable; submitting again after a pause");
                if !backoff.wait(deadline).await {
                    return Err(TurnError::Unreachable(
                        limits.agent_absent,
                        error.to_string(),
                    ));
                }
                continue;
            }
            Err(error) => return Err(TurnError::Refused(error)),
        };
        absent_since = None;
        backoff = Backoff::new(limits.first_backoff, limits.max_backoff);
        if turn_id != run_id {
            // The contract says the turn id is the request id; events are filtered by it.
            tracing::warn!(
                run_id,
                turn_id,
                "the agent named the turn differently from its request id"
            );
        }
        tracing::debug!(run_id, submissions, "turn submitted");
        let mut text = String::new();
        loop {
            tokio::select! {
                event = events.next() => {
                    let Some(event) = event else { break };
                    let args = event.args().map_err(TurnError::Bus)?;
                    match args.kind().parse::<TurnEventKind>() {
                        Ok(TurnEventKind::TextDelta) => {
                            if let Some(delta) = json_field(args.payload(), "text") {
                                text.push_str(&delta);
                            }
                        }
                        Ok(TurnEventKind::Done) => {
                            return Ok(json_field(args.payload(), "text").unwrap_or(text));
                        }
                        Ok(TurnEventKind::Error) => {
                            let message = json_field(args.payload(), "message")
                                .unwrap_or_else(|| args.payload().to_string());
                            // The agent could not store the answer and keeps the request
                            // running; it resumes it, so ask again rather than give up.
                            if json_field(args.payload(), "kind").as_deref() == Some("store") {
                                tracing::warn!(run_id, %message, "the agent will resume the turn; submitting again");
                                break;
                            }
                            return Err(TurnError::Agent(message));
                        }
                        Ok(TurnEventKind::Notice) => {
                            if let Some(notice) = json_field(args.payload(), "text") {
                                tracing::info!(run_id, %notice, "agent notice during a job");
                            }
                        }
                        Ok(TurnEventKind::ToolStarted | TurnEventKind::ToolFinished) | Err(_) => {}
                    }
                }
                change = owners.next() => {
                    let new_owner = change.flatten().map(|o| o.to_string());
                    if new_owner.is_some() && new_owner == owner {
                        continue;
                    }
                    // Gone (None) or replaced by a new process: either way, ask again.
                    tracing::info!(run_id, ?new_owner,
                        "the agent went away during the turn; submitting the same request again");
                    break;
                }
                () = tokio::time::sleep_until(turn_deadline) => {
                    return Err(TurnError::TimedOut(limits.turn));
                }
            }
        }
        absent_since.get_or_insert_with(Instant::now);
        if !backoff.wait(turn_deadline).await {
            return Err(TurnError::TimedOut(limits.turn));
        }
    }
}

/// A string field of a JSON object payload.
fn json_field(payload: &str, key: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(payload).ok()?;
    value.get(key)?.as_str().map(str::to_owned)
}
