//! The store's error type. Every variant that concerns the database file names it, so a user
//! who sees the message knows which file to look at.

use std::path::{Path, PathBuf};

use rusqlite::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create directory {} for the database: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("cannot open database {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },

    /// The file is not an SQLite database, is damaged, or is an SQLite database some other
    /// program owns. The file is left exactly as it was found.
    #[error(
        "{}: not a Talaria database or corrupt ({detail}); it was not written to: run `talaria doctor` for advice",
        path.display()
    )]
    Corrupt { path: PathBuf, detail: String },

    /// The file is Talaria's but `PRAGMA quick_check` found damaged pages. It is refused before
    /// any write, so the damage cannot spread.
    #[error(
        "{}: database is damaged ({detail}); it was not written to: run `talaria doctor` for advice",
        path.display()
    )]
    Damaged { path: PathBuf, detail: String },

    /// Another connection held a lock for longer than the busy timeout.
    #[error("{}: database is locked by another connection; try again when it is done", path.display())]
    Locked { path: PathBuf },

    /// The database was written by a newer Talaria. It is refused untouched rather than
    /// half-understood.
    #[error(
        "{}: database schema version {found} is newer than this build supports ({supported}); upgrade Talaria",
        path.display()
    )]
    TooNew {
        path: PathBuf,
        found: u32,
        supported: u32,
    },

    #[error("migrating database to schema version {version} failed: {source}")]
    Migration {
        version: u32,
        source: rusqlite::Error,
    },

    #[error("unknown schema version {requested}: this build knows versions 1 to {supported}")]
    UnknownSchemaVersion { requested: u32, supported: u32 },

    #[error("no such session {0:?}")]
    NoSuchSession(String),

    #[error("session {0:?} already exists")]
    SessionExists(String),

    #[error("database task did not complete: {0}")]
    Task(#[from] tokio::task::JoinError),

    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

impl StoreError {
    /// Classify an error met while opening `path`: lock and damage get their own variants.
    pub(crate) fn opening(path: &Path, source: rusqlite::Error) -> Self {
        match sqlite_code(&source) {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Locked {
                path: path.to_owned(),
            },
            Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => StoreError::Corrupt {
                path: path.to_owned(),
                detail: source.to_string(),
            },
            _ => StoreError::Open {
                path: path.to_owned(),
                source,
            },
        }
    }

    /// Give a bare SQLite error that means "locked" or "damaged" the path it concerns; SQLite's own
    /// text ("database is locked") does not say which file.
    pub(crate) fn at(self, path: &Path) -> Self {
        match self {
            StoreError::Sqlite(err) => match sqlite_code(&err) {
                Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Locked {
                    path: path.to_owned(),
                },
                Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => StoreError::Corrupt {
                    path: path.to_owned(),
                    detail: err.to_string(),
                },
                _ => StoreError::Sqlite(err),
            },
            StoreError::Migration { version, source } => match sqlite_code(&source) {
                Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Locked {
                    path: path.to_owned(),
                },
                _ => StoreError::Migration { version, source },
            },
            other => other,
        }
    }
}

pub(crate) fn sqlite_code(err: &rusqlite::Error) -> Option<ErrorCode> {
    match err {
        rusqlite::Error::SqliteFailure(e, _) => Some(e.code),
        _ => None,
    }
}
