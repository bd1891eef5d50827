//! A skill's file tree in memory, its limits, reading it from and writing it to disk, and its
//! canonical hash.
//!
//! This module owns what may be in a skill directory. It must never follow a symbolic link,
//! read past a limit, or write outside the directory it was given.
//!
//! # Limits
//! | what | limit |
//! |---|---|
//! | `SKILL.md` | [`MAX_SKILL_MD_BYTES`] (64 KiB) |
//! | any one file | [`MAX_FILE_BYTES`] (1 MiB) |
//! | the whole tree | [`MAX_TREE_BYTES`] (5 MiB) |
//! | files | [`MAX_FILES`] (200) |
//! | a path | [`MAX_PATH_BYTES`] bytes, [`MAX_DEPTH`] components |
//!
//! Only regular files and directories are allowed: symbolic links, sockets, devices and FIFOs
//! are refused, not followed or skipped. Paths are relative, `/`-separated UTF-8 with no empty,
//! `.` or `..` component and no backslash or control character. Empty directories carry no
//! content and are not part of a tree.
//!
//! # Canonical hash
//! A tree's hash is the lowercase hex SHA-256 of this byte string:
//!
//! ```text
//! "talaria-skill-tree-v1\n"
//! for each file, in ascending byte order of its path:
//!     u64 big-endian length of the path, the path's UTF-8 bytes,
//!     one byte: 1 if the file is executable (any x bit), else 0,
//!     u64 big-endian length of the content, the content
//! ```
//!
//! Nothing else (times, owners, other mode bits, directory entries) is hashed, so the same files
//! give the same hash whatever order they were created in and wherever they live.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::validate::Problem;

pub const MAX_SKILL_MD_BYTES: u64 = 64 * 1024;
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
pub const MAX_TREE_BYTES: u64 = 5 * 1024 * 1024;
pub const MAX_FILES: usize = 200;
pub const MAX_PATH_BYTES: usize = 255;
pub const MAX_DEPTH: usize = 8;

/// The directories the agentskills.io layout names; other top-level directories are refused in
/// strict mode and warned about in lenient mode.
pub const KNOWN_DIRS: [&str; 3] = ["scripts", "references", "assets"];

const TREE_DOMAIN: &[u8] = b"talaria-skill-tree-v1\n";

/// One file of a skill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkillFile {
    pub executable: bool,
    pub content: Vec<u8>,
}

/// A skill's files by relative path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SkillTree {
    files: BTreeMap<String, SkillFile>,
}

impl SkillTree {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add or replace a file. The path is checked ([`check_path`]); limits are checked by
    /// [`SkillTree::limit_problems`].
    ///
    /// # Errors
    /// The problem with the path.
    pub fn insert(&mut self, path: &str, file: SkillFile) -> Result<(), Problem> {
        check_path(path)?;
        self.files.insert(path.to_owned(), file);
        Ok(())
    }

    pub fn remove(&mut self, path: &str) -> Option<SkillFile> {
        self.files.remove(path)
    }

    pub fn get(&self, path: &str) -> Option<&SkillFile> {
        self.files.get(path)
    }

    /// Files in ascending byte order of their paths.
    pub fn files(&self) -> impl Iterator<Item = (&str, &SkillFile)> {
        self.files.iter().map(|(p, f)| (p.as_str(), f))
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// `SKILL.md` as text, if present and UTF-8.
    pub fn skill_md(&self) -> Option<&str> {
        self.files
            .get("SKILL.md")
            .and_then(|f| std::str::from_utf8(&f.content).ok())
    }

    /// The canonical hash (see the module docs).
    pub fn hash(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(TREE_DOMAIN);
        for (path, file) in &self.files {
            hasher.update((path.len() as u64).to_be_bytes());
            hasher.update(path.as_bytes());
            hasher.update([u8::from(file.executable)]);
            hasher.update((file.content.len() as u64).to_be_bytes());
            hasher.update(&file.content);
        }
        hex(&hasher.finalize())
    }

    /// Every size and count limit the tree breaks.
    pub fn limit_problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if self.files.len() > MAX_FILES {
            problems.push(Problem::error(
                "tree",
                format!(
                    "{} files; at most {MAX_FILES} are allowed",
                    self.files.len()
                ),
            ));
        }
        let mut total: u64 = 0;
        for (path, file) in &self.files {
            let len = file.content.len() as u64;
            total = total.saturating_add(len);
            let max = if path == "SKILL.md" {
                MAX_SKILL_MD_BYTES
            } else {
                MAX_FILE_BYTES
            };
            if len > max {
                problems.push(Problem::error(
                    path,
                    format!("{len} bytes; at most {max} are allowed"),
                ));
            }
        }
        if total > MAX_TREE_BYTES {
            problems.push(Problem::error(
                "tree",
                format!("{total} bytes in all; at most {MAX_TREE_BYTES} are allowed"),
            ));
        }
        problems
    }

    /// Read the tree under `dir`, refusing links and special files and stopping at the limits.
    ///
    /// # Errors
    /// Every problem found (a path, a file type, a limit, or an I/O error naming the path).
    pub fn read_dir(dir: &Path) -> Result<SkillTree, Vec<Problem>> {
        let meta = fs::symlink_metadata(dir)
            .map_err(|e| vec![Problem::error("path", format!("{}: {e}", dir.display()))])?;
        if !meta.is_dir() {
            return Err(vec![Problem::error(
                "path",
                format!("{} is not a directory", dir.display()),
            )]);
        }
        let mut reader = TreeReader {
            tree: SkillTree::new(),
            problems: Vec::new(),
            total: 0,
        };
        reader.walk(dir, "", 0);
        if reader.problems.is_empty() {
            Ok(reader.tree)
        } else {
            Err(reader.problems)
        }
    }

    /// Write the tree into `dir`, which must exist and be empty: files 0644, executables 0755.
    ///
    /// # Errors
    /// The first I/O failure.
    pub fn write_into(&self, dir: &Path) -> std::io::Result<()> {
        for (path, file) in &self.files {
            let target = dir.join(path);
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent)?;
            }
            fs::write(&target, &file.content)?;
            let mode = if file.executable { 0o755 } else { 0o644 };
            fs::set_permissions(&target, fs::Permissions::from_mode(mode))?;
        }
        Ok(())
    }
}

struct TreeReader {
    tree: SkillTree,
    problems: Vec<Problem>,
    total: u64,
}

impl TreeReader {
    fn full(&self) -> bool {
        self.tree.len() > MAX_FILES || self.total > MAX_TREE_BYTES
    }

    fn walk(&mut self, dir: &Path, prefix: &str, depth: usize) {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => {
                self.problems.push(Problem::error(
                    display_path(prefix),
                    format!("cannot read directory: {e}"),
                ));
                return;
            }
        };
        let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        entries.sort();
        for path in entries {
            if self.full() {
                return;
            }
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                self.problems.push(Problem::error(
                    display_path(prefix),
                    format!("{}: file name is not UTF-8", path.display()),
                ));
                continue;
            };
            let rel = if prefix.is_empty() {
                name.to_owned()
            } else {
                format!("{prefix}/{name}")
            };
            if let Err(problem) = check_path(&rel) {
                self.problems.push(problem);
                continue;
            }
            let meta = match fs::symlink_metadata(&path) {
                Ok(meta) => meta,
                Err(e) => {
                    self.problems.push(Problem::error(&rel, e.to_string()));
                    continue;
                }
            };
            let kind = meta.file_type();
            if kind.is_symlink() {
                self.problems.push(Problem::error(
                    &rel,
                    "is a symbolic link; skills may only contain plain files",
                ));
            } else if kind.is_dir() {
                if depth + 1 >= MAX_DEPTH {
                    self.problems.push(Problem::error(
                        &rel,
                        format!("nested deeper than {MAX_DEPTH} levels"),
                    ));
                } else {
                    self.walk(&path, &rel, depth + 1);
                }
            } else if kind.is_file() {
                self.read_file(&path, &rel, &meta);
            } else {
                self.problems.push(Problem::error(
                    &rel,
                    "is not a regular file; skills may only contain plain files",
                ));
            }
        }
        if depth == 0 && self.full() {
            let problems = self.tree.limit_problems();
            self.problems
                .extend(problems.into_iter().filter(|p| p.field == "tree"));
        }
    }

    fn read_file(&mut self, path: &Path, rel: &str, meta: &fs::Metadata) {
        let max = if rel == "SKILL.md" {
            MAX_SKILL_MD_BYTES
        } else {
            MAX_FILE_BYTES
        };
        if meta.len() > max {
            self.problems.push(Problem::error(
                rel,
                format!("{} bytes; at most {max} are allowed", meta.len()),
            ));
            self.total = self.total.saturating_add(meta.len());
            return;
        }
        let mut content = Vec::new();
        // Read at most one byte past the limit, in case the file grew since it was measured.
        let read = fs::File::open(path).and_then(|f| f.take(max + 1).read_to_end(&mut content));
        if let Err(e) = read {
            self.problems
                .push(Problem::error(rel, format!("cannot read: {e}")));
            return;
        }
        if content.len() as u64 > max {
            self.problems
                .push(Problem::error(rel, format!("larger than {max} bytes")));
            return;
        }
        self.total = self.total.saturating_add(content.len() as u64);
        let file = SkillFile {
            executable: meta.mode() & 0o111 != 0,
            content,
        };
        self.tree.files.insert(rel.to_owned(), file);
    }
}

fn display_path(prefix: &str) -> &str {
    if prefix.is_empty() { "." } else { prefix }
}

/// Check a relative path inside a skill: UTF-8 (by type), relative, `/`-separated, no empty,
/// `.` or `..` component, no backslash or control character, within the length and depth
/// limits.
///
/// # Errors
/// The problem, with the path as its field.
pub fn check_path(path: &str) -> Result<(), Problem> {
    let bad = |why: &str| Err(Problem::error(path, why.to_owned()));
    if path.is_empty() {
        return bad("empty path");
    }
    if path.starts_with('/') {
        return bad("absolute paths are not allowed");
    }
    if path.len() > MAX_PATH_BYTES {
        return bad("path is longer than 255 bytes");
    }
    if path.contains('\\') || path.chars().any(char::is_control) {
        return bad("path contains a backslash or a control character");
    }
    let components: Vec<&str> = path.split('/').collect();
    if components
        .iter()
        .any(|c| c.is_empty() || *c == "." || *c == "..")
    {
        return bad("path has an empty, `.` or `..` component");
    }
    if components.len() > MAX_DEPTH {
        return bad("path is nested too deeply");
    }
    Ok(())
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}
