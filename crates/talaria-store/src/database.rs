//! The one SQLite setup every Talaria database shares: the agent's `state.db`, the gateway's
//! `gateway.db`, the scheduler's `scheduler.db`. Each unit describes its file with a
//! [`Schema`] (application id, migrations, durability) and gets back a [`Database`], a handle
//! that runs every query on tokio's blocking pool.
//!
//! Opening a file, in order: read-only checks that it is an SQLite database with this schema's
//! `application_id` and a version this build knows, then `PRAGMA quick_check`; only then WAL,
//! connection settings and migrations, each in its own `BEGIN IMMEDIATE` transaction together
//! with its `user_version` bump. A file that fails a check is refused as found: nothing is
//! written to it, not even the header bytes that switching to WAL changes or the checkpoint
//! SQLite would run when the refused connection closes. It is never deleted or recreated: it
//! may be the user's only copy.
//!
//! Why check at every open: the unit's first write to a damaged b-tree can spread the damage
//! to pages that were still good, and `quick_check` costs tens of milliseconds on a large
//! store (see `docs/ARCHITECTURE.md`, "Damage"), which a start of a unit can afford.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

use crate::error::StoreError;

/// One step of a schema's history.
#[derive(Debug)]
pub struct Migration {
    /// The `user_version` after this step; steps are numbered 1, 2, 3 … without gaps.
    pub version: u32,
    /// What the step adds, for the log.
    pub name: &'static str,
    /// Runs inside the step's transaction.
    pub apply: fn(&Connection) -> rusqlite::Result<()>,
}

/// How hard a commit waits for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `synchronous = NORMAL`: with WAL it cannot corrupt the file; a power cut may lose the
    /// last commits.
    Normal,
    /// `synchronous = FULL`: every commit is on disk before it returns (the gateway's answers
    /// must survive a power cut once a client was told).
    Full,
}

/// How files written before this setup existed recorded their version, so they are adopted
/// rather than refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Legacy {
    /// Every file of this kind was written with the application id and `user_version`.
    None,
    /// Older files carry no application id (0) but `user_version` is right; one is recognised
    /// by this table and stamped with the application id.
    UnmarkedWithTable(&'static str),
    /// Older files carry the application id but kept their version as `max(version)` of a
    /// `schema_migrations` table (`user_version` 0); it is copied to `user_version`.
    MigrationsTable,
}

/// What a database file is and how it evolves.
#[derive(Debug)]
pub struct Schema {
    /// `PRAGMA application_id` marking the file as this kind of Talaria database.
    pub application_id: i32,
    /// Every migration, oldest first. Never edit a released entry: add a new one.
    pub migrations: &'static [Migration],
    pub durability: Durability,
    pub legacy: Legacy,
}

impl Schema {
    /// The version this build writes and understands.
    pub fn latest(&self) -> u32 {
        self.migrations.last().map_or(0, |m| m.version)
    }
}

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

/// A handle on one open database. Clones share one connection; calls are serialized on it and
/// run on the blocking pool.
#[derive(Debug, Clone)]
pub struct Database {
    conn: Arc<Mutex<Connection>>,
    path: Arc<Path>,
}

impl Database {
    /// Open (creating it and its parent directory if needed) the database at `path`, check it
    /// and migrate it to `schema`'s latest version, on the blocking pool.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] for a file that is not this kind of database,
    /// [`StoreError::Damaged`] for one that fails `quick_check`, [`StoreError::TooNew`] for one
    /// from a newer build (all left untouched), [`StoreError::Locked`] when another connection
    /// holds the lock past the busy timeout, or the underlying open or migration failure.
    pub async fn open(
        path: &Path,
        schema: &'static Schema,
        options: OpenOptions,
    ) -> Result<Self, StoreError> {
        let path: Arc<Path> = Arc::from(path);
        let opening = Arc::clone(&path);
        let conn =
            tokio::task::spawn_blocking(move || open_file(&opening, schema, options)).await??;
        Ok(Self::from_connection(conn, path))
    }

    /// A private in-memory database at `schema`'s latest version; for tests.
    ///
    /// # Errors
    /// If SQLite cannot allocate it or the schema cannot be created.
    pub async fn open_in_memory(schema: &'static Schema) -> Result<Self, StoreError> {
        let conn = tokio::task::spawn_blocking(move || open_memory(schema)).await??;
        Ok(Self::from_connection(
            conn,
            Arc::from(Path::new(":memory:")),
        ))
    }

    fn from_connection(conn: Connection, path: Arc<Path>) -> Self {
        Self {
            conn: Arc::new(Mutex::new(conn)),
            path,
        }
    }

    /// The database file, or `:memory:`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Run `work` on the connection on the blocking pool.
    ///
    /// # Errors
    /// What `work` returns, or [`StoreError::Task`] if the blocking task could not complete.
    pub async fn run<T, E, F>(&self, work: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock cannot leave the connection mid-transaction (the
            // transaction guard rolls back as it unwinds), so the poison carries no meaning.
            let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
            work(&mut conn)
        })
        .await
        .map_err(|e| E::from(StoreError::Task(e)))?
    }
}

/// Open `path` for `schema` on the calling thread (a blocking call).
pub(crate) fn open_file(
    path: &Path,
    schema: &Schema,
    options: OpenOptions,
) -> Result<Connection, StoreError> {
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
    // Until the checks pass, closing this connection must not checkpoint a WAL left by an
    // earlier run into a file that may be damaged.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
        .map_err(|e| StoreError::opening(path, e))?;
    conn.busy_timeout(options.busy_timeout)
        .map_err(|e| StoreError::opening(path, e))?;

    // Read-only checks first; they fail with Corrupt, Damaged or TooNew before any write.
    let found = read_version(&conn, path, schema)?;
    quick_check(&conn, path)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, false)
        .map_err(|e| StoreError::opening(path, e))?;

    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0))
        .map_err(|e| StoreError::opening(path, e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        // Some file systems (network mounts) cannot do WAL; SQLite then keeps the old journal,
        // which is slower under concurrency but still correct.
        tracing::warn!(path = %path.display(), journal_mode = %mode, "database is not in WAL mode");
    }
    configure(&conn, schema).map_err(|e| StoreError::opening(path, e))?;
    adopt(&conn, path, schema, found)?;
    migrate(&conn, path, schema, schema.latest()).map_err(|e| e.at(path))?;
    Ok(conn)
}

pub(crate) fn open_memory(schema: &Schema) -> Result<Connection, StoreError> {
    let path = Path::new(":memory:");
    let conn = Connection::open_in_memory().map_err(|e| StoreError::opening(path, e))?;
    configure(&conn, schema).map_err(|e| StoreError::opening(path, e))?;
    migrate(&conn, path, schema, schema.latest())?;
    Ok(conn)
}

fn configure(conn: &Connection, schema: &Schema) -> rusqlite::Result<()> {
    conn.pragma_update(None, "foreign_keys", true)?;
    let synchronous = match schema.durability {
        Durability::Normal => "NORMAL",
        Durability::Full => "FULL",
    };
    conn.pragma_update(None, "synchronous", synchronous)
}

/// `PRAGMA quick_check`: every page of every b-tree is readable and well formed (not the
/// slower index-against-table comparison of `integrity_check`, which `talaria doctor` runs).
fn quick_check(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let read = |e| StoreError::opening(path, e);
    let problems: Vec<String> = conn
        .prepare("PRAGMA quick_check(5)")
        .map_err(read)?
        .query_map([], |row| row.get::<_, String>(0))
        .map_err(read)?
        .collect::<Result<_, _>>()
        .map_err(read)?;
    if problems.iter().all(|line| line == "ok") {
        return Ok(());
    }
    Err(StoreError::Damaged {
        path: path.to_owned(),
        detail: problems.join("; "),
    })
}

/// The file's schema version, checking (without writing) that it is `schema`'s kind of
/// database and not newer than this build.
pub(crate) fn read_version(
    conn: &Connection,
    path: &Path,
    schema: &Schema,
) -> Result<u32, StoreError> {
    let read = |e| StoreError::opening(path, e);
    let application_id: i64 = conn
        .pragma_query_value(None, "application_id", |row| row.get(0))
        .map_err(read)?;
    let mut version = user_version(conn).map_err(read)?;
    let objects: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get(0))
        .map_err(read)?;

    let fresh = application_id == 0 && version == 0 && objects == 0;
    let ours = application_id == i64::from(schema.application_id);
    let adoptable = match schema.legacy {
        Legacy::UnmarkedWithTable(table) => {
            application_id == 0 && version > 0 && has_table(conn, table).map_err(read)?
        }
        Legacy::None | Legacy::MigrationsTable => false,
    };
    if !fresh && !ours && !adoptable {
        return Err(StoreError::Corrupt {
            path: path.to_owned(),
            detail: format!(
                "an SQLite database with application_id {application_id:#x}, \
                 user_version {version} and {objects} schema objects"
            ),
        });
    }
    if schema.legacy == Legacy::MigrationsTable
        && version == 0
        && has_table(conn, "schema_migrations").map_err(read)?
    {
        version = conn
            .query_row(
                "SELECT coalesce(max(version), 0) FROM schema_migrations",
                [],
                |row| row.get(0),
            )
            .map_err(read)?;
    }
    let Ok(version) = u32::try_from(version) else {
        return Err(StoreError::Corrupt {
            path: path.to_owned(),
            detail: format!("negative schema version {version}"),
        });
    };
    if version > schema.latest() {
        return Err(StoreError::TooNew {
            path: path.to_owned(),
            found: version,
            supported: schema.latest(),
        });
    }
    Ok(version)
}

fn has_table(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?1",
        [name],
        |row| row.get::<_, i64>(0),
    )
    .map(|n| n > 0)
}

/// Stamp a legacy file (already accepted by [`read_version`]) with the application id and its
/// version in `user_version`, in one transaction, so later opens need no legacy reading.
fn adopt(conn: &Connection, path: &Path, schema: &Schema, found: u32) -> Result<(), StoreError> {
    let write = |e| StoreError::opening(path, e);
    let application_id: i64 = conn
        .pragma_query_value(None, "application_id", |row| row.get(0))
        .map_err(write)?;
    let version = user_version(conn).map_err(write)?;
    let fresh = found == 0;
    if fresh || (application_id == i64::from(schema.application_id) && version == i64::from(found))
    {
        return Ok(());
    }
    let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate).map_err(write)?;
    tx.pragma_update(None, "application_id", schema.application_id)
        .map_err(write)?;
    tx.pragma_update(None, "user_version", found)
        .map_err(write)?;
    tx.commit().map_err(write)?;
    tracing::info!(path = %path.display(), version = found, "adopted a database written by an older build");
    Ok(())
}

/// Migrate `conn` to `target`, one transaction per step.
pub(crate) fn migrate(
    conn: &Connection,
    path: &Path,
    schema: &Schema,
    target: u32,
) -> Result<(), StoreError> {
    if target == 0 || target > schema.latest() {
        return Err(StoreError::UnknownSchemaVersion {
            requested: target,
            supported: schema.latest(),
        });
    }
    let found = read_version(conn, path, schema)?;
    let pending = schema
        .migrations
        .iter()
        .filter(|m| m.version > found && m.version <= target);
    for migration in pending {
        apply(conn, schema, migration)?;
        tracing::info!(path = %path.display(), version = migration.version, name = migration.name, "migrated database");
    }
    Ok(())
}

fn apply(conn: &Connection, schema: &Schema, migration: &Migration) -> Result<(), StoreError> {
    let failed = |source| StoreError::Migration {
        version: migration.version,
        source,
    };
    let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate).map_err(failed)?;
    // Another process may have migrated while this one waited for the write lock.
    if user_version(&tx).map_err(failed)? >= i64::from(migration.version) {
        return Ok(());
    }
    if migration.version == 1 {
        tx.pragma_update(None, "application_id", schema.application_id)
            .map_err(failed)?;
    }
    (migration.apply)(&tx).map_err(failed)?;
    tx.pragma_update(None, "user_version", migration.version)
        .map_err(failed)?;
    tx.commit().map_err(failed)
}

pub(crate) fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}

/// `conn`'s file, or `:memory:`, for messages about a bare connection.
pub(crate) fn connection_path(conn: &Connection) -> PathBuf {
    conn.path()
        .filter(|p| !p.is_empty())
        .map_or_else(|| PathBuf::from(":memory:"), PathBuf::from)
}
