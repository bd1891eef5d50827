//! The skill registry's tables: skills, their content-addressed versions and files, and the
//! append-only audit log.
//!
//! This module owns only the SQL. What a valid skill is, how a version's hash and an audit row's
//! hash are computed, and which state a write lands in are `talaria-skills`' business; it runs
//! its logic inside one [`SkillLedger`] transaction ([`Store::skill_ledger`](crate::Store)).
//!
//! It must never offer a way to change or remove a version, a file or an audit row: there is no
//! such method here, and the schema's triggers refuse the statements for any other writer.

use rusqlite::{OptionalExtension, Row, Transaction, params};

use crate::error::StoreError;

/// A skill's row: where it stands and which version is live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkillRecord {
    pub name: String,
    /// The look-alike skeleton of the name; unique, so two skills cannot look the same.
    pub skeleton: String,
    /// `active`, `quarantined`, `rejected` or `archived`.
    pub state: String,
    pub pinned: bool,
    /// The version the skill stands at (live when the state is `active`).
    pub current_version: String,
    /// A version written while untrusted content was in context, waiting for approval.
    pub pending_version: Option<String>,
    /// The hash of the tree last written to the skill's directory on disk, if any.
    pub projected_hash: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One immutable version of a skill, named by the hash of its file tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkillVersionRecord {
    pub hash: String,
    pub name: String,
    pub parent: Option<String>,
    /// `agent`, `user` or `import`.
    pub author: String,
    pub session_id: Option<String>,
    pub untrusted_context: bool,
    pub created_at: i64,
}

/// One file of a version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkillFileRecord {
    /// Relative, `/`-separated.
    pub path: String,
    pub executable: bool,
    /// Lowercase hex SHA-256 of `content`, as computed when the version was stored.
    pub sha256: String,
    pub content: Vec<u8>,
}

/// One audit log row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkillAuditRecord {
    pub seq: i64,
    pub at: i64,
    pub action: String,
    pub skill: String,
    pub version: Option<String>,
    pub actor: String,
    pub reason: String,
    pub prev_hash: String,
    pub hash: String,
}

/// The registry's tables inside one `BEGIN IMMEDIATE` transaction. Reads see the
/// transaction's own writes; nothing is visible to others until the closure that received the
/// ledger returns `Ok`.
#[derive(Debug)]
pub struct SkillLedger<'a> {
    tx: &'a Transaction<'a>,
}

const SKILL_COLUMNS: &str = "name, skeleton, state, pinned, current_version, pending_version, \
                             projected_hash, created_at, updated_at";
const VERSION_COLUMNS: &str =
    "hash, name, parent, author, session_id, untrusted_context, created_at";
const AUDIT_COLUMNS: &str = "seq, at, action, skill, version, actor, reason, prev_hash, hash";

fn skill_from_row(row: &Row<'_>) -> rusqlite::Result<SkillRecord> {
    Ok(SkillRecord {
        name: row.get(0)?,
        skeleton: row.get(1)?,
        state: row.get(2)?,
        pinned: row.get(3)?,
        current_version: row.get(4)?,
        pending_version: row.get(5)?,
        projected_hash: row.get(6)?,
        created_at: row.get(7)?,
        updated_at: row.get(8)?,
    })
}

fn version_from_row(row: &Row<'_>) -> rusqlite::Result<SkillVersionRecord> {
    Ok(SkillVersionRecord {
        hash: row.get(0)?,
        name: row.get(1)?,
        parent: row.get(2)?,
        author: row.get(3)?,
        session_id: row.get(4)?,
        untrusted_context: row.get(5)?,
        created_at: row.get(6)?,
    })
}

fn audit_from_row(row: &Row<'_>) -> rusqlite::Result<SkillAuditRecord> {
    Ok(SkillAuditRecord {
        seq: row.get(0)?,
        at: row.get(1)?,
        action: row.get(2)?,
        skill: row.get(3)?,
        version: row.get(4)?,
        actor: row.get(5)?,
        reason: row.get(6)?,
        prev_hash: row.get(7)?,
        hash: row.get(8)?,
    })
}

impl<'a> SkillLedger<'a> {
    pub(crate) fn new(tx: &'a Transaction<'a>) -> Self {
        Self { tx }
    }

    /// # Errors
    /// On a database failure.
    pub fn skill(&self, name: &str) -> Result<Option<SkillRecord>, StoreError> {
        Ok(self
            .tx
            .prepare_cached(&format!(
                "SELECT {SKILL_COLUMNS} FROM skills WHERE name = ?1"
            ))?
            .query_row([name], skill_from_row)
            .optional()?)
    }

    /// The skill whose name has this look-alike skeleton, if any.
    ///
    /// # Errors
    /// On a database failure.
    pub fn skill_by_skeleton(&self, skeleton: &str) -> Result<Option<SkillRecord>, StoreError> {
        Ok(self
            .tx
            .prepare_cached(&format!(
                "SELECT {SKILL_COLUMNS} FROM skills WHERE skeleton = ?1"
            ))?
            .query_row([skeleton], skill_from_row)
            .optional()?)
    }

    /// Every skill, by name.
    ///
    /// # Errors
    /// On a database failure.
    pub fn skills(&self) -> Result<Vec<SkillRecord>, StoreError> {
        let mut stmt = self
            .tx
            .prepare_cached(&format!("SELECT {SKILL_COLUMNS} FROM skills ORDER BY name"))?;
        let rows = stmt.query_map([], skill_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Insert a new skill row or replace an existing one's mutable columns (state, pinned,
    /// versions, projected hash, `updated_at`).
    ///
    /// # Errors
    /// On a database failure, e.g. a skeleton another skill already has.
    pub fn put_skill(&self, skill: &SkillRecord) -> Result<(), StoreError> {
        self.tx
            .prepare_cached(&format!(
                "INSERT INTO skills ({SKILL_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (name) DO UPDATE SET
                     state = excluded.state, pinned = excluded.pinned,
                     current_version = excluded.current_version,
                     pending_version = excluded.pending_version,
                     projected_hash = excluded.projected_hash,
                     updated_at = excluded.updated_at"
            ))?
            .execute(params![
                skill.name,
                skill.skeleton,
                skill.state,
                skill.pinned,
                skill.current_version,
                skill.pending_version,
                skill.projected_hash,
                skill.created_at,
                skill.updated_at,
            ])?;
        Ok(())
    }

    /// # Errors
    /// On a database failure.
    pub fn version(&self, hash: &str) -> Result<Option<SkillVersionRecord>, StoreError> {
        Ok(self
            .tx
            .prepare_cached(&format!(
                "SELECT {VERSION_COLUMNS} FROM skill_versions WHERE hash = ?1"
            ))?
            .query_row([hash], version_from_row)
            .optional()?)
    }

    /// The versions of `name` (every version when `None`), oldest first.
    ///
    /// # Errors
    /// On a database failure.
    pub fn versions(&self, name: Option<&str>) -> Result<Vec<SkillVersionRecord>, StoreError> {
        let mut stmt = self.tx.prepare_cached(&format!(
            "SELECT {VERSION_COLUMNS} FROM skill_versions
             WHERE ?1 IS NULL OR name = ?1 ORDER BY created_at, rowid"
        ))?;
        let rows = stmt.query_map([name], version_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Store a version with its files. A version is named by its content, so storing one that
    /// exists already changes nothing and returns `false`.
    ///
    /// # Errors
    /// On a database failure.
    pub fn insert_version(
        &self,
        version: &SkillVersionRecord,
        files: &[SkillFileRecord],
    ) -> Result<bool, StoreError> {
        if self.version(&version.hash)?.is_some() {
            return Ok(false);
        }
        self.tx
            .prepare_cached(&format!(
                "INSERT INTO skill_versions ({VERSION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
            ))?
            .execute(params![
                version.hash,
                version.name,
                version.parent,
                version.author,
                version.session_id,
                version.untrusted_context,
                version.created_at,
            ])?;
        let mut insert = self.tx.prepare_cached(
            "INSERT INTO skill_files (version, path, executable, sha256, content)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for file in files {
            insert.execute(params![
                version.hash,
                file.path,
                file.executable,
                file.sha256,
                file.content
            ])?;
        }
        Ok(true)
    }

    /// A version's files, by path.
    ///
    /// # Errors
    /// On a database failure.
    pub fn files(&self, version: &str) -> Result<Vec<SkillFileRecord>, StoreError> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT path, executable, sha256, content FROM skill_files
             WHERE version = ?1 ORDER BY path",
        )?;
        let rows = stmt.query_map([version], |row| {
            Ok(SkillFileRecord {
                path: row.get(0)?,
                executable: row.get(1)?,
                sha256: row.get(2)?,
                content: row.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The newest audit row: the one the next row chains to.
    ///
    /// # Errors
    /// On a database failure.
    pub fn last_audit(&self) -> Result<Option<SkillAuditRecord>, StoreError> {
        Ok(self
            .tx
            .prepare_cached(&format!(
                "SELECT {AUDIT_COLUMNS} FROM skill_audit ORDER BY seq DESC LIMIT 1"
            ))?
            .query_row([], audit_from_row)
            .optional()?)
    }

    /// Append one audit row, exactly as given (the caller computed its seq and hashes). There
    /// is no way to change or remove one.
    ///
    /// # Errors
    /// On a database failure, e.g. a seq that is taken.
    pub fn append_audit(&self, entry: &SkillAuditRecord) -> Result<(), StoreError> {
        self.tx
            .prepare_cached(&format!(
                "INSERT INTO skill_audit ({AUDIT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
            ))?
            .execute(params![
                entry.seq,
                entry.at,
                entry.action,
                entry.skill,
                entry.version,
                entry.actor,
                entry.reason,
                entry.prev_hash,
                entry.hash,
            ])?;
        Ok(())
    }

    /// The audit rows about `skill` (all rows when `None`), oldest first.
    ///
    /// # Errors
    /// On a database failure.
    pub fn audit(&self, skill: Option<&str>) -> Result<Vec<SkillAuditRecord>, StoreError> {
        let mut stmt = self.tx.prepare_cached(&format!(
            "SELECT {AUDIT_COLUMNS} FROM skill_audit WHERE ?1 IS NULL OR skill = ?1 ORDER BY seq"
        ))?;
        let rows = stmt.query_map([skill], audit_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
