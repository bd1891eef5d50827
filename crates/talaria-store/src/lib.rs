//! Talaria's SQLite store: sessions, their messages (with tool calls), token usage, a
//! full-text index over message text and tool names, and the skill registry's tables, in one
//! database file (normally `$TALARIA_HOME/state.db`).
//!
//! This crate owns the schema and every SQL statement run against it. It must never block the
//! async runtime (all SQLite work runs on the blocking pool), and never delete, recreate or
//! write to a database it does not understand: a foreign, damaged or newer file is refused as
//! found.

pub mod database;
mod error;
pub mod migrations;
mod requests;
mod scope;
mod search;
mod sessions;
mod skill_usage;
mod skills;
mod store;
mod usage;

pub use database::{Database, OpenOptions};
pub use error::StoreError;
pub use migrations::{SCHEMA_VERSION, migrate_to};
pub use requests::{RequestState, SessionKey, TurnRequest};
pub use scope::{SessionHit, SessionScope};
pub use search::SearchHit;
pub use sessions::{NewSession, SessionRecord, StoredMessage};
pub use skill_usage::{SkillUsageRecord, SkillUse};
pub use skills::{SkillAuditRecord, SkillFileRecord, SkillLedger, SkillRecord, SkillVersionRecord};
pub use store::Store;
pub use usage::{ModelCall, UsageFilter, UsageLine};
