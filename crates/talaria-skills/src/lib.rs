//! Talaria's skill library: the agentskills.io `SKILL.md` format and its validator, the
//! canonical hash of a skill's file tree, and the registry that keeps every version of every
//! skill with its provenance, an append-only hash-chained audit log, quarantine for writes made
//! while untrusted content was in context, and the projection of active skills to disk.
//!
//! The threat it answers: an instruction injected through a web page or a message becomes a
//! skill that every later session loads. Here such a write is stored but quarantined (never
//! projected, never live) until the owner approves it; nothing is ever overwritten or deleted,
//! so any change can be seen (`log`, `diff`) and undone (`rollback`); and `verify` recomputes
//! every hash so an edit to the database or the projected files behind the registry's back is
//! named.
//!
//! This crate owns the rules; `talaria-store` owns the SQL. It must never run a skill's scripts
//! (that is the executor's job) and never write outside the skills directory it was given.

pub mod audit;
pub mod confusable;
pub mod curator;
pub mod diff;
pub mod registry;
pub mod tree;
pub mod validate;

pub use curator::{CuratorChange, CuratorPolicy, CuratorReport};
pub use registry::{
    Action, Author, CatalogueEntry, PendingVersion, Provenance, Registry, RegistryError,
    SkillDetails, SkillState, SkillSummary, SyncReport, WriteOutcome, short,
};
pub use tree::{SkillFile, SkillTree};
pub use validate::{
    FrontMatter, Mode, Problem, Report, Severity, metadata_value, validate_dir, validate_tree,
};
