//! Every key the configuration accepts, with its type and documentation, and the "did you
//! mean" hint for a key that is not among them.

use super::error::ConfigError;

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
pub(super) const PROVIDER_PLACEHOLDER: &str = "<name>";

pub(super) fn lookup_key(key: &str) -> Result<&'static KeyDoc, ConfigError> {
    KEYS.iter()
        .find(|k| k.key == key)
        .ok_or_else(|| ConfigError::NoSuchKey {
            key: key.to_owned(),
            hint: suggestion(key),
        })
}

pub(super) fn suggestion(key: &str) -> String {
    suggestion_among(key, "")
}

/// A "did you mean" among the documented keys that start with `prefix`.
pub(super) fn suggestion_among(key: &str, prefix: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::KEYS;
    use crate::config::{Config, FallbackModel, KeyEnvs};
    use crate::provider::ProviderEntry;
    use crate::secret::Secret;

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
}
