//! Which model endpoint to talk to, from flags, environment, credentials and configuration.
//! The CLI and the agent unit take the same flags ([`EndpointArgs`]).
//!
//! The provider (`--provider`, `TALARIA_PROVIDER`, `model.provider`, default `custom`) is looked
//! up in the catalogue (`talaria_llm::Catalogue`, extended by `[providers.NAME]`), which gives
//! the wire API, the default endpoint and model, and the environment variable holding the key.
//! An unknown provider or model, or a missing key for a provider that requires one, is refused
//! here, before anything is sent, naming the flag, variable or key to fix. The same goes for
//! every `[[model.fallback]]` entry. [`provider`] puts the primary and the fallbacks, each with
//! its key pool, behind a `talaria_llm::Router`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use talaria_core::{ApiKind, Config, Secret};
use talaria_llm::{
    Anthropic, Catalogue, ChatProvider, EndpointConfig, OpenAiCompatible, Provider, RetryPolicy,
    Route, Router,
};

/// Where the model is: flags shared by `talaria chat` and `talaria-agentd`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct EndpointArgs {
    /// Provider from the catalogue: openai, custom, openrouter, nous, ollama, vllm, lmstudio,
    /// llamacpp, deepseek, groq, together, gemini, anthropic, or one from [providers.NAME]
    /// [env: TALARIA_PROVIDER] [default: custom]
    #[arg(long, value_name = "NAME")]
    pub provider: Option<String>,
    /// Endpoint, e.g. http://127.0.0.1:8080/v1; default: the provider's [env: TALARIA_BASE_URL, OPENAI_BASE_URL]
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// Model name [env: TALARIA_MODEL]
    #[arg(long, value_name = "NAME")]
    pub model: Option<String>,
    /// API key [env: TALARIA_API_KEY, the provider's variable, e.g. ANTHROPIC_API_KEY]; prefer a variable, flags show up in `ps`
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,
}

#[derive(Debug)]
pub struct Endpoint {
    /// The catalogue's entry for the chosen provider, user overrides applied.
    pub provider: Provider,
    pub base_url: String,
    pub model: Option<String>,
    pub api_key: Option<SourcedKey>,
    /// More keys of the same provider (`model.api_key_env = "K1,K2"`), rotated to on 429/402/401.
    pub extra_keys: Vec<SourcedKey>,
    /// `[[model.fallback]]`, resolved, in order.
    pub fallbacks: Vec<Fallback>,
}

/// One resolved `[[model.fallback]]` entry.
#[derive(Debug)]
pub struct Fallback {
    pub provider: Provider,
    pub base_url: String,
    pub model: String,
    /// The key pool; empty for a provider that needs none.
    pub keys: Vec<SourcedKey>,
}

/// An API key and where it came from (a flag, a variable, a credential, a config key), so a
/// rejected key's error names the place to fix — the one actually used.
#[derive(Debug, Clone)]
pub struct SourcedKey {
    pub secret: Secret,
    pub source: String,
}

impl SourcedKey {
    fn new(secret: impl Into<String>, source: impl Into<String>) -> Self {
        Self {
            secret: Secret::new(secret),
            source: source.into(),
        }
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The provider used when none is chosen: any OpenAI-compatible endpoint.
const DEFAULT_PROVIDER: &str = "custom";

/// Resolve the endpoint. Precedence for each setting: flag, `TALARIA_*`, `OPENAI_*` (for the
/// `openai` and `custom` providers), the configuration's `[model]` (when it is about the chosen
/// provider), the catalogue. Keys: flag, `TALARIA_API_KEY`, the systemd credential,
/// `model.api_key_env`, the provider's variable, `model.api_key`.
///
/// # Errors
/// An unknown provider or model (naming where the name came from, with the closest known
/// name), no base URL anywhere, or no key for a provider that requires one (naming the
/// variable to set).
pub fn resolve(
    args: &EndpointArgs,
    config: &Config,
    config_path: &std::path::Path,
) -> anyhow::Result<Endpoint> {
    let in_config = |key: &str| format!("{key} in {}", config_path.display());
    let catalogue = Catalogue::builtin_with(&config.providers)
        .with_context(|| format!("the providers in {}", config_path.display()))?;
    let (name, name_key) = if let Some(name) = args.provider.clone() {
        (name, "--provider".to_owned())
    } else if let Some(name) = env("TALARIA_PROVIDER") {
        (name, "TALARIA_PROVIDER".to_owned())
    } else if let Some(name) = config.model.provider.clone() {
        (name, in_config("model.provider"))
    } else {
        (
            DEFAULT_PROVIDER.to_owned(),
            "the default provider".to_owned(),
        )
    };
    let provider = catalogue.provider(&name, &name_key)?.clone();
    // `[model]` describes the configured provider; choosing another one on the command line
    // must not send it that provider's endpoint, model or key.
    let config_applies =
        config.model.provider.as_deref().unwrap_or(DEFAULT_PROVIDER) == provider.name;
    let model_config = config_applies.then_some(&config.model);
    let openai_family = matches!(provider.name.as_str(), "openai" | "custom");

    let base_url = args
        .base_url
        .clone()
        .or_else(|| env("TALARIA_BASE_URL"))
        .or_else(|| openai_family.then(|| env("OPENAI_BASE_URL")).flatten())
        .or_else(|| model_config.and_then(|m| m.base_url.clone()))
        .or_else(|| provider.base_url.clone());
    let Some(base_url) = base_url else {
        bail!(
            "no model endpoint configured: pass --base-url URL or set TALARIA_BASE_URL (or model.base_url in {})",
            config_path.display()
        );
    };
    if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
        bail!("the model endpoint {base_url:?} is not an http:// or https:// URL");
    }

    let model = if let Some(model) = args.model.clone() {
        Some((model, "--model".to_owned()))
    } else if let Some(model) = env("TALARIA_MODEL") {
        Some((model, "TALARIA_MODEL".to_owned()))
    } else if let Some(model) = model_config.and_then(|m| m.name.clone()) {
        Some((model, in_config("model.name")))
    } else {
        provider
            .default_model
            .clone()
            .map(|m| (m, format!("providers.{}.default_model", provider.name)))
    };
    if let Some((model, key)) = &model {
        provider.check_model(model, key)?;
    }

    let from_var = |var: &str| env(var).map(|key| SourcedKey::new(key, var));
    let api_key = args
        .api_key
        .clone()
        .map(|key| SourcedKey::new(key, "--api-key"))
        .or_else(|| from_var("TALARIA_API_KEY"))
        .or_else(|| {
            credential_key().map(|key| SourcedKey::new(key, "the systemd credential model-api-key"))
        })
        .or_else(|| pool_vars(model_config).iter().find_map(|v| from_var(v)))
        .or_else(|| provider.api_key_env.as_deref().and_then(from_var))
        .or_else(|| {
            model_config
                .and_then(|m| m.api_key.clone())
                .map(|secret| SourcedKey {
                    secret,
                    source: in_config("model.api_key"),
                })
        })
        .filter(|k| !k.secret.is_empty());
    if api_key.is_none() && provider.key_required {
        let var = provider.api_key_env.as_deref().unwrap_or("TALARIA_API_KEY");
        bail!(
            "provider `{}` needs an API key: set {var} (or TALARIA_API_KEY, or pass --api-key)",
            provider.name
        );
    }
    let extra_keys: Vec<SourcedKey> = pool_vars(model_config)
        .iter()
        .filter_map(|v| from_var(v))
        .filter(|k| {
            api_key
                .as_ref()
                .is_some_and(|first| first.secret.expose() != k.secret.expose())
        })
        .collect();
    let fallbacks = config
        .model
        .fallback
        .iter()
        .enumerate()
        .map(|(i, entry)| resolve_fallback(&catalogue, i, entry, &in_config))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Endpoint {
        provider,
        base_url,
        model: model.map(|(m, _)| m),
        api_key,
        extra_keys,
        fallbacks,
    })
}

/// The variables `model.api_key_env` names (one, or a comma-separated pool).
fn pool_vars(model_config: Option<&talaria_core::config::ModelConfig>) -> Vec<String> {
    model_config
        .and_then(|m| m.api_key_env.as_deref())
        .map(|v| talaria_core::config::KeyEnvs::One(v.to_owned()).names())
        .unwrap_or_default()
}

fn resolve_fallback(
    catalogue: &Catalogue,
    i: usize,
    entry: &talaria_core::config::FallbackModel,
    in_config: &dyn Fn(&str) -> String,
) -> anyhow::Result<Fallback> {
    let key = |leaf: &str| in_config(&format!("model.fallback[{i}].{leaf}"));
    let provider = catalogue
        .provider(&entry.provider, &key("provider"))?
        .clone();
    let Some(base_url) = entry.base_url.clone().or_else(|| provider.base_url.clone()) else {
        bail!(
            "provider `{}` has no default endpoint, so {} is needed",
            provider.name,
            key("base_url")
        );
    };
    let model = match entry.model.clone() {
        Some(model) => {
            provider.check_model(&model, &key("model"))?;
            model
        }
        None => match provider.default_model.clone() {
            Some(model) => model,
            None => bail!(
                "provider `{}` has no default model, so {} is needed",
                provider.name,
                key("model")
            ),
        },
    };
    let vars = match &entry.api_key_env {
        Some(envs) => envs.names(),
        None => provider.api_key_env.iter().cloned().collect(),
    };
    let keys: Vec<SourcedKey> = vars
        .iter()
        .filter_map(|v| env(v).map(|key| SourcedKey::new(key, v.as_str())))
        .collect();
    if keys.is_empty() && provider.key_required {
        bail!(
            "the fallback `{}:{model}` ({}) needs an API key: set {}",
            provider.name,
            key("provider"),
            if vars.is_empty() {
                "its api_key_env".to_owned()
            } else {
                vars.join(" or ")
            }
        );
    }
    Ok(Fallback {
        provider,
        base_url,
        model,
        keys,
    })
}

/// The model key systemd passed as the credential `model-api-key` (`LoadCredential=`), so a
/// unit never needs it in its environment.
fn credential_key() -> Option<String> {
    let dir = std::env::var_os("CREDENTIALS_DIRECTORY")?;
    let key = std::fs::read_to_string(std::path::Path::new(&dir).join("model-api-key")).ok()?;
    Some(key.trim().to_owned()).filter(|k| !k.is_empty())
}

/// A client for the endpoint, speaking the provider's API, with timeouts and retries from
/// configuration.
///
/// # Errors
/// When the HTTP client cannot be built.
pub fn provider(endpoint: &Endpoint, config: &Config) -> anyhow::Result<Arc<dyn ChatProvider>> {
    let mut keys: Vec<Option<SourcedKey>> = vec![endpoint.api_key.clone()];
    keys.extend(endpoint.extra_keys.iter().cloned().map(Some));
    let primary = Route {
        provider: endpoint.provider.name.clone(),
        model: None,
        clients: keys
            .into_iter()
            .map(|key| client(&endpoint.provider, &endpoint.base_url, key, config))
            .collect::<anyhow::Result<_>>()?,
    };
    let fallbacks = endpoint
        .fallbacks
        .iter()
        .map(|f| {
            let keys: Vec<Option<SourcedKey>> = if f.keys.is_empty() {
                vec![None]
            } else {
                f.keys.iter().cloned().map(Some).collect()
            };
            Ok(Route {
                provider: f.provider.name.clone(),
                model: Some(f.model.clone()),
                clients: keys
                    .into_iter()
                    .map(|key| client(&f.provider, &f.base_url, key, config))
                    .collect::<anyhow::Result<_>>()?,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let retry = RetryPolicy {
        max_retries: config.model.max_retries,
        ..RetryPolicy::default()
    };
    Ok(Arc::new(Router::new(
        primary,
        fallbacks,
        retry,
        Duration::from_secs(config.model.cooldown_secs),
    )))
}

/// One client for one key of `provider` at `base_url`. It does not retry: the router does, so
/// that a rate limit can move to the next key instead of waiting.
///
/// # Errors
/// When the HTTP client cannot be built.
pub fn client(
    provider: &Provider,
    base_url: &str,
    api_key: Option<SourcedKey>,
    config: &Config,
) -> anyhow::Result<Arc<dyn ChatProvider>> {
    let (api_key, api_key_source) = match api_key {
        Some(key) => (Some(key.secret), Some(key.source)),
        None => (None, None),
    };
    let endpoint_config = EndpointConfig {
        base_url: base_url.to_owned(),
        api_key,
        api_key_source,
        connect_timeout: Duration::from_secs(config.model.connect_timeout_secs),
        read_timeout: Duration::from_secs(config.model.read_timeout_secs),
        retry: RetryPolicy::none(),
    };
    let client: Arc<dyn ChatProvider> = match provider.api {
        ApiKind::OpenaiCompatible => Arc::new(
            OpenAiCompatible::new(endpoint_config).context("cannot set up the model client")?,
        ),
        ApiKind::Anthropic => Arc::new(
            Anthropic::new(endpoint_config)
                .context("cannot set up the model client")?
                .with_max_tokens(ANTHROPIC_DEFAULT_MAX_TOKENS, provider.max_output_tokens()),
        ),
    };
    Ok(client)
}

/// A provider's catalogue name and a client for it.
pub type NamedProvider = (String, Arc<dyn ChatProvider>);

/// What `/model SPEC` and `talaria model set SPEC` mean: `provider:model` (a catalogue
/// provider before the first colon) switches provider and model, anything else is a model of
/// the current provider (`qwen3:8b` stays a model name unless `qwen3` is a provider).
/// Returns the new provider's name and client (`None` when only the model changes) and the
/// model, checked against the catalogue.
///
/// # Errors
/// An unknown model of a closed-list provider, a provider without a key, no default model.
pub fn switch(
    spec: &str,
    config: &Config,
    config_path: &std::path::Path,
) -> anyhow::Result<(Option<NamedProvider>, String)> {
    let catalogue = Catalogue::builtin_with(&config.providers)
        .with_context(|| format!("the providers in {}", config_path.display()))?;
    let Some((name, model)) = spec
        .split_once(':')
        .filter(|(name, _)| catalogue.provider(name, "").is_ok())
    else {
        return Ok((None, spec.to_owned()));
    };
    let args = EndpointArgs {
        provider: Some(name.to_owned()),
        model: (!model.is_empty()).then(|| model.to_owned()),
        ..EndpointArgs::default()
    };
    let mut for_provider = config.clone();
    // The fallbacks and the switch are separate: a switched session still falls back the same way.
    if for_provider.model.provider.as_deref() != Some(name) {
        for_provider.model.fallback.clear();
    }
    let endpoint = resolve(&args, &for_provider, config_path)?;
    let Some(model) = endpoint.model.clone() else {
        bail!("provider `{name}` has no default model: use /model {name}:MODEL");
    };
    let client = provider(&endpoint, config)?;
    Ok((Some((endpoint.provider.name.clone(), client)), model))
}

/// `max_tokens` for an Anthropic model the catalogue gives no output limit for.
const ANTHROPIC_DEFAULT_MAX_TOKENS: u32 = 8192;

/// The model to use: the configured one, or the endpoint's only model when none is configured.
///
/// # Errors
/// When no model is configured and the endpoint does not serve exactly one.
pub async fn choose_model(
    endpoint: &Endpoint,
    provider: &dyn ChatProvider,
) -> anyhow::Result<String> {
    if let Some(model) = &endpoint.model {
        return Ok(model.clone());
    }
    let models = provider
        .list_models()
        .await
        .with_context(|| format!("no model chosen (pass --model NAME or set TALARIA_MODEL), and listing the models of {} failed", endpoint.base_url))?;
    match models.as_slice() {
        [only] => Ok(only.clone()),
        [] => bail!(
            "no model chosen: pass --model NAME or set TALARIA_MODEL ({} lists no models)",
            endpoint.base_url
        ),
        many => bail!(
            "no model chosen: pass --model NAME or set TALARIA_MODEL; {} serves: {}",
            endpoint.base_url,
            many.join(", ")
        ),
    }
}

/// Give a resumed session back the provider stored for it (`talaria model set`, `/model
/// PROVIDER:MODEL`), unless it is the one `endpoint` already talks to. Returns whether it did.
///
/// # Errors
/// The stored provider is no longer usable (unknown, or its key is missing); the message says
/// how to choose another.
pub async fn restore_session_provider(
    agent: &crate::Agent,
    session: &mut crate::Session,
    endpoint: &Endpoint,
    config: &Config,
    config_path: &std::path::Path,
) -> anyhow::Result<bool> {
    let Some(stored) = agent
        .store()
        .session(&session.id)
        .await?
        .and_then(|r| r.provider)
    else {
        return Ok(false);
    };
    if stored == endpoint.provider.name {
        return Ok(false);
    }
    let spec = format!("{stored}:{}", session.model);
    let (provider, model) = switch(&spec, config, config_path).with_context(|| {
        format!(
            "session {} uses {spec}; choose another with talaria model set",
            session.id
        )
    })?;
    agent.switch_model(session, provider, &model).await?;
    Ok(true)
}
