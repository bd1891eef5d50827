//! The learning loop's bookkeeping next to the skill registry: per-skill usage counters that the
//! curator grades skills by, and the FTS5 index that ranks the prompt's skill catalogue.
//!
//! This module owns only the SQL. The registry stays the authority on which skills exist and
//! what state they are in; the catalogue index is rebuilt from it on demand and never read as a
//! source of truth.

use rusqlite::{OptionalExtension, params};

use crate::error::StoreError;
use crate::store::Store;

/// What happened to a skill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkillUse {
    /// Loaded into a turn (`/skill-name`) or one of its scripts ran.
    Use,
    /// Read with `skill_view`.
    View,
    /// Changed by the agent (`skill_manage`).
    Patch,
}

/// A skill's counters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SkillUsageRecord {
    pub name: String,
    pub uses: u64,
    pub views: u64,
    pub patches: u64,
    /// Unix milliseconds of the last use, view or patch.
    pub last_used_at: Option<i64>,
    /// Unix milliseconds when the curator marked the skill stale; `None` when it is not.
    pub stale_since: Option<i64>,
}

fn record_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<SkillUsageRecord> {
    Ok(SkillUsageRecord {
        name: row.get(0)?,
        uses: count(row.get(1)?),
        views: count(row.get(2)?),
        patches: count(row.get(3)?),
        last_used_at: row.get(4)?,
        stale_since: row.get(5)?,
    })
}

/// A counter column (`CHECK (… >= 0)`) as unsigned.
fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// An FTS5 query that matches any of the words of `text`: each word quoted, so the user's text
/// can never be read as query syntax. `None` when `text` has no words.
fn any_word_query(text: &str) -> Option<String> {
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 2)
        .take(64)
        .map(|w| format!("\"{}\"", w.to_lowercase()))
        .collect();
    (!words.is_empty()).then(|| words.join(" OR "))
}

impl Store {
    /// Count one use, view or patch of `name` at `at` (unix ms). Any of them also clears a
    /// stale mark: the skill is in use again.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn record_skill_use(
        &self,
        name: &str,
        kind: SkillUse,
        at: i64,
    ) -> Result<(), StoreError> {
        let name = name.to_owned();
        let column = match kind {
            SkillUse::Use => "uses",
            SkillUse::View => "views",
            SkillUse::Patch => "patches",
        };
        self.run(move |conn| {
            conn.execute(
                &format!(
                    "INSERT INTO skill_usage (name, {column}, last_used_at) VALUES (?1, 1, ?2)
                     ON CONFLICT (name) DO UPDATE SET {column} = {column} + 1,
                         last_used_at = excluded.last_used_at, stale_since = NULL"
                ),
                params![name, at],
            )?;
            Ok(())
        })
        .await
    }

    /// Every skill's counters, by name (skills never used have no row).
    ///
    /// # Errors
    /// On a database failure.
    pub async fn skill_usage(&self) -> Result<Vec<SkillUsageRecord>, StoreError> {
        self.run(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT name, uses, views, patches, last_used_at, stale_since
                 FROM skill_usage ORDER BY name",
            )?;
            let rows = stmt.query_map([], record_from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// One skill's counters, if it has any.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn skill_usage_of(&self, name: &str) -> Result<Option<SkillUsageRecord>, StoreError> {
        let name = name.to_owned();
        self.run(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT name, uses, views, patches, last_used_at, stale_since
                     FROM skill_usage WHERE name = ?1",
                )?
                .query_row([name], record_from_row)
                .optional()?)
        })
        .await
    }

    /// Mark `name` stale since `since` (unix ms), or clear the mark with `None`.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn set_skill_stale(&self, name: &str, since: Option<i64>) -> Result<(), StoreError> {
        let name = name.to_owned();
        self.run(move |conn| {
            conn.execute(
                "INSERT INTO skill_usage (name, stale_since) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET stale_since = excluded.stale_since",
                params![name, since],
            )?;
            Ok(())
        })
        .await
    }

    /// Replace the catalogue index with `entries` (name, description): the active skills.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn index_skill_catalogue(
        &self,
        entries: Vec<(String, String)>,
    ) -> Result<(), StoreError> {
        self.run(move |conn| {
            let tx = conn.transaction()?;
            tx.execute("DELETE FROM skill_catalogue_fts", [])?;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO skill_catalogue_fts (name, description) VALUES (?1, ?2)",
                )?;
                for (name, description) in &entries {
                    insert.execute(params![name, description])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// The indexed skills that match any word of `text`, most relevant first (BM25; a match in
    /// the name weighs twice a match in the description). Empty when `text` has no words.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn rank_skill_catalogue(&self, text: &str) -> Result<Vec<String>, StoreError> {
        let Some(query) = any_word_query(text) else {
            return Ok(Vec::new());
        };
        self.run(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT name FROM skill_catalogue_fts WHERE skill_catalogue_fts MATCH ?1
                 ORDER BY bm25(skill_catalogue_fts, 2.0, 1.0), name",
            )?;
            let rows = stmt.query_map([query], |row| row.get(0))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_quote_every_word() {
        assert_eq!(
            any_word_query("deploy the app (NOT \"x\")").as_deref(),
            Some("\"deploy\" OR \"the\" OR \"app\" OR \"not\"")
        );
        assert_eq!(any_word_query("?! a"), None);
    }
}
