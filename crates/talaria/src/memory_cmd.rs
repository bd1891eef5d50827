//! `talaria memory show|pending|approve|reject`: the owner reading memory files and deciding
//! on writes parked because untrusted content was in context.

use clap::Subcommand;
use talaria_agent::format_time;
use talaria_agent::memory::{MemoryEdit, MemoryFiles, MemoryTarget};
use talaria_core::Person;

use crate::context;
use crate::terminal::say;

#[derive(Debug, Subcommand)]
pub enum MemoryCommand {
    /// Print MEMORY.md and a person's USER.md with their usage.
    Show {
        /// Whose USER.md: `owner` (default) or `UID/USER` for a person reached over the bus
        /// (the gateway's uid and API key id).
        #[arg(long, value_name = "ID")]
        user: Option<String>,
    },
    /// Memory writes waiting for approval (made while untrusted content was in context).
    Pending,
    /// Apply a parked write to the files of the person it was made for.
    Approve { id: String },
    /// Drop a parked write.
    Reject { id: String },
}

pub async fn run(command: MemoryCommand) -> anyhow::Result<()> {
    let home = context::home()?;
    let config = context::load_config(&home)?;
    let files = MemoryFiles::new(
        home.memories_dir(),
        config.memory.memory_char_limit,
        config.memory.user_char_limit,
    );
    match command {
        MemoryCommand::Show { user } => {
            let person = match user {
                Some(label) => Person::parse_label(&label).map_err(anyhow::Error::msg)?,
                None => Person::Owner,
            };
            let files = files.with_person(&person);
            for target in [MemoryTarget::Memory, MemoryTarget::User] {
                let entries = files.entries(target)?;
                say!(
                    "{} ({}) — {}/{} chars, {} entries",
                    target.file_name(),
                    files.path(target).display(),
                    MemoryFiles::usage(&entries),
                    files.limit(target),
                    entries.len()
                );
                for (i, entry) in entries.iter().enumerate() {
                    say!("  {}. {}", i + 1, entry.replace('\n', "\n     "));
                }
            }
            Ok(())
        }
        MemoryCommand::Pending => {
            let pending = files.pending().list()?;
            if pending.is_empty() {
                say!("no memory writes waiting for approval");
            }
            for write in pending {
                say!(
                    "{}  {}  {} {} for {} (session {})",
                    write.id,
                    format_time(write.created_at),
                    edit_name(&write.edit),
                    write.target.file_name(),
                    write.person,
                    write.session
                );
                say!("    {}", describe(&write.edit));
            }
            Ok(())
        }
        MemoryCommand::Approve { id } => {
            let (write, entries) = files.approve(&id)?;
            say!(
                "approved {id}: {} now has {} entries ({} for {})",
                write.target.file_name(),
                entries.len(),
                edit_name(&write.edit),
                write.person
            );
            Ok(())
        }
        MemoryCommand::Reject { id } => {
            let pending = files.pending();
            pending.get(&id)?;
            pending.discard(&id)?;
            say!("rejected {id}");
            Ok(())
        }
    }
}

fn edit_name(edit: &MemoryEdit) -> &'static str {
    match edit {
        MemoryEdit::Add { .. } => "add",
        MemoryEdit::Replace { .. } => "replace",
        MemoryEdit::Remove { .. } => "remove",
    }
}

fn describe(edit: &MemoryEdit) -> String {
    match edit {
        MemoryEdit::Add { content } => format!("+ {content}"),
        MemoryEdit::Replace { old_text, content } => format!("~ {old_text:?} → {content}"),
        MemoryEdit::Remove { old_text } => format!("- {old_text:?}"),
    }
}
