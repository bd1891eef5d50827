//! Sessions and the turn loop.
//!
//! A turn: persist the user's message; call the model with the transcript and the tools; if it
//! asks for tools, run them one at a time through the tool box and persist each result; repeat
//! until the model answers without tools or the iteration budget is spent. Every message is
//! written to the store before it joins the in-memory transcript, so the two never disagree.
//! Cancellation (Ctrl+C) drops the model request or kills the running tool; any tool call left
//! without a result gets an "interrupted" result so the transcript stays valid for the next turn.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use talaria_core::{Config, Message, Person, Role, SessionId, Surface, ToolCall, Usage, UsageTask};
use talaria_llm::{ChatProvider, ChatRequest, LlmError, StreamEvent};
use talaria_store::{NewSession, SessionScope, Store, StoreError, TurnRequest};
use tokio_util::sync::CancellationToken;

use crate::compress;
use crate::exec::ToolExecutor;
use crate::home::TalariaHome;
use crate::memory::MemoryFiles;
use crate::prompt::{PromptInputs, system_prompt};
use crate::skills::SkillLibrary;
use crate::tools::{TodoList, ToolBox, ToolContext, ToolError, summarize_call, truncate_output};

const INTERRUPTED_RESULT: &str = "error: interrupted by the user before this tool call finished";
const ABANDONED_RESULT: &str =
    "error: the session ended before this tool call finished; its effects are unknown";

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Llm(#[from] LlmError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no session with id {0}")]
    NoSuchSession(String),
    #[error("the session has no earlier message to {0}")]
    NothingToUndo(&'static str),
}

/// Knobs of the loop, from the `[agent]` and `[model]` configuration.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    pub max_iterations: u32,
    pub tool_output_max_chars: usize,
    pub terminal_timeout: Duration,
    pub stream: bool,
    pub memory_char_limit: usize,
    pub user_char_limit: usize,
    pub compress_at_percent: u8,
    pub compress_keep_last: usize,
    /// Offer rarely used tools through `tool_search` once all schemas pass this percentage of
    /// the context window.
    pub tool_search_at_percent: u8,
    /// The learning loop: catalogue budget, background review, memory nudge.
    pub skills: talaria_core::SkillsConfig,
}

impl AgentSettings {
    pub fn from_config(config: &Config) -> Self {
        Self {
            max_iterations: config.agent.max_iterations,
            tool_output_max_chars: config.agent.tool_output_max_chars,
            terminal_timeout: Duration::from_secs(config.agent.terminal_timeout_secs),
            stream: config.model.stream,
            memory_char_limit: config.memory.memory_char_limit,
            user_char_limit: config.memory.user_char_limit,
            compress_at_percent: config.agent.compress_at_percent,
            compress_keep_last: config.agent.compress_keep_last,
            tool_search_at_percent: config.agent.tool_search_at_percent,
            skills: config.skills.clone(),
        }
    }
}

/// What a turn reports while it runs.
#[derive(Debug, Clone, PartialEq)]
pub enum TurnEvent {
    /// Answer text as it streams in.
    TextDelta(String),
    /// A tool call is about to run.
    ToolStarted { summary: String },
    /// A tool call finished; `ok` is false when it produced an error result.
    ToolFinished {
        summary: String,
        ok: bool,
        duration: Duration,
    },
    /// The model finished a response that calls tools (text streamed before it is complete).
    ModelCallDone,
    /// Something the user should know that is not part of the answer: a switch to another key
    /// or model, a model restored, a compression that failed (one line).
    Notice(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnStop {
    /// The model answered without asking for more tools.
    Completed,
    /// `agent.max_iterations` model calls were made and the model still wanted tools.
    BudgetExhausted,
    /// The user interrupted the turn.
    Interrupted,
}

#[derive(Debug, Clone)]
pub struct TurnOutcome {
    /// The final answer (the last assistant text of the turn).
    pub text: String,
    pub stop: TurnStop,
    pub usage: Usage,
    pub tool_calls: usize,
    pub model_calls: u32,
    /// Untrusted content was in the turn's context (see [`crate::skills`]): a message from
    /// someone other than the owner, or a tool result from outside. Skill and memory writes
    /// made in the turn, and by its background review, are quarantined.
    pub untrusted_context: bool,
}

/// A conversation in memory, mirroring what the store holds.
#[derive(Debug)]
pub struct Session {
    pub id: SessionId,
    pub model: String,
    /// (seq in the store, message), in order.
    messages: Vec<(i64, Message)>,
    /// The directory the session started in: the policy's `${workspace}`.
    pub workspace: PathBuf,
    /// The terminal's current directory (moves with `cd`).
    pub cwd: PathBuf,
    /// The provider chosen with `/model provider:model` for this session, and its client;
    /// `None`: the agent's (the configured primary with its fallbacks).
    pub provider: Option<(String, Arc<dyn ChatProvider>)>,
    /// The compressed view: `summary` stands for messages from the protected head up to
    /// (not including) index `upto`. The messages themselves stay, here and in the store.
    compressed: Option<Compressed>,
    todos: TodoList,
    pub usage: Usage,
    /// Who the session talks to: decides its USER.md and which sessions it may search.
    pub person: Person,
    /// The surface that person came in on: it narrows every tool call's sandbox profile, and
    /// anything but the owner's makes the session's turns untrusted for the learning loop.
    pub surface: Surface,
    memory: MemoryFiles,
    search_scope: SessionScope,
    /// Lazy tools `tool_search` loaded: their schemas go with every later request.
    loaded_tools: std::collections::BTreeSet<String>,
}

#[derive(Debug, Clone)]
struct Compressed {
    upto: usize,
    summary: Message,
}

impl Session {
    pub fn messages(&self) -> impl DoubleEndedIterator<Item = &Message> {
        self.messages.iter().map(|(_, m)| m)
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }
}

/// The agent: a model provider, an executor for side effects, a store and a home.
#[derive(Debug, Clone)]
pub struct Agent {
    provider: Arc<dyn ChatProvider>,
    executor: Arc<dyn ToolExecutor>,
    store: Store,
    home: TalariaHome,
    settings: AgentSettings,
    tools: ToolBox,
    memory: MemoryFiles,
    /// What the catalogue knows about models (context windows); `None`: defaults.
    catalogue: Option<Arc<talaria_llm::Catalogue>>,
    /// The provider of `provider` in the catalogue.
    provider_name: String,
    skills: SkillLibrary,
    /// Background reviews and memory nudges still running.
    background: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Agent {
    pub fn new(
        provider: Arc<dyn ChatProvider>,
        executor: Arc<dyn ToolExecutor>,
        store: Store,
        home: TalariaHome,
        settings: AgentSettings,
    ) -> Self {
        let memory = MemoryFiles::new(
            home.memories_dir(),
            settings.memory_char_limit,
            settings.user_char_limit,
        );
        let skills = SkillLibrary::new(
            store.clone(),
            home.root().join("skills"),
            settings.skills.catalogue_budget_tokens,
        );
        Self {
            skills,
            background: Arc::default(),
            provider,
            executor,
            store,
            home,
            settings,
            tools: ToolBox::default(),
            memory,
            catalogue: None,
            provider_name: String::new(),
        }
    }

    /// Tell the agent what the catalogue knows and which of its providers `provider` is, so
    /// compression knows each model's context window.
    #[must_use]
    pub fn with_catalogue(
        mut self,
        catalogue: Arc<talaria_llm::Catalogue>,
        provider: &str,
    ) -> Self {
        self.catalogue = Some(catalogue);
        self.provider_name = provider.to_owned();
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn tools(&self) -> &ToolBox {
        &self.tools
    }

    /// Start a session: build the system prompt (identity, AGENTS.md, memory snapshot, skill
    /// catalogue) and persist it as the first message. The prompt is provisional until the
    /// first user message, which ranks the catalogue by what it asks and freezes the prompt.
    ///
    /// # Errors
    /// A store error.
    pub async fn new_session(
        &self,
        cwd: PathBuf,
        model: &str,
        source: &str,
    ) -> Result<Session, AgentError> {
        self.new_session_for(cwd, model, source, &Person::Owner, Surface::Owner)
            .await
    }

    /// [`Self::new_session`] for a session that talks to `person`, who came in on `surface`:
    /// the prompt's memory snapshot carries their USER.md, and every tool call is narrowed for
    /// `surface`.
    ///
    /// # Errors
    /// A store error.
    pub async fn new_session_for(
        &self,
        cwd: PathBuf,
        model: &str,
        source: &str,
        person: &Person,
        surface: Surface,
    ) -> Result<Session, AgentError> {
        let memory = self.memory.with_person(person);
        let now = jiff::Timestamp::now();
        let id = SessionId::from_parts(
            &now.strftime("%Y%m%d-%H%M%S").to_string(),
            fastrand::u32(..),
        );
        self.skills.sync_disk().await;
        // Provisional until the first user message ranks the catalogue (see `freeze_prompt`).
        let prompt = self.build_prompt(&cwd, &memory, None).await;
        self.store
            .create_session(NewSession {
                id: id.clone(),
                model: model.to_owned(),
                source: source.to_owned(),
                cwd: cwd.to_string_lossy().into_owned(),
            })
            .await?;
        let mut session = Session {
            id,
            model: model.to_owned(),
            messages: Vec::new(),
            workspace: cwd.clone(),
            cwd,
            todos: TodoList::default(),
            usage: Usage::default(),
            provider: None,
            compressed: None,
            search_scope: SessionScope::of(person, talaria_daemon::own_uid()),
            person: person.clone(),
            surface,
            memory,
            loaded_tools: Default::default(),
        };
        self.persist(&mut session, vec![Message::system(prompt)])
            .await?;
        Ok(session)
    }

    /// The system prompt of a session working in `cwd` whose memory is `memory`: identity,
    /// AGENTS.md, the memory snapshot and the skill catalogue, ranked by `request` when the
    /// library is larger than the catalogue's budget.
    async fn build_prompt(
        &self,
        cwd: &std::path::Path,
        memory: &MemoryFiles,
        request: Option<&str>,
    ) -> String {
        let soul = read_optional(&self.home.soul_file()).await;
        let agents_md = read_optional(&cwd.join("AGENTS.md")).await;
        let memory_snapshot = memory.snapshot().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "memory files unreadable; starting without the memory snapshot");
            None
        });
        let date = jiff::Timestamp::now()
            .to_zoned(jiff::tz::TimeZone::system())
            .strftime("%Y-%m-%d")
            .to_string();
        let skill_catalogue = self.skills.catalogue(request).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "skill registry unreadable; starting without the skill catalogue");
            None
        });
        system_prompt(&PromptInputs {
            skill_catalogue: skill_catalogue.as_deref(),
            soul: soul.as_deref(),
            agents_md: agents_md.as_deref(),
            cwd,
            date: &date,
            memory_snapshot: memory_snapshot.as_deref(),
        })
    }

    /// Before a session's first user message: build its prompt again with `request`, so a
    /// large catalogue lists the skills relevant to what was asked, and store it in place of
    /// the provisional one. Nothing has been sent to a model yet, so no cached prompt changes;
    /// from this message on the prompt is frozen (skills written later are found with
    /// skills_list).
    async fn freeze_prompt(&self, session: &mut Session, request: &str) -> Result<(), AgentError> {
        let [(seq, first)] = session.messages.as_slice() else {
            return Ok(());
        };
        if first.role != Role::System {
            return Ok(());
        }
        // A catalogue that lists every skill does not depend on the request: nothing to redo.
        if !self.skills.ranks_by_request().await.unwrap_or(true) {
            return Ok(());
        }
        let seq = *seq;
        let prompt = self
            .build_prompt(&session.workspace, &session.memory, Some(request))
            .await;
        if prompt == first.content {
            return Ok(());
        }
        self.store.truncate_from(&session.id, seq).await?;
        session.messages.clear();
        self.persist(session, vec![Message::system(prompt)]).await
    }

    /// Reopen a stored session. Tool calls a crash left without results get an explicit
    /// "ended before it finished" result, so the transcript is valid to send again.
    ///
    /// # Errors
    /// [`AgentError::NoSuchSession`] or a store error.
    pub async fn resume_session(&self, id: &SessionId) -> Result<Session, AgentError> {
        let record = self
            .store
            .session(id)
            .await?
            .ok_or_else(|| AgentError::NoSuchSession(id.to_string()))?;
        let stored = self.store.messages(id).await?;
        let messages: Vec<(i64, Message)> =
            stored.into_iter().map(|m| (m.seq, m.message)).collect();
        let plain: Vec<Message> = messages.iter().map(|(_, m)| m.clone()).collect();
        // A workspace that has since disappeared falls back to where talaria runs now.
        let stored = PathBuf::from(&record.cwd);
        let workspace = if stored.is_dir() {
            stored
        } else {
            std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"))
        };
        // A bus caller's key says who the session talks to and on which surface; a session
        // without one is the owner's at the CLI.
        let (person, surface) = match self.store.key_of_session(id).await? {
            Some(key) => (
                Person::Remote {
                    uid: key.owner_uid,
                    user: key.user,
                },
                key.surface,
            ),
            None => (Person::Owner, Surface::Owner),
        };
        let mut session = Session {
            search_scope: SessionScope::of(&person, talaria_daemon::own_uid()),
            memory: self.memory.with_person(&person),
            person,
            surface,
            id: record.id,
            model: record.model,
            todos: TodoList::from_transcript(&plain),
            provider: None,
            compressed: None,
            messages,
            workspace: workspace.clone(),
            cwd: workspace,
            usage: record.usage,
            loaded_tools: Default::default(),
        };
        let repairs = missing_results(&plain, ABANDONED_RESULT);
        if !repairs.is_empty() {
            tracing::info!(session = %session.id, count = repairs.len(), "closing tool calls left open by an earlier crash");
            self.persist(&mut session, repairs).await?;
        }
        Ok(session)
    }

    /// The session is closed for now (the user left or started another): release what the
    /// executor kept for it. The conversation stays in the store and can be resumed.
    pub fn end_session(&self, session: &Session) {
        self.executor.end_session(&session.id);
    }

    /// Change the model used from the next turn on, keeping the conversation.
    ///
    /// # Errors
    /// A store error.
    pub async fn set_model(&self, session: &mut Session, model: &str) -> Result<(), AgentError> {
        self.store.set_model(&session.id, model).await?;
        session.model = model.to_owned();
        Ok(())
    }

    /// Remove the last user message and everything after it. Returns the removed user text.
    ///
    /// # Errors
    /// [`AgentError::NothingToUndo`] when there is no user message, or a store error.
    pub async fn undo(
        &self,
        session: &mut Session,
        verb: &'static str,
    ) -> Result<String, AgentError> {
        let index = session
            .messages
            .iter()
            .rposition(|(_, m)| m.role == Role::User)
            .ok_or(AgentError::NothingToUndo(verb))?;
        let (seq, message) = session.messages[index].clone();
        self.store.truncate_from(&session.id, seq).await?;
        session.messages.truncate(index);
        session.compressed = None;
        let plain: Vec<Message> = session.messages().cloned().collect();
        session.todos = TodoList::from_transcript(&plain);
        Ok(message.content)
    }

    async fn persist(
        &self,
        session: &mut Session,
        messages: Vec<Message>,
    ) -> Result<(), AgentError> {
        let seqs = self
            .store
            .append_messages(&session.id, messages.clone())
            .await?;
        session.messages.extend(seqs.into_iter().zip(messages));
        Ok(())
    }

    /// Run one turn: the user's `input`, then model calls and tool calls until the model is
    /// done, the budget is spent or `cancel` fires.
    ///
    /// # Errors
    /// A model error that retries could not fix, or a store error. The user's message and
    /// everything before the failure stay persisted.
    pub async fn run_turn(
        &self,
        session: &mut Session,
        input: &str,
        on_event: &(dyn Fn(TurnEvent) + Send + Sync),
        cancel: &CancellationToken,
    ) -> Result<TurnOutcome, AgentError> {
        self.freeze_prompt(session, input).await?;
        let input = self.expand_skill_command(input).await;
        self.persist(session, vec![Message::user(input)]).await?;
        let outcome = self.drive(session, on_event, cancel).await?;
        self.after_turn(session, &outcome);
        Ok(outcome)
    }

    /// Run a turn submitted as a request (over the bus): the request is recorded as running
    /// and its user message stored in one transaction, so a crash after this point resumes the
    /// turn ([`Self::resume_request`]) instead of losing or repeating it.
    ///
    /// # Errors
    /// As [`Self::run_turn`]; also a request id that was already used.
    pub async fn run_request(
        &self,
        session: &mut Session,
        request: TurnRequest,
        on_event: &(dyn Fn(TurnEvent) + Send + Sync),
        cancel: &CancellationToken,
    ) -> Result<TurnOutcome, AgentError> {
        let text = request.text.clone();
        self.freeze_prompt(session, &text).await?;
        let seq = self.store.start_request(request).await?;
        session.messages.push((seq, Message::user(text)));
        let outcome = self.drive(session, on_event, cancel).await?;
        self.after_turn(session, &outcome);
        Ok(outcome)
    }

    /// Carry on with a request whose turn a crash or stop interrupted. `session` comes from
    /// [`Self::resume_session`], which closed the tool calls left open. When the model had
    /// already answered, that answer is the outcome and nothing is sent to the model.
    ///
    /// # Errors
    /// As [`Self::run_turn`].
    pub async fn resume_request(
        &self,
        session: &mut Session,
        on_event: &(dyn Fn(TurnEvent) + Send + Sync),
        cancel: &CancellationToken,
    ) -> Result<TurnOutcome, AgentError> {
        if let Some(last) = session.messages().next_back()
            && last.role == Role::Assistant
            && last.tool_calls.is_empty()
        {
            return Ok(TurnOutcome {
                text: last.content.clone(),
                stop: TurnStop::Completed,
                usage: Usage::default(),
                tool_calls: 0,
                model_calls: 0,
                untrusted_context: session.surface != Surface::Owner,
            });
        }
        self.drive(session, on_event, cancel).await
    }

    /// Model calls and tool calls until the model answers, the budget is spent or `cancel`
    /// fires; the user's message is already in `session`.
    async fn drive(
        &self,
        session: &mut Session,
        on_event: &(dyn Fn(TurnEvent) + Send + Sync),
        cancel: &CancellationToken,
    ) -> Result<TurnOutcome, AgentError> {
        let mut outcome = TurnOutcome {
            text: String::new(),
            stop: TurnStop::Completed,
            usage: Usage::default(),
            tool_calls: 0,
            model_calls: 0,
            // Inbound messages from anyone but the owner are untrusted content.
            untrusted_context: session.surface != Surface::Owner,
        };
        let mut overflow_retried = false;
        loop {
            if outcome.model_calls >= self.settings.max_iterations {
                outcome.stop = TurnStop::BudgetExhausted;
                return Ok(outcome);
            }
            let provider = session
                .provider
                .as_ref()
                .map_or_else(|| self.provider.clone(), |(_, p)| p.clone());
            let messages = self.prepare_view(session, on_event, false).await?;
            let request = ChatRequest {
                model: session.model.clone(),
                messages,
                tools: self.request_tools(session),
                stream: self.settings.stream,
                max_tokens: None,
                temperature: None,
            };
            let mut partial = String::new();
            let result = {
                let mut forward = |event: StreamEvent| match event {
                    StreamEvent::TextDelta(text) => {
                        partial.push_str(&text);
                        on_event(TurnEvent::TextDelta(text));
                    }
                    StreamEvent::Notice(text) => on_event(TurnEvent::Notice(text)),
                    StreamEvent::ToolCallStarted { .. } => {}
                };
                tokio::select! {
                    r = provider.chat(&request, &mut forward) => Some(r),
                    () = cancel.cancelled() => None,
                }
            };
            outcome.model_calls += 1;
            let Some(result) = result else {
                if !partial.trim().is_empty() {
                    let text = format!("{partial}\n[interrupted by the user]");
                    self.persist(session, vec![Message::assistant(text, Vec::new())])
                        .await?;
                }
                outcome.text = partial;
                outcome.stop = TurnStop::Interrupted;
                return Ok(outcome);
            };
            let response = match result {
                // Context overflow or a request too large (413): the classifier says compress.
                Err(e)
                    if !overflow_retried
                        && talaria_llm::Failure::of(&e).action()
                            == talaria_llm::Action::CompressAndRetry =>
                {
                    // Compress and send again, once; a second overflow is the user's to see.
                    overflow_retried = true;
                    tracing::info!(session = %session.id, error = %e, "context overflow; compressing and retrying");
                    if !self.compress_now(session, on_event).await? {
                        return Err(e.into());
                    }
                    outcome.model_calls -= 1;
                    continue;
                }
                other => other?,
            };
            let call = self
                .pricing(session)
                .call(UsageTask::Turn, &request.model, &response);
            self.store.record_model_call(&session.id, call).await?;
            outcome.usage.add(&response.usage);
            session.usage.add(&response.usage);
            let calls = response.message.tool_calls.clone();
            outcome.text = response.message.content.clone();
            self.persist(session, vec![response.message]).await?;
            if calls.is_empty() {
                return Ok(outcome);
            }
            on_event(TurnEvent::ModelCallDone);
            if self
                .run_tools(session, &calls, on_event, cancel, &mut outcome)
                .await?
            {
                outcome.stop = TurnStop::Interrupted;
                return Ok(outcome);
            }
        }
    }

    /// Run the calls of one model response in order. Returns true when the user interrupted.
    async fn run_tools(
        &self,
        session: &mut Session,
        calls: &[ToolCall],
        on_event: &(dyn Fn(TurnEvent) + Send + Sync),
        cancel: &CancellationToken,
        outcome: &mut TurnOutcome,
    ) -> Result<bool, AgentError> {
        for (index, call) in calls.iter().enumerate() {
            if cancel.is_cancelled() {
                let rest = calls[index..]
                    .iter()
                    .map(|c| Message::tool_result(c, INTERRUPTED_RESULT))
                    .collect();
                self.persist(session, rest).await?;
                return Ok(true);
            }
            let summary = summarize_call(call);
            on_event(TurnEvent::ToolStarted {
                summary: summary.clone(),
            });
            let started = Instant::now();
            let result = {
                let mut ctx = ToolContext {
                    session: &session.id,
                    surface: session.surface,
                    workspace: &session.workspace,
                    talaria_home: self.home.root(),
                    cwd: &mut session.cwd,
                    todos: &mut session.todos,
                    executor: self.executor.as_ref(),
                    store: &self.store,
                    memory: &session.memory,
                    untrusted: outcome.untrusted_context,
                    search_scope: &session.search_scope,
                    skills: &self.skills,
                    terminal_timeout: self.settings.terminal_timeout,
                    output_limit: self.settings.tool_output_max_chars.saturating_mul(4),
                    cancel,
                };
                let result = if call.name == crate::tools::tool_search::NAME {
                    Ok(self.tool_search(&call.arguments, &mut session.loaded_tools))
                } else {
                    self.tools.call(call, &mut ctx).await
                };
                // A result from outside taints the rest of the turn.
                outcome.untrusted_context |= ctx.untrusted;
                result
            };
            outcome.tool_calls += 1;
            let (text, ok) = match result {
                Ok(text) => (
                    truncate_output(&text, self.settings.tool_output_max_chars),
                    true,
                ),
                Err(ToolError::Interrupted) => {
                    let rest = calls[index..]
                        .iter()
                        .map(|c| Message::tool_result(c, INTERRUPTED_RESULT))
                        .collect();
                    self.persist(session, rest).await?;
                    on_event(TurnEvent::ToolFinished {
                        summary,
                        ok: false,
                        duration: started.elapsed(),
                    });
                    return Ok(true);
                }
                Err(e) => (
                    truncate_output(&format!("error: {e}"), self.settings.tool_output_max_chars),
                    false,
                ),
            };
            tracing::debug!(session = %session.id, tool = %call.name, ok, "tool call finished");
            self.persist(session, vec![Message::tool_result(call, text)])
                .await?;
            on_event(TurnEvent::ToolFinished {
                summary,
                ok,
                duration: started.elapsed(),
            });
        }
        Ok(false)
    }
}

/// Switching models and compressing the context (`/model`, `/compress`, and before each call).
impl Agent {
    /// Use `model` of `provider` (a name and its client; `None`: keep the session's) from the
    /// next turn on. The conversation is kept and sent to the new model as it is.
    ///
    /// # Errors
    /// A store error.
    pub async fn switch_model(
        &self,
        session: &mut Session,
        provider: Option<(String, Arc<dyn ChatProvider>)>,
        model: &str,
    ) -> Result<(), AgentError> {
        self.set_model(session, model).await?;
        if let Some((name, client)) = provider {
            tracing::info!(session = %session.id, provider = %name, model, "model switched");
            // Stored with the model, so a resumed session goes back to the same provider.
            self.store.set_provider(&session.id, Some(&name)).await?;
            session.provider = Some((name, client));
        }
        Ok(())
    }

    /// The tools of the next request: all of them, or, when their schemas would pass
    /// `agent.tool_search_at_percent` of the context window, the eager ones, the lazy ones the
    /// session loaded, and `tool_search` describing the rest in one line each.
    fn request_tools(&self, session: &Session) -> Vec<talaria_core::ToolSpec> {
        use crate::tools::tool_search;
        let all = self.tools.specs();
        let budget =
            self.context_window(session) * u64::from(self.settings.tool_search_at_percent) / 100;
        if compress::estimate_tokens(&[], all) <= budget {
            return all.to_vec();
        }
        let unloaded = |t: &&talaria_core::ToolSpec| {
            tool_search::LAZY.contains(&t.name.as_str()) && !session.loaded_tools.contains(&t.name)
        };
        let lazy: Vec<&talaria_core::ToolSpec> = all.iter().filter(unloaded).collect();
        let mut tools: Vec<_> = all.iter().filter(|t| !unloaded(t)).cloned().collect();
        if !lazy.is_empty() {
            tools.push(tool_search::spec(&lazy));
        }
        tools
    }

    /// Run `tool_search`: load the matching lazy tools into the session.
    fn tool_search(
        &self,
        arguments: &str,
        loaded: &mut std::collections::BTreeSet<String>,
    ) -> String {
        use crate::tools::tool_search;
        let query = serde_json::from_str::<tool_search::Args>(arguments)
            .map(|a| a.query)
            .unwrap_or_else(|_| arguments.to_owned());
        let lazy: Vec<&talaria_core::ToolSpec> = self
            .tools
            .specs()
            .iter()
            .filter(|t| tool_search::LAZY.contains(&t.name.as_str()))
            .collect();
        let found = tool_search::matching(&query, &lazy);
        loaded.extend(found.iter().map(|t| t.name.clone()));
        tool_search::result(&found, &lazy)
    }

    /// How the session's calls are priced: the catalogue and the session's provider.
    fn pricing(&self, session: &Session) -> crate::accounting::Pricing {
        crate::accounting::Pricing {
            catalogue: self.catalogue.clone(),
            provider: session
                .provider
                .as_ref()
                .map_or_else(|| self.provider_name.clone(), |(name, _)| name.clone()),
        }
    }

    /// The context window of the session's model: the catalogue's, else a conservative default.
    fn context_window(&self, session: &Session) -> u64 {
        let provider = session
            .provider
            .as_ref()
            .map_or(self.provider_name.as_str(), |(name, _)| name.as_str());
        self.catalogue
            .as_ref()
            .and_then(|c| c.provider(provider, "provider").ok())
            .and_then(|p| p.model(&session.model))
            .and_then(|m| m.context_length)
            .unwrap_or(compress::DEFAULT_CONTEXT_WINDOW)
    }

    /// The messages to send: the compressed view when there is one.
    fn view(session: &Session) -> Vec<Message> {
        let all: Vec<Message> = session.messages().cloned().collect();
        match &session.compressed {
            Some(c) if c.upto <= all.len() => {
                let head = all
                    .iter()
                    .position(|m| m.role == Role::User)
                    .map_or(1, |i| i + 1)
                    .min(c.upto);
                let mut view = all[..head].to_vec();
                view.push(c.summary.clone());
                view.extend_from_slice(&all[c.upto..]);
                view
            }
            _ => all,
        }
    }

    /// The view for the next request, compressed first when it passes the threshold (or when
    /// `force`). If summarizing fails, the view is sent as it was and the user is told.
    async fn prepare_view(
        &self,
        session: &mut Session,
        on_event: &(dyn Fn(TurnEvent) + Send + Sync),
        force: bool,
    ) -> Result<Vec<Message>, AgentError> {
        let tools = self.tools.specs();
        let threshold =
            self.context_window(session) * u64::from(self.settings.compress_at_percent) / 100;
        let keep_last = self.settings.compress_keep_last;
        let mut view = Self::view(session);
        if !force && compress::estimate_tokens(&view, tools) <= threshold {
            return Ok(view);
        }
        let trimmed = compress::trim_tool_outputs(&mut view, keep_last);
        let estimate = compress::estimate_tokens(&view, tools);
        if !force && estimate <= threshold {
            tracing::debug!(session = %session.id, trimmed, estimate, "old tool outputs trimmed");
            return Ok(view);
        }
        let Some(range) = compress::middle(&view, keep_last) else {
            return Ok(view);
        };
        // Which stored message each view entry is (`None`: an earlier summary).
        let index_of = self.view_indices(session);
        let upto = index_of
            .get(range.end)
            .copied()
            .flatten()
            .unwrap_or(session.len());
        let request = ChatRequest {
            model: session.model.clone(),
            messages: vec![
                Message::system(compress::SUMMARIZER_PROMPT),
                Message::user(compress::render_for_summary(&view[range.clone()])),
            ],
            tools: Vec::new(),
            stream: false,
            max_tokens: None,
            temperature: None,
        };
        let provider = session
            .provider
            .as_ref()
            .map_or_else(|| self.provider.clone(), |(_, p)| p.clone());
        let replaced = range.len();
        match provider.chat(&request, &mut |_| {}).await {
            Ok(response) if !response.message.content.trim().is_empty() => {
                let call =
                    self.pricing(session)
                        .call(UsageTask::Compression, &request.model, &response);
                self.store.record_model_call(&session.id, call).await?;
                session.usage.add(&response.usage);
                let summary =
                    compress::summary_message(&response.message.content, &view[range.clone()]);
                tracing::info!(session = %session.id, replaced, upto, "conversation compressed");
                on_event(TurnEvent::Notice(format!(
                    "context compressed: {replaced} earlier messages summarized (all kept in the session store)"
                )));
                session.compressed = Some(Compressed { upto, summary });
                let mut view = Self::view(session);
                compress::trim_tool_outputs(&mut view, keep_last);
                Ok(view)
            }
            other => {
                let why = match other {
                    Ok(_) => "the summary came back empty".to_owned(),
                    Err(e) => e.to_string(),
                };
                tracing::warn!(session = %session.id, error = %why, "compression failed; sending the conversation uncompressed");
                on_event(TurnEvent::Notice(format!(
                    "context compression failed ({why}); nothing was dropped, the full conversation is sent and compression is retried next turn"
                )));
                Ok(view)
            }
        }
    }

    /// For each entry of [`Self::view`], the index of the session message it is.
    fn view_indices(&self, session: &Session) -> Vec<Option<usize>> {
        let len = session.len();
        match &session.compressed {
            Some(c) if c.upto <= len => {
                let head = session
                    .messages()
                    .position(|m| m.role == Role::User)
                    .map_or(1, |i| i + 1)
                    .min(c.upto);
                (0..head)
                    .map(Some)
                    .chain(std::iter::once(None))
                    .chain((c.upto..len).map(Some))
                    .collect()
            }
            _ => (0..len).map(Some).collect(),
        }
    }

    /// Compress now (`/compress`, or after a context overflow). Returns whether a summary was
    /// made; when summarizing fails the user is told and nothing changes.
    ///
    /// # Errors
    /// A store error.
    pub async fn compress_now(
        &self,
        session: &mut Session,
        on_event: &(dyn Fn(TurnEvent) + Send + Sync),
    ) -> Result<bool, AgentError> {
        let before = session.compressed.as_ref().map(|c| c.upto);
        self.prepare_view(session, on_event, true).await?;
        Ok(session.compressed.as_ref().map(|c| c.upto) != before)
    }
}

/// The learning loop's hooks: `/skill-name`, the background review and the memory nudge.
impl Agent {
    /// The skill library (catalogue, recall, the registry).
    pub fn skills(&self) -> &SkillLibrary {
        &self.skills
    }

    /// Whether `line` is `/NAME …` for an active skill NAME (chat hands such lines to
    /// [`Self::run_turn`], which loads the skill into the turn).
    pub async fn is_skill_command(&self, line: &str) -> bool {
        match crate::skills::slash_skill(line) {
            Some((name, _)) => matches!(self.skills.live(name).await, Ok(Some(_))),
            None => false,
        }
    }

    /// `/NAME rest` for an active skill NAME becomes the skill's text followed by `rest`;
    /// anything else is returned as it is.
    async fn expand_skill_command(&self, input: &str) -> String {
        let Some((name, rest)) = crate::skills::slash_skill(input) else {
            return input.to_owned();
        };
        match self.skills.load(name, talaria_store::SkillUse::Use).await {
            Ok(Some(skill)) => {
                let ask = if rest.is_empty() {
                    "Follow this skill now."
                } else {
                    rest
                };
                format!(
                    "The owner loaded the skill {name:?} for this request.\n\n{}\n\n{ask}",
                    skill.render()
                )
            }
            Ok(None) => input.to_owned(),
            Err(e) => {
                tracing::warn!(skill = name, error = %e, "cannot load a skill for a slash command");
                input.to_owned()
            }
        }
    }

    /// Start the background review (after a turn with at least `skills.review_min_tool_calls`
    /// tool calls) and the memory nudge (every `skills.memory_nudge_every_turns` user turns),
    /// when enabled. They run on their own tasks; [`Self::wait_background`] waits for them.
    fn after_turn(&self, session: &Session, outcome: &TurnOutcome) {
        if outcome.stop == TurnStop::Interrupted {
            return;
        }
        let config = &self.settings.skills;
        let user_turns = session.messages().filter(|m| m.role == Role::User).count();
        let mut kinds = Vec::new();
        if config.review_enabled && outcome.tool_calls >= config.review_min_tool_calls.max(1) {
            kinds.push(crate::review::ReviewKind::Skills);
        }
        if config.memory_nudge_enabled
            && user_turns > 0
            && user_turns % config.memory_nudge_every_turns.max(1) == 0
        {
            kinds.push(crate::review::ReviewKind::Memory);
        }
        if kinds.is_empty() {
            return;
        }
        let start = session
            .messages
            .iter()
            .rposition(|(_, m)| m.role == Role::User)
            .unwrap_or(0);
        let transcript: Vec<Message> = session.messages[start..]
            .iter()
            .map(|(_, m)| m.clone())
            .collect();
        let provider = session
            .provider
            .as_ref()
            .map_or_else(|| self.provider.clone(), |(_, p)| p.clone());
        for kind in kinds {
            let job = crate::review::ReviewJob {
                kind,
                provider: provider.clone(),
                model: session.model.clone(),
                executor: self.executor.clone(),
                store: self.store.clone(),
                skills: self.skills.clone(),
                memory: session.memory.clone(),
                search_scope: session.search_scope.clone(),
                session: session.id.clone(),
                surface: session.surface,
                workspace: session.workspace.clone(),
                talaria_home: self.home.root().to_owned(),
                transcript: transcript.clone(),
                untrusted: outcome.untrusted_context,
                output_limit: self.settings.tool_output_max_chars,
                pricing: self.pricing(session),
            };
            tracing::info!(session = %session.id, ?kind, "background review started");
            let handle = tokio::spawn(job.run());
            let mut running = self
                .background
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            running.retain(|h| !h.is_finished());
            running.push(handle);
        }
    }

    /// Wait for the background reviews and nudges started so far (before the process exits,
    /// and in tests).
    pub async fn wait_background(&self) {
        let handles: Vec<_> = self
            .background
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .drain(..)
            .collect();
        for handle in handles {
            if let Err(e) = handle.await {
                tracing::warn!(error = %e, "a background review task failed");
            }
        }
    }
}

/// Results for every tool call in `messages` that has none.
fn missing_results(messages: &[Message], text: &str) -> Vec<Message> {
    let answered: std::collections::HashSet<&str> = messages
        .iter()
        .filter_map(|m| m.tool_call_id.as_deref())
        .collect();
    messages
        .iter()
        .flat_map(|m| m.tool_calls.iter())
        .filter(|c| !answered.contains(c.id.as_str()))
        .map(|c| Message::tool_result(c, text))
        .collect()
}

async fn read_optional(path: &std::path::Path) -> Option<String> {
    match tokio::fs::read_to_string(path).await {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read; ignoring it");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_calls_get_results() {
        let a = ToolCall {
            id: "a".into(),
            name: "terminal".into(),
            arguments: "{}".into(),
        };
        let b = ToolCall {
            id: "b".into(),
            name: "read_file".into(),
            arguments: "{}".into(),
        };
        let msgs = vec![
            Message::assistant("", vec![a.clone(), b.clone()]),
            Message::tool_result(&a, "ok"),
        ];
        let fixed = missing_results(&msgs, "x");
        assert_eq!(fixed.len(), 1);
        assert_eq!(fixed[0].tool_call_id.as_deref(), Some("b"));
    }
}
