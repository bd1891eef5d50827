//! Talaria's model client.
//!
//! This crate owns the conversation with a model endpoint: turning a [`ChatRequest`] into an
//! OpenAI-compatible `/v1/chat/completions` call, streaming the answer back as [`StreamEvent`]s,
//! assembling text and tool calls into one assistant [`Message`], retrying what is worth
//! retrying, and explaining what failed in terms a user can act on ([`LlmError`]).
//!
//! It must never log, print or embed in an error the API key, and it never interprets tool
//! calls: arguments stay the raw text the model produced, valid JSON or not.
//!
//! [`ChatProvider`] is the seam the agent codes against. [`OpenAiCompatible`] speaks OpenAI's
//! Chat Completions API (OpenAI, vLLM, llama.cpp, Ollama, LM Studio, OpenRouter and others);
//! [`Anthropic`] speaks Anthropic's native Messages API. The [`Catalogue`] says which
//! providers exist, where they live, and what their models can do.

mod anthropic;
pub mod catalogue;
mod classify;
mod error;
mod openai;
mod retry;
mod router;
mod sse;
mod wire;

use talaria_core::{Message, ToolSpec, Usage};

pub use anthropic::{ANTHROPIC_VERSION, Anthropic, THINKING_KEY};
pub use catalogue::{Catalogue, CatalogueError, Provider};
pub use classify::{Action, Failure};
pub use error::{LlmError, TimeoutPhase};
pub use openai::{EndpointConfig, OpenAiCompatible};
pub use retry::{MAX_RETRY_AFTER, RetryPolicy};
pub use router::{Route, Router};

/// One call to the model.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<Message>,
    /// Tools the model may call; none means the request carries no `tools` at all.
    pub tools: Vec<ToolSpec>,
    /// Ask for server-sent events, reported through `on_event` as they arrive.
    pub stream: bool,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
}

/// Progress of an answer, reported while it is produced.
///
/// In streaming mode events arrive as the server sends them. Without streaming, the same events
/// are reported once the whole answer is in (all text as one `TextDelta`, then one
/// `ToolCallStarted` per call), so a caller can render both modes the same way and should not
/// print the final message's text again.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// More answer text, to append to what came before.
    TextDelta(String),
    /// The model began a tool call. `index` is the call's position in the final
    /// `message.tool_calls`; arguments are not known yet.
    ToolCallStarted {
        index: usize,
        id: String,
        name: String,
    },
    /// Something the user should know that is not part of the answer: the router switched
    /// keys or models, or a benched model is back. Never reported by a plain client.
    Notice(String),
}

/// A complete answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatResponse {
    /// Role [`Role::Assistant`](talaria_core::Role::Assistant), with text and tool calls.
    pub message: Message,
    /// Token counts as reported by the server; zero when it reported none.
    pub usage: Usage,
    /// `stop`, `tool_calls`, `length`, ... as the server said it.
    pub finish_reason: Option<String>,
    /// The model that answered, as the server named it (else the requested one).
    pub model: String,
    /// The catalogue provider that answered, when a [`Router`] chose it; `None` from a plain
    /// client.
    pub provider: Option<String>,
}

/// Something that answers chat requests.
#[async_trait::async_trait]
pub trait ChatProvider: Send + Sync + std::fmt::Debug {
    /// A one-line description for status output, e.g.
    /// `openai-compatible http://127.0.0.1:8080/v1`. Never includes credentials.
    fn describe(&self) -> String;

    /// Sends `request`, reporting progress to `on_event`, and returns the whole answer.
    ///
    /// # Errors
    /// See [`LlmError`]. Retryable failures are retried per the provider's policy first, but
    /// never after an event was reported (the user has already seen part of that answer).
    async fn chat(
        &self,
        request: &ChatRequest,
        on_event: &mut (dyn FnMut(StreamEvent) + Send),
    ) -> Result<ChatResponse, LlmError>;

    /// The model ids the endpoint serves.
    ///
    /// # Errors
    /// See [`LlmError`].
    async fn list_models(&self) -> Result<Vec<String>, LlmError>;
}
