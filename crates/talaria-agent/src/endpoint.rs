//! Which model endpoint to talk to, from flags, environment, credentials and configuration.
//! The CLI and the agent unit take the same flags ([`EndpointArgs`]).

use std::time::Duration;

use anyhow::{Context, bail};
use talaria_core::{Config, Secret};
use talaria_llm::{ChatProvider, EndpointConfig, OpenAiCompatible, RetryPolicy};

/// Where the model is: flags shared by `talaria chat` and `talaria-agentd`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct EndpointArgs {
    /// OpenAI-compatible endpoint, e.g. http://127.0.0.1:8080/v1 [env: TALARIA_BASE_URL, OPENAI_BASE_URL]
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// Model name [env: TALARIA_MODEL]
    #[arg(long, value_name = "NAME")]
    pub model: Option<String>,
    /// API key [env: TALARIA_API_KEY, OPENAI_API_KEY]; prefer the variable, flags show up in `ps`
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,
}

#[derive(Debug)]
pub struct Endpoint {
    pub base_url: String,
    pub model: Option<String>,
    pub api_key: Option<Secret>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Resolve the endpoint. Precedence: flag, `TALARIA_*`, `OPENAI_*`, config file.
///
/// # Errors
/// When no base URL is configured anywhere, naming what to set.
pub fn resolve(
    args: &EndpointArgs,
    config: &Config,
    config_path: &std::path::Path,
) -> anyhow::Result<Endpoint> {
    let base_url = args
        .base_url
        .clone()
        .or_else(|| env("TALARIA_BASE_URL"))
        .or_else(|| env("OPENAI_BASE_URL"))
        .or_else(|| config.model.base_url.clone());
    let Some(base_url) = base_url else {
        bail!(
            "no model endpoint configured: pass --base-url URL or set TALARIA_BASE_URL (or model.base_url in {})",
            config_path.display()
        );
    };
    if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
        bail!("the model endpoint {base_url:?} is not an http:// or https:// URL");
    }
    let model = args
        .model
        .clone()
        .or_else(|| env("TALARIA_MODEL"))
        .or_else(|| config.model.name.clone());
    let api_key = args
        .api_key
        .clone()
        .or_else(|| env("TALARIA_API_KEY"))
        .or_else(credential_key)
        .or_else(|| config.model.api_key_env.as_deref().and_then(env))
        .or_else(|| env("OPENAI_API_KEY"))
        .map(Secret::new)
        .or_else(|| config.model.api_key.clone())
        .filter(|k| !k.is_empty());
    Ok(Endpoint {
        base_url,
        model,
        api_key,
    })
}

/// The model key systemd passed as the credential `model-api-key` (`LoadCredential=`), so a
/// unit never needs it in its environment.
fn credential_key() -> Option<String> {
    let dir = std::env::var_os("CREDENTIALS_DIRECTORY")?;
    let key = std::fs::read_to_string(std::path::Path::new(&dir).join("model-api-key")).ok()?;
    Some(key.trim().to_owned()).filter(|k| !k.is_empty())
}

/// A client for the endpoint, with timeouts and retries from configuration.
///
/// # Errors
/// When the HTTP client cannot be built.
pub fn provider(endpoint: &Endpoint, config: &Config) -> anyhow::Result<OpenAiCompatible> {
    OpenAiCompatible::new(EndpointConfig {
        base_url: endpoint.base_url.clone(),
        api_key: endpoint.api_key.clone(),
        connect_timeout: Duration::from_secs(config.model.connect_timeout_secs),
        read_timeout: Duration::from_secs(config.model.read_timeout_secs),
        retry: RetryPolicy {
            max_retries: config.model.max_retries,
            ..RetryPolicy::default()
        },
    })
    .context("cannot set up the model client")
}

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
