//! `talaria model`: list the catalogue's models, choose one for a session (by default the most
//! recent, the one `talaria chat -c` continues) or for every new session (`--global`, written
//! to `model.provider` and `model.name` with comments kept), or pick from a numbered list.
//!
//! Chat's `/model` goes through [`choose`] too, so both refuse the same names the same way.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::Context;
use clap::{Args, Subcommand};
use talaria_agent::endpoint::{self, NamedProvider};
use talaria_core::config::set_key;
use talaria_core::{Config, SessionId};
use talaria_llm::Catalogue;

use crate::context;

#[derive(Debug, Args)]
pub struct ModelArgs {
    #[command(subcommand)]
    pub command: Option<ModelCommand>,
    /// With no subcommand: persist the pick to the configuration instead of the session.
    #[arg(long)]
    pub global: bool,
    /// With no subcommand: the session to change (default: the most recent).
    #[arg(long, value_name = "ID")]
    pub session: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Every provider's known models with context length and prices; `*` marks the configured
    /// model, `>` the most recent session's.
    List,
    /// Use PROVIDER:MODEL for the most recent session (or --session ID), or with --global for
    /// every new session.
    Set {
        /// PROVIDER:MODEL, e.g. anthropic:claude-sonnet-4-5
        spec: String,
        /// Write model.provider and model.name to the configuration file.
        #[arg(long)]
        global: bool,
        #[arg(long, value_name = "ID", conflicts_with = "global")]
        session: Option<String>,
    },
}

/// A checked choice: the provider (with a client ready) and the model.
pub struct Choice {
    pub provider: Option<NamedProvider>,
    pub model: String,
}

/// Check `spec`. With `strict`, it must be `PROVIDER:MODEL` with a known provider (an unknown
/// one is refused with the closest name); otherwise a bare model name keeps the provider.
///
/// # Errors
/// Unknown provider or model (with a suggestion), a provider without its key.
pub fn choose(
    spec: &str,
    config: &Config,
    config_path: &std::path::Path,
    strict: bool,
) -> anyhow::Result<Choice> {
    if strict {
        let Some((name, model)) = spec.split_once(':') else {
            anyhow::bail!(
                "expected PROVIDER:MODEL, e.g. anthropic:claude-sonnet-4-5 (talaria model list shows them)"
            );
        };
        let catalogue = Catalogue::builtin_with(&config.providers)?;
        let provider = catalogue.provider(name, "talaria model set")?;
        if !model.is_empty() {
            provider.check_model(model, "talaria model set")?;
        }
    }
    let (provider, model) = endpoint::switch(spec, config, config_path)?;
    Ok(Choice { provider, model })
}

pub async fn run(args: ModelArgs) -> anyhow::Result<()> {
    let home = context::home()?;
    let config = context::load_config(&home)?;
    let store = context::open_store(&home).await?;
    let target = |session: Option<String>| async {
        match session {
            Some(id) => Ok::<_, anyhow::Error>(Some(SessionId::parse(&id)?)),
            None => Ok(store.latest_session().await?),
        }
    };
    let entries = entries(&config)?;
    match args.command {
        Some(ModelCommand::List) => {
            let latest = target(None).await?;
            print!(
                "{}",
                list(&entries, &config, &store, latest.as_ref()).await?
            );
        }
        Some(ModelCommand::Set {
            spec,
            global,
            session,
        }) => {
            let session = if global { None } else { target(session).await? };
            apply(&spec, global, session.as_ref(), &config, &home, &store).await?;
        }
        None => {
            let latest = target(args.session.clone()).await?;
            print!(
                "{}",
                list(&entries, &config, &store, latest.as_ref()).await?
            );
            if !std::io::stdin().is_terminal() {
                return Ok(());
            }
            print!("number to use (empty: keep): ");
            std::io::stdout().flush()?;
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            let line = line.trim();
            if line.is_empty() {
                return Ok(());
            }
            let spec = line
                .parse::<usize>()
                .ok()
                .and_then(|n| entries.get(n.wrapping_sub(1)))
                .with_context(|| format!("{line:?} is not a number from 1 to {}", entries.len()))?;
            let session = if args.global { None } else { latest };
            apply(spec, args.global, session.as_ref(), &config, &home, &store).await?;
        }
    }
    Ok(())
}

/// Every `provider:model` the catalogue lists, in list order.
fn entries(config: &Config) -> anyhow::Result<Vec<String>> {
    let catalogue = Catalogue::builtin_with(&config.providers)?;
    Ok(catalogue
        .providers()
        .flat_map(|p| {
            p.models
                .iter()
                .map(move |m| format!("{}:{}", p.name, m.name))
        })
        .collect())
}

async fn list(
    entries: &[String],
    config: &Config,
    store: &talaria_store::Store,
    session: Option<&SessionId>,
) -> anyhow::Result<String> {
    let catalogue = Catalogue::builtin_with(&config.providers)?;
    let configured_provider = config.model.provider.as_deref().unwrap_or("custom");
    let configured = format!(
        "{configured_provider}:{}",
        config.model.name.as_deref().unwrap_or("")
    );
    let session_current = match session {
        Some(id) => store.session(id).await?.map(|r| {
            format!(
                "{}:{}",
                r.provider.as_deref().unwrap_or(configured_provider),
                r.model
            )
        }),
        None => None,
    };
    let price = |p: Option<f64>| p.map_or_else(|| "—".to_owned(), |p| format!("{p}"));
    let mut out = format!(
        "{:>3}   {:<40} {:>9} {:>8} {:>8} {:>8}\n",
        "#", "provider:model", "context", "$/M in", "$/M out", "cached"
    );
    for (i, spec) in entries.iter().enumerate() {
        let Some((name, model)) = spec.split_once(':') else {
            continue;
        };
        let Some(entry) = catalogue
            .provider(name, "")
            .ok()
            .and_then(|p| p.model(model))
        else {
            continue;
        };
        let mark = match (
            spec == &configured,
            session_current.as_deref() == Some(spec),
        ) {
            (true, true) => "*>",
            (true, false) => "* ",
            (false, true) => " >",
            (false, false) => "  ",
        };
        out.push_str(&format!(
            "{:>3} {mark} {spec:<40} {:>9} {:>8} {:>8} {:>8}\n",
            i + 1,
            entry
                .context_length
                .map_or_else(|| "—".to_owned(), |c| c.to_string()),
            price(entry.input_price),
            price(entry.output_price),
            price(entry.cached_price),
        ));
    }
    out.push_str(&format!("* configured: {configured}\n"));
    if let (Some(id), Some(current)) = (session, &session_current) {
        out.push_str(&format!("> session {id}: {current}\n"));
    }
    Ok(out)
}

async fn apply(
    spec: &str,
    global: bool,
    session: Option<&SessionId>,
    config: &Config,
    home: &talaria_agent::TalariaHome,
    store: &talaria_store::Store,
) -> anyhow::Result<()> {
    let path = home.config_file();
    let choice = choose(spec, config, &path, true)?;
    let provider = choice.provider.as_ref().map(|(name, _)| name.clone());
    if global {
        let mut text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let origin = path.display().to_string();
        if let Some(name) = &provider {
            text = set_key(&text, "model.provider", name, &origin)?;
        }
        text = set_key(&text, "model.name", &choice.model, &origin)?;
        home.ensure()
            .with_context(|| format!("cannot create {}", home.root().display()))?;
        crate::config_cmd::write_private(&path, &text)
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!(
            "model for new sessions: {}:{} (in {})",
            provider.as_deref().unwrap_or("custom"),
            choice.model,
            path.display()
        );
        return Ok(());
    }
    let Some(id) = session else {
        anyhow::bail!("there is no session yet: start one with talaria chat, or use --global");
    };
    if store.session(id).await?.is_none() {
        anyhow::bail!("no session {id}");
    }
    store.set_model(id, &choice.model).await?;
    store.set_provider(id, provider.as_deref()).await?;
    println!(
        "model for session {id}: {}:{}",
        provider.as_deref().unwrap_or("custom"),
        choice.model
    );
    Ok(())
}
