//! The agent: a model provider, an executor for side effects, a store and a home, and what it
//! does with them.
//!
//! One concern per module: `session` opens, resumes and edits sessions (and freezes their
//! system prompt); `turn` runs the loop of model calls and tool calls; `view` decides what
//! of a session is sent (the compressed context view); `review` runs the background review and
//! memory nudge after a turn. Every message is written to the store before it joins the
//! in-memory transcript, so the two never disagree.

pub mod review;
mod session;
mod turn;
mod view;

use std::sync::Arc;
use std::time::Duration;

use talaria_core::{Config, Message};
use talaria_llm::{ChatProvider, LlmError};
use talaria_store::{Store, StoreError};

use crate::compress;
use crate::exec::ToolExecutor;
use crate::home::TalariaHome;
use crate::memory::MemoryFiles;
use crate::skills::SkillLibrary;
use crate::tools::ToolBox;

pub use session::Session;
pub use turn::{TurnEvent, TurnOutcome, TurnStop};

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

    /// The skill library (catalogue, recall, the registry).
    pub fn skills(&self) -> &SkillLibrary {
        &self.skills
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
}
