//! `talaria sessions list|show|search|export|delete`.
//!
//! `search` reads like the agent's `session_search`, through the store's [`SessionScope`] for
//! the owner: discovery (ranked sessions, one snippet each) and scroll (`--around SESSION:SEQ`);
//! `list` is browse.

use std::io::Write;

use anyhow::Context;
use talaria_agent::format_time;
use talaria_core::{Person, Role, SessionId};
use talaria_store::{SessionScope, Store};

use crate::Exit;
use crate::cli::SessionsCommand;
use crate::context;
use crate::export;
use crate::terminal::say;

pub async fn run(command: SessionsCommand) -> anyhow::Result<()> {
    let home = context::home()?;
    let store = context::open_store(&home).await?;
    match command {
        SessionsCommand::List { limit } => list(&store, limit).await,
        SessionsCommand::Show { id } => show(&store, &SessionId::parse(&id)?).await,
        SessionsCommand::Search {
            query,
            limit,
            around,
            window,
        } => match (around, query) {
            (Some(around), _) => scroll(&store, &around, window).await,
            (None, Some(query)) => search(&store, &query, limit).await,
            (None, None) => Err(anyhow::anyhow!(
                "give words to search for, or --around SESSION:SEQ"
            )),
        },
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
                say!("deleted session {id}");
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
        say!("no sessions yet; start one with talaria chat");
        return Ok(());
    }
    say!(
        "{:<23} {:<16} {:>5} {:>8}  {:<20} TITLE",
        "ID",
        "UPDATED",
        "MSGS",
        "TOKENS",
        "MODEL"
    );
    for s in sessions {
        say!(
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
    say!(
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
            Role::User => say!("\n› {}", m.content),
            Role::Assistant => {
                if !m.content.is_empty() {
                    say!("\n{}", m.content);
                }
                for call in &m.tool_calls {
                    say!("  → {} {}", call.name, call.arguments);
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
                say!("  ← {}\n{shown}", m.name.as_deref().unwrap_or("tool"));
                if lines.len() > 12 {
                    say!(
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

/// The owner's sessions: the CLI's (unkeyed) and the keyed sessions of the owner's own uid
/// for its default user, as the owner's `session_search` sees them. Other people's
/// conversations (gateway users, other uids) are not the owner's to search from here.
fn owner_scope() -> SessionScope {
    SessionScope::of(&Person::Owner, talaria_daemon::own_uid())
}

fn nothing_found() -> anyhow::Error {
    Exit {
        code: 1,
        message: None,
    }
    .into()
}

/// Discovery: ranked sessions, one line each with the best matching message.
async fn search(store: &Store, query: &str, limit: usize) -> anyhow::Result<()> {
    let hits = store
        .search_sessions(query, owner_scope(), None, limit)
        .await?;
    if hits.is_empty() {
        return Err(nothing_found());
    }
    for hit in hits {
        let more = match hit.matches {
            0 | 1 => String::new(),
            n => format!("  ({n} matching messages)"),
        };
        say!(
            "{}  {}  {}{more}",
            hit.session_id,
            format_time(hit.updated_at),
            hit.title.as_deref().unwrap_or("(untitled)")
        );
        say!(
            "    #{} [{}] {}",
            hit.seq,
            hit.role.as_str(),
            hit.snippet.replace('\n', " ")
        );
    }
    Ok(())
}

/// Characters of each message a scroll shows.
const SCROLL_MESSAGE_CHARS: usize = 2_000;

/// Scroll: the messages around `SESSION:SEQ`, the one asked for marked `>`.
async fn scroll(store: &Store, around: &str, window: usize) -> anyhow::Result<()> {
    let (id, seq) = around
        .rsplit_once(':')
        .and_then(|(id, seq)| Some((id, seq.parse::<i64>().ok()?)))
        .ok_or_else(|| {
            anyhow::anyhow!("--around {around:?} is not SESSION:SEQ (a hit's session id and #SEQ)")
        })?;
    let id = SessionId::parse(id)?;
    let messages = store
        .message_window(owner_scope(), &id, seq, window, window)
        .await?
        .ok_or_else(|| no_session(&id))?;
    if messages.is_empty() {
        return Err(nothing_found());
    }
    for stored in messages {
        let m = &stored.message;
        let mark = if stored.seq == seq { '>' } else { ' ' };
        if m.role == Role::System {
            // Not the conversation; `sessions export` has it.
            say!(
                "{mark} #{:<4} [system] (the session's system prompt, {} characters)",
                stored.seq,
                m.content.chars().count()
            );
            continue;
        }
        let mut text: String = m.content.chars().take(SCROLL_MESSAGE_CHARS).collect();
        if m.content.chars().count() > SCROLL_MESSAGE_CHARS {
            text.push_str("… [cut; talaria sessions show has everything]");
        }
        for call in &m.tool_calls {
            text.push_str(&format!("\n→ {} {}", call.name, call.arguments));
        }
        let mut lines = text.lines();
        say!(
            "{mark} #{:<4} [{}] {}",
            stored.seq,
            m.role.as_str(),
            lines.next().unwrap_or_default()
        );
        for line in lines {
            say!("         {line}");
        }
    }
    Ok(())
}
