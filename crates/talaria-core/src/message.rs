//! Chat messages in the shape every OpenAI-compatible provider understands, plus token usage.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }

    /// # Errors
    /// Returns the unknown role name.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "system" => Ok(Role::System),
            "user" => Ok(Role::User),
            "assistant" => Ok(Role::Assistant),
            "tool" => Ok(Role::Tool),
            other => Err(other.to_owned()),
        }
    }
}

/// A tool call requested by the model. `arguments` is the raw JSON text the model produced: it
/// may be invalid, and the agent reports that back to the model instead of failing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    /// Text content; empty for an assistant message that only calls tools.
    pub content: String,
    /// Tool calls, on assistant messages only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// The call this message answers, on tool messages only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// The tool's name, on tool messages only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Content a provider needs back verbatim on the next request and that has no place in the
    /// fields above, e.g. Anthropic's signed thinking blocks (`{"anthropic_thinking":[..]}`).
    /// Opaque to everything but the provider that wrote it; other providers ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_data: Option<serde_json::Value>,
}

impl Message {
    pub fn system(content: impl Into<String>) -> Self {
        Self::plain(Role::System, content)
    }

    pub fn user(content: impl Into<String>) -> Self {
        Self::plain(Role::User, content)
    }

    pub fn assistant(content: impl Into<String>, tool_calls: Vec<ToolCall>) -> Self {
        Self {
            tool_calls,
            ..Self::plain(Role::Assistant, content)
        }
    }

    pub fn tool_result(call: &ToolCall, content: impl Into<String>) -> Self {
        Self {
            tool_call_id: Some(call.id.clone()),
            name: Some(call.name.clone()),
            ..Self::plain(Role::Tool, content)
        }
    }

    fn plain(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
            name: None,
            provider_data: None,
        }
    }

    /// Tool names this message mentions: the calls of an assistant message, or the tool a result
    /// came from. Used for search.
    pub fn tool_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.tool_calls.iter().map(|c| c.name.as_str()).collect();
        if let Some(name) = &self.name {
            names.push(name);
        }
        names
    }
}

/// A tool the model may call: name, description and a JSON Schema for its arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    pub parameters: serde_json::Value,
}

/// Token usage as reported by the provider.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Prompt tokens served from the provider's cache, when it says so.
    #[serde(default)]
    pub cached_tokens: u64,
    /// Prompt tokens written to the provider's cache (Anthropic's
    /// `cache_creation_input_tokens`), billed above the plain input price.
    #[serde(default)]
    pub cache_write_tokens: u64,
}

// Counts come from the provider's answer: a server that reports u64::MAX must give a huge
// total, not an overflow panic (debug) or a wrapped small number (release). Saturating.
impl Usage {
    pub fn total(&self) -> u64 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }

    pub fn add(&mut self, other: &Usage) {
        self.prompt_tokens = self.prompt_tokens.saturating_add(other.prompt_tokens);
        self.completion_tokens = self
            .completion_tokens
            .saturating_add(other.completion_tokens);
        self.cached_tokens = self.cached_tokens.saturating_add(other.cached_tokens);
        self.cache_write_tokens = self
            .cache_write_tokens
            .saturating_add(other.cache_write_tokens);
    }
}

/// What a model call was for, so usage can be told apart by purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageTask {
    /// A call of the turn loop: the conversation itself.
    Turn,
    /// Summarizing the middle of a long conversation.
    Compression,
    /// Naming a session.
    Title,
    /// The background skill review after a turn.
    Review,
    /// The background memory nudge.
    MemoryNudge,
}

impl UsageTask {
    pub const ALL: [UsageTask; 5] = [
        UsageTask::Turn,
        UsageTask::Compression,
        UsageTask::Title,
        UsageTask::Review,
        UsageTask::MemoryNudge,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            UsageTask::Turn => "turn",
            UsageTask::Compression => "compression",
            UsageTask::Title => "title",
            UsageTask::Review => "review",
            UsageTask::MemoryNudge => "memory_nudge",
        }
    }

    /// The task named `name` (as [`Self::as_str`] writes it).
    pub fn parse(name: &str) -> Option<UsageTask> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }
}
