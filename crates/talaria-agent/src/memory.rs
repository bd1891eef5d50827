//! Curated memory: `MEMORY.md` (the agent's notes) and `USER.md` (what it knows about the user).
//!
//! Hermes-compatible format: entries separated by `\n§\n`, budgets counted in characters so
//! they do not depend on a tokenizer. The system prompt gets a snapshot taken when the session
//! starts and never changes during it (prompt caches stay warm); the tool edits the files at
//! once and reports live usage. Writes are atomic (temp file + rename), so a crash never leaves
//! a half-written memory file.
//!
//! `MEMORY.md` is shared by every session of the home; `USER.md` is per person: the owner's is
//! `memories/USER.md`, a bus person's `memories/users/<uid>/<user>/USER.md` (both parts
//! validated by [`Person`], so a user id can never name a path outside `users/`). A session of
//! one person never reads or writes another's.
//!
//! A write made while untrusted content was in context does not touch the files: it is checked
//! like a real write (so the model still gets budget and match errors) and then parked in
//! `memories/pending/` until the owner approves it (`talaria memory approve ID`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use talaria_core::Person;

pub const ENTRY_DELIMITER: &str = "\n§\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
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
    #[error("no pending memory write {0:?}")]
    NoSuchPending(String),
    #[error("pending memory write {path} is unreadable: {message}")]
    BadPending { path: PathBuf, message: String },
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

/// One change to a memory file, as the tool asks for it (and as a pending write keeps it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum MemoryEdit {
    Add { content: String },
    Replace { old_text: String, content: String },
    Remove { old_text: String },
}

/// The memory files one person's sessions see: the shared `MEMORY.md` and their `USER.md`.
#[derive(Debug, Clone)]
pub struct MemoryFiles {
    dir: PathBuf,
    user_dir: PathBuf,
    person: Person,
    memory_limit: usize,
    user_limit: usize,
}

impl MemoryFiles {
    /// The owner's files in `dir` (`memories/`).
    pub fn new(dir: impl Into<PathBuf>, memory_limit: usize, user_limit: usize) -> Self {
        Self::for_person(dir, &Person::Owner, memory_limit, user_limit)
    }

    /// The files `person` sees under the memories directory `dir`.
    pub fn for_person(
        dir: impl Into<PathBuf>,
        person: &Person,
        memory_limit: usize,
        user_limit: usize,
    ) -> Self {
        let dir = dir.into();
        let user_dir = match person {
            Person::Owner => dir.clone(),
            // Both parts are single, validated path components (a number and a `UserId`).
            Person::Remote { uid, user } => {
                dir.join("users").join(uid.to_string()).join(user.as_str())
            }
        };
        Self {
            dir,
            user_dir,
            person: person.clone(),
            memory_limit,
            user_limit,
        }
    }

    pub fn person(&self) -> &Person {
        &self.person
    }

    /// The same memories for another person (same directory and budgets).
    pub fn with_person(&self, person: &Person) -> Self {
        Self::for_person(self.dir.clone(), person, self.memory_limit, self.user_limit)
    }

    /// Writes waiting for the owner's approval, kept next to these files.
    pub fn pending(&self) -> PendingMemory {
        PendingMemory::new(self.dir.join("pending"))
    }

    pub fn limit(&self, target: MemoryTarget) -> usize {
        match target {
            MemoryTarget::Memory => self.memory_limit,
            MemoryTarget::User => self.user_limit,
        }
    }

    /// The file behind `target` for this person.
    pub fn path(&self, target: MemoryTarget) -> PathBuf {
        match target {
            MemoryTarget::Memory => self.dir.join(target.file_name()),
            MemoryTarget::User => self.user_dir.join(target.file_name()),
        }
    }

    /// Apply `edit`, or with `dry_run` only check it; returns the entries after it.
    ///
    /// # Errors
    /// As [`Self::add`], [`Self::replace`] and [`Self::remove`].
    pub fn apply(
        &self,
        target: MemoryTarget,
        edit: &MemoryEdit,
        dry_run: bool,
    ) -> Result<Vec<String>, MemoryError> {
        let entries = self.edited(target, edit)?;
        if dry_run {
            self.check_budget(target, &entries)?;
            Ok(entries)
        } else {
            self.store(target, entries)
        }
    }

    fn edited(&self, target: MemoryTarget, edit: &MemoryEdit) -> Result<Vec<String>, MemoryError> {
        let mut entries = self.entries(target)?;
        match edit {
            MemoryEdit::Add { content } => {
                let content = clean(content)?;
                if entries.iter().any(|e| e == &content) {
                    return Err(MemoryError::Duplicate);
                }
                entries.push(content);
            }
            MemoryEdit::Replace { old_text, content } => {
                let content = clean(content)?;
                let index = find_one(&entries, old_text)?;
                entries[index] = content;
            }
            MemoryEdit::Remove { old_text } => {
                let index = find_one(&entries, old_text)?;
                entries.remove(index);
            }
        }
        Ok(entries)
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
        let edit = MemoryEdit::Add {
            content: content.to_owned(),
        };
        self.apply(target, &edit, false)
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
        let edit = MemoryEdit::Replace {
            old_text: needle.to_owned(),
            content: content.to_owned(),
        };
        self.apply(target, &edit, false)
    }

    /// Remove the one entry containing `needle`.
    ///
    /// # Errors
    /// No entry or several entries match.
    pub fn remove(&self, target: MemoryTarget, needle: &str) -> Result<Vec<String>, MemoryError> {
        let edit = MemoryEdit::Remove {
            old_text: needle.to_owned(),
        };
        self.apply(target, &edit, false)
    }

    fn store(
        &self,
        target: MemoryTarget,
        entries: Vec<String>,
    ) -> Result<Vec<String>, MemoryError> {
        self.check_budget(target, &entries)?;
        let path = self.path(target);
        write_atomic(&path, entries.join(ENTRY_DELIMITER).as_bytes())
            .map_err(|e| io_error(&path, &e))?;
        Ok(entries)
    }

    fn check_budget(&self, target: MemoryTarget, entries: &[String]) -> Result<(), MemoryError> {
        let used = Self::usage(entries);
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
        Ok(())
    }

    /// Apply the parked write `id` to the files of the person it was for, then drop it. The
    /// write is checked again against the files as they are now (budget, match).
    ///
    /// # Errors
    /// An unknown id, or the write no longer applies (it stays parked).
    pub fn approve(&self, id: &str) -> Result<(PendingWrite, Vec<String>), MemoryError> {
        let pending = self.pending();
        let write = pending.get(id)?;
        let person =
            Person::parse_label(&write.person).map_err(|message| MemoryError::BadPending {
                path: self.dir.join("pending").join(format!("{id}.json")),
                message,
            })?;
        let entries = self
            .with_person(&person)
            .apply(write.target, &write.edit, false)?;
        pending.discard(id)?;
        Ok((write, entries))
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

/// A memory write parked because untrusted content was in context when it was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingWrite {
    /// `YYYYMMDD-HHMMSS-xxxxxx`, as the file is named.
    pub id: String,
    /// Whose files it is for, as [`Person::label`] writes it.
    pub person: String,
    pub target: MemoryTarget,
    pub edit: MemoryEdit,
    /// The session that made it.
    pub session: String,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// The quarantine for memory writes: one JSON file per write in `memories/pending/`.
#[derive(Debug, Clone)]
pub struct PendingMemory {
    dir: PathBuf,
}

impl PendingMemory {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// Park a write; returns its id.
    ///
    /// # Errors
    /// [`MemoryError::Io`] when the file cannot be written.
    pub fn park(
        &self,
        person: &Person,
        target: MemoryTarget,
        edit: MemoryEdit,
        session: &str,
    ) -> Result<PendingWrite, MemoryError> {
        let now = jiff::Timestamp::now();
        let write = PendingWrite {
            id: format!(
                "{}-{:06x}",
                now.strftime("%Y%m%d-%H%M%S"),
                fastrand::u32(..0x0100_0000)
            ),
            person: person.label(),
            target,
            edit,
            session: session.to_owned(),
            created_at: now.as_millisecond(),
        };
        let path = self.dir.join(format!("{}.json", write.id));
        let json = serde_json::to_vec_pretty(&write).map_err(|e| MemoryError::BadPending {
            path: path.clone(),
            message: e.to_string(),
        })?;
        write_atomic(&path, &json).map_err(|e| io_error(&path, &e))?;
        Ok(write)
    }

    /// Every parked write, oldest first.
    ///
    /// # Errors
    /// An unreadable directory or file.
    pub fn list(&self) -> Result<Vec<PendingWrite>, MemoryError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error(&self.dir, &e)),
        };
        let mut writes = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_error(&self.dir, &e))?;
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if id.starts_with('.') {
                continue;
            }
            writes.push(self.get(id)?);
        }
        writes.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(writes)
    }

    /// One parked write.
    ///
    /// # Errors
    /// [`MemoryError::NoSuchPending`] for an unknown (or malformed) id.
    pub fn get(&self, id: &str) -> Result<PendingWrite, MemoryError> {
        let path = self.file(id)?;
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(MemoryError::NoSuchPending(id.to_owned()));
            }
            Err(e) => return Err(io_error(&path, &e)),
        };
        serde_json::from_slice(&text).map_err(|e| MemoryError::BadPending {
            path,
            message: e.to_string(),
        })
    }

    /// Drop a parked write (after it was applied or rejected).
    ///
    /// # Errors
    /// [`MemoryError::NoSuchPending`] or the I/O error.
    pub fn discard(&self, id: &str) -> Result<(), MemoryError> {
        let path = self.file(id)?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(MemoryError::NoSuchPending(id.to_owned()))
            }
            Err(e) => Err(io_error(&path, &e)),
        }
    }

    fn file(&self, id: &str) -> Result<PathBuf, MemoryError> {
        let safe = !id.is_empty()
            && id.len() <= 64
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !safe {
            return Err(MemoryError::NoSuchPending(id.to_owned()));
        }
        Ok(self.dir.join(format!("{id}.json")))
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

    fn remote(uid: u32, user: &str) -> Person {
        Person::Remote {
            uid,
            user: talaria_core::UserId::parse(user).unwrap(),
        }
    }

    #[test]
    fn each_person_has_their_own_user_file_and_shares_memory() {
        let dir = tempfile::tempdir().unwrap();
        let owner = files(dir.path());
        let alice = owner.with_person(&remote(900, "alice"));
        let bob = owner.with_person(&remote(900, "bob"));
        owner.add(MemoryTarget::User, "owner is Ada").unwrap();
        alice.add(MemoryTarget::User, "alice: vegan").unwrap();
        bob.add(MemoryTarget::User, "bob: likes go").unwrap();
        alice.add(MemoryTarget::Memory, "host runs nix").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("users/900/alice/USER.md")).unwrap(),
            "alice: vegan"
        );
        let snap = |m: &MemoryFiles| m.snapshot().unwrap().unwrap();
        let (a, b, o) = (snap(&alice), snap(&bob), snap(&owner));
        assert!(
            a.contains("alice: vegan") && !a.contains("bob") && !a.contains("Ada"),
            "{a}"
        );
        assert!(b.contains("bob: likes go") && !b.contains("alice"), "{b}");
        assert!(
            o.contains("owner is Ada") && !o.contains("alice") && !o.contains("bob"),
            "{o}"
        );
        for s in [&a, &b, &o] {
            assert!(s.contains("host runs nix"), "MEMORY.md is shared: {s}");
        }
    }

    #[test]
    fn pending_writes_park_and_apply_to_the_right_person() {
        let dir = tempfile::tempdir().unwrap();
        let alice = files(dir.path()).with_person(&remote(900, "alice"));
        let edit = MemoryEdit::Add {
            content: "alice prefers email".into(),
        };
        alice.apply(MemoryTarget::User, &edit, true).unwrap();
        let parked = alice
            .pending()
            .park(alice.person(), MemoryTarget::User, edit, "s1")
            .unwrap();
        assert!(alice.entries(MemoryTarget::User).unwrap().is_empty());
        // Approving from the owner's handle applies it to alice's file, not the owner's.
        let owner = files(dir.path());
        let (write, entries) = owner.approve(&parked.id).unwrap();
        assert_eq!(write.person, "900/alice");
        assert_eq!(entries, ["alice prefers email"]);
        assert_eq!(
            alice.entries(MemoryTarget::User).unwrap(),
            ["alice prefers email"]
        );
        assert!(owner.entries(MemoryTarget::User).unwrap().is_empty());
        assert!(matches!(
            owner.approve(&parked.id),
            Err(MemoryError::NoSuchPending(_))
        ));
        for bad in ["../../etc/passwd", "a/b", ""] {
            assert!(matches!(
                owner.pending().get(bad),
                Err(MemoryError::NoSuchPending(_))
            ));
        }
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
