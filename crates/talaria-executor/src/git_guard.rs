//! Git metadata that would run later on the host: found after every command and neutralized.
//!
//! # Threat
//! A sandboxed command can write files that do nothing inside the sandbox and run code the next
//! time the person uses git on the host: `.git/commondir` pointing at an attacker-made
//! directory whose `config` sets `core.fsmonitor`, `config.worktree`, `info/attributes` naming
//! filter drivers, `worktrees/*` and `modules/*` (each a git directory with its own config and
//! hooks), hooks, and whole new repositories (a nested `.git`, a bare-repository lookalike, a
//! `.git` file pointing anywhere) that git discovers when the person `cd`s there.
//!
//! # Why a check after the run, not only mounts
//! The sandbox helper keeps `.git/hooks` and `.git/config` read-only with mounts, but `.git`
//! itself must stay writable for a commit (git creates `index.lock`, `HEAD.lock`,
//! `COMMIT_EDITMSG`, `ORIG_HEAD` next to them and renames), and Landlock and mounts only see
//! paths that exist when the command starts: a nested repository made during the run cannot be
//! protected in advance. So the executor takes a [`Snapshot`] of every git-sensitive path
//! under the writable roots before the command and compares after it; anything new or changed
//! is renamed aside to `NAME.talaria-quarantine` (git never reads that name; a changed file's
//! previous contents, kept in the snapshot, are put back) and reported to the
//! person by name (`.git/commondir is protected`). What a commit writes (objects, refs, logs,
//! index, `HEAD`'s contents, `packed-refs`, `ORIG_HEAD`, `COMMIT_EDITMSG`) is not sensitive and
//! is left alone; a new repository is quarantined whole (its `HEAD`, or its `.git`), so a
//! `git init` or `git clone` made in the sandbox needs the person's look before git uses it.
//!
//! # Limits
//! The walk runs as the executor, after the command's processes are gone (its PID namespace is
//! killed with it); it never follows a symlink. A background process still running can write
//! after the check; the check runs again after the next command of the session.
//! `objects/` trees are not walked (they hold no configuration).

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// How many directory entries one snapshot reads at most; beyond it the check says it stopped.
const MAX_ENTRIES: usize = 400_000;

/// Suffix of a quarantined path.
pub const QUARANTINE_SUFFIX: &str = ".talaria-quarantine";

/// What identifies one version of a sensitive path: a rewrite or a replacement changes it
/// (`ctime` cannot be set back by the command).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Version {
    ino: u64,
    ctime: (i64, i64),
    size: u64,
}

impl Version {
    fn of(meta: &std::fs::Metadata) -> Self {
        Self {
            ino: meta.ino(),
            ctime: (meta.ctime(), meta.ctime_nsec()),
            size: meta.len(),
        }
    }
}

/// How a sensitive path is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Must not appear or change (`commondir`, `config`, a hook, a `.git` file …).
    Content,
    /// Must not appear; changes are git's own business (`HEAD` of a git directory: a new one is
    /// a new repository).
    Existence,
}

/// Every git-sensitive path under some roots, with its version.
#[derive(Debug, Default)]
pub struct Snapshot {
    roots: Vec<PathBuf>,
    paths: BTreeMap<PathBuf, (Kind, Version)>,
    /// The contents and mode of the small regular files among them, to put back what a
    /// command changed (a repository keeps working with its previous configuration).
    contents: BTreeMap<PathBuf, (Vec<u8>, u32)>,
    incomplete: bool,
}

/// Files up to this size are kept in the snapshot so a changed one can be restored.
const RESTORABLE_BYTES: u64 = 256 * 1024;

/// One path moved aside after a command, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    /// The path the command wrote, relative to its writable root.
    pub relative: PathBuf,
    pub moved_to: PathBuf,
    /// It was new (rather than changed).
    pub new: bool,
}

impl Quarantined {
    /// The line shown to the person.
    #[must_use]
    pub fn message(&self) -> String {
        format!(
            "talaria: {} is protected: the command {} it, and git on the host would run what it says; moved to {}{}",
            self.relative.display(),
            if self.new { "created" } else { "changed" },
            self.moved_to.display(),
            if self.new {
                ""
            } else {
                ", the previous version put back"
            }
        )
    }
}

/// The names in a git directory whose contents configure git or run code.
const SENSITIVE_IN_GIT_DIR: &[&str] = &[
    "commondir",
    "config",
    "config.worktree",
    "gitdir",
    "info/attributes",
];

impl Snapshot {
    /// Every sensitive path under the directories among `roots` (files such as `/dev/null`
    /// are skipped).
    #[must_use]
    pub fn take(roots: &[PathBuf]) -> Self {
        let mut snapshot = Self {
            roots: roots
                .iter()
                .filter(|r| std::fs::symlink_metadata(r).is_ok_and(|m| m.is_dir()))
                .cloned()
                .collect(),
            ..Self::default()
        };
        let mut budget = MAX_ENTRIES;
        for root in snapshot.roots.clone() {
            snapshot.walk(&root, &mut budget);
        }
        snapshot
    }

    fn record(&mut self, path: PathBuf, kind: Kind) {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::symlink_metadata(&path) {
            if kind == Kind::Content
                && meta.is_file()
                && meta.len() <= RESTORABLE_BYTES
                && let Ok(bytes) = std::fs::read(&path)
            {
                self.contents
                    .insert(path.clone(), (bytes, meta.permissions().mode() & 0o7777));
            }
            self.paths.insert(path, (kind, Version::of(&meta)));
        }
    }

    fn walk(&mut self, root: &Path, budget: &mut usize) {
        let mut pending = vec![root.to_path_buf()];
        while let Some(dir) = pending.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            let is_git_dir = is_git_dir(&dir);
            if is_git_dir {
                self.record(dir.join("HEAD"), Kind::Existence);
                for name in SENSITIVE_IN_GIT_DIR {
                    self.record(dir.join(name), Kind::Content);
                }
                if let Ok(hooks) = std::fs::read_dir(dir.join("hooks")) {
                    for hook in hooks.flatten() {
                        self.record(hook.path(), Kind::Content);
                    }
                }
            }
            for entry in entries.flatten() {
                if *budget == 0 {
                    self.incomplete = true;
                    return;
                }
                *budget -= 1;
                let name = entry.file_name();
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                if name == ".git" && !kind.is_dir() {
                    // A gitfile (or a symlink) naming a git directory: its target is the repo.
                    self.record(entry.path(), Kind::Content);
                }
                // Never through a symlink; never into object stores or quarantined paths.
                if kind.is_dir()
                    && !(is_git_dir && (name == "objects" || name == "logs"))
                    && !name.to_string_lossy().ends_with(QUARANTINE_SUFFIX)
                {
                    pending.push(entry.path());
                }
            }
        }
    }

    /// Compares with the state now (`after`, taken the same way) and moves aside every
    /// sensitive path that is new or changed, outermost first.
    #[must_use]
    pub fn quarantine_changes(&self, after: &Self) -> Vec<Quarantined> {
        let mut moved: Vec<Quarantined> = Vec::new();
        let mut moved_paths: Vec<PathBuf> = Vec::new();
        // A new git directory is quarantined by its `.git` when it has one (a nested
        // repository), else by its `HEAD`: order so `.git` entries come first.
        let mut changes: Vec<(&PathBuf, bool)> = after
            .paths
            .iter()
            .filter_map(|(path, (kind, version))| match self.paths.get(path) {
                None => Some((path, true)),
                Some((_, before)) if *kind == Kind::Content && before != version => {
                    Some((path, false))
                }
                Some(_) => None,
            })
            .collect();
        changes.sort_by_key(|(p, _)| p.components().count());
        for (path, new) in changes {
            // A new HEAD inside a new `.git` directory: quarantine the `.git` instead.
            let target = if new && path.file_name().is_some_and(|n| n == "HEAD") {
                match path.parent() {
                    Some(parent)
                        if parent.file_name().is_some_and(|n| n == ".git")
                            && !self.paths.keys().any(|p| p.starts_with(parent)) =>
                    {
                        parent.to_path_buf()
                    }
                    _ => path.clone(),
                }
            } else {
                path.clone()
            };
            if moved_paths.iter().any(|m| target.starts_with(m)) {
                continue;
            }
            let Some(moved_to) = quarantine(&target) else {
                continue;
            };
            if !new && let Some((bytes, mode)) = self.contents.get(&target) {
                restore(&target, bytes, *mode);
            }
            let root = self
                .roots
                .iter()
                .find(|r| target.starts_with(r))
                .cloned()
                .unwrap_or_default();
            moved.push(Quarantined {
                relative: target.strip_prefix(&root).unwrap_or(&target).to_path_buf(),
                moved_to: moved_to
                    .strip_prefix(&root)
                    .unwrap_or(&moved_to)
                    .to_path_buf(),
                new,
            });
            moved_paths.push(target);
        }
        moved
    }

    /// Whether the walk stopped at its entry budget.
    #[must_use]
    pub fn incomplete(&self) -> bool {
        self.incomplete
    }
}

/// Whether git would take `dir` for a git directory: a `HEAD` file next to an object store
/// (a repository, a module, a bare repository) or to a `commondir` (a linked worktree's
/// administrative directory). `logs/` has a `HEAD` too, but neither.
fn is_git_dir(dir: &Path) -> bool {
    let exists = |name: &str| dir.join(name).symlink_metadata().is_ok();
    dir.join("HEAD")
        .symlink_metadata()
        .is_ok_and(|m| m.is_file())
        && (exists("objects") || exists("commondir"))
}

/// Renames `path` to a free `path.talaria-quarantine[-N]`; `None` if it is gone or the rename
/// failed (logged).
fn quarantine(path: &Path) -> Option<PathBuf> {
    let base = path.as_os_str().to_owned();
    for n in 0..100 {
        let mut candidate = base.clone();
        candidate.push(QUARANTINE_SUFFIX);
        if n > 0 {
            candidate.push(format!("-{n}"));
        }
        let candidate = PathBuf::from(candidate);
        if candidate.symlink_metadata().is_ok() {
            continue;
        }
        return match std::fs::rename(path, &candidate) {
            Ok(()) => Some(candidate),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot quarantine git metadata");
                None
            }
        };
    }
    None
}

/// Puts `bytes` back at `path` (just moved aside, so nothing is there) with `mode`, never
/// following a symlink a racing process might have put there.
fn restore(path: &Path, bytes: &[u8], mode: u32) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode & 0o777)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .and_then(|mut f| f.write_all(bytes));
    if let Err(e) = written {
        tracing::warn!(path = %path.display(), error = %e, "cannot restore git metadata");
    }
}

/// The report appended to a command's stderr: one line per quarantined path, and a line when
/// the check could not look everywhere.
#[must_use]
pub fn report(moved: &[Quarantined], incomplete: bool) -> String {
    let mut text = String::new();
    for q in moved {
        text.push_str(&q.message());
        text.push('\n');
    }
    if incomplete {
        text.push_str(&format!(
            "talaria: the writable roots have more than {MAX_ENTRIES} entries; git metadata beyond them was not checked\n"
        ));
    }
    text
}
