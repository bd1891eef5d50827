//! Requests in flight: one driver task per request id submits it to the agent, resubmits it
//! (same request id, so the agent never runs it twice) whenever the agent goes away or cannot
//! be reached, until the turn ends or the deadline passes, and records the outcome in the
//! outbox before anyone is told.
//!
//! HTTP handlers never talk to the agent themselves: they attach to the driver and watch its
//! progress, so a client that disconnects, retries with the same `Idempotency-Key` or polls
//! `/v1/requests/{id}` sees the same single run. A driver that gives up (agent unavailable,
//! turn too slow, gateway stopping) leaves the request pending in the inbox; it is
//! resubmitted when the agent next appears and when the gateway next starts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use talaria_bus::AgentClient;
use talaria_bus::client::{GaveUp as ClientGaveUp, TurnLimits, TurnObserver, TurnRequest};
use talaria_bus::turn::TurnEvent;
use talaria_core::Surface;
use talaria_daemon::Activity;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::agent::outcome_of;
use crate::keys::ApiKeys;
use crate::limits::TurnSlot;
use crate::platforms;
use crate::store::{
    FailureCode, InboxRow, Outcome, RequestState, Store, StoreError, StoredFailure,
};

/// First wait before submitting again after the agent could not be reached.
const MIN_BACKOFF: Duration = Duration::from_millis(200);
/// Longest wait between two submissions while the agent is away.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long one `SubmitTurn` call may take (it includes D-Bus activation of the agent).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// What a driver has to report, watched by every client of the request.
#[derive(Debug, Clone, Default)]
pub struct TurnProgress {
    /// The agent accepted the request in this run of the driver.
    pub accepted: bool,
    /// Assistant text so far, append-only: what a streaming client has been or will be sent.
    pub text: String,
    /// Set once, last.
    pub finished: Option<TurnResult>,
}

/// How a driver ended.
#[derive(Debug, Clone)]
pub enum TurnResult {
    /// The outcome, as recorded in the outbox.
    Done(Outcome),
    /// No outcome; the request stays pending in the inbox.
    GaveUp(GaveUp),
}

/// Why a driver stopped without an outcome.
#[derive(Debug, Clone)]
pub enum GaveUp {
    /// The agent never took the request before the deadline.
    Unavailable {
        waited: Duration,
        last_error: String,
    },
    /// The agent took the request but did not finish it before the deadline.
    TimedOut { waited: Duration },
    /// The outcome could not be recorded, so it is not reported either.
    Storage(String),
    /// The gateway is stopping, or lost its bus connection.
    Stopping(String),
}

/// What drivers need.
#[derive(Debug, Clone)]
pub struct TurnContext {
    pub store: Store,
    pub link: AgentClient,
    /// Which keys are trusted (the owner's own).
    pub keys: ApiKeys,
    pub activity: Activity,
    pub turn_timeout: Duration,
    pub stopping: CancellationToken,
}

/// The drivers in flight, by request id.
#[derive(Debug)]
pub struct Turns {
    context: TurnContext,
    live: Mutex<HashMap<String, watch::Receiver<TurnProgress>>>,
}

impl Turns {
    pub fn new(context: TurnContext) -> Arc<Self> {
        Arc::new(Self {
            context,
            live: Mutex::new(HashMap::new()),
        })
    }

    /// The progress of `row`'s driver, starting one if none runs. A new driver holds `slot`
    /// (one of its key's running turns) until it ends.
    pub fn attach_or_start(
        self: &Arc<Self>,
        row: InboxRow,
        slot: Option<TurnSlot>,
    ) -> watch::Receiver<TurnProgress> {
        let Ok(mut live) = self.live.lock() else {
            let (sender, receiver) = watch::channel(TurnProgress::default());
            sender.send_modify(|p| {
                p.finished = Some(TurnResult::GaveUp(GaveUp::Stopping(
                    "turn registry poisoned".into(),
                )));
            });
            return receiver;
        };
        if let Some(progress) = live.get(&row.request_id) {
            return progress.clone();
        }
        let (sender, receiver) = watch::channel(TurnProgress::default());
        live.insert(row.request_id.clone(), receiver.clone());
        drop(live);
        tokio::spawn(Arc::clone(self).drive(row, sender, slot));
        receiver
    }

    /// Whether a driver for `request_id` runs now.
    pub fn is_live(&self, request_id: &str) -> bool {
        self.live
            .lock()
            .is_ok_and(|live| live.contains_key(request_id))
    }

    /// Starts a driver for every pending request that has none; returns how many started.
    ///
    /// # Errors
    /// The inbox cannot be read.
    pub async fn recover(self: &Arc<Self>) -> Result<usize, StoreError> {
        let pending = self.context.store.pending().await?;
        let mut started = 0;
        for row in pending {
            if self.is_live(&row.request_id) {
                continue;
            }
            tracing::info!(
                request_id = row.request_id,
                state = row.state.as_str(),
                "resubmitting an unanswered request"
            );
            started += 1;
            drop(self.attach_or_start(row, None));
        }
        Ok(started)
    }

    async fn drive(
        self: Arc<Self>,
        row: InboxRow,
        progress: watch::Sender<TurnProgress>,
        _slot: Option<TurnSlot>,
    ) {
        let _busy = self.context.activity.busy();
        let result = self.run(&row, &progress).await;
        match &result {
            TurnResult::Done(Outcome::Answered(_)) => {
                tracing::info!(request_id = row.request_id, "answered");
            }
            TurnResult::Done(Outcome::Failed(failure)) => {
                tracing::info!(
                    request_id = row.request_id,
                    code = failure.code.as_str(),
                    message = failure.message,
                    "failed"
                );
            }
            TurnResult::GaveUp(why) => {
                tracing::warn!(
                    request_id = row.request_id,
                    ?why,
                    "stopped waiting; the request stays pending"
                );
            }
        }
        progress.send_modify(|p| {
            if let TurnResult::Done(Outcome::Answered(answer)) = &result
                && answer.text.starts_with(p.text.as_str())
            {
                // Streaming clients get whatever the deltas did not carry.
                p.text.clone_from(&answer.text);
            }
            p.finished = Some(result);
        });
        if let Ok(mut live) = self.live.lock() {
            live.remove(&row.request_id);
        }
    }

    async fn run(&self, row: &InboxRow, progress: &watch::Sender<TurnProgress>) -> TurnResult {
        let context = &self.context;
        if let Some(failure) = unsendable(row) {
            // Submitting it would get this gateway's bus connection dropped: fail the request
            // instead, so it is answered and never resubmitted (rows accepted before the HTTP
            // edge checked for this land here after an upgrade).
            tracing::warn!(
                request_id = row.request_id,
                reason = failure.message,
                "cannot send the request to the agent"
            );
            return self.finish(row, Outcome::Failed(failure)).await;
        }
        let turn = TurnRequest {
            request_id: &row.request_id,
            session_key: &row.session_key,
            text: &row.text,
            create: row.create_session,
            model: row.model.as_deref(),
            // Who the agent is talking to: the person's id on their platform (for the HTTP API,
            // the key's id), so each has their own USER memory and search scope.
            user: Some(&row.person.user),
            on_behalf_of: None,
            // The owner's own (trusted) key is the owner: the profile as written, memory and
            // skill writes direct. Any other key holder is someone the owner let in: their tool
            // calls run narrowed and their writes wait for approval. Asked at every submission,
            // so a key no longer trusted (or removed) stops being the owner at once; the agent
            // never widens a session it already narrowed.
            surface: if row.person.platform == platforms::api::NAME
                && context.keys.is_trusted(&row.person.user)
            {
                Surface::Owner
            } else {
                Surface::AllowlistedUser
            },
        };
        let limits = TurnLimits {
            turn: context.turn_timeout,
            // The gateway has one patience: the client's request deadline.
            agent_absent: context.turn_timeout,
            first_backoff: MIN_BACKOFF,
            max_backoff: MAX_BACKOFF,
            call_timeout: CALL_TIMEOUT,
        };
        let mut observer = Progress {
            store: &context.store,
            request_id: &row.request_id,
            progress,
        };
        let end = context
            .link
            .run_turn(&turn, &limits, &context.stopping, &mut observer)
            .await;
        match end {
            Ok(end) => self.finish(row, outcome_of(end)).await,
            Err(ClientGaveUp::Stopping(why)) => TurnResult::GaveUp(GaveUp::Stopping(why)),
            Err(ClientGaveUp::TimedOut { waited }) => {
                TurnResult::GaveUp(GaveUp::TimedOut { waited })
            }
            // Taken by the agent in an earlier run of the driver (or of the gateway): it is
            // the turn that is slow, whoever is reachable now.
            Err(ClientGaveUp::Unavailable { waited, .. })
                if row.state == RequestState::Submitted || progress.borrow().accepted =>
            {
                TurnResult::GaveUp(GaveUp::TimedOut { waited })
            }
            Err(ClientGaveUp::Unavailable { waited, last_error }) => {
                TurnResult::GaveUp(GaveUp::Unavailable { waited, last_error })
            }
        }
    }

    /// Records `outcome` in the outbox; what the outbox holds afterwards is the result.
    async fn finish(&self, row: &InboxRow, outcome: Outcome) -> TurnResult {
        match self.context.store.finish(&row.request_id, outcome).await {
            Ok(Some(stored)) => TurnResult::Done(stored),
            Ok(None) => TurnResult::GaveUp(GaveUp::Storage(format!(
                "request {} is not in the inbox",
                row.request_id
            ))),
            Err(error) => TurnResult::GaveUp(GaveUp::Storage(error.to_string())),
        }
    }
}

/// What the driver hears from the agent client, published to the request's watchers.
struct Progress<'a> {
    store: &'a Store,
    request_id: &'a str,
    progress: &'a watch::Sender<TurnProgress>,
}

#[async_trait::async_trait]
impl TurnObserver for Progress<'_> {
    async fn accepted(&mut self) {
        if self.progress.borrow().accepted {
            return;
        }
        if let Err(error) = self.store.mark_submitted(self.request_id).await {
            tracing::warn!(request_id = self.request_id, %error, "cannot mark the request submitted");
        }
        self.progress.send_modify(|p| p.accepted = true);
    }

    fn progress(&mut self, event: &TurnEvent) {
        match event {
            TurnEvent::TextDelta { text } if !text.is_empty() => {
                self.progress.send_modify(|p| p.text.push_str(text));
            }
            TurnEvent::TextDelta { .. }
            | TurnEvent::ToolStarted { .. }
            | TurnEvent::ToolFinished { .. }
            | TurnEvent::Notice { .. }
            | TurnEvent::Done { .. }
            | TurnEvent::Error { .. } => {}
        }
    }
}

/// The byte offset of the first NUL in `text`, if any. D-Bus strings cannot hold NUL, and the
/// bus daemon drops the connection of a peer that sends one, so no such string may ever reach
/// a bus call (Rust strings are valid UTF-8 already, the bus's other requirement).
pub fn nul_at(text: &str) -> Option<usize> {
    text.bytes().position(|b| b == 0)
}

/// Why `row` cannot be sent to the agent, if it cannot: a string of `SubmitTurn` holds a NUL.
pub fn unsendable(row: &InboxRow) -> Option<StoredFailure> {
    let fields = [
        ("text", Some(row.text.as_str())),
        ("session key", Some(row.session_key.as_str())),
        ("model", row.model.as_deref()),
        ("request id", Some(row.request_id.as_str())),
        ("person", Some(row.person.user.as_str())),
        ("source", Some(row.source.chat.as_str())),
    ];
    fields.into_iter().find_map(|(field, value)| {
        let at = nul_at(value?)?;
        Some(StoredFailure {
            code: FailureCode::Unsendable,
            kind: None,
            message: format!(
                "the request's {field} contains a NUL character at byte {at}, which cannot be sent over D-Bus"
            ),
        })
    })
}
