//! Built-in file operations: what `read_file`, `search_files` and the read half of `patch` do,
//! run by the helper itself **after** it has confined itself as it would before `execve`
//! (namespaces, private root, `no_new_privs`, Landlock, capabilities dropped, never host root),
//! instead of exec'ing a program. The one `openat2` of a read happens just before the seccomp
//! filter is installed (it answers `openat2` with `ENOSYS`); reading, walking and everything
//! done with the contents run under seccomp and the rlimits ([`Opened`]). The agent never opens a file the model names: it asks the executor,
//! which runs one of these under the tool's profile, so a read tool can reach exactly what
//! `cat` under the same profile can, and less.
//!
//! # Threat and semantics
//! The path comes from a model that may be prompt-injected, and a background process of the
//! same session may be swapping symlinks while we read. So, on top of the confinement:
//! - a path is made absolute and `..` is resolved lexically, then it must lie under one of the
//!   spec's read or write roots ("`/root/x` is outside profile read-only");
//! - it is opened **once**, with `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)` relative to
//!   that root's directory: no `..` or symlink can leave the root, no `/proc` magic link is
//!   followed. A symlink into *another* root is followed only by canonicalizing the path and
//!   opening the result again beneath its own root with `RESOLVE_NO_SYMLINKS`, so a link
//!   swapped in between is refused, never followed;
//! - the opened descriptor must be a regular file (`fstat`): FIFOs, devices and sockets are
//!   refused naming the path and the rule (`O_NONBLOCK` keeps opening a FIFO from hanging);
//! - at most `max_bytes` are read; a larger file comes back truncated, and says so.
//!
//! Walks ([`search`]) never follow symlinks, never enter `/proc`, `/sys` or `/dev`, open every
//! file with `O_NOFOLLOW | O_NONBLOCK` and read regular files only, and stop after a fixed
//! number of entries and bytes.
//!
//! # Output
//! Exit 0 with the answer on stdout (JSON for a read, the rendered result for a search), or
//! [`EXIT_FILE_REFUSED`] with one `talaria-file:` line on stderr naming the path and the rule.

pub mod search;

use std::ffi::CString;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::spec::SandboxSpec;
use crate::sys::describe;

pub use search::{OutputMode, SearchRequest, SearchTarget};

/// Exit status of a built-in operation that refused (its stderr line says why).
pub const EXIT_FILE_REFUSED: i32 = 2;

/// The prefix of the refusal line on stderr.
pub const REFUSAL_PREFIX: &str = "talaria-file:";

/// Bytes at the start of a file checked for NUL to call it binary.
const BINARY_PROBE_BYTES: usize = 8192;

/// Directories no read tool ever opens or walks into: kernel interfaces, not files.
const SPECIAL_TREES: [&str; 3] = ["/proc", "/sys", "/dev"];

/// One built-in operation, as the executor puts it in [`SandboxSpec::builtin`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum FileOp {
    /// A text file, whole or its first `max_bytes`: answers [`FileText`] as JSON.
    Read { path: PathBuf, max_bytes: u64 },
    /// Contents by regex or names by glob under a directory: answers the rendered result.
    Search(SearchRequest),
}

/// What a read answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileText {
    /// The file's size when it was opened.
    pub size: u64,
    /// Only the first part was read (the file is larger than the request's `max_bytes`).
    pub truncated: bool,
    pub text: String,
}

/// Why an operation refused: every message names the path and the rule.
#[derive(Debug, thiserror::Error)]
pub enum FileOpError {
    #[error("`{path}` is outside profile {profile}")]
    Outside { path: PathBuf, profile: String },
    #[error("`{path}` leads outside profile {profile} through a symlink")]
    SymlinkOut { path: PathBuf, profile: String },
    #[error("`{path}` changed while it was opened (a symlink was swapped in); not read")]
    Raced { path: PathBuf },
    #[error("`{path}` does not exist")]
    Missing { path: PathBuf },
    #[error("`{path}` is not readable under profile {profile}: {}", describe(.source))]
    Denied {
        path: PathBuf,
        profile: String,
        #[source]
        source: io::Error,
    },
    #[error("`{path}` is a directory; use search_files or `ls` to list it")]
    Directory { path: PathBuf },
    #[error("`{path}` is {kind}, not a regular file: read tools read regular files only")]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error("`{path}` is under {tree}, which read tools never open or walk")]
    Special { path: PathBuf, tree: &'static str },
    #[error("`{path}` looks like a binary file")]
    Binary { path: PathBuf },
    #[error("`{path}` is not valid UTF-8 text")]
    NotText { path: PathBuf },
    #[error("`{path}` is not an absolute path")]
    Relative { path: PathBuf },
    #[error("cannot read `{path}`: {}", describe(.source))]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    BadRequest(String),
}

/// An operation whose file is open: the first half runs confined but before seccomp (which
/// answers `openat2` with `ENOSYS`), the second, [`Opened::finish`], under it.
#[derive(Debug)]
pub struct Opened<'a> {
    op: &'a FileOp,
    roots: Roots,
    /// A read's open file and its size, or why it could not be opened.
    file: Result<Option<(std::fs::File, u64)>, FileOpError>,
}

impl<'a> Opened<'a> {
    /// Opens what `op` reads with `openat2` (a search opens with `openat` as it walks, later).
    #[must_use]
    pub fn open(op: &'a FileOp, spec: &SandboxSpec) -> Self {
        let roots = Roots::of(spec);
        let file = match op {
            FileOp::Read { path, .. } => open_text(path, &roots).map(Some),
            FileOp::Search(_) => Ok(None),
        };
        Self { op, roots, file }
    }

    /// Reads or walks, writes the answer; returns the exit status.
    #[must_use]
    pub fn finish(self) -> i32 {
        let answer = match (self.op, self.file) {
            (_, Err(e)) => Err(e),
            (FileOp::Read { path, max_bytes }, Ok(Some((file, size)))) => {
                read_text(file, size, path, *max_bytes).and_then(|text| {
                    serde_json::to_string(&text).map_err(|e| FileOpError::BadRequest(e.to_string()))
                })
            }
            (FileOp::Read { path, .. }, Ok(None)) => {
                Err(FileOpError::Missing { path: path.clone() })
            }
            (FileOp::Search(request), Ok(_)) => search::run(request, &self.roots),
        };
        answer_with(answer)
    }
}

/// Runs `op` in one go (a process without the seccomp filter to wait for).
#[must_use]
pub fn run(op: &FileOp, spec: &SandboxSpec) -> i32 {
    Opened::open(op, spec).finish()
}

/// Writes an answer to stdout, or the refusal line to stderr; the exit status.
fn answer_with(answer: Result<String, FileOpError>) -> i32 {
    match answer {
        Ok(out) => {
            let mut stdout = io::stdout().lock();
            match stdout
                .write_all(out.as_bytes())
                .and_then(|()| stdout.flush())
            {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("{REFUSAL_PREFIX} cannot write the answer: {}", describe(&e));
                    1
                }
            }
        }
        Err(error) => {
            eprintln!("{REFUSAL_PREFIX} {error}");
            EXIT_FILE_REFUSED
        }
    }
}

/// The roots a profile may read, longest first so the innermost root of a path wins.
#[derive(Debug, Clone)]
pub struct Roots {
    profile: String,
    roots: Vec<PathBuf>,
}

impl Roots {
    #[must_use]
    pub fn of(spec: &SandboxSpec) -> Self {
        let mut roots: Vec<PathBuf> = spec
            .filesystem
            .read
            .iter()
            .chain(&spec.filesystem.write)
            .cloned()
            .collect();
        roots.sort_by_key(|r| std::cmp::Reverse(r.as_os_str().len()));
        roots.dedup();
        Self {
            profile: spec.profile.clone(),
            roots,
        }
    }

    /// The innermost root holding `path` (lexically normal and absolute).
    fn root_of(&self, path: &Path) -> Option<&Path> {
        self.roots
            .iter()
            .find(|r| path.starts_with(r))
            .map(PathBuf::as_path)
    }

    /// Where a walk of `path` starts: `path` itself inside a root, else the outermost roots
    /// below it (Landlock lets nothing above a root be listed, and the confined view holds
    /// nothing else). Empty when `path` neither is in nor above any root.
    fn walk_starts(&self, path: &Path) -> Vec<PathBuf> {
        if self.root_of(path).is_some() {
            return vec![path.to_owned()];
        }
        let below: Vec<&PathBuf> = self.roots.iter().filter(|r| r.starts_with(path)).collect();
        let mut starts: Vec<PathBuf> = below
            .iter()
            .filter(|r| !below.iter().any(|o| o != *r && r.starts_with(o)))
            .map(|r| (*r).clone())
            .collect();
        starts.sort();
        starts
    }

    fn outside(&self, path: &Path) -> FileOpError {
        FileOpError::Outside {
            path: path.to_owned(),
            profile: self.profile.clone(),
        }
    }
}

/// `path` absolute with `.` and `..` resolved lexically (`..` of `/` is `/`), the way the
/// model meant it; symlinks are the kernel's business at open time.
///
/// # Errors
/// [`FileOpError::Relative`] for a relative path (the caller resolves them first).
pub fn normalize(path: &Path) -> Result<PathBuf, FileOpError> {
    if !path.is_absolute() {
        return Err(FileOpError::Relative {
            path: path.to_owned(),
        });
    }
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(name) => out.push(name),
        }
    }
    Ok(out)
}

/// The special tree (`/proc`, `/sys`, `/dev`) `path` lies in.
fn special_tree(path: &Path) -> Option<&'static str> {
    SPECIAL_TREES.into_iter().find(|t| path.starts_with(t))
}

/// Opens `path` once, read-only, beneath the root that holds it; a regular file only.
///
/// # Errors
/// See [`FileOpError`]: outside the roots, a symlink out of them or swapped in, missing,
/// denied, a directory, or anything but a regular file.
pub fn open_regular(path: &Path, roots: &Roots) -> Result<(std::fs::File, u64), FileOpError> {
    let normal = normalize(path)?;
    let root = roots.root_of(&normal).ok_or_else(|| roots.outside(path))?;
    let resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
    let fd = match open_beneath(root, &normal, resolve) {
        Ok(fd) => fd,
        // A symlink leaves this root: follow it only to another root, and only as the path is
        // now, with no symlink left to swap.
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            let canonical =
                std::fs::canonicalize(&normal).map_err(|_| FileOpError::SymlinkOut {
                    path: path.to_owned(),
                    profile: roots.profile.clone(),
                })?;
            let Some(root) = roots.root_of(&canonical) else {
                return Err(FileOpError::SymlinkOut {
                    path: path.to_owned(),
                    profile: roots.profile.clone(),
                });
            };
            open_beneath(root, &canonical, resolve | libc::RESOLVE_NO_SYMLINKS).map_err(
                |e| match e.raw_os_error() {
                    Some(libc::ELOOP | libc::EXDEV) => FileOpError::Raced {
                        path: path.to_owned(),
                    },
                    _ => open_error(path, roots, e),
                },
            )?
        }
        Err(e) => return Err(open_error(path, roots, e)),
    };
    let file = std::fs::File::from(fd);
    let meta = file.metadata().map_err(|source| FileOpError::Io {
        path: path.to_owned(),
        source,
    })?;
    let kind = file_kind(&meta);
    match kind {
        None => Ok((file, meta.len())),
        Some("a directory") => Err(FileOpError::Directory {
            path: path.to_owned(),
        }),
        Some(kind) => Err(FileOpError::NotRegular {
            path: path.to_owned(),
            kind,
        }),
    }
}

/// What a non-regular file is, in words; `None` for a regular file.
fn file_kind(meta: &std::fs::Metadata) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_file() {
        None
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_fifo() {
        Some("a FIFO")
    } else if t.is_char_device() {
        Some("a character device")
    } else if t.is_block_device() {
        Some("a block device")
    } else if t.is_socket() {
        Some("a socket")
    } else {
        Some("not a file")
    }
}

fn open_error(path: &Path, roots: &Roots, e: io::Error) -> FileOpError {
    match e.raw_os_error() {
        Some(libc::ENOENT | libc::ENOTDIR) => FileOpError::Missing {
            path: path.to_owned(),
        },
        Some(libc::ELOOP) => FileOpError::SymlinkOut {
            path: path.to_owned(),
            profile: roots.profile.clone(),
        },
        Some(libc::EACCES | libc::EPERM) => FileOpError::Denied {
            path: path.to_owned(),
            profile: roots.profile.clone(),
            source: e,
        },
        _ => FileOpError::Io {
            path: path.to_owned(),
            source: e,
        },
    }
}

/// `openat2(root, path relative to root, O_RDONLY | O_NONBLOCK, resolve)`; `path` equal to the
/// root (a file root such as `/dev/null`) is opened by its own canonical name with no symlink
/// allowed.
fn open_beneath(root: &Path, path: &Path, resolve: u64) -> io::Result<OwnedFd> {
    let flags = libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC;
    let rel = path.strip_prefix(root).unwrap_or(path);
    if rel.as_os_str().is_empty() {
        return openat2(
            libc::AT_FDCWD,
            root,
            flags,
            libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS,
        );
    }
    let dir = openat2(
        libc::AT_FDCWD,
        root,
        libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS,
    )?;
    openat2(dir.as_raw_fd(), rel, flags, resolve)
}

fn openat2(dir: libc::c_int, path: &Path, flags: libc::c_int, resolve: u64) -> io::Result<OwnedFd> {
    let name = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: an all-zero `open_how` is a valid value of this plain-data struct (no mode, no
    // flags), which `libc` marks non-exhaustive for future kernel fields.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = u64::try_from(flags).unwrap_or_default();
    how.resolve = resolve;
    // SAFETY: `name` is NUL-terminated, `how` is a valid `open_how` of the size passed, and
    // `dir` is AT_FDCWD or a descriptor the caller keeps open for the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir,
            name.as_ptr(),
            &raw const how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = libc::c_int::try_from(ret).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reads at most `max` bytes of an open file.
fn read_at_most(file: std::fs::File, max: u64, path: &Path) -> Result<Vec<u8>, FileOpError> {
    let mut bytes = Vec::new();
    file.take(max)
        .read_to_end(&mut bytes)
        .map_err(|source| FileOpError::Io {
            path: path.to_owned(),
            source,
        })?;
    Ok(bytes)
}

/// Opens `path` for [`read_text`]: refused under `/proc`, `/sys`, `/dev`, else
/// [`open_regular`].
///
/// # Errors
/// See [`open_regular`], plus [`FileOpError::Special`].
pub fn open_text(path: &Path, roots: &Roots) -> Result<(std::fs::File, u64), FileOpError> {
    if let Some(tree) = special_tree(&normalize(path)?) {
        // Regular files there (`/proc/self/environ`, `/sys/…`) are the kernel's, not the
        // workspace's; the roots seldom list them, but a profile that does still gets no reads.
        return Err(FileOpError::Special {
            path: path.to_owned(),
            tree,
        });
    }
    open_regular(path, roots)
}

/// The text of the open file `path` of `size` bytes: its first `max_bytes` (cut back to a
/// whole character), refused when it is binary or not UTF-8.
///
/// # Errors
/// [`FileOpError::Io`], [`FileOpError::Binary`] and [`FileOpError::NotText`].
pub fn read_text(
    file: std::fs::File,
    size: u64,
    path: &Path,
    max_bytes: u64,
) -> Result<FileText, FileOpError> {
    text_of(read_at_most(file, max_bytes, path)?, size, path, max_bytes)
}

/// The answer for the first `max_bytes` of a file of `size` bytes (cut back to a whole
/// character), refused when it is binary or not UTF-8 — for bytes read elsewhere too (inside a
/// container).
///
/// # Errors
/// [`FileOpError::Binary`] and [`FileOpError::NotText`].
pub fn text_of(
    mut bytes: Vec<u8>,
    size: u64,
    path: &Path,
    max_bytes: u64,
) -> Result<FileText, FileOpError> {
    bytes.truncate(usize::try_from(max_bytes).unwrap_or(usize::MAX));
    let truncated = size > max_bytes;
    if bytes.iter().take(BINARY_PROBE_BYTES).any(|b| *b == 0) {
        return Err(FileOpError::Binary {
            path: path.to_owned(),
        });
    }
    if let Err(e) = std::str::from_utf8(&bytes) {
        // A character cut by the size cap is not an encoding error.
        if truncated && e.error_len().is_none() {
            bytes.truncate(e.valid_up_to());
        } else {
            return Err(FileOpError::NotText {
                path: path.to_owned(),
            });
        }
    }
    let text = String::from_utf8(bytes).map_err(|_| FileOpError::NotText {
        path: path.to_owned(),
    })?;
    Ok(FileText {
        size,
        truncated,
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_resolves_dots_lexically() {
        assert_eq!(
            normalize(Path::new("/w/a/../../etc/./x")).unwrap(),
            PathBuf::from("/etc/x")
        );
        assert_eq!(normalize(Path::new("/../..")).unwrap(), PathBuf::from("/"));
        assert!(normalize(Path::new("a/b")).is_err());
    }

    #[test]
    fn the_innermost_root_wins_and_walks_may_start_above_roots() {
        let roots = Roots {
            profile: "p".into(),
            roots: vec!["/w/sub".into(), "/w".into(), "/usr".into()],
        };
        assert_eq!(
            roots.root_of(Path::new("/w/sub/x")),
            Some(Path::new("/w/sub"))
        );
        assert_eq!(roots.root_of(Path::new("/w/x")), Some(Path::new("/w")));
        assert_eq!(roots.root_of(Path::new("/etc/shadow")), None);
        assert_eq!(
            roots.walk_starts(Path::new("/")),
            [PathBuf::from("/usr"), PathBuf::from("/w")]
        );
        assert_eq!(
            roots.walk_starts(Path::new("/w/a")),
            [PathBuf::from("/w/a")]
        );
        assert!(roots.walk_starts(Path::new("/etc")).is_empty());
    }
}
