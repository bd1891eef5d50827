//! The skill registry: every version of every skill, content-addressed, with provenance, an
//! append-only hash-chained audit log, quarantine for writes made while untrusted content was
//! in context, and the projection of active skills to `$TALARIA_HOME/skills/<name>/`.
//!
//! Rules this module enforces:
//! - A write is validated before anything is stored: strictly for the agent's writes, leniently
//!   for imports and the user's edits on disk. A refused write stores nothing.
//! - A write lands in quarantine when it was made with untrusted content in context, or when it
//!   builds on a version that is itself unapproved (taint follows the parent chain). A
//!   quarantined version is never projected to disk; an active skill patched from an untrusted
//!   turn keeps its current version live until the patch is approved.
//! - Nothing is ever deleted: delete archives (and removes the projection), reject drops the
//!   pending version from consideration, rollback moves the current version back. Each is an
//!   audit entry. Rolling back to an unapproved untrusted version is refused.
//! - A new name whose look-alike skeleton another skill has is refused.
//!
//! It must never project a version that is not the current version of an active skill, and
//! never write outside its skills directory.

mod integrity;
mod ledger;
mod projection;
mod queries;
mod review;
mod types;
mod write;

use std::path::{Path, PathBuf};

use talaria_store::Store;

pub use types::{
    Action, Author, CatalogueEntry, PendingVersion, Provenance, RegistryError, SkillDetails,
    SkillState, SkillSummary, SyncReport, WriteOutcome,
};

/// The skill registry over the agent's store, projecting into `skills_dir`.
#[derive(Debug, Clone)]
pub struct Registry {
    store: Store,
    skills_dir: PathBuf,
}

impl Registry {
    /// A registry in `store`, projecting active skills into `skills_dir`
    /// (normally `$TALARIA_HOME/skills`).
    pub fn new(store: Store, skills_dir: impl Into<PathBuf>) -> Self {
        Self {
            store,
            skills_dir: skills_dir.into(),
        }
    }

    pub fn skills_dir(&self) -> &Path {
        &self.skills_dir
    }
}

/// The first 12 hex characters of a hash: how versions are shown.
pub fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

fn now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}
