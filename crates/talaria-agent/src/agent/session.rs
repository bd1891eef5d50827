//! Sessions: start one (with its provisional system prompt), freeze the prompt at the first
//! user message, resume one (closing tool calls a crash left open), switch its model, undo.

use std::path::PathBuf;
use std::sync::Arc;

use talaria_core::{Message, Person, Role, SessionId, Surface, Usage};
use talaria_llm::ChatProvider;
use talaria_store::{NewSession, SessionScope};

use super::view::Compressed;
use super::{Agent, AgentError};
use crate::context_files::{ContextApprovals, agents_md_for_prompt};
use crate::memory::MemoryFiles;
use crate::prompt::{PromptInputs, system_prompt};
use crate::tools::TodoList;

const ABANDONED_RESULT: &str =
    "error: the session ended before this tool call finished; its effects are unknown";

/// A conversation in memory, mirroring what the store holds.
#[derive(Debug)]
pub struct Session {
    pub id: SessionId,
    pub model: String,
    /// (seq in the store, message), in order.
    pub(super) messages: Vec<(i64, Message)>,
    /// The directory the session started in: the policy's `${workspace}`.
    pub workspace: PathBuf,
    /// The terminal's current directory (moves with `cd`).
    pub cwd: PathBuf,
    /// The provider chosen with `/model provider:model` for this session, and its client;
    /// `None`: the agent's (the configured primary with its fallbacks).
    pub provider: Option<(String, Arc<dyn ChatProvider>)>,
    /// The compressed view: `summary` stands for messages from the protected head up to
    /// (not including) index `upto`. The messages themselves stay, here and in the store.
    pub(super) compressed: Option<Compressed>,
    pub(super) todos: TodoList,
    pub usage: Usage,
    /// Who the session talks to: decides its USER.md and which sessions it may search.
    pub person: Person,
    /// The surface that person came in on: it narrows every tool call's sandbox profile, and
    /// anything but the owner's makes the session's turns untrusted for the learning loop.
    pub surface: Surface,
    pub(super) memory: MemoryFiles,
    pub(super) search_scope: SessionScope,
    /// Lazy tools `tool_search` loaded: their schemas go with every later request.
    pub(super) loaded_tools: std::collections::BTreeSet<String>,
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

impl Agent {
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
        let prompt = self
            .build_prompt(&cwd, &memory, person, surface, None)
            .await;
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
    /// AGENTS.md (for anyone but the owner only once the owner approved it: see
    /// [`crate::context_files`]), the memory snapshot and the skill catalogue, ranked by
    /// `request` when the library is larger than the catalogue's budget.
    async fn build_prompt(
        &self,
        cwd: &std::path::Path,
        memory: &MemoryFiles,
        person: &Person,
        surface: Surface,
        request: Option<&str>,
    ) -> String {
        let soul = read_optional(&self.home.soul_file()).await;
        let agents_md = {
            let approvals = ContextApprovals::new(&self.home);
            let (cwd, person) = (cwd.to_owned(), person.clone());
            tokio::task::spawn_blocking(move || {
                agents_md_for_prompt(&approvals, &cwd, &person, surface)
            })
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "reading AGENTS.md failed; starting without it");
                None
            })
        };
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
    pub(super) async fn freeze_prompt(
        &self,
        session: &mut Session,
        request: &str,
    ) -> Result<(), AgentError> {
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
            .build_prompt(
                &session.workspace,
                &session.memory,
                &session.person,
                session.surface,
                Some(request),
            )
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
    use talaria_core::ToolCall;

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
