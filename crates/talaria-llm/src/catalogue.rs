//! The provider catalogue: the providers Talaria knows (`providers.toml`, compiled in), merged
//! with a user's `[providers.NAME]` tables, and the checks that refuse an unknown provider or
//! model before any request is sent.
//!
//! A router (fallback chains, `/model` switching) asks this catalogue what a `provider:model`
//! means; it never builds clients itself. This module does no I/O: the caller reads the
//! environment and builds the client from the [`Provider`] it gets back.

use std::collections::BTreeMap;

use talaria_core::config::edit_distance;
use talaria_core::{ApiKind, ModelEntry, ProviderEntry};

/// The catalogue shipped with Talaria.
const BUILTIN: &str = include_str!("../providers.toml");

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CatalogueError {
    #[error("the built-in provider catalogue is broken: {0}")]
    Builtin(String),
    #[error("`providers.{provider}` is not in the catalogue, so it needs `{field}`")]
    Incomplete {
        provider: String,
        field: &'static str,
    },
    #[error("unknown provider {name:?} in `{key}`{hint}")]
    UnknownProvider {
        key: String,
        name: String,
        hint: String,
    },
    #[error(
        "unknown model {name:?} for provider `{provider}` in `{key}`{hint}; add it as \
         [[providers.{provider}.models]] in the configuration if it is new"
    )]
    UnknownModel {
        key: String,
        provider: String,
        name: String,
        hint: String,
    },
}

/// One provider with every field decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Provider {
    pub name: String,
    pub api: ApiKind,
    /// `None` only for `custom`, whose endpoint the user must give.
    pub base_url: Option<String>,
    pub api_key_env: Option<String>,
    pub key_required: bool,
    pub default_model: Option<String>,
    pub open_models: bool,
    pub models: Vec<ModelEntry>,
}

impl Provider {
    /// What the catalogue knows about `model`, if anything.
    pub fn model(&self, model: &str) -> Option<&ModelEntry> {
        self.models.iter().find(|m| m.name == model)
    }

    /// Checks that this provider serves `model`; `key` names where the name came from
    /// (`--model`, `model.name`, ...) for the error.
    ///
    /// # Errors
    /// [`CatalogueError::UnknownModel`] for a model a closed-list provider does not list.
    pub fn check_model(
        &self,
        model: &str,
        key: &str,
    ) -> Result<Option<&ModelEntry>, CatalogueError> {
        match self.model(model) {
            Some(entry) => Ok(Some(entry)),
            None if self.open_models => Ok(None),
            None => Err(CatalogueError::UnknownModel {
                key: key.to_owned(),
                provider: self.name.clone(),
                name: model.to_owned(),
                hint: did_you_mean(model, self.models.iter().map(|m| m.name.as_str())),
            }),
        }
    }

    /// `max_output_tokens` of every listed model that has one.
    pub fn max_output_tokens(&self) -> BTreeMap<String, u32> {
        self.models
            .iter()
            .filter_map(|m| Some((m.name.clone(), m.max_output_tokens?)))
            .collect()
    }
}

/// Every provider Talaria can talk to, by name.
#[derive(Debug, Clone, PartialEq)]
pub struct Catalogue {
    providers: BTreeMap<String, Provider>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogueFile {
    providers: BTreeMap<String, ProviderEntry>,
}

impl Catalogue {
    /// The catalogue shipped with Talaria.
    ///
    /// # Errors
    /// [`CatalogueError::Builtin`] if `providers.toml` does not parse (a test keeps it valid).
    pub fn builtin() -> Result<Self, CatalogueError> {
        Self::builtin_with(&BTreeMap::new())
    }

    /// The shipped catalogue with the user's `[providers.NAME]` tables applied: a field given
    /// there replaces the catalogue's, a model named like a catalogue model replaces it, and a
    /// new provider must at least say which `api` it speaks.
    ///
    /// # Errors
    /// [`CatalogueError::Builtin`] or [`CatalogueError::Incomplete`].
    pub fn builtin_with(
        overrides: &BTreeMap<String, ProviderEntry>,
    ) -> Result<Self, CatalogueError> {
        let file: CatalogueFile =
            toml::from_str(BUILTIN).map_err(|e| CatalogueError::Builtin(e.to_string()))?;
        let mut entries = file.providers;
        for (name, extra) in overrides {
            let entry = entries.entry(name.clone()).or_default();
            merge(entry, extra);
        }
        let mut providers = BTreeMap::new();
        for (name, entry) in entries {
            let api = entry.api.ok_or_else(|| CatalogueError::Incomplete {
                provider: name.clone(),
                field: "api",
            })?;
            providers.insert(
                name.clone(),
                Provider {
                    name,
                    api,
                    base_url: entry.base_url,
                    api_key_env: entry.api_key_env,
                    key_required: entry.key_required.unwrap_or(false),
                    default_model: entry.default_model,
                    open_models: entry.open_models.unwrap_or(true),
                    models: entry.models,
                },
            );
        }
        Ok(Self { providers })
    }

    /// The provider called `name`; `key` names where the name came from (`--provider`,
    /// `model.provider`, ...) for the error.
    ///
    /// # Errors
    /// [`CatalogueError::UnknownProvider`], with the closest known name when there is one.
    pub fn provider(&self, name: &str, key: &str) -> Result<&Provider, CatalogueError> {
        self.providers
            .get(name)
            .ok_or_else(|| CatalogueError::UnknownProvider {
                key: key.to_owned(),
                name: name.to_owned(),
                hint: did_you_mean(name, self.providers.keys().map(String::as_str)),
            })
    }

    /// Every provider, by name.
    pub fn providers(&self) -> impl Iterator<Item = &Provider> {
        self.providers.values()
    }
}

fn merge(entry: &mut ProviderEntry, extra: &ProviderEntry) {
    macro_rules! take {
        ($($field:ident),*) => {$(
            if extra.$field.is_some() {
                entry.$field.clone_from(&extra.$field);
            }
        )*};
    }
    take!(
        api,
        base_url,
        api_key_env,
        key_required,
        default_model,
        open_models
    );
    for model in &extra.models {
        match entry.models.iter_mut().find(|m| m.name == model.name) {
            Some(known) => *known = model.clone(),
            None => entry.models.push(model.clone()),
        }
    }
}

/// ` (did you mean `x`?)` for the closest of `known`, or ` (known: a, b, ...)`.
fn did_you_mean<'a>(name: &str, known: impl Iterator<Item = &'a str>) -> String {
    let known: Vec<&str> = known.collect();
    let lower = name.to_lowercase();
    let best = known
        .iter()
        .map(|k| (edit_distance(&lower, &k.to_lowercase()), *k))
        .min_by_key(|(d, _)| *d);
    match best {
        Some((d, k)) if d <= 3.max(name.chars().count() / 3) => format!(" (did you mean `{k}`?)"),
        _ if known.is_empty() => String::new(),
        _ => format!(" (known: {})", known.join(", ")),
    }
}
