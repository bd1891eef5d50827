//! The provider catalogue: the shipped file, user extensions, and refusing unknown names.

use std::collections::BTreeMap;

use talaria_core::{ApiKind, Config, ModelEntry, ProviderEntry};
use talaria_llm::{Catalogue, CatalogueError};

#[test]
fn builtin_catalogue_has_every_provider_with_what_it_needs() {
    let catalogue = Catalogue::builtin().unwrap();
    let names: Vec<&str> = catalogue.providers().map(|p| p.name.as_str()).collect();
    for expected in [
        "openai",
        "custom",
        "openrouter",
        "nous",
        "ollama",
        "vllm",
        "lmstudio",
        "llamacpp",
        "deepseek",
        "groq",
        "together",
        "gemini",
        "anthropic",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    for p in catalogue.providers() {
        // Only `custom` leaves the endpoint to the user.
        if p.name != "custom" {
            let url = p
                .base_url
                .as_deref()
                .unwrap_or_else(|| panic!("{} has no base_url", p.name));
            assert!(
                url.starts_with("http://") || url.starts_with("https://"),
                "{}",
                p.name
            );
        }
        if p.key_required {
            let var = p
                .api_key_env
                .as_deref()
                .unwrap_or_else(|| panic!("{} needs a key env", p.name));
            assert!(var.ends_with("_API_KEY"), "{}: {var}", p.name);
            // Hosted providers name a default model, and it is one they list.
            let default = p
                .default_model
                .as_deref()
                .unwrap_or_else(|| panic!("{} has no default model", p.name));
            assert!(
                p.model(default).is_some(),
                "{}: default {default} not listed",
                p.name
            );
        }
        if !p.open_models {
            assert!(!p.models.is_empty(), "{} accepts no model at all", p.name);
        }
        for m in &p.models {
            assert!(
                m.context_length.is_some_and(|c| c > 0),
                "{}/{}",
                p.name,
                m.name
            );
            for price in [m.input_price, m.output_price, m.cached_price]
                .into_iter()
                .flatten()
            {
                assert!(price >= 0.0, "{}/{}", p.name, m.name);
            }
        }
    }
    let anthropic = catalogue.provider("anthropic", "--provider").unwrap();
    assert_eq!(anthropic.api, ApiKind::Anthropic);
    assert_eq!(anthropic.api_key_env.as_deref(), Some("ANTHROPIC_API_KEY"));
    assert!(
        anthropic
            .models
            .iter()
            .all(|m| m.max_output_tokens.is_some())
    );
    assert!(!catalogue.provider("ollama", "x").unwrap().key_required);
    assert_eq!(
        catalogue
            .provider("openrouter", "x")
            .unwrap()
            .api_key_env
            .as_deref(),
        Some("OPENROUTER_API_KEY")
    );
}

#[test]
fn configuration_extends_and_overrides_the_catalogue() {
    let text = r#"
[providers.anthropic]
base_url = "https://proxy.example/anthropic"

[[providers.anthropic.models]]
name = "claude-sonnet-4-5"
context_length = 1000000
max_output_tokens = 1234

[[providers.anthropic.models]]
name = "claude-next"
context_length = 300000

[providers.mylab]
api = "openai-compatible"
base_url = "http://10.0.0.5:8000/v1"
api_key_env = "MYLAB_KEY"
key_required = true
default_model = "qwen"
"#;
    let config = Config::from_toml_str(text, "config.toml").unwrap();
    let catalogue = Catalogue::builtin_with(&config.providers).unwrap();
    let anthropic = catalogue.provider("anthropic", "x").unwrap();
    assert_eq!(
        anthropic.base_url.as_deref(),
        Some("https://proxy.example/anthropic")
    );
    // Fields not overridden keep the catalogue's values.
    assert_eq!(anthropic.api_key_env.as_deref(), Some("ANTHROPIC_API_KEY"));
    assert!(anthropic.key_required);
    let sonnet = anthropic.model("claude-sonnet-4-5").unwrap();
    assert_eq!(
        (sonnet.context_length, sonnet.max_output_tokens),
        (Some(1_000_000), Some(1234))
    );
    assert!(anthropic.check_model("claude-next", "--model").is_ok());
    assert!(anthropic.model("claude-opus-4-1").is_some());

    let mylab = catalogue.provider("mylab", "model.provider").unwrap();
    assert_eq!(mylab.api, ApiKind::OpenaiCompatible);
    assert!(mylab.key_required && mylab.open_models);

    let mut incomplete = BTreeMap::new();
    incomplete.insert("nameless".to_owned(), ProviderEntry::default());
    assert_eq!(
        Catalogue::builtin_with(&incomplete).unwrap_err(),
        CatalogueError::Incomplete {
            provider: "nameless".into(),
            field: "api"
        }
    );
    let _ = ModelEntry::default();
}

#[test]
fn unknown_provider_or_model_names_the_key_and_suggests() {
    let catalogue = Catalogue::builtin().unwrap();
    let err = catalogue.provider("antropic", "--provider").unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown provider \"antropic\" in `--provider` (did you mean `anthropic`?)"
    );
    let err = catalogue
        .provider("zzzzzzzzzzzzz", "model.provider")
        .unwrap_err();
    assert!(
        err.to_string().starts_with(
            "unknown provider \"zzzzzzzzzzzzz\" in `model.provider` (known: anthropic, custom,"
        ),
        "{err}"
    );

    let anthropic = catalogue.provider("anthropic", "x").unwrap();
    let err = anthropic
        .check_model("claude-sonet-4-5", "--model")
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown model \"claude-sonet-4-5\" for provider `anthropic` in `--model` (did you mean \
         `claude-sonnet-4-5`?); add it as [[providers.anthropic.models]] in the configuration if \
         it is new"
    );
    // Aggregators and local servers take any model name.
    let openrouter = catalogue.provider("openrouter", "x").unwrap();
    assert!(
        openrouter
            .check_model("some/new-model", "--model")
            .unwrap()
            .is_none()
    );
}
