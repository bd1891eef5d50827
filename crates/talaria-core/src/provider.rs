//! The shape of a model provider's description: which wire API it speaks, where it lives, which
//! environment variable holds its key, and what is known about its models.
//!
//! The same [`ProviderEntry`] describes a provider in the catalogue shipped with Talaria
//! (`talaria-llm/providers.toml`) and in a user's `[providers.NAME]` table, where every field is
//! an override: a field left out keeps the catalogue's value. Merging and checking live in
//! `talaria_llm::catalogue`; this module only holds the types, so the configuration model can
//! carry them without depending on the model client.

use serde::{Deserialize, Serialize};

/// The wire protocol a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApiKind {
    /// `POST {base}/chat/completions` (OpenAI, vLLM, llama.cpp, Ollama, OpenRouter, ...).
    OpenaiCompatible,
    /// Anthropic's native Messages API, `POST {base}/v1/messages`.
    Anthropic,
}

impl ApiKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ApiKind::OpenaiCompatible => "openai-compatible",
            ApiKind::Anthropic => "anthropic",
        }
    }
}

/// One provider, as the catalogue or a user's configuration describes it. Every field is
/// optional so that a configuration entry can override just one of them.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<ApiKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// The environment variable holding the provider's API key, e.g. `OPENROUTER_API_KEY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// Whether a request without a key is pointless (hosted APIs) or normal (local servers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_required: Option<bool>,
    /// The model used when none is chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_model: Option<String>,
    /// Whether any model name is accepted (aggregators, local servers) or only the listed ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_models: Option<bool>,
    /// Known models; a configured model with the name of a catalogue model replaces it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<ModelEntry>,
}

/// What is known about one model. Prices are in US dollars per million tokens.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    pub name: String,
    /// Context window in tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_length: Option<u64>,
    /// Largest answer the model may produce; Anthropic requires `max_tokens`, and this is it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_price: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_price: Option<f64>,
    /// Price of prompt tokens read from the provider's cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_price: Option<f64>,
    /// Price of prompt tokens written to the provider's cache (Anthropic: 1.25 × input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_price: Option<f64>,
    #[serde(default)]
    pub tools: bool,
    #[serde(default)]
    pub vision: bool,
    #[serde(default)]
    pub thinking: bool,
}

impl ModelEntry {
    /// What `usage` costs in US dollars at this model's prices, or `None` when the input or
    /// output price is unknown. Cache reads and writes without their own price are charged at
    /// the input price.
    pub fn cost(&self, usage: &crate::Usage) -> Option<f64> {
        let input = self.input_price?;
        let output = self.output_price?;
        let read = usage.cached_tokens;
        let write = usage.cache_write_tokens;
        let plain = usage.prompt_tokens.saturating_sub(read + write);
        #[expect(
            clippy::cast_precision_loss,
            reason = "token counts stay far below 2^52"
        )]
        let dollars = (plain as f64 * input
            + read as f64 * self.cached_price.unwrap_or(input)
            + write as f64 * self.cache_write_price.unwrap_or(input)
            + usage.completion_tokens as f64 * output)
            / 1_000_000.0;
        Some(dollars)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_counts_cache_reads_and_writes_at_their_prices() {
        let model = ModelEntry {
            name: "m".into(),
            input_price: Some(3.0),
            output_price: Some(15.0),
            cached_price: Some(0.3),
            cache_write_price: Some(3.75),
            ..ModelEntry::default()
        };
        let usage = crate::Usage {
            prompt_tokens: 1_000_000,
            completion_tokens: 100_000,
            cached_tokens: 400_000,
            cache_write_tokens: 100_000,
        };
        let cost = model.cost(&usage).unwrap();
        // 500k plain × 3 + 400k × 0.3 + 100k × 3.75 + 100k × 15, per million
        assert!((cost - (1.5 + 0.12 + 0.375 + 1.5)).abs() < 1e-9, "{cost}");
        let unpriced = ModelEntry {
            name: "m".into(),
            ..ModelEntry::default()
        };
        assert_eq!(unpriced.cost(&usage), None);
    }
}
