//! `talaria context pending|show|approve|reject`: the owner deciding on context files
//! (`AGENTS.md`) found in the workspace of someone else's session, which count as project
//! instructions only once approved (see `talaria_agent::context_files`).

use clap::Subcommand;
use talaria_agent::context_files::{ContextApprovals, HeldContext};
use talaria_agent::format_time;

use crate::context;
use crate::terminal::say;

#[derive(Debug, Subcommand)]
pub enum ContextCommand {
    /// Context files held until you approve them (found in a non-owner session's workspace).
    Pending,
    /// Print a held context file.
    Show {
        /// Its hash (or a unique prefix), as `pending` lists it.
        hash: String,
    },
    /// Approve that exact content: sessions of any person take it as project instructions.
    Approve { hash: String },
    /// Reject it: never used, never held again.
    Reject { hash: String },
}

pub fn run(command: ContextCommand) -> anyhow::Result<()> {
    let approvals = ContextApprovals::new(&context::home()?);
    match command {
        ContextCommand::Pending => {
            let held = approvals.pending()?;
            if held.is_empty() {
                say!("no context files waiting for approval");
            }
            for entry in held {
                say!("{}", describe(&entry));
            }
        }
        ContextCommand::Show { hash } => {
            let (entry, text) = approvals.show(&hash)?;
            say!("{}", describe(&entry));
            say!("{text}");
        }
        ContextCommand::Approve { hash } => {
            let entry = approvals.approve(&hash)?;
            say!("approved {} ({})", short(&entry), entry.path.display());
        }
        ContextCommand::Reject { hash } => {
            let entry = approvals.reject(&hash)?;
            say!("rejected {} ({})", short(&entry), entry.path.display());
        }
    }
    Ok(())
}

fn short(entry: &HeldContext) -> &str {
    entry.sha256.get(..12).unwrap_or(&entry.sha256)
}

fn describe(entry: &HeldContext) -> String {
    format!(
        "{}  {}  {} ({} bytes) for {}",
        short(entry),
        format_time(entry.held_at_ms),
        entry.path.display(),
        entry.bytes,
        entry.person
    )
}
