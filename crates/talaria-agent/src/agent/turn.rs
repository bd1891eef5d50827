//! The turn loop.
//!
//! A turn: persist the user's message; call the model with the transcript and the tools; if it
//! asks for tools, run them one at a time through the tool box and persist each result; repeat
//! until the model answers without tools or the iteration budget is spent. Cancellation (Ctrl+C)
//! drops the model request or kills the running tool; any tool call left without a result gets
//! an "interrupted" result so the transcript stays valid for the next turn.

use std::time::{Duration, Instant};

use talaria_core::{Message, Role, Surface, ToolCall, Usage, UsageTask};
use talaria_llm::{ChatRequest, StreamEvent};
use talaria_store::TurnRequest;
use tokio_util::sync::CancellationToken;

use super::{Agent, AgentError, Session};
use crate::tools::{ToolContext, ToolError, summarize_call, truncate_output};

const INTERRUPTED_RESULT: &str = "error: interrupted by the user before this tool call finished";

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

impl Agent {
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
                    loaded_tools: &mut session.loaded_tools,
                    terminal_timeout: self.settings.terminal_timeout,
                    output_limit: self.settings.tool_output_max_chars.saturating_mul(4),
                    cancel,
                };
                let result = self.tools.call(call, &mut ctx).await;
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

    /// The tools of the next request: all of them, or, when their schemas would pass
    /// `agent.tool_search_at_percent` of the context window, the eager ones, the lazy ones the
    /// session loaded, and `tool_search` describing the rest.
    fn request_tools(&self, session: &Session) -> Vec<talaria_core::ToolSpec> {
        let budget =
            self.context_window(session) * u64::from(self.settings.tool_search_at_percent) / 100;
        self.tools.offered(&session.loaded_tools, budget)
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
}
