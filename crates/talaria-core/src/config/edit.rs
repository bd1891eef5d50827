//! Reading and setting one dotted key: `talaria config get` reads the effective value (secrets
//! redacted), `talaria config set` edits the text with `toml_edit` so comments and order stay,
//! and validates the whole result before it is returned.

use super::error::ConfigError;
use super::keys::{KeyKind, PROVIDER_PLACEHOLDER, lookup_key};
use super::load::syntax_error;
use super::model::Config;
use crate::secret::Secret;

impl Config {
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

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigError, set_key};

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
