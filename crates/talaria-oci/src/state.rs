//! The helper's state directory, and cleaning up after helpers that died.
//!
//! One directory per helper instance (the executor uses `<state-root>/<session>`):
//!
//! ```text
//! <dir>/helper.pid          pid of the helper that owns <dir>; flock'ed while it lives
//! <dir>/containers/<id>/    libcontainer's state of each container (state.json, sockets)
//! <dir>/bundles/<id>/       config.json, process.json, placeholders.json of each container
//! ```
//!
//! Liveness is the lock on `helper.pid`, not the number in it: the kernel drops the lock when
//! the process dies however it dies, and a reused pid cannot fake it. A helper that starts on a
//! directory whose lock is free removes what an earlier helper left there (kills and deletes its
//! containers with libcontainer, which also removes their cgroups, and removes placeholder
//! directories it made in the workspace), and does the same for every sibling directory that
//! has a free `helper.pid` lock: the helper of another session that was SIGKILLed.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use libcontainer::container::Container;

const PID_FILE: &str = "helper.pid";
/// Recorded in each bundle before the placeholders are created, so a crash cannot lose them.
pub const PLACEHOLDERS_FILE: &str = "placeholders.json";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state directory {path} belongs to a running helper")]
    InUse { path: PathBuf },
    #[error("cannot prepare state directory {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A locked state directory.
#[derive(Debug)]
pub struct StateDir {
    dir: PathBuf,
    images: PathBuf,
    /// Holds the lock for as long as this helper lives.
    _lock: File,
}

impl StateDir {
    /// Lock `dir` (creating it), clean what a dead helper left in it and in its siblings, and
    /// record this process as the owner. Unpacked images are cached in `images`.
    ///
    /// # Errors
    /// [`StateError::InUse`] when another live helper holds `dir`; I/O errors preparing it.
    pub fn open(dir: &Path, images: &Path) -> Result<Self, StateError> {
        let io_err = |path: &Path| {
            let path = path.to_owned();
            move |source| StateError::Io { path, source }
        };
        private_dir(dir).map_err(io_err(dir))?;
        let dir = std::fs::canonicalize(dir).map_err(io_err(dir))?;
        let pid_path = dir.join(PID_FILE);
        let mut lock = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&pid_path)
            .map_err(io_err(&pid_path))?;
        if !try_lock(&lock) {
            return Err(StateError::InUse { path: dir });
        }
        clean(&dir);
        lock.set_len(0).map_err(io_err(&pid_path))?;
        writeln!(lock, "{}", std::process::id()).map_err(io_err(&pid_path))?;
        for sub in ["containers", "bundles"] {
            private_dir(&dir.join(sub)).map_err(io_err(&dir.join(sub)))?;
        }
        private_dir(images).map_err(io_err(images))?;
        if let Some(parent) = dir.parent() {
            clean_dead_siblings(parent, &dir);
        }
        Ok(Self {
            images: std::fs::canonicalize(images).map_err(io_err(images))?,
            dir,
            _lock: lock,
        })
    }

    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// libcontainer's root path.
    #[must_use]
    pub fn containers(&self) -> PathBuf {
        self.dir.join("containers")
    }

    #[must_use]
    pub fn bundles(&self) -> PathBuf {
        self.dir.join("bundles")
    }

    #[must_use]
    pub fn images(&self) -> &Path {
        &self.images
    }

    /// Remove the directory (after the containers have been deleted). The lock goes with the
    /// process.
    pub fn remove(self) {
        clean(&self.dir);
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot remove the state directory");
        }
    }
}

fn private_dir(path: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

fn try_lock(file: &File) -> bool {
    // SAFETY: flock on a valid descriptor with integer flags.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// Delete every container and placeholder recorded under `dir`.
fn clean(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir.join("containers")) {
        for entry in entries.flatten() {
            let path = entry.path();
            match Container::load(path.clone()) {
                Ok(mut container) => {
                    if let Err(e) = container.delete(true) {
                        tracing::warn!(container = %path.display(), error = %e, "cannot delete a stale container");
                    }
                }
                Err(e) => {
                    tracing::warn!(container = %path.display(), error = %e, "cannot load a stale container");
                }
            }
            let _ = std::fs::remove_dir_all(&path);
        }
    }
    if let Ok(entries) = std::fs::read_dir(dir.join("bundles")) {
        for entry in entries.flatten() {
            remove_placeholders(&entry.path());
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Remove the placeholder directories a bundle recorded, if they are still empty.
pub fn remove_placeholders(bundle: &Path) {
    let Ok(text) = std::fs::read_to_string(bundle.join(PLACEHOLDERS_FILE)) else {
        return;
    };
    let Ok(paths) = serde_json::from_str::<Vec<PathBuf>>(&text) else {
        return;
    };
    for path in paths.iter().rev() {
        // rmdir only: a placeholder that has contents is no longer ours to remove.
        let _ = std::fs::remove_dir(path);
    }
}

fn clean_dead_siblings(parent: &Path, own: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path == own {
            continue;
        }
        let Ok(file) = File::options().read(true).open(path.join(PID_FILE)) else {
            continue;
        };
        if try_lock(&file) {
            tracing::info!(dir = %path.display(), "cleaning up after a helper that died");
            clean(&path);
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}
