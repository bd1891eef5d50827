//! Turning configuration text into a validated [`Config`]: syntax, unknown keys (with "did you
//! mean"), value types, and the rules serde cannot express, each error naming the key and line.

use super::error::ConfigError;
use super::keys::{KEYS, PROVIDER_PLACEHOLDER, suggestion, suggestion_among};
use super::model::Config;

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
}

pub(super) fn check_known_keys(
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
pub(super) fn check_fallback_keys(
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
pub(super) fn check_provider_keys(
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
pub(super) fn key_at(doc: &toml_edit::Document<String>, offset: usize) -> Option<String> {
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
pub(super) fn key_line(doc: &toml_edit::Document<String>, text: &str, key: &str) -> Option<usize> {
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

pub(super) fn syntax_error(text: &str, origin: &str, e: &toml_edit::TomlError) -> ConfigError {
    ConfigError::Syntax {
        origin: origin.to_owned(),
        line: e.span().map_or(0, |s| line_of(text, s.start)),
        message: first_line(e.message()),
    }
}

pub(super) fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset).map_or(0, |t| t.matches('\n').count()) + 1
}

pub(super) fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or(message).trim().to_owned()
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigError, KeyEnvs, set_key};

    #[test]
    fn empty_text_gives_defaults() {
        let c = Config::from_toml_str("", "t").unwrap();
        assert_eq!(c.agent.max_iterations, 90);
        assert_eq!(c, Config::default());
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
}
