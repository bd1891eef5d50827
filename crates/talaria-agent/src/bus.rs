//! The agent unit on the bus: [`AgentService`] serves `org.talaria.Agent1` over the same
//! [`Agent`] loop `talaria chat` runs; its tools go to the executor unit through
//! [`talaria_bus::exec::ExecutorClient`].
//!
//! Turns are requests with idempotency ids. Starting one stores its user message in the same
//! transaction that records it as running; the loop stores every step; the answer is stored
//! before it is announced. So a caller that submits the same id again — after its own restart
//! or the agent's — gets the running turn's remaining events, the stored answer, or the
//! resumed turn, and a turn is never run twice.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use talaria_bus::turn::{StopReason, TurnErrorKind, TurnEvent as WireEvent};
use talaria_bus::{Error, SessionMatch, SessionSummary, VariantDict, ids};
use talaria_core::{Person, SessionId, Surface, UserId};
use talaria_daemon::{Activity, Callers};
use talaria_store::{RequestState, SessionKey, SessionScope, TurnRequest};
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;
use zbus::message::Header;
use zbus::names::{BusName, OwnedUniqueName};
use zbus::object_server::SignalEmitter;
use zbus::{Connection, OwnedVariant, fdo, interface};

use crate::agent::{Agent, Session, TurnEvent, TurnOutcome, TurnStop};

/// What the service is configured with.
#[derive(Debug, Clone)]
pub struct AgentServiceConfig {
    /// The model for new sessions (a submit's `model` option overrides it).
    pub default_model: String,
    /// The directory new bus sessions work in (the policies' `${workspace}`).
    pub workspace: PathBuf,
    /// Who may call: see [`Callers`].
    pub callers: Callers,
    /// Callers that may run a turn for someone else (`on_behalf_of`): the scheduler's user,
    /// running a job for the person who created it.
    pub deputies: Callers,
    /// Gives a resumed session its stored provider back (none: the configured one).
    pub restore: Option<Arc<crate::daemon::ProviderRestore>>,
}

/// Serves `org.talaria.Agent1` over an [`Agent`].
#[derive(Debug, Clone)]
pub struct AgentService {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    agent: Agent,
    config: AgentServiceConfig,
    activity: Activity,
    /// Turns running in this process, by request id.
    turns: Mutex<HashMap<String, Arc<RunningTurn>>>,
    /// One turn at a time per session: a conversation is a sequence.
    session_locks: Mutex<HashMap<SessionId, Arc<Mutex<()>>>>,
}

#[derive(Debug)]
struct RunningTurn {
    owner_uid: u32,
    cancel: CancellationToken,
    /// Who gets the events: the connection that last submitted this request id.
    destination: std::sync::Mutex<Option<OwnedUniqueName>>,
}

fn invalid(message: impl Into<String>) -> Error {
    fdo::Error::InvalidArgs(message.into()).into()
}

fn internal(error: impl std::fmt::Display) -> Error {
    fdo::Error::Failed(error.to_string()).into()
}

fn option<T: TryFrom<OwnedVariant>>(
    options: &VariantDict,
    key: &str,
    signature: &str,
) -> Result<Option<T>, Error> {
    let Some(value) = options.get(key) else {
        return Ok(None);
    };
    let wrong = || invalid(format!("option {key} must be of type {signature}"));
    let owned = value.try_clone().map_err(|_| wrong())?;
    T::try_from(owned).map(Some).map_err(|_| wrong())
}

impl AgentService {
    pub fn new(agent: Agent, config: AgentServiceConfig, activity: Activity) -> Self {
        Self {
            inner: Arc::new(Inner {
                agent,
                config,
                activity,
                turns: Mutex::new(HashMap::new()),
                session_locks: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The caller's uid, if it may call the agent at all.
    async fn caller(&self, connection: &Connection, header: &Header<'_>) -> Result<u32, Error> {
        Ok(self
            .inner
            .config
            .callers
            .check(connection, header, "org.talaria.Agent1")
            .await?)
    }

    /// Resume every request a crash or stop left running. Their events go nowhere until the
    /// caller submits the id again; their answers are stored either way.
    ///
    /// # Errors
    /// A store error.
    pub async fn resume_interrupted(&self, connection: &Connection) -> Result<usize, String> {
        let running = self
            .inner
            .agent
            .store()
            .running_requests()
            .await
            .map_err(|e| e.to_string())?;
        let count = running.len();
        let mut turns = self.inner.turns.lock().await;
        for request in running {
            tracing::info!(request_id = %request.request_id, session_key = %request.session_key, "resuming a turn interrupted by a stop or crash");
            let handle = self.spawn_turn(connection, request, None, true);
            turns.insert(handle.0, handle.1);
        }
        Ok(count)
    }

    /// Start the turn task; returns the request id and its handle.
    fn spawn_turn(
        &self,
        connection: &Connection,
        request: TurnRequest,
        destination: Option<OwnedUniqueName>,
        resume: bool,
    ) -> (String, Arc<RunningTurn>) {
        let running = Arc::new(RunningTurn {
            owner_uid: request.owner_uid,
            cancel: CancellationToken::new(),
            destination: std::sync::Mutex::new(destination),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let request_id = request.request_id.clone();
        tokio::spawn(forward_events(
            connection.clone(),
            request_id.clone(),
            running.clone(),
            rx,
        ));
        let service = self.clone();
        let task_running = running.clone();
        let busy = self.inner.activity.busy();
        tokio::spawn(async move {
            let _busy = busy;
            let request_id = request.request_id.clone();
            let session_key = request.session_key.clone();
            let result = service
                .run_turn_task(request, resume, &task_running.cancel, &tx)
                .await;
            let stored = match &result {
                Ok(outcome) => (Ok(outcome.text.clone()), outcome.stop),
                Err(message) => (Err(message.clone()), TurnStop::Completed),
            };
            if let Err(e) = service
                .inner
                .agent
                .store()
                .finish_request(&request_id, stored.0)
                .await
            {
                tracing::error!(error = %e, %request_id, "cannot store the turn's result; it will be resumed");
                // The request stays running in the store: a resubmission (or the next start)
                // resumes it, so the client must keep waiting.
                let _ = tx.send(WireEvent::Error {
                    message: format!("the agent could not store the answer: {e}"),
                    kind: TurnErrorKind::Store,
                    alive: true,
                });
            } else {
                let _ = tx.send(match result {
                    Ok(outcome) => WireEvent::Done {
                        text: outcome.text,
                        stop: stop_reason(outcome.stop),
                        session_key,
                    },
                    Err(message) => WireEvent::Error {
                        message,
                        kind: TurnErrorKind::Turn,
                        alive: false,
                    },
                });
            }
            drop(tx);
            service.inner.turns.lock().await.remove(&request_id);
        });
        (request_id, running)
    }

    async fn run_turn_task(
        &self,
        request: TurnRequest,
        resume: bool,
        cancel: &CancellationToken,
        events: &mpsc::UnboundedSender<WireEvent>,
    ) -> Result<TurnOutcome, String> {
        let agent = &self.inner.agent;
        let lock = {
            let mut locks = self.inner.session_locks.lock().await;
            locks.entry(request.session_id.clone()).or_default().clone()
        };
        let _one_at_a_time = lock.lock().await;
        let mut session: Session = agent
            .resume_session(&request.session_id)
            .await
            .map_err(|e| e.to_string())?;
        // A bus person always works in their own directory, also in a session stored before
        // workspaces were per person (or whose directory has since been removed).
        if let Person::Remote { uid, user } = &session.person {
            let workspace = person_workspace(&self.inner.config.workspace, *uid, user)
                .map_err(|e| e.to_string())?;
            session.cwd.clone_from(&workspace);
            session.workspace = workspace;
        }
        if let Some(restore) = &self.inner.config.restore {
            crate::endpoint::restore_session_provider(
                agent,
                &mut session,
                &restore.endpoint,
                &restore.config,
                &restore.config_path,
            )
            .await
            .map_err(|e| format!("{e:#}"))?;
        }
        let on_event = |event: TurnEvent| {
            let outgoing = match event {
                TurnEvent::TextDelta(text) => WireEvent::TextDelta { text },
                TurnEvent::ToolStarted { summary } => WireEvent::ToolStarted { summary },
                TurnEvent::ToolFinished {
                    summary,
                    ok,
                    duration,
                } => WireEvent::ToolFinished {
                    summary,
                    ok,
                    duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
                },
                TurnEvent::ModelCallDone => return,
                TurnEvent::Notice(text) => WireEvent::Notice { text },
            };
            let _ = events.send(outgoing);
        };
        let outcome = if resume {
            agent.resume_request(&mut session, &on_event, cancel).await
        } else {
            agent
                .run_request(&mut session, request, &on_event, cancel)
                .await
        };
        agent.end_session(&session);
        outcome.map_err(|e| e.to_string())
    }

    /// The key a bus caller knows session `id` by (every session in a bus person's scope has
    /// one).
    async fn key_of(&self, id: &SessionId) -> Result<Option<String>, Error> {
        Ok(self
            .inner
            .agent
            .store()
            .key_of_session(id)
            .await
            .map_err(internal)?
            .map(|k| k.key))
    }

    /// The session a key names for `uid` and `user`, created when `create` is set. A session
    /// is narrowed to `surface` when that is narrower than its own; it is never widened.
    async fn session_for(
        &self,
        key: &str,
        uid: u32,
        user: &UserId,
        create: bool,
        model: Option<String>,
        surface: Surface,
    ) -> Result<SessionId, Error> {
        let store = self.inner.agent.store();
        if let Some(found) = store.session_key(key).await.map_err(internal)? {
            // A session talks to one person: the same caller naming another user is refused
            // too, so one person can never continue (or read through) another's conversation.
            if (found.owner_uid != uid && uid != 0) || &found.user != user {
                return Err(fdo::Error::AccessDenied(format!(
                    "session {key} belongs to another user"
                ))
                .into());
            }
            if surface > found.surface {
                store
                    .narrow_session_surface(key, surface)
                    .await
                    .map_err(internal)?;
            }
            return Ok(found.session_id);
        }
        if !create {
            return Err(Error::UnknownSession(format!(
                "no session {key:?}; submit with create=true to start one"
            )));
        }
        let workspace = person_workspace(&self.inner.config.workspace, uid, user)?;
        let model = model.unwrap_or_else(|| self.inner.config.default_model.clone());
        let session = self
            .inner
            .agent
            .new_session_for(
                workspace,
                &model,
                "bus",
                &Person::Remote {
                    uid,
                    user: user.clone(),
                },
                surface,
            )
            .await
            .map_err(internal)?;
        let bound = store
            .bind_session_key(SessionKey {
                key: key.to_owned(),
                owner_uid: uid,
                user: user.clone(),
                session_id: session.id.clone(),
                surface,
            })
            .await;
        match bound {
            Ok(()) => Ok(session.id),
            // Two callers raced to create the same key: use the winner's session.
            Err(talaria_store::StoreError::SessionExists(_)) => {
                let _ = store.delete_session(&session.id).await;
                Box::pin(self.session_for(key, uid, user, false, None, surface)).await
            }
            Err(e) => Err(internal(e)),
        }
    }
}

/// The sessions a bus caller may list and search: the person `uid` vouches for as `user`
/// (empty: the default user), exactly the scope of that person's own `session_search`.
/// The directory a bus person works in: `<base>/<uid>/<user>`, made mode 0700 when missing.
/// One per person, so no key holder or platform user reads or plants another's files (and an
/// `AGENTS.md` one of them writes is never another's project instructions). `user` is a
/// [`UserId`], safe as one path component.
fn person_workspace(base: &std::path::Path, uid: u32, user: &UserId) -> Result<PathBuf, Error> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = base.join(uid.to_string()).join(user.as_str());
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| {
            internal(format!(
                "cannot create the workspace {}: {e}",
                dir.display()
            ))
        })?;
    Ok(dir)
}

fn person_scope(uid: u32, user: &str) -> Result<SessionScope, Error> {
    let user = if user.is_empty() {
        UserId::default_user()
    } else {
        UserId::parse(user).map_err(|e| invalid(e.to_string()))?
    };
    let person = Person::Remote { uid, user };
    Ok(SessionScope::of(&person, uid))
}

fn stop_reason(stop: TurnStop) -> StopReason {
    match stop {
        TurnStop::Completed => StopReason::Completed,
        TurnStop::BudgetExhausted => StopReason::BudgetExhausted,
        TurnStop::Interrupted => StopReason::Interrupted,
    }
}

/// Sends one event as a unicast `TurnEvent` signal to `destination`.
async fn emit(
    connection: &Connection,
    destination: OwnedUniqueName,
    turn_id: &str,
    event: &WireEvent,
) {
    let (kind, payload) = match event.to_wire() {
        Ok(wire) => wire,
        Err(e) => {
            tracing::error!(error = %e, %turn_id, "cannot encode a turn event");
            return;
        }
    };
    let emitter = match SignalEmitter::new(connection, talaria_bus::paths::AGENT) {
        Ok(emitter) => emitter.set_destination(BusName::Unique(destination.into())),
        Err(e) => {
            tracing::warn!(error = %e, "cannot emit turn events");
            return;
        }
    };
    if let Err(e) = AgentService::turn_event(&emitter, turn_id, kind, &payload).await {
        tracing::debug!(error = %e, %turn_id, "turn event not delivered");
    }
}

/// Sends a turn's events as unicast `TurnEvent` signals to whoever submitted it last.
async fn forward_events(
    connection: Connection,
    turn_id: String,
    running: Arc<RunningTurn>,
    mut events: mpsc::UnboundedReceiver<WireEvent>,
) {
    while let Some(event) = events.recv().await {
        let destination = running.destination.lock().ok().and_then(|d| d.clone());
        let Some(destination) = destination else {
            continue;
        };
        emit(&connection, destination, &turn_id, &event).await;
    }
}

/// Re-announces a finished request's outcome to the caller who asked again.
async fn replay(
    connection: Connection,
    turn_id: String,
    destination: OwnedUniqueName,
    request: TurnRequest,
) {
    let event = match request.state {
        // The store keeps the answer, not why the turn stopped: a replayed answer says
        // `completed` (a client that saw the first `done` recorded the real reason).
        RequestState::Done => WireEvent::Done {
            text: request.answer.unwrap_or_default(),
            stop: StopReason::Completed,
            session_key: request.session_key,
        },
        _ => WireEvent::Error {
            message: request.error.unwrap_or_default(),
            kind: TurnErrorKind::Turn,
            alive: false,
        },
    };
    emit(&connection, destination, &turn_id, &event).await;
}

#[interface(name = "org.talaria.Agent1")]
impl AgentService {
    #[zbus(out_args("turn_id"))]
    async fn submit_turn(
        &self,
        session_key: String,
        text: String,
        options: VariantDict,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<String, Error> {
        let _busy = self.inner.activity.busy();
        let caller = self.caller(connection, &header).await?;
        // A deputy (the scheduler) runs a job for the person who created it: the turn is that
        // person's — their sessions, memory and workspace — not the deputy's, so a person
        // polkit let schedule a job cannot borrow the scheduler's rights. Only a configured
        // deputy may say so; anyone else naming another uid is refused.
        let uid = match option::<u32>(&options, "on_behalf_of", "u")? {
            None => caller,
            Some(person) if person == caller || self.inner.config.deputies.allows(caller) => person,
            Some(person) => {
                return Err(fdo::Error::AccessDenied(format!(
                    "uid {caller} may not submit on behalf of uid {person}: only the scheduler's user may"
                ))
                .into());
            }
        };
        let sender: Option<OwnedUniqueName> = header.sender().map(|s| s.to_owned().into());
        let request_id = match option::<String>(&options, "request_id", "s")? {
            Some(id) => {
                ids::check_request_id(&id)
                    .map_err(|e| invalid(format!("option request_id: {e}")))?;
                id
            }
            None => format!("turn-{:016x}", fastrand::u64(..)),
        };
        let create = option::<bool>(&options, "create", "b")?.unwrap_or(false);
        let model = option::<String>(&options, "model", "s")?;
        let user = match option::<String>(&options, "user", "s")? {
            Some(user) => UserId::parse(&user).map_err(|e| invalid(e.to_string()))?,
            None => UserId::default_user(),
        };
        // Who the person is to the sandbox: what the caller says, and the narrowest when it
        // says nothing. A name this version does not know is refused, not guessed at.
        let surface = match option::<String>(&options, "surface", "s")? {
            Some(name) => name
                .parse::<Surface>()
                .map_err(|e| invalid(format!("option surface: {e}")))?,
            None => Surface::NARROWEST,
        };
        ids::check_session_key(&session_key).map_err(|e| invalid(e.to_string()))?;

        let mut turns = self.inner.turns.lock().await;
        if let Some(running) = turns.get(&request_id) {
            if running.owner_uid != uid && uid != 0 {
                return Err(fdo::Error::AccessDenied(format!(
                    "request {request_id} belongs to another user"
                ))
                .into());
            }
            if let Ok(mut destination) = running.destination.lock() {
                *destination = sender;
            }
            return Ok(request_id);
        }
        let store = self.inner.agent.store();
        if let Some(existing) = store.turn_request(&request_id).await.map_err(internal)? {
            if existing.owner_uid != uid && uid != 0 {
                return Err(fdo::Error::AccessDenied(format!(
                    "request {request_id} belongs to another user"
                ))
                .into());
            }
            if existing.state == RequestState::Running {
                // Left running by a crash and not resumed yet (resume_interrupted races us).
                let (id, handle) = self.spawn_turn(connection, existing, sender, true);
                turns.insert(id, handle);
            } else if let Some(destination) = sender {
                tokio::spawn(replay(
                    connection.clone(),
                    request_id.clone(),
                    destination,
                    existing,
                ));
            }
            return Ok(request_id);
        }
        if text.trim().is_empty() {
            return Err(invalid("text is empty"));
        }
        let session_id = self
            .session_for(&session_key, uid, &user, create, model.clone(), surface)
            .await?;
        if let Some(model) = model {
            let mut session = self
                .inner
                .agent
                .resume_session(&session_id)
                .await
                .map_err(internal)?;
            self.inner
                .agent
                .set_model(&mut session, &model)
                .await
                .map_err(internal)?;
        }
        let request = TurnRequest {
            request_id: request_id.clone(),
            owner_uid: uid,
            session_key,
            session_id,
            text,
            state: RequestState::Running,
            answer: None,
            error: None,
        };
        let (id, handle) = self.spawn_turn(connection, request, sender, false);
        turns.insert(id, handle);
        Ok(request_id)
    }

    async fn cancel_turn(
        &self,
        turn_id: String,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<(), Error> {
        let uid = self.caller(connection, &header).await?;
        self.inner.activity.touch();
        let turns = self.inner.turns.lock().await;
        match turns.get(&turn_id) {
            Some(running) if running.owner_uid == uid || uid == 0 => {
                running.cancel.cancel();
                Ok(())
            }
            Some(_) => Err(fdo::Error::AccessDenied(format!(
                "turn {turn_id} belongs to another user"
            ))
            .into()),
            None => Err(invalid(format!("no running turn {turn_id}"))),
        }
    }

    #[zbus(out_args("sessions"))]
    async fn list_sessions(
        &self,
        user: String,
        limit: u32,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<Vec<SessionSummary>, Error> {
        let uid = self.caller(connection, &header).await?;
        self.inner.activity.touch();
        let scope = person_scope(uid, &user)?;
        let store = self.inner.agent.store();
        let sessions = store
            .recent_sessions(scope, None, limit as usize)
            .await
            .map_err(internal)?;
        let mut out = Vec::with_capacity(sessions.len());
        for record in sessions {
            let Some(key) = self.key_of(&record.id).await? else {
                continue;
            };
            out.push(SessionSummary {
                id: key,
                title: record.title.unwrap_or_default(),
                model: record.model,
                updated_at_ms: record.updated_at,
                message_count: record.message_count,
            });
        }
        Ok(out)
    }

    #[zbus(out_args("matches"))]
    async fn search_sessions(
        &self,
        user: String,
        query: String,
        limit: u32,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<Vec<SessionMatch>, Error> {
        let uid = self.caller(connection, &header).await?;
        self.inner.activity.touch();
        let scope = person_scope(uid, &user)?;
        // The store filters by the person in SQL: others' sessions never leave it.
        let hits = self
            .inner
            .agent
            .store()
            .search_sessions(&query, scope, None, limit as usize)
            .await
            .map_err(internal)?;
        let mut out = Vec::with_capacity(hits.len());
        for hit in hits {
            let Some(key) = self.key_of(&hit.session_id).await? else {
                continue;
            };
            out.push(SessionMatch {
                session_id: key,
                title: hit.title.unwrap_or_default(),
                updated_at_ms: hit.updated_at,
                snippet: hit.snippet,
            });
        }
        Ok(out)
    }

    #[zbus(signal)]
    async fn turn_event(
        emitter: &SignalEmitter<'_>,
        turn_id: &str,
        kind: &str,
        payload: &str,
    ) -> zbus::Result<()>;
}
