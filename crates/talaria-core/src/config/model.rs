//! The configuration's sections and their defaults: the one place a default is written.

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
