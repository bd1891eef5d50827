//! `talaria sessions list|show|search|export|delete`.

use std::io::Write;

use anyhow::Context;
use talaria_agent::format_time;
use talaria_core::{Role, SessionId};
use talaria_store::Store;

use crate::Exit;
use crate::cli::SessionsCommand;
use crate::context;
use crate::export;

pub async fn run(command: SessionsCommand) -> anyhow::Result<()> {
    let home = context::home()?;
    let store = context::open_store(&home).await?;
    match command {
        SessionsCommand::List { limit } => list(&store, limit).await,
        SessionsCommand::Show { id } => show(&store, &SessionId::parse(&id)?).await,
        SessionsCommand::Search { query, limit } => search(&store, &query, limit).await,
        SessionsCommand::Export { id, format, output } => {
            let id = SessionId::parse(&id)?;
            let record = store.session(&id).await?.ok_or_else(|| no_session(&id))?;
            let messages = store.messages(&id).await?;
            let text = export::render(format, &record, &messages);
            match output {
                Some(path) => std::fs::write(&path, text)
                    .with_context(|| format!("cannot write {}", path.display())),
                None => std::io::stdout()
                    .lock()
                    .write_all(text.as_bytes())
                    .context("cannot write to stdout"),
            }
        }
        SessionsCommand::Delete { id } => {
            let id = SessionId::parse(&id)?;
            if store.delete_session(&id).await? {
                println!("deleted session {id}");
                Ok(())
            } else {
                Err(no_session(&id))
            }
        }
    }
}

fn no_session(id: &SessionId) -> anyhow::Error {
    anyhow::anyhow!("no session with id {id} (talaria sessions list shows them)")
}

async fn list(store: &Store, limit: usize) -> anyhow::Result<()> {
    let sessions = store.list_sessions(limit).await?;
    if sessions.is_empty() {
        println!("no sessions yet; start one with talaria chat");
        return Ok(());
    }
    println!(
        "{:<23} {:<16} {:>5} {:>8}  {:<20} TITLE",
        "ID", "UPDATED", "MSGS", "TOKENS", "MODEL"
    );
    for s in sessions {
        println!(
            "{:<23} {:<16} {:>5} {:>8}  {:<20} {}",
            s.id,
            format_time(s.updated_at),
            s.message_count,
            s.usage.total(),
            s.model,
            s.title.as_deref().unwrap_or("(untitled)")
        );
    }
    Ok(())
}

async fn show(store: &Store, id: &SessionId) -> anyhow::Result<()> {
    let record = store.session(id).await?.ok_or_else(|| no_session(id))?;
    let messages = store.messages(id).await?;
    println!(
        "session {}  ·  {}  ·  model {}  ·  {}",
        record.id,
        format_time(record.created_at),
        record.model,
        record.cwd
    );
    for stored in messages {
        let m = &stored.message;
        match m.role {
            Role::System => continue,
            Role::User => println!("\n› {}", m.content),
            Role::Assistant => {
                if !m.content.is_empty() {
                    println!("\n{}", m.content);
                }
                for call in &m.tool_calls {
                    println!("  → {} {}", call.name, call.arguments);
                }
            }
            Role::Tool => {
                let lines: Vec<&str> = m.content.lines().collect();
                let shown = lines
                    .iter()
                    .take(12)
                    .map(|l| format!("    {l}"))
                    .collect::<Vec<_>>()
                    .join("\n");
                println!("  ← {}\n{shown}", m.name.as_deref().unwrap_or("tool"));
                if lines.len() > 12 {
                    println!(
                        "    [… {} more lines; talaria sessions export {} shows everything]",
                        lines.len() - 12,
                        record.id
                    );
                }
            }
        }
    }
    Ok(())
}

async fn search(store: &Store, query: &str, limit: usize) -> anyhow::Result<()> {
    let hits = store
        .search(query, limit.saturating_mul(5).max(limit))
        .await?;
    if hits.is_empty() {
        return Err(Exit {
            code: 1,
            message: None,
        }
        .into());
    }
    let mut order: Vec<SessionId> = Vec::new();
    let mut grouped: std::collections::HashMap<SessionId, Vec<&talaria_store::SearchHit>> =
        Default::default();
    for hit in &hits {
        if !grouped.contains_key(&hit.session_id) {
            if order.len() == limit {
                continue;
            }
            order.push(hit.session_id.clone());
        }
        grouped.entry(hit.session_id.clone()).or_default().push(hit);
    }
    for id in order {
        let session_hits = &grouped[&id];
        let first = session_hits[0];
        println!(
            "{}  {}  {}",
            id,
            format_time(first.updated_at),
            first.title.as_deref().unwrap_or("(untitled)")
        );
        for hit in session_hits.iter().take(3) {
            println!(
                "    [{}] {}",
                hit.role.as_str(),
                hit.snippet.replace('\n', " ")
            );
        }
    }
    Ok(())
}
