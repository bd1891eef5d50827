//! The typed configuration model (`$TALARIA_HOME/config.toml`).
//!
//! One serde model with `deny_unknown_fields`, defaults in one place ([`Default`] impls below),
//! every key listed with its documentation in [`KEYS`], and validation at load whose errors name
//! the key and the line. Reading and writing the file is the caller's job: this module only
//! turns text into a [`Config`] and edits text.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::provider::ProviderEntry;
use crate::secret::Secret;

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub model: ModelConfig,
    pub agent: AgentConfig,
    pub memory: MemoryConfig,
    pub display: DisplayConfig,
    pub skills: SkillsConfig,
    /// Additions to and overrides of the provider catalogue, by provider name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub providers: BTreeMap<String, ProviderEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    pub provider: Option<String>,
    pub base_url: Option<String>,
    pub name: Option<String>,
    pub api_key: Option<Secret>,
    pub api_key_env: Option<String>,
    pub stream: bool,
    pub connect_timeout_secs: u64,
    pub read_timeout_secs: u64,
    pub max_retries: u32,
    /// Seconds a model that failed sits out before it is tried first again.
    pub cooldown_secs: u64,
    /// Models to try, in order, when the primary fails (`[[model.fallback]]`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fallback: Vec<FallbackModel>,
}

/// One `[[model.fallback]]` entry: where to go when the models before it fail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FallbackModel {
    /// A provider of the catalogue.
    pub provider: String,
    /// Default: the provider's default model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Default: the provider's endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// The variables holding its keys: one name, a list, or a comma-separated list (a key
    /// pool); default: the provider's variable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<KeyEnvs>,
}

/// Environment variables holding the keys of a pool, in the order they are used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum KeyEnvs {
    /// `"K"` or `"K1,K2"`.
    One(String),
    /// `["K1", "K2"]`.
    Many(Vec<String>),
}

impl KeyEnvs {
    /// The variable names, in order, blanks dropped.
    pub fn names(&self) -> Vec<String> {
        let all: Vec<&str> = match self {
            KeyEnvs::One(s) => s.split(',').collect(),
            KeyEnvs::Many(v) => v.iter().flat_map(|s| s.split(',')).collect(),
        };
        all.into_iter()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            provider: None,
            base_url: None,
            name: None,
            api_key: None,
            api_key_env: None,
            stream: true,
            connect_timeout_secs: 10,
            read_timeout_secs: 300,
            max_retries: 3,
            cooldown_secs: 300,
            fallback: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    pub max_iterations: u32,
    pub tool_output_max_chars: usize,
    pub terminal_timeout_secs: u64,
    /// Compress when the estimated prompt passes this percentage of the context window.
    pub compress_at_percent: u8,
    /// Most recent messages compression never touches.
    pub compress_keep_last: usize,
    /// Offer rarely used tools through `tool_search` once all schemas would pass this
    /// percentage of the context window.
    pub tool_search_at_percent: u8,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            max_iterations: 90,
            tool_output_max_chars: 50_000,
            terminal_timeout_secs: 180,
            compress_at_percent: 75,
            compress_keep_last: 8,
            tool_search_at_percent: 5,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryConfig {
    pub memory_char_limit: usize,
    pub user_char_limit: usize,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            memory_char_limit: 2200,
            user_char_limit: 1375,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DisplayConfig {
    pub tool_progress: bool,
}

impl Default for DisplayConfig {
    fn default() -> Self {
        Self {
            tool_progress: true,
        }
    }
}

/// The learning loop: the skill catalogue in the prompt, the background review, the memory
/// nudge and the curator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SkillsConfig {
    /// Token budget of the skill catalogue in the system prompt (estimated as characters / 4).
    pub catalogue_budget_tokens: usize,
    pub review_enabled: bool,
    /// Tool calls a turn must make before a background review looks at it.
    pub review_min_tool_calls: usize,
    pub memory_nudge_enabled: bool,
    /// User turns between memory nudges.
    pub memory_nudge_every_turns: usize,
    /// Days without use after which the curator marks an active skill stale.
    pub stale_after_days: u64,
    /// Days without use after which the curator archives a stale skill.
    pub archive_after_days: u64,
}

impl Default for SkillsConfig {
    fn default() -> Self {
        Self {
            catalogue_budget_tokens: 2000,
            review_enabled: true,
            review_min_tool_calls: 10,
            memory_nudge_enabled: true,
            memory_nudge_every_turns: 10,
            stale_after_days: 30,
            archive_after_days: 90,
        }
    }
}

/// The type of a configuration value, used to parse `talaria config set KEY VALUE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Text,
    Secret,
    Integer,
    Bool,
}

/// A documented configuration key.
#[derive(Debug)]
pub struct KeyDoc {
    pub key: &'static str,
    pub kind: KeyKind,
    pub doc: &'static str,
}

/// Every key the configuration accepts, with what it does. A unit test keeps this in step with
/// the structs above.
pub const KEYS: &[KeyDoc] = &[
    KeyDoc {
        key: "model.provider",
        kind: KeyKind::Text,
        doc: "provider from the catalogue (`talaria doctor` lists them): openai, custom, openrouter, nous, ollama, vllm, lmstudio, llamacpp, deepseek, groq, together, gemini, anthropic, or one added under [providers.NAME] (flag --provider, env TALARIA_PROVIDER; default custom)",
    },
    KeyDoc {
        key: "model.base_url",
        kind: KeyKind::Text,
        doc: "the provider's endpoint, e.g. http://127.0.0.1:8080/v1; default: the catalogue's for the provider (flag --base-url, env TALARIA_BASE_URL)",
    },
    KeyDoc {
        key: "model.name",
        kind: KeyKind::Text,
        doc: "model name sent to the endpoint (flag --model, env TALARIA_MODEL); when unset and the endpoint serves exactly one model, that one is used",
    },
    KeyDoc {
        key: "model.api_key",
        kind: KeyKind::Secret,
        doc: "API key; prefer model.api_key_env or TALARIA_API_KEY so the key stays out of this file",
    },
    KeyDoc {
        key: "model.api_key_env",
        kind: KeyKind::Text,
        doc: "name of an environment variable holding the API key",
    },
    KeyDoc {
        key: "model.stream",
        kind: KeyKind::Bool,
        doc: "stream answers token by token (default true)",
    },
    KeyDoc {
        key: "model.connect_timeout_secs",
        kind: KeyKind::Integer,
        doc: "seconds to wait for a TCP/TLS connection to the endpoint (default 10)",
    },
    KeyDoc {
        key: "model.read_timeout_secs",
        kind: KeyKind::Integer,
        doc: "seconds to wait for the next bytes of an answer (default 300)",
    },
    KeyDoc {
        key: "model.max_retries",
        kind: KeyKind::Integer,
        doc: "retries on 429, 5xx and transport errors, with jittered backoff, before moving to the next key or fallback model (default 3)",
    },
    KeyDoc {
        key: "model.cooldown_secs",
        kind: KeyKind::Integer,
        doc: "seconds a model that failed (and was fallen back from) sits out before it is tried first again (default 300)",
    },
    KeyDoc {
        key: "model.fallback",
        kind: KeyKind::Text,
        doc: "models to try in order when the primary fails, as [[model.fallback]] tables; model.api_key_env may also name a key pool (\"K1,K2\") rotated on 429/402/401",
    },
    KeyDoc {
        key: "model.fallback.provider",
        kind: KeyKind::Text,
        doc: "the fallback's provider, from the catalogue (required)",
    },
    KeyDoc {
        key: "model.fallback.model",
        kind: KeyKind::Text,
        doc: "the fallback's model (default: the provider's default model)",
    },
    KeyDoc {
        key: "model.fallback.base_url",
        kind: KeyKind::Text,
        doc: "the fallback's endpoint (default: the provider's)",
    },
    KeyDoc {
        key: "model.fallback.api_key_env",
        kind: KeyKind::Text,
        doc: "variable(s) holding the fallback's keys: \"K\", \"K1,K2\" or [\"K1\", \"K2\"] (a pool, rotated on 429/402/401); default: the provider's variable",
    },
    KeyDoc {
        key: "agent.max_iterations",
        kind: KeyKind::Integer,
        doc: "model calls allowed in one turn before the agent stops (default 90)",
    },
    KeyDoc {
        key: "agent.tool_output_max_chars",
        kind: KeyKind::Integer,
        doc: "tool output longer than this is truncated, with a note, before the model sees it (default 50000)",
    },
    KeyDoc {
        key: "agent.terminal_timeout_secs",
        kind: KeyKind::Integer,
        doc: "default timeout of the terminal tool (default 180)",
    },
    KeyDoc {
        key: "agent.compress_at_percent",
        kind: KeyKind::Integer,
        doc: "compress the conversation (trim old tool output, then summarize the middle) when the estimated prompt passes this percentage of the model's context window (default 75)",
    },
    KeyDoc {
        key: "agent.compress_keep_last",
        kind: KeyKind::Integer,
        doc: "most recent messages compression never trims or summarizes (default 8)",
    },
    KeyDoc {
        key: "agent.tool_search_at_percent",
        kind: KeyKind::Integer,
        doc: "when every tool schema together would pass this percentage of the context window, rarely used tools are offered through tool_search instead (default 5)",
    },
    KeyDoc {
        key: "memory.memory_char_limit",
        kind: KeyKind::Integer,
        doc: "character budget of MEMORY.md (default 2200)",
    },
    KeyDoc {
        key: "memory.user_char_limit",
        kind: KeyKind::Integer,
        doc: "character budget of USER.md (default 1375)",
    },
    KeyDoc {
        key: "display.tool_progress",
        kind: KeyKind::Bool,
        doc: "print one progress line per tool call in chat (default true)",
    },
    KeyDoc {
        key: "skills.catalogue_budget_tokens",
        kind: KeyKind::Integer,
        doc: "token budget of the skill catalogue (name + description of active skills) in the system prompt, estimated as characters / 4; over it, the most relevant skills are kept (default 2000)",
    },
    KeyDoc {
        key: "skills.review_enabled",
        kind: KeyKind::Bool,
        doc: "after a turn with many tool calls, a background model call may create or patch skills (default true)",
    },
    KeyDoc {
        key: "skills.review_min_tool_calls",
        kind: KeyKind::Integer,
        doc: "tool calls a turn must make before the background skill review runs (default 10)",
    },
    KeyDoc {
        key: "skills.memory_nudge_enabled",
        kind: KeyKind::Bool,
        doc: "every few user turns, a background model call may update memory (default true)",
    },
    KeyDoc {
        key: "skills.memory_nudge_every_turns",
        kind: KeyKind::Integer,
        doc: "user turns between background memory nudges (default 10)",
    },
    KeyDoc {
        key: "skills.stale_after_days",
        kind: KeyKind::Integer,
        doc: "days without use after which `talaria curator run` marks an unpinned skill stale (default 30)",
    },
    KeyDoc {
        key: "skills.archive_after_days",
        kind: KeyKind::Integer,
        doc: "days without use after which `talaria curator run` archives an unpinned stale skill; archived skills are kept, never deleted (default 90)",
    },
    KeyDoc {
        key: "providers.<name>.api",
        kind: KeyKind::Text,
        doc: "wire API of provider <name>: openai-compatible or anthropic (a table [providers.<name>] adds a provider or overrides fields of a catalogue one)",
    },
    KeyDoc {
        key: "providers.<name>.base_url",
        kind: KeyKind::Text,
        doc: "default endpoint of provider <name>",
    },
    KeyDoc {
        key: "providers.<name>.api_key_env",
        kind: KeyKind::Text,
        doc: "environment variable holding provider <name>'s API key",
    },
    KeyDoc {
        key: "providers.<name>.key_required",
        kind: KeyKind::Bool,
        doc: "refuse to start without a key for provider <name> (hosted APIs: true, local servers: false)",
    },
    KeyDoc {
        key: "providers.<name>.default_model",
        kind: KeyKind::Text,
        doc: "model used with provider <name> when none is chosen",
    },
    KeyDoc {
        key: "providers.<name>.open_models",
        kind: KeyKind::Bool,
        doc: "accept any model name for provider <name> (true) or only the listed ones (false)",
    },
    KeyDoc {
        key: "providers.<name>.models",
        kind: KeyKind::Text,
        doc: "known models of provider <name>, as [[providers.<name>.models]] tables; one named like a catalogue model replaces it",
    },
    KeyDoc {
        key: "providers.<name>.models.name",
        kind: KeyKind::Text,
        doc: "the model id sent to the provider",
    },
    KeyDoc {
        key: "providers.<name>.models.context_length",
        kind: KeyKind::Integer,
        doc: "context window in tokens",
    },
    KeyDoc {
        key: "providers.<name>.models.max_output_tokens",
        kind: KeyKind::Integer,
        doc: "largest answer in tokens; sent as max_tokens to providers that require it (anthropic)",
    },
    KeyDoc {
        key: "providers.<name>.models.input_price",
        kind: KeyKind::Text,
        doc: "US dollars per million prompt tokens",
    },
    KeyDoc {
        key: "providers.<name>.models.output_price",
        kind: KeyKind::Text,
        doc: "US dollars per million answer tokens",
    },
    KeyDoc {
        key: "providers.<name>.models.cached_price",
        kind: KeyKind::Text,
        doc: "US dollars per million prompt tokens read from the provider's cache",
    },
    KeyDoc {
        key: "providers.<name>.models.cache_write_price",
        kind: KeyKind::Text,
        doc: "US dollars per million prompt tokens written to the provider's cache (default: the input price)",
    },
    KeyDoc {
        key: "providers.<name>.models.tools",
        kind: KeyKind::Bool,
        doc: "the model can call tools",
    },
    KeyDoc {
        key: "providers.<name>.models.vision",
        kind: KeyKind::Bool,
        doc: "the model accepts images",
    },
    KeyDoc {
        key: "providers.<name>.models.thinking",
        kind: KeyKind::Bool,
        doc: "the model produces thinking blocks",
    },
];

/// The placeholder for a provider's name in [`KEYS`].
const PROVIDER_PLACEHOLDER: &str = "<name>";

/// A configuration problem. Every variant names where it is (the file label given by the caller
/// and, when known, the line) and which key is at fault.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{origin}:{line}: {message}")]
    Syntax {
        origin: String,
        line: usize,
        message: String,
    },
    #[error("{origin}:{line}: unknown key `{key}`{hint}")]
    UnknownKey {
        origin: String,
        line: usize,
        key: String,
        hint: String,
    },
    #[error("{origin}:{line}: bad value for `{key}`: {message}")]
    BadValue {
        origin: String,
        line: usize,
        key: String,
        message: String,
    },
    #[error("unknown configuration key `{key}`{hint}")]
    NoSuchKey { key: String, hint: String },
    #[error("bad value for `{key}`: {message}")]
    InvalidArgument { key: String, message: String },
}

impl Config {
    /// Parse and validate configuration text. `origin` names the text in errors (a path).
    ///
    /// # Errors
    /// A [`ConfigError`] naming the key and line of the first problem found.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let doc: toml_edit::Document<String> =
            text.parse().map_err(|e| syntax_error(text, origin, &e))?;
        check_known_keys(&doc, text, origin)?;
        let config: Config = toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(0, |s| line_of(text, s.start));
            let key = e
                .span()
                .and_then(|s| key_at(&doc, s.start))
                .unwrap_or_else(|| "(unknown)".to_owned());
            ConfigError::BadValue {
                origin: origin.to_owned(),
                line,
                key,
                message: first_line(e.message()),
            }
        })?;
        config
            .validate()
            .map_err(|(key, message)| ConfigError::BadValue {
                origin: origin.to_owned(),
                line: key_line(&doc, text, &key).unwrap_or(0),
                key,
                message,
            })?;
        Ok(config)
    }

    /// Rules serde cannot express. Returns the key at fault and why.
    fn validate(&self) -> Result<(), (String, String)> {
        let is_url = |url: &str| url.starts_with("http://") || url.starts_with("https://");
        let is_env_name = |var: &str| !var.is_empty() && !var.contains('=');
        if let Some(url) = &self.model.base_url
            && !is_url(url)
        {
            return Err((
                "model.base_url".to_owned(),
                format!("{url:?} is not an http:// or https:// URL"),
            ));
        }
        if self.model.name.as_deref() == Some("") {
            return Err(("model.name".to_owned(), "must not be empty".to_owned()));
        }
        if self.model.provider.as_deref() == Some("") {
            return Err(("model.provider".to_owned(), "must not be empty".to_owned()));
        }
        if let Some(var) = &self.model.api_key_env
            && !is_env_name(var)
        {
            return Err((
                "model.api_key_env".to_owned(),
                format!("{var:?} is not an environment variable name"),
            ));
        }
        for (i, fallback) in self.model.fallback.iter().enumerate() {
            let key = |leaf: &str| format!("model.fallback[{i}].{leaf}");
            if fallback.provider.trim().is_empty() {
                return Err((key("provider"), "must not be empty".to_owned()));
            }
            if fallback.model.as_deref() == Some("") {
                return Err((key("model"), "must not be empty".to_owned()));
            }
            if let Some(url) = &fallback.base_url
                && !is_url(url)
            {
                return Err((
                    key("base_url"),
                    format!("{url:?} is not an http:// or https:// URL"),
                ));
            }
            if let Some(envs) = &fallback.api_key_env {
                let names = envs.names();
                if names.is_empty() {
                    return Err((key("api_key_env"), "names no variable".to_owned()));
                }
                if let Some(bad) = names.iter().find(|n| !is_env_name(n)) {
                    return Err((
                        key("api_key_env"),
                        format!("{bad:?} is not an environment variable name"),
                    ));
                }
            }
        }
        for (key, percent) in [
            ("agent.compress_at_percent", self.agent.compress_at_percent),
            (
                "agent.tool_search_at_percent",
                self.agent.tool_search_at_percent,
            ),
        ] {
            if percent == 0 || percent > 100 {
                return Err((key.to_owned(), "must be between 1 and 100".to_owned()));
            }
        }
        for (name, entry) in &self.providers {
            let key = |leaf: &str| format!("providers.{name}.{leaf}");
            if let Some(url) = &entry.base_url
                && !is_url(url)
            {
                return Err((
                    key("base_url"),
                    format!("{url:?} is not an http:// or https:// URL"),
                ));
            }
            if let Some(var) = &entry.api_key_env
                && !is_env_name(var)
            {
                return Err((
                    key("api_key_env"),
                    format!("{var:?} is not an environment variable name"),
                ));
            }
            if entry.default_model.as_deref() == Some("") {
                return Err((key("default_model"), "must not be empty".to_owned()));
            }
            let mut seen = std::collections::BTreeSet::new();
            for (i, model) in entry.models.iter().enumerate() {
                let at = format!("providers.{name}.models[{i}].name");
                if model.name.trim().is_empty() {
                    return Err((at, "must not be empty".to_owned()));
                }
                if !seen.insert(model.name.as_str()) {
                    return Err((at, format!("model {:?} is listed twice", model.name)));
                }
                let prices = [
                    model.input_price,
                    model.output_price,
                    model.cached_price,
                    model.cache_write_price,
                ];
                if prices
                    .into_iter()
                    .flatten()
                    .any(|p| !p.is_finite() || p < 0.0)
                {
                    return Err((
                        format!("providers.{name}.models[{i}]"),
                        "prices must be zero or more".to_owned(),
                    ));
                }
            }
        }
        let positive: [(&'static str, u64); 6] = [
            (
                "model.connect_timeout_secs",
                self.model.connect_timeout_secs,
            ),
            ("model.read_timeout_secs", self.model.read_timeout_secs),
            ("agent.max_iterations", u64::from(self.agent.max_iterations)),
            (
                "agent.tool_output_max_chars",
                self.agent.tool_output_max_chars as u64,
            ),
            (
                "agent.terminal_timeout_secs",
                self.agent.terminal_timeout_secs,
            ),
            (
                "memory.memory_char_limit",
                self.memory.memory_char_limit as u64,
            ),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err((key.to_owned(), "must be greater than 0".to_owned()));
            }
        }
        if self.memory.user_char_limit == 0 {
            return Err((
                "memory.user_char_limit".to_owned(),
                "must be greater than 0".to_owned(),
            ));
        }
        if self.skills.archive_after_days < self.skills.stale_after_days {
            return Err((
                "skills.archive_after_days".to_owned(),
                "must not be less than skills.stale_after_days".to_owned(),
            ));
        }
        Ok(())
    }

    /// The effective value of a dotted key, as TOML text. Secrets print as `[redacted]`.
    ///
    /// # Errors
    /// [`ConfigError::NoSuchKey`] for a key that is not in [`KEYS`].
    pub fn get(&self, key: &str) -> Result<Option<String>, ConfigError> {
        let doc = lookup_key(key)?;
        let value = serde_json::to_value(self).map_err(|e| ConfigError::InvalidArgument {
            key: key.to_owned(),
            message: e.to_string(),
        })?;
        let mut node = &value;
        for part in key.split('.') {
            match node.get(part) {
                Some(next) => node = next,
                None => return Ok(None),
            }
        }
        Ok(match node {
            serde_json::Value::Null => None,
            _ if doc.kind == KeyKind::Secret => Some("[redacted]".to_owned()),
            serde_json::Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        })
    }

    /// The effective configuration as TOML, defaults filled in, secrets redacted.
    pub fn to_redacted_toml(&self) -> String {
        let mut shown = self.clone();
        if shown.model.api_key.is_some() {
            shown.model.api_key = Some(Secret::new("[redacted]"));
        }
        toml::to_string_pretty(&shown).unwrap_or_default()
    }
}

/// Set `key` to `value` in configuration text, keeping the rest of the file (comments, order)
/// as it was, and return the new text. The result is validated as a whole before it is returned,
/// so a bad value never reaches the file.
///
/// # Errors
/// [`ConfigError::NoSuchKey`] for an unknown key, [`ConfigError::InvalidArgument`] for a value of
/// the wrong type, or any error [`Config::from_toml_str`] reports for the edited text.
pub fn set_key(text: &str, key: &str, value: &str, origin: &str) -> Result<String, ConfigError> {
    let doc_entry = lookup_key(key)?;
    let bad = |message: String| ConfigError::InvalidArgument {
        key: key.to_owned(),
        message,
    };
    if key.contains(PROVIDER_PLACEHOLDER) {
        return Err(bad(
            "providers are edited as [providers.NAME] tables in the file".to_owned(),
        ));
    }
    let item = match doc_entry.kind {
        KeyKind::Text | KeyKind::Secret => toml_edit::value(value),
        KeyKind::Integer => {
            let n: i64 = value
                .parse()
                .map_err(|_| bad(format!("{value:?} is not an integer")))?;
            toml_edit::value(n)
        }
        KeyKind::Bool => match value {
            "true" => toml_edit::value(true),
            "false" => toml_edit::value(false),
            _ => return Err(bad(format!("{value:?} is not true or false"))),
        },
    };
    let mut doc: toml_edit::DocumentMut =
        text.parse().map_err(|e| syntax_error(text, origin, &e))?;
    let (table, leaf) = key
        .split_once('.')
        .ok_or_else(|| bad("not a dotted key".to_owned()))?;
    if !doc.contains_table(table) {
        doc[table] = toml_edit::table();
    }
    doc[table][leaf] = item;
    let new_text = doc.to_string();
    Config::from_toml_str(&new_text, origin)?;
    Ok(new_text)
}

fn lookup_key(key: &str) -> Result<&'static KeyDoc, ConfigError> {
    KEYS.iter()
        .find(|k| k.key == key)
        .ok_or_else(|| ConfigError::NoSuchKey {
            key: key.to_owned(),
            hint: suggestion(key),
        })
}

fn suggestion(key: &str) -> String {
    suggestion_among(key, "")
}

/// A "did you mean" among the documented keys that start with `prefix`.
fn suggestion_among(key: &str, prefix: &str) -> String {
    let best = KEYS
        .iter()
        .filter(|k| k.key.starts_with(prefix))
        .map(|k| {
            let leaf_of = |s: &str| s.rsplit('.').next().unwrap_or(s).to_owned();
            let d = edit_distance(key, k.key).min(edit_distance(&leaf_of(key), &leaf_of(k.key)));
            (d, k.key)
        })
        .min_by_key(|(d, _)| *d);
    match best {
        Some((d, known)) if d <= 3 => format!(" (did you mean `{known}`?)"),
        _ => " (see `talaria config show` for the known keys)".to_owned(),
    }
}

/// Levenshtein distance, for "did you mean" hints on short key names (configuration here,
/// sandbox policies in `talaria-policy`).
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev_diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            let next = (row[j + 1] + 1).min(row[j] + 1).min(prev_diag + cost);
            prev_diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

fn check_known_keys(
    doc: &toml_edit::Document<String>,
    text: &str,
    origin: &str,
) -> Result<(), ConfigError> {
    for (table_name, item) in doc.as_table().iter() {
        let line =
            |span: Option<std::ops::Range<usize>>| span.map_or(0, |s| line_of(text, s.start));
        let known = KEYS
            .iter()
            .any(|k| k.key.starts_with(&format!("{table_name}.")));
        let key_span = doc.as_table().key(table_name).and_then(|k| k.span());
        if !known {
            return Err(ConfigError::UnknownKey {
                origin: origin.to_owned(),
                line: line(key_span),
                key: table_name.to_owned(),
                hint: suggestion(table_name),
            });
        }
        let Some(table) = item.as_table_like() else {
            return Err(ConfigError::BadValue {
                origin: origin.to_owned(),
                line: line(key_span),
                key: table_name.to_owned(),
                message: "must be a table".to_owned(),
            });
        };
        if table_name == "providers" {
            check_provider_keys(table, text, origin)?;
            continue;
        }
        for (leaf, value) in table.iter() {
            let dotted = format!("{table_name}.{leaf}");
            if dotted == "model.fallback" {
                check_fallback_keys(value, text, origin)?;
            }
            if !KEYS.iter().any(|k| k.key == dotted) {
                let span = table.key(leaf).and_then(|k| k.span());
                return Err(ConfigError::UnknownKey {
                    origin: origin.to_owned(),
                    line: line(span),
                    key: dotted.clone(),
                    hint: suggestion(&dotted),
                });
            }
        }
    }
    Ok(())
}

/// `[[model.fallback]]` entries: an array of tables with documented fields.
fn check_fallback_keys(
    value: &toml_edit::Item,
    text: &str,
    origin: &str,
) -> Result<(), ConfigError> {
    let entries: Vec<&dyn toml_edit::TableLike> = match value {
        toml_edit::Item::ArrayOfTables(a) => {
            a.iter().map(|t| t as &dyn toml_edit::TableLike).collect()
        }
        toml_edit::Item::Value(toml_edit::Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_inline_table())
            .map(|t| t as &dyn toml_edit::TableLike)
            .collect(),
        _ => Vec::new(),
    };
    for (i, entry) in entries.into_iter().enumerate() {
        for (field, _) in entry.iter() {
            let generic = format!("model.fallback.{field}");
            if !KEYS.iter().any(|k| k.key == generic) {
                let span = entry.key(field).and_then(|k| k.span());
                return Err(ConfigError::UnknownKey {
                    origin: origin.to_owned(),
                    line: span.map_or(0, |s| line_of(text, s.start)),
                    key: format!("model.fallback[{i}].{field}"),
                    hint: suggestion_among(&generic, "model.fallback."),
                });
            }
        }
    }
    Ok(())
}

/// `[providers.NAME]` tables: any provider name, but only documented fields, and `models` as an
/// array of tables with documented fields.
fn check_provider_keys(
    providers: &dyn toml_edit::TableLike,
    text: &str,
    origin: &str,
) -> Result<(), ConfigError> {
    let line = |span: Option<std::ops::Range<usize>>| span.map_or(0, |s| line_of(text, s.start));
    let unknown = |name: &str, generic: String, span| {
        let shown = generic.replace(PROVIDER_PLACEHOLDER, name);
        ConfigError::UnknownKey {
            origin: origin.to_owned(),
            line: line(span),
            key: shown,
            hint: suggestion_among(&generic, "providers.").replace(PROVIDER_PLACEHOLDER, name),
        }
    };
    let documented = |generic: &str| KEYS.iter().any(|k| k.key == generic);
    for (name, item) in providers.iter() {
        let name_span = providers.key(name).and_then(|k| k.span());
        let Some(table) = item.as_table_like() else {
            return Err(ConfigError::BadValue {
                origin: origin.to_owned(),
                line: line(name_span),
                key: format!("providers.{name}"),
                message: "must be a table ([providers.NAME])".to_owned(),
            });
        };
        for (leaf, value) in table.iter() {
            let span = table.key(leaf).and_then(|k| k.span());
            let generic = format!("providers.{PROVIDER_PLACEHOLDER}.{leaf}");
            if !documented(&generic) {
                return Err(unknown(name, generic, span));
            }
            if leaf != "models" {
                continue;
            }
            let models: Vec<&dyn toml_edit::TableLike> = match value {
                toml_edit::Item::ArrayOfTables(a) => {
                    a.iter().map(|t| t as &dyn toml_edit::TableLike).collect()
                }
                toml_edit::Item::Value(toml_edit::Value::Array(a)) => a
                    .iter()
                    .filter_map(|v| v.as_inline_table())
                    .map(|t| t as &dyn toml_edit::TableLike)
                    .collect(),
                _ => Vec::new(),
            };
            for model in models {
                for (field, _) in model.iter() {
                    let generic = format!("providers.{PROVIDER_PLACEHOLDER}.models.{field}");
                    if !documented(&generic) {
                        let span = model.key(field).and_then(|k| k.span());
                        return Err(unknown(name, generic, span));
                    }
                }
            }
        }
    }
    Ok(())
}

/// The dotted key whose value (or key) covers byte `offset`.
fn key_at(doc: &toml_edit::Document<String>, offset: usize) -> Option<String> {
    let covers = |span: Option<std::ops::Range<usize>>| span.is_some_and(|s| s.contains(&offset));
    for (table_name, item) in doc.as_table().iter() {
        let Some(table) = item.as_table_like() else {
            continue;
        };
        for (leaf, value) in table.iter() {
            if let toml_edit::Item::ArrayOfTables(entries) = value {
                for (i, entry) in entries.iter().enumerate() {
                    for (field, v) in entry.iter() {
                        if covers(v.span()) || covers(entry.key(field).and_then(|k| k.span())) {
                            return Some(format!("{table_name}.{leaf}[{i}].{field}"));
                        }
                    }
                }
            }
            if covers(value.span()) || covers(table.key(leaf).and_then(|k| k.span())) {
                return Some(format!("{table_name}.{leaf}"));
            }
        }
        if covers(item.span()) {
            return Some(table_name.to_owned());
        }
    }
    None
}

/// The line of a dotted key such as `model.name` or `providers.x.models[1].name`.
fn key_line(doc: &toml_edit::Document<String>, text: &str, key: &str) -> Option<usize> {
    let mut table: &dyn toml_edit::TableLike = doc.as_table();
    let mut parts = key.split('.').peekable();
    while let Some(part) = parts.next() {
        let (name, index) = match part.split_once('[') {
            Some((name, rest)) => (name, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        if parts.peek().is_none() && index.is_none() {
            let span = table.key(name)?.span()?;
            return Some(line_of(text, span.start));
        }
        let name_span = table.key(name).and_then(|k| k.span());
        let item = table.get(name)?;
        table = match index {
            Some(i) => match item {
                toml_edit::Item::ArrayOfTables(a) => a.get(i)?,
                _ => item.as_array()?.get(i)?.as_inline_table()?,
            },
            None => item.as_table_like()?,
        };
        if parts.peek().is_none() {
            return name_span.map(|s| line_of(text, s.start));
        }
    }
    None
}

fn syntax_error(text: &str, origin: &str, e: &toml_edit::TomlError) -> ConfigError {
    ConfigError::Syntax {
        origin: origin.to_owned(),
        line: e.span().map_or(0, |s| line_of(text, s.start)),
        message: first_line(e.message()),
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset).map_or(0, |t| t.matches('\n').count()) + 1
}

fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or(message).trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_text_gives_defaults() {
        let c = Config::from_toml_str("", "t").unwrap();
        assert_eq!(c.agent.max_iterations, 90);
        assert_eq!(c, Config::default());
    }

    #[test]
    fn keys_table_matches_the_model() {
        let mut full = Config::default();
        full.model.provider = Some("p".into());
        full.model.base_url = Some("http://x".into());
        full.model.name = Some("m".into());
        full.model.api_key = Some(Secret::new("k"));
        full.model.api_key_env = Some("K".into());
        full.model.fallback.push(FallbackModel {
            provider: "p".into(),
            model: Some("m".into()),
            base_url: Some("http://z".into()),
            api_key_env: Some(KeyEnvs::One("K".into())),
        });
        full.providers.insert(
            "mine".into(),
            ProviderEntry {
                api: Some(crate::provider::ApiKind::Anthropic),
                base_url: Some("http://y".into()),
                api_key_env: Some("Y".into()),
                key_required: Some(true),
                default_model: Some("m".into()),
                open_models: Some(false),
                models: vec![crate::provider::ModelEntry {
                    name: "m".into(),
                    context_length: Some(1),
                    max_output_tokens: Some(1),
                    input_price: Some(1.0),
                    output_price: Some(1.0),
                    cached_price: Some(1.0),
                    cache_write_price: Some(1.0),
                    tools: true,
                    vision: true,
                    thinking: true,
                }],
            },
        );
        let table: toml::Table = toml::from_str(&toml::to_string(&full).unwrap()).unwrap();
        let mut keys: Vec<String> = Vec::new();
        for (t, v) in &table {
            for (leaf, value) in v.as_table().unwrap() {
                if t != "providers" {
                    keys.push(format!("{t}.{leaf}"));
                    if let Some(entries) = value.as_array() {
                        for field in entries[0].as_table().unwrap().keys() {
                            keys.push(format!("{t}.{leaf}.{field}"));
                        }
                    }
                    continue;
                }
                for (field, value) in value.as_table().unwrap() {
                    keys.push(format!("providers.<name>.{field}"));
                    if field == "models" {
                        for model_field in value.as_array().unwrap()[0].as_table().unwrap().keys() {
                            keys.push(format!("providers.<name>.models.{model_field}"));
                        }
                    }
                }
            }
        }
        keys.sort();
        let mut documented: Vec<String> = KEYS.iter().map(|k| k.key.to_owned()).collect();
        documented.sort();
        assert_eq!(keys, documented);
    }

    #[test]
    fn providers_extend_the_catalogue_with_checked_keys() {
        let text = "[model]\nprovider = \"mine\"\n\n[providers.mine]\napi = \"anthropic\"\nbase_url = \"http://127.0.0.1:9/\"\napi_key_env = \"MINE_KEY\"\n\n[[providers.mine.models]]\nname = \"big\"\ncontext_length = 1000\ninput_price = 1.5\ntools = true\n";
        let c = Config::from_toml_str(text, "c.toml").unwrap();
        let mine = &c.providers["mine"];
        assert_eq!(mine.api, Some(crate::provider::ApiKind::Anthropic));
        assert_eq!(mine.models[0].name, "big");
        assert_eq!(mine.models[0].input_price, Some(1.5));
        assert!(mine.models[0].tools && !mine.models[0].vision);

        let err = Config::from_toml_str("[providers.mine]\nbase_ulr = \"http://x\"\n", "c.toml")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "c.toml:2: unknown key `providers.mine.base_ulr` (did you mean `providers.mine.base_url`?)"
        );
        let err = Config::from_toml_str(
            "[providers.mine]\n\n[[providers.mine.models]]\nname = \"a\"\ncontext = 5\n",
            "c.toml",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("c.toml:5: unknown key `providers.mine.models.context`"),
            "{err}"
        );
        let err = Config::from_toml_str("[providers.mine]\nbase_url = \"ftp://x\"\n", "c.toml")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "c.toml:2: bad value for `providers.mine.base_url`: \"ftp://x\" is not an http:// or https:// URL"
        );
        let err = Config::from_toml_str(
            "[providers.mine]\n[[providers.mine.models]]\nname = \"a\"\n[[providers.mine.models]]\nname = \"a\"\n",
            "c.toml",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("`providers.mine.models[1].name`: model \"a\" is listed twice"),
            "{err}"
        );
        assert!(matches!(
            set_key("", "providers.<name>.base_url", "http://x", "c"),
            Err(ConfigError::InvalidArgument { .. })
        ));
    }

    #[test]
    fn fallbacks_parse_and_malformed_ones_name_the_key() {
        let text = "[model]\nprovider = \"openai\"\napi_key_env = \"A1, A2\"\n\n[[model.fallback]]\nprovider = \"anthropic\"\nmodel = \"claude-sonnet-4-5\"\napi_key_env = [\"B1\", \"B2\"]\n\n[[model.fallback]]\nprovider = \"ollama\"\nbase_url = \"http://127.0.0.1:11434/v1\"\n";
        let c = Config::from_toml_str(text, "c.toml").unwrap();
        assert_eq!(c.model.fallback.len(), 2);
        assert_eq!(c.model.fallback[0].provider, "anthropic");
        assert_eq!(
            c.model.fallback[0].api_key_env.as_ref().unwrap().names(),
            ["B1", "B2"]
        );
        assert_eq!(KeyEnvs::One(" A1, A2 ".into()).names(), ["A1", "A2"]);

        let err = Config::from_toml_str(
            "[[model.fallback]]\nprovider = \"ollama\"\nmodle = \"x\"\n",
            "c.toml",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "c.toml:3: unknown key `model.fallback[0].modle` (did you mean `model.fallback.model`?)"
        );
        let err = Config::from_toml_str(
            "[[model.fallback]]\nprovider = \"ollama\"\n\n[[model.fallback]]\nprovider = \"x\"\nbase_url = \"ftp://h\"\n",
            "c.toml",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "c.toml:6: bad value for `model.fallback[1].base_url`: \"ftp://h\" is not an http:// or https:// URL"
        );
        let err =
            Config::from_toml_str("[[model.fallback]]\nmodel = \"m\"\n", "c.toml").unwrap_err();
        assert!(err.to_string().contains("provider"), "{err}");
        let err = Config::from_toml_str(
            "[[model.fallback]]\nprovider = \"groq\"\napi_key_env = \"A=B\"\n",
            "c.toml",
        )
        .unwrap_err();
        assert!(
            err.to_string().contains(
                "`model.fallback[0].api_key_env`: \"A=B\" is not an environment variable name"
            ),
            "{err}"
        );
    }

    #[test]
    fn unknown_key_is_named_with_line() {
        let err =
            Config::from_toml_str("[model]\nname = \"m\"\nbase_ulr = \"http://x\"\n", "c.toml")
                .unwrap_err();
        assert_eq!(
            err.to_string(),
            "c.toml:3: unknown key `model.base_ulr` (did you mean `model.base_url`?)"
        );
        let err = Config::from_toml_str("[modle]\n", "c.toml").unwrap_err();
        assert!(
            err.to_string().starts_with("c.toml:1: unknown key `modle`"),
            "{err}"
        );
    }

    #[test]
    fn wrong_type_names_key_and_line() {
        let err =
            Config::from_toml_str("[agent]\n\nmax_iterations = \"lots\"\n", "c.toml").unwrap_err();
        let ConfigError::BadValue { line, key, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!((*line, key.as_str()), (3, "agent.max_iterations"), "{err}");
    }

    #[test]
    fn semantic_rules_name_key_and_line() {
        let err = Config::from_toml_str("[model]\nbase_url = \"ftp://x\"\n", "c.toml").unwrap_err();
        assert_eq!(
            err.to_string(),
            "c.toml:2: bad value for `model.base_url`: \"ftp://x\" is not an http:// or https:// URL"
        );
        let err = Config::from_toml_str("[agent]\nmax_iterations = 0\n", "c.toml").unwrap_err();
        assert!(
            err.to_string()
                .contains("`agent.max_iterations`: must be greater than 0")
        );
    }

    #[test]
    fn syntax_error_has_line() {
        let err = Config::from_toml_str("[model]\nname = \n", "c.toml").unwrap_err();
        assert!(
            matches!(err, ConfigError::Syntax { line: 2, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn set_keeps_comments_and_validates() {
        let text = "# mine\n[model]\nname = \"a\" # keep\n";
        let out = set_key(text, "agent.max_iterations", "12", "c").unwrap();
        assert!(out.contains("# mine") && out.contains("# keep"));
        assert_eq!(
            Config::from_toml_str(&out, "c")
                .unwrap()
                .agent
                .max_iterations,
            12
        );
        assert!(matches!(
            set_key(text, "agent.max_iterations", "x", "c"),
            Err(ConfigError::InvalidArgument { .. })
        ));
        assert!(matches!(
            set_key(text, "agent.nope", "1", "c"),
            Err(ConfigError::NoSuchKey { .. })
        ));
        assert!(set_key(text, "model.base_url", "nope", "c").is_err());
    }

    #[test]
    fn get_reads_defaults_and_redacts() {
        let c = Config::from_toml_str("[model]\napi_key = \"sk-1\"\n", "c").unwrap();
        assert_eq!(
            c.get("agent.max_iterations").unwrap().as_deref(),
            Some("90")
        );
        assert_eq!(
            c.get("model.api_key").unwrap().as_deref(),
            Some("[redacted]")
        );
        assert_eq!(c.get("model.name").unwrap(), None);
        assert!(!c.to_redacted_toml().contains("sk-1"));
    }
}
