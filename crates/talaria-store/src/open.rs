//! Opening a database file: connection settings, the checks that decide whether the file may be
//! written at all, then migration to the latest schema.
//!
//! A file that is not Talaria's, is damaged, or is newer than this build is refused before any
//! write, including the header bytes that switching to WAL would change. It is never deleted
//! or recreated: it may be the user's only copy of their history.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::error::StoreError;
use crate::migrations::{self, SCHEMA_VERSION};

/// How to open a database file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenOptions {
    /// How long to wait for another connection's lock before giving up with
    /// [`StoreError::Locked`]. Default 5 s.
    pub busy_timeout: Duration,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            busy_timeout: Duration::from_secs(5),
        }
    }
}

pub(crate) fn open_file(path: &Path, options: OpenOptions) -> Result<Connection, StoreError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| StoreError::CreateDir {
            path: parent.to_owned(),
            source,
        })?;
    }
    // No SQLITE_OPEN_URI: a file name that happens to start with "file:" is still a file name.
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn =
        Connection::open_with_flags(path, flags).map_err(|e| StoreError::opening(path, e))?;
    conn.busy_timeout(options.busy_timeout)
        .map_err(|e| StoreError::opening(path, e))?;

    // Read-only checks first; they fail with Corrupt or TooNew before anything is written.
    migrations::schema_version(&conn, path)?;

    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0))
        .map_err(|e| StoreError::opening(path, e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        // Some file systems (network mounts) cannot do WAL; SQLite then keeps the old journal,
        // which is slower under concurrency but still correct.
        tracing::warn!(path = %path.display(), journal_mode = %mode, "database is not in WAL mode");
    }
    configure(&conn).map_err(|e| StoreError::opening(path, e))?;
    migrations::migrate(&conn, path, SCHEMA_VERSION).map_err(|e| e.at(path))?;
    Ok(conn)
}

pub(crate) fn open_memory() -> Result<Connection, StoreError> {
    let path = Path::new(":memory:");
    let conn = Connection::open_in_memory().map_err(|e| StoreError::opening(path, e))?;
    configure(&conn).map_err(|e| StoreError::opening(path, e))?;
    migrations::migrate(&conn, path, SCHEMA_VERSION)?;
    Ok(conn)
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "foreign_keys", true)?;
    // With WAL, NORMAL cannot corrupt the database; a power cut may lose the last commits.
    conn.pragma_update(None, "synchronous", "NORMAL")
}
