//! The `search_files` walk, run confined: file contents by regular expression or file names
//! by glob, the way ripgrep walks (the `ignore` crate: `.gitignore` honoured, hidden and binary
//! files skipped).
//!
//! It must never follow a symlink (a link to `..` or to another tree is not walked, and a link
//! is never opened as a file), never enter `/proc`, `/sys` or `/dev`, never read anything but
//! a regular file (`O_NOFOLLOW | O_NONBLOCK`, then `fstat`), and it stops after
//! [`MAX_ENTRIES`] entries or [`MAX_TOTAL_BYTES`] read, saying so. Single-threaded, like the
//! helper.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{FileOpError, Roots, file_kind, normalize, special_tree};

/// The most results a page shows.
pub const MAX_LIMIT: usize = 500;
/// The most context lines around a match.
pub const MAX_CONTEXT: usize = 10;
/// Content search skips files larger than this.
pub const MAX_SEARCH_FILE_BYTES: u64 = 10 * 1024 * 1024;
/// A walk stops after this many entries…
pub const MAX_ENTRIES: usize = 200_000;
/// …or after reading this many bytes of file contents.
pub const MAX_TOTAL_BYTES: u64 = 512 * 1024 * 1024;
/// Characters of a matching line shown.
const MAX_SHOWN_LINE_CHARS: usize = 500;

/// What to match.
#[derive(Debug, Deserialize, Serialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SearchTarget {
    #[default]
    Content,
    Files,
}

/// What a content search shows.
#[derive(Debug, Deserialize, Serialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OutputMode {
    #[default]
    Content,
    FilesOnly,
    Count,
}

/// One search, as `search_files` asks for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchRequest {
    /// Where the walk starts (absolute).
    pub root: PathBuf,
    /// Paths are shown relative to this directory (the session's working directory).
    pub base: PathBuf,
    pub pattern: String,
    #[serde(default)]
    pub target: SearchTarget,
    pub file_glob: Option<String>,
    pub limit: usize,
    pub offset: usize,
    #[serde(default)]
    pub output_mode: OutputMode,
    pub context: usize,
}

fn glob_matcher(glob: &str) -> Result<globset::GlobMatcher, FileOpError> {
    globset::Glob::new(glob)
        .map(|g| g.compile_matcher())
        .map_err(|e| FileOpError::BadRequest(format!("bad glob {glob:?}: {e}")))
}

/// Why a walk ended early, for the note under the results.
#[derive(Debug, Default)]
struct Walked {
    entries: usize,
    bytes: u64,
    stopped: Option<String>,
}

/// Runs `request` under `roots`; the rendered result.
///
/// # Errors
/// A start outside the roots or under `/proc`, `/sys`, `/dev`, a missing start, a bad regex or
/// glob.
pub fn run(request: &SearchRequest, roots: &Roots) -> Result<String, FileOpError> {
    let start = normalize(&request.root)?;
    if let Some(tree) = special_tree(&start) {
        return Err(FileOpError::Special {
            path: request.root.clone(),
            tree,
        });
    }
    let starts = roots.walk_starts(&start);
    let Some((first, rest)) = starts.split_first() else {
        return Err(roots.outside(&request.root));
    };
    match std::fs::symlink_metadata(first) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(FileOpError::Missing {
                path: request.root.clone(),
            });
        }
        Err(source) => {
            return Err(FileOpError::Denied {
                path: request.root.clone(),
                profile: roots.profile.clone(),
                source,
            });
        }
    }
    let limit = request.limit.clamp(1, MAX_LIMIT);
    let offset = request.offset;
    let base = &request.base;
    let shown = |p: &Path| -> String {
        p.strip_prefix(base)
            .map_or_else(|_| p.display().to_string(), |r| r.display().to_string())
    };
    let mut walked = Walked::default();
    let mut files: Vec<PathBuf> = Vec::new();
    let mut walker = ignore::WalkBuilder::new(first);
    for start in rest {
        walker.add(start);
    }
    let walker = walker
        .follow_links(false)
        .filter_entry(|e| special_tree(e.path()).is_none())
        .build();
    for entry in walker {
        walked.entries += 1;
        if walked.entries > MAX_ENTRIES {
            walked.stopped = Some(format!("the walk stopped after {MAX_ENTRIES} entries"));
            break;
        }
        let Ok(entry) = entry else { continue };
        if entry.file_type().is_some_and(|t| t.is_file()) {
            files.push(entry.into_path());
        }
    }

    if request.target == SearchTarget::Files {
        let matcher = glob_matcher(&request.pattern)?;
        let mut found: Vec<PathBuf> = files
            .into_iter()
            .filter(|p| p.file_name().is_some_and(|n| matcher.is_match(n)) || matcher.is_match(p))
            .collect();
        found.sort();
        let total = found.len();
        let page: Vec<String> = found
            .iter()
            .skip(offset)
            .take(limit)
            .map(|p| shown(p))
            .collect();
        return Ok(render(page, total, offset, "files", &walked));
    }

    let regex = regex::Regex::new(&request.pattern)
        .map_err(|e| FileOpError::BadRequest(format!("bad regex: {e}")))?;
    let glob = request.file_glob.as_deref().map(glob_matcher).transpose()?;
    let context = request.context.min(MAX_CONTEXT);
    let mut results: Vec<String> = Vec::new();
    let mut total = 0usize;
    for path in files {
        if let Some(g) = &glob
            && !path.file_name().is_some_and(|n| g.is_match(n))
        {
            continue;
        }
        if walked.bytes >= MAX_TOTAL_BYTES {
            walked.stopped = Some(format!(
                "the search stopped after reading {MAX_TOTAL_BYTES} bytes"
            ));
            break;
        }
        let Some(bytes) = read_small_regular(&path) else {
            continue;
        };
        walked.bytes += bytes.len() as u64;
        if bytes
            .iter()
            .take(super::BINARY_PROBE_BYTES)
            .any(|b| *b == 0)
        {
            continue;
        }
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text.lines().collect();
        let hits: Vec<usize> = lines
            .iter()
            .enumerate()
            .filter(|(_, l)| regex.is_match(l))
            .map(|(i, _)| i)
            .collect();
        if hits.is_empty() {
            continue;
        }
        match request.output_mode {
            OutputMode::FilesOnly => {
                total += 1;
                results.push(shown(&path));
            }
            OutputMode::Count => {
                total += 1;
                results.push(format!("{}:{}", shown(&path), hits.len()));
            }
            OutputMode::Content => {
                for i in hits {
                    total += 1;
                    if total <= offset || results.len() >= limit {
                        continue;
                    }
                    let from = i.saturating_sub(context);
                    let to = (i + context).min(lines.len() - 1);
                    let mut block = Vec::new();
                    for (j, line) in lines.iter().enumerate().take(to + 1).skip(from) {
                        let sep = if j == i { ':' } else { '-' };
                        let line: String = line.chars().take(MAX_SHOWN_LINE_CHARS).collect();
                        block.push(format!("{}{sep}{}{sep}{line}", shown(&path), j + 1));
                    }
                    results.push(block.join("\n"));
                }
            }
        }
    }
    if request.output_mode != OutputMode::Content {
        results = results.into_iter().skip(offset).take(limit).collect();
    }
    Ok(render(results, total, offset, "matches", &walked))
}

/// The contents of `path` when it is (still) a regular file no larger than
/// [`MAX_SEARCH_FILE_BYTES`]: opened without following a final symlink and without blocking on
/// a FIFO, checked on the descriptor, read once.
fn read_small_regular(path: &Path) -> Option<Vec<u8>> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .ok()?;
    let meta = file.metadata().ok()?;
    if file_kind(&meta).is_some() || meta.len() > MAX_SEARCH_FILE_BYTES {
        return None;
    }
    let mut bytes = Vec::new();
    file.take(MAX_SEARCH_FILE_BYTES)
        .read_to_end(&mut bytes)
        .ok()?;
    Some(bytes)
}

fn render(
    results: Vec<String>,
    total: usize,
    offset: usize,
    what: &str,
    walked: &Walked,
) -> String {
    let mut out = if results.is_empty() {
        format!("no {what} found")
    } else {
        let mut out = results.join("\n");
        let end = offset + results.len();
        if end < total {
            out.push_str(&format!(
                "\n[{total} {what} in all; showing {}-{end}; continue with offset={end}]",
                offset + 1
            ));
        }
        out
    };
    if let Some(stopped) = &walked.stopped {
        out.push_str(&format!(
            "\n[{stopped}; results are incomplete: search a narrower path]"
        ));
    }
    out
}
