//! Curated memory: `MEMORY.md` (the agent's notes) and `USER.md` (what it knows about the user).
//!
//! Hermes-compatible format: entries separated by `\n§\n`, budgets counted in characters so
//! they do not depend on a tokenizer. The system prompt gets a snapshot taken when the session
//! starts and never changes during it (prompt caches stay warm); the tool edits the files at
//! once and reports live usage. Writes are atomic (temp file + rename), so a crash never leaves
//! a half-written memory file.

use std::path::{Path, PathBuf};

pub const ENTRY_DELIMITER: &str = "\n§\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryTarget {
    Memory,
    User,
}

impl MemoryTarget {
    pub fn file_name(self) -> &'static str {
        match self {
            MemoryTarget::Memory => "MEMORY.md",
            MemoryTarget::User => "USER.md",
        }
    }

    fn title(self) -> &'static str {
        match self {
            MemoryTarget::Memory => "MEMORY (your notes: environment facts, conventions, lessons)",
            MemoryTarget::User => "USER PROFILE (what you know about the user)",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MemoryError {
    #[error("cannot read or write {path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("content is empty")]
    Empty,
    #[error("content must not contain the entry separator '§' on a line of its own")]
    ContainsDelimiter,
    #[error("no entry contains {needle:?}")]
    NoMatch { needle: String },
    #[error("{count} entries contain {needle:?}: give a longer, unique piece of the entry")]
    Ambiguous { needle: String, count: usize },
    #[error("an identical entry already exists")]
    Duplicate,
    #[error(
        "{file} would use {would_use} of {limit} characters; remove or merge entries first. Current entries:\n{entries}"
    )]
    OverBudget {
        file: &'static str,
        would_use: usize,
        limit: usize,
        entries: String,
    },
}

/// The two memory files of one home.
#[derive(Debug, Clone)]
pub struct MemoryFiles {
    dir: PathBuf,
    memory_limit: usize,
    user_limit: usize,
}

impl MemoryFiles {
    pub fn new(dir: impl Into<PathBuf>, memory_limit: usize, user_limit: usize) -> Self {
        Self {
            dir: dir.into(),
            memory_limit,
            user_limit,
        }
    }

    pub fn limit(&self, target: MemoryTarget) -> usize {
        match target {
            MemoryTarget::Memory => self.memory_limit,
            MemoryTarget::User => self.user_limit,
        }
    }

    fn path(&self, target: MemoryTarget) -> PathBuf {
        self.dir.join(target.file_name())
    }

    /// The entries of one file; a missing file has none.
    ///
    /// # Errors
    /// [`MemoryError::Io`] when the file exists but cannot be read.
    pub fn entries(&self, target: MemoryTarget) -> Result<Vec<String>, MemoryError> {
        let path = self.path(target);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(parse_entries(&text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(io_error(&path, &e)),
        }
    }

    /// Characters used by a list of entries, as stored.
    pub fn usage(entries: &[String]) -> usize {
        entries.join(ENTRY_DELIMITER).chars().count()
    }

    /// Add an entry.
    ///
    /// # Errors
    /// Empty or duplicate content, or a write that would exceed the budget.
    pub fn add(&self, target: MemoryTarget, content: &str) -> Result<Vec<String>, MemoryError> {
        let content = clean(content)?;
        let mut entries = self.entries(target)?;
        if entries.iter().any(|e| e == &content) {
            return Err(MemoryError::Duplicate);
        }
        entries.push(content);
        self.store(target, entries)
    }

    /// Replace the one entry containing `needle` with `content`.
    ///
    /// # Errors
    /// No entry or several entries match, or the result exceeds the budget.
    pub fn replace(
        &self,
        target: MemoryTarget,
        needle: &str,
        content: &str,
    ) -> Result<Vec<String>, MemoryError> {
        let content = clean(content)?;
        let mut entries = self.entries(target)?;
        let index = find_one(&entries, needle)?;
        entries[index] = content;
        self.store(target, entries)
    }

    /// Remove the one entry containing `needle`.
    ///
    /// # Errors
    /// No entry or several entries match.
    pub fn remove(&self, target: MemoryTarget, needle: &str) -> Result<Vec<String>, MemoryError> {
        let mut entries = self.entries(target)?;
        let index = find_one(&entries, needle)?;
        entries.remove(index);
        self.store(target, entries)
    }

    fn store(
        &self,
        target: MemoryTarget,
        entries: Vec<String>,
    ) -> Result<Vec<String>, MemoryError> {
        let used = Self::usage(&entries);
        let limit = self.limit(target);
        if used > limit {
            let current = self.entries(target)?;
            return Err(MemoryError::OverBudget {
                file: target.file_name(),
                would_use: used,
                limit,
                entries: current
                    .iter()
                    .enumerate()
                    .map(|(i, e)| format!("{}. {e}", i + 1))
                    .collect::<Vec<_>>()
                    .join("\n"),
            });
        }
        let path = self.path(target);
        write_atomic(&path, entries.join(ENTRY_DELIMITER).as_bytes())
            .map_err(|e| io_error(&path, &e))?;
        Ok(entries)
    }

    /// The block the system prompt carries, or `None` when both files are empty.
    ///
    /// # Errors
    /// [`MemoryError::Io`] when a file cannot be read.
    pub fn snapshot(&self) -> Result<Option<String>, MemoryError> {
        let mut blocks = Vec::new();
        for target in [MemoryTarget::Memory, MemoryTarget::User] {
            let entries = self.entries(target)?;
            if entries.is_empty() {
                continue;
            }
            let used = Self::usage(&entries);
            let limit = self.limit(target);
            blocks.push(format!(
                "{} [{}% — {used}/{limit} chars]\n{}",
                target.title(),
                used * 100 / limit.max(1),
                entries.join(ENTRY_DELIMITER)
            ));
        }
        Ok((!blocks.is_empty()).then(|| blocks.join("\n\n")))
    }
}

fn parse_entries(text: &str) -> Vec<String> {
    text.split(ENTRY_DELIMITER)
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
        .collect()
}

fn clean(content: &str) -> Result<String, MemoryError> {
    let content = content.trim();
    if content.is_empty() {
        return Err(MemoryError::Empty);
    }
    if content.contains(ENTRY_DELIMITER) || content.lines().any(|l| l.trim() == "§") {
        return Err(MemoryError::ContainsDelimiter);
    }
    Ok(content.to_owned())
}

fn find_one(entries: &[String], needle: &str) -> Result<usize, MemoryError> {
    let needle_owned = needle.to_owned();
    let matches: Vec<usize> = entries
        .iter()
        .enumerate()
        .filter(|(_, e)| !needle.is_empty() && e.contains(needle))
        .map(|(i, _)| i)
        .collect();
    match matches.as_slice() {
        [one] => Ok(*one),
        [] => Err(MemoryError::NoMatch {
            needle: needle_owned,
        }),
        many => Err(MemoryError::Ambiguous {
            needle: needle_owned,
            count: many.len(),
        }),
    }
}

fn io_error(path: &Path, e: &std::io::Error) -> MemoryError {
    MemoryError::Io {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

/// Write through a temporary file in the same directory and rename it into place.
pub(crate) fn write_atomic(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(contents)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> MemoryFiles {
        MemoryFiles::new(dir, 60, 40)
    }

    #[test]
    fn add_replace_remove_round_trip_in_hermes_format() {
        let dir = tempfile::tempdir().unwrap();
        let m = files(dir.path());
        m.add(MemoryTarget::Memory, "uses nix").unwrap();
        m.add(MemoryTarget::Memory, "prefers tabs\nin go").unwrap();
        let raw = std::fs::read_to_string(dir.path().join("MEMORY.md")).unwrap();
        assert_eq!(raw, "uses nix\n§\nprefers tabs\nin go");
        m.replace(MemoryTarget::Memory, "tabs", "prefers spaces")
            .unwrap();
        assert_eq!(
            m.entries(MemoryTarget::Memory).unwrap(),
            ["uses nix", "prefers spaces"]
        );
        m.remove(MemoryTarget::Memory, "nix").unwrap();
        assert_eq!(m.entries(MemoryTarget::Memory).unwrap(), ["prefers spaces"]);
    }

    #[test]
    fn over_budget_is_refused_with_the_entries_listed() {
        let dir = tempfile::tempdir().unwrap();
        let m = files(dir.path());
        m.add(MemoryTarget::User, "name is Ada").unwrap();
        let err = m.add(MemoryTarget::User, &"x".repeat(40)).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("USER.md would use 54 of 40"), "{text}");
        assert!(text.contains("1. name is Ada"), "{text}");
        assert_eq!(
            m.entries(MemoryTarget::User).unwrap(),
            ["name is Ada"],
            "nothing half-written"
        );
    }

    #[test]
    fn ambiguous_and_missing_matches_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let m = files(dir.path());
        m.add(MemoryTarget::Memory, "a cat").unwrap();
        m.add(MemoryTarget::Memory, "a cow").unwrap();
        assert!(matches!(
            m.remove(MemoryTarget::Memory, "a c"),
            Err(MemoryError::Ambiguous { count: 2, .. })
        ));
        assert!(matches!(
            m.remove(MemoryTarget::Memory, "dog"),
            Err(MemoryError::NoMatch { .. })
        ));
        assert_eq!(
            m.add(MemoryTarget::Memory, "a cat"),
            Err(MemoryError::Duplicate)
        );
        assert_eq!(
            m.add(MemoryTarget::Memory, "x\n§\ny"),
            Err(MemoryError::ContainsDelimiter)
        );
    }

    #[test]
    fn snapshot_shows_usage() {
        let dir = tempfile::tempdir().unwrap();
        let m = files(dir.path());
        assert_eq!(m.snapshot().unwrap(), None);
        m.add(MemoryTarget::Memory, "twelve chars").unwrap();
        let snap = m.snapshot().unwrap().unwrap();
        assert!(snap.contains("[20% — 12/60 chars]\ntwelve chars"), "{snap}");
    }
}
