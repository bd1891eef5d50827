//! Talaria's agent: the tool-calling loop, system prompt assembly, the model-facing tools and
//! the seam ([`exec::ToolExecutor`]) through which every side effect leaves the agent.
//!
//! The agent talks to models through `talaria-llm` and persists every message through
//! `talaria-store` as soon as it exists, so an interrupted or crashed turn leaves a session that
//! resumes cleanly. It must never run a side-effecting tool itself: commands and file writes go
//! to the executor.

mod accounting;
mod agent;
pub mod bus;
pub mod compress;
pub mod context_files;
pub mod daemon;
pub mod endpoint;
pub mod exec;
pub mod home;
pub mod memory;
pub mod prompt;
pub mod skills;
pub mod tools;

pub use agent::review::{ReviewKind, compact_transcript};
pub use agent::{Agent, AgentError, AgentSettings, Session, TurnEvent, TurnOutcome, TurnStop};
pub use exec::ToolExecutor;
pub use home::TalariaHome;

/// A unix-milliseconds timestamp as `YYYY-MM-DD HH:MM` in the system time zone.
pub fn format_time(unix_ms: i64) -> String {
    jiff::Timestamp::from_millisecond(unix_ms)
        .map(|t| {
            t.to_zoned(jiff::tz::TimeZone::system())
                .strftime("%Y-%m-%d %H:%M")
                .to_string()
        })
        .unwrap_or_else(|_| unix_ms.to_string())
}
