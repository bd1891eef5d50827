//! Scratch space (`${tmp}`): one private root per executor user and one directory per session,
//! created so that nobody else can choose where the sandbox writes.
//!
//! # Threat
//! The root's name is predictable (`$TMPDIR/talaria-$UID`) and usually in a world-writable
//! directory. Another local user can create it first (or a symlink by that name), or plant
//! symlinks inside it under the names the executor will use, and root's sandbox then writes
//! where they chose.
//!
//! # What is done
//! * The root is `$XDG_RUNTIME_DIR/talaria` when the runtime directory is ours and private
//!   (nobody else can write there), else `$TMPDIR/talaria-$UID`.
//! * It is created with one `mkdir` (never `-p`: the parent must already exist). When it exists,
//!   it is opened without following a symlink and checked on the open descriptor: a directory,
//!   owned by our effective uid; if it is ours but readable or writable by others it is
//!   tightened to `0700`. Anything else is refused, naming the path, its owner and mode.
//! * Session directories are made with `mkdirat` on that descriptor (a single name: no symlink
//!   can be followed) with an unpredictable suffix (`SESSION-<16 hex digits>`), mode `0700`.
//!
//! This module must never create or use a scratch directory under a root it has not checked.

use std::collections::HashMap;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Why scratch space could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum ScratchError {
    #[error(
        "scratch root {path} is not ours ({what}); another user may have made it to choose where the sandbox writes: remove it, or point TMPDIR elsewhere"
    )]
    NotOurs { path: PathBuf, what: String },
    #[error("cannot create or open scratch root {path}: {source}")]
    Root {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot create a scratch directory in {root}: {source}")]
    Session {
        root: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Where the scratch root goes for the effective uid `uid`: `$XDG_RUNTIME_DIR/talaria` when
/// that directory is ours and private, else `$TMPDIR/talaria-UID`.
#[must_use]
pub fn default_root(uid: u32) -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    if let Some(runtime) = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from)
        && runtime.is_absolute()
        && std::fs::symlink_metadata(&runtime)
            .is_ok_and(|m| m.is_dir() && m.uid() == uid && m.mode() & 0o077 == 0)
    {
        return runtime.join("talaria");
    }
    std::env::temp_dir().join(format!("talaria-{uid}"))
}

/// The scratch root and the session directories made in it.
#[derive(Debug)]
pub struct Scratch {
    root: PathBuf,
    /// Opened (and checked) on first use.
    opened: Mutex<Option<OwnedFd>>,
    sessions: Mutex<HashMap<String, PathBuf>>,
}

impl Scratch {
    #[must_use]
    pub fn new(root: PathBuf) -> Self {
        Self {
            root,
            opened: Mutex::new(None),
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// The session's directory if it was made, else the root joined with `name` (for display).
    #[must_use]
    pub fn dir_of(&self, name: &str) -> PathBuf {
        self.sessions
            .lock()
            .ok()
            .and_then(|s| s.get(name).cloned())
            .unwrap_or_else(|| self.root.join(name))
    }

    /// The session's directory, made on first use.
    ///
    /// # Errors
    /// [`ScratchError`] when the root is not ours or a directory cannot be made.
    pub fn session_dir(&self, name: &str) -> Result<PathBuf, ScratchError> {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(dir) = sessions.get(name)
            && std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir())
        {
            return Ok(dir.clone());
        }
        let mut opened = self.opened.lock().unwrap_or_else(|e| e.into_inner());
        if opened.is_none() {
            *opened = Some(open_root(&self.root)?);
        }
        let root = opened.as_ref().map_or(-1, AsRawFd::as_raw_fd);
        let session_err = |source| ScratchError::Session {
            root: self.root.clone(),
            source,
        };
        let dir = loop {
            let candidate = format!("{name}-{:016x}", random_u64().map_err(session_err)?);
            let c = CString::new(candidate.as_bytes())
                .map_err(|_| session_err(io::Error::from_raw_os_error(libc::EINVAL)))?;
            // SAFETY: `c` is NUL-terminated; `root` is the live descriptor of the checked root.
            if unsafe { libc::mkdirat(root, c.as_ptr(), 0o700) } == 0 {
                break self.root.join(candidate);
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(session_err(e));
            }
        };
        sessions.insert(name.to_owned(), dir.clone());
        Ok(dir)
    }

    /// Removes the session's directory (and forgets it).
    pub fn remove(&self, name: &str) {
        let dir = self.sessions.lock().ok().and_then(|mut s| s.remove(name));
        if let Some(dir) = dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn random_u64() -> io::Result<u64> {
    let mut bytes = [0_u8; 8];
    // SAFETY: `bytes` is valid, writable storage of the length passed.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if n != 8 {
        return Err(io::Error::last_os_error());
    }
    Ok(u64::from_ne_bytes(bytes))
}

/// Creates `root` with one `mkdir` (0700) or opens the existing one without following a
/// symlink, and checks it on the descriptor.
fn open_root(root: &Path) -> Result<OwnedFd, ScratchError> {
    let err = |source| ScratchError::Root {
        path: root.to_owned(),
        source,
    };
    let c = CString::new(root.as_os_str().as_bytes())
        .map_err(|_| err(io::Error::from_raw_os_error(libc::EINVAL)))?;
    // SAFETY: `c` is NUL-terminated.
    if unsafe { libc::mkdir(c.as_ptr(), 0o700) } != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EEXIST) {
            return Err(err(e));
        }
    }
    // SAFETY: `c` is NUL-terminated; the flags refuse a symlink and anything but a directory.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::ELOOP | libc::ENOTDIR) => ScratchError::NotOurs {
                path: root.to_owned(),
                what: describe(root),
            },
            _ => err(e),
        });
    }
    // SAFETY: open returned a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: an all-zero stat is valid storage; fstat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is live and `st` writable.
    if unsafe { libc::fstat(fd.as_raw_fd(), &raw mut st) } != 0 {
        return Err(err(io::Error::last_os_error()));
    }
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    if st.st_uid != me {
        return Err(ScratchError::NotOurs {
            path: root.to_owned(),
            what: format!(
                "owned by uid {}, mode {:04o}; this executor is uid {me}",
                st.st_uid,
                st.st_mode & 0o7777
            ),
        });
    }
    if st.st_mode & 0o7077 != 0 {
        // Ours, but open to others (or setgid): tighten it on the checked descriptor.
        // SAFETY: fchmod on a live descriptor; integer arguments.
        if unsafe { libc::fchmod(fd.as_raw_fd(), 0o700) } != 0 {
            return Err(err(io::Error::last_os_error()));
        }
    }
    Ok(fd)
}

/// What `path` is, for the refusal (a symlink and where it points, or its kind).
fn describe(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => format!(
            "a symlink to {}, owned by uid {}",
            std::fs::read_link(path).map_or_else(|_| "?".into(), |t| t.display().to_string()),
            m.uid()
        ),
        Ok(m) => format!("not a directory, owned by uid {}", m.uid()),
        Err(e) => e.to_string(),
    }
}
