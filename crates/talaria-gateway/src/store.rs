//! The gateway's own SQLite database (`<state-dir>/gateway.db`): the inbox of accepted
//! requests, the outbox of their answers, which API key started which session, and the
//! deliveries other units sent through `Gateway1.Deliver`.
//!
//! Durability rules the rest of the crate relies on: a request is in the inbox before it is
//! submitted to the agent, and its answer is in the outbox before any of it is reported as
//! final to a client. The outbox has one row per request (first answer wins), so a request
//! is never answered twice even when the agent re-emits its `done`. No other process opens
//! this file. Opening, checking, migrating and the blocking pool are `talaria-store`'s shared
//! setup ([`talaria_store::Database`]); this module owns the schema and its statements.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::platforms::{Person, Source};
use rusqlite::{Connection, OptionalExtension, Row, params};
use talaria_store::database::{Database, Durability, Legacy, Migration, OpenOptions, Schema};

/// The database file inside the state directory.
pub const DB_FILE: &str = "gateway.db";

/// `gateway.db`: "TLGW" in ASCII. Files written before the shared setup carry no application
/// id; they are recognised by their `inbox` table and stamped.
static GATEWAY: Schema = Schema {
    application_id: 0x544C_4757,
    migrations: MIGRATIONS,
    // An answer reported to a client must survive a power cut, not just a crash.
    durability: Durability::Full,
    legacy: Legacy::UnmarkedWithTable("inbox"),
};

/// Every migration, oldest first. Never edit a released entry: add a new one.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "inbox, outbox, sessions and deliveries",
        apply: v1_inbox_outbox,
    },
    Migration {
        version: 2,
        name: "idempotency keys of deliveries",
        apply: v2_delivery_keys,
    },
    Migration {
        version: 3,
        name: "platform-neutral person and source in the inbox",
        apply: v3_person_and_source,
    },
];

fn v1_inbox_outbox(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(V1)
}

fn v2_delivery_keys(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(V2)
}

fn v3_person_and_source(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(V3)
}

const V1: &str = r"
CREATE TABLE inbox (
    request_id      TEXT PRIMARY KEY,
    key_id          TEXT NOT NULL,
    idempotency_key TEXT,
    session_key     TEXT NOT NULL,
    create_session  INTEGER NOT NULL,
    text            TEXT NOT NULL,
    model           TEXT,
    state           TEXT NOT NULL
        CHECK (state IN ('received', 'submitted', 'answered', 'failed')),
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE UNIQUE INDEX inbox_idempotency ON inbox (key_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX inbox_pending ON inbox (created_at) WHERE state IN ('received', 'submitted');

CREATE TABLE outbox (
    request_id    TEXT PRIMARY KEY REFERENCES inbox (request_id),
    answer        TEXT,
    finish_reason TEXT,
    error_code    TEXT,
    error_kind    TEXT,
    error_message TEXT,
    created_at    INTEGER NOT NULL,
    delivered_at  INTEGER,
    CHECK ((answer IS NULL) <> (error_code IS NULL))
);

CREATE TABLE sessions (
    session_key TEXT PRIMARY KEY,
    key_id      TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE deliveries (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    target     TEXT NOT NULL,
    text       TEXT NOT NULL,
    reply_to   TEXT,
    silent     INTEGER NOT NULL,
    caller_uid INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX deliveries_target ON deliveries (target, id);
";

/// Deliver's idempotency key: a caller that repeats a delivery (the scheduler resuming an
/// interrupted run) names it again, and it is stored once. Scoped to the caller's uid, so one
/// caller cannot claim or probe another's keys. Existing rows have none.
const V2: &str = r"
ALTER TABLE deliveries ADD COLUMN idempotency_key TEXT;
CREATE UNIQUE INDEX deliveries_idempotency ON deliveries (caller_uid, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
";

/// The inbox names who asked and where from in every platform's terms — a person (platform,
/// user id) and a source (platform, chat) — instead of an API key id. Every existing row came
/// from the HTTP API: its key id becomes the person `api`/key id and its session the source
/// `api`/session key. Idempotency keys are scoped to the person.
const V3: &str = r"
ALTER TABLE inbox ADD COLUMN person_platform TEXT NOT NULL DEFAULT 'api';
ALTER TABLE inbox ADD COLUMN person_id TEXT NOT NULL DEFAULT '';
ALTER TABLE inbox ADD COLUMN source_platform TEXT NOT NULL DEFAULT 'api';
ALTER TABLE inbox ADD COLUMN source_chat TEXT NOT NULL DEFAULT '';
UPDATE inbox SET person_id = key_id, source_chat = session_key;
DROP INDEX inbox_idempotency;
CREATE UNIQUE INDEX inbox_idempotency ON inbox (person_platform, person_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
ALTER TABLE inbox DROP COLUMN key_id;
";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the state directory {}: {error}", path.display())]
    StateDir {
        path: PathBuf,
        error: std::io::Error,
    },
    /// Opening, checking or migrating the file, or the blocking pool.
    #[error(transparent)]
    Database(#[from] talaria_store::StoreError),
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("request {request_id} vanished while reading it")]
    Vanished { request_id: String },
    #[error("database row for request {request_id} has unknown {column} {value:?}")]
    Corrupt {
        request_id: String,
        column: &'static str,
        value: String,
    },
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Where a request is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestState {
    /// In the inbox, not yet accepted by the agent.
    Received,
    /// The agent accepted it (at least once); no answer yet.
    Submitted,
    /// The answer is in the outbox.
    Answered,
    /// A final failure is in the outbox.
    Failed,
}

impl RequestState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::Submitted => "submitted",
            Self::Answered => "answered",
            Self::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            Self::Received,
            Self::Submitted,
            Self::Answered,
            Self::Failed,
        ]
        .into_iter()
        .find(|state| state.as_str() == s)
    }

    /// Still waiting for the agent.
    pub fn is_pending(self) -> bool {
        match self {
            Self::Received | Self::Submitted => true,
            Self::Answered | Self::Failed => false,
        }
    }
}

/// Why a request failed for good (these are stored; waiting too long is not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureCode {
    /// The turn ran and the agent reported an error.
    AgentError,
    /// The session key is unknown to the agent.
    UnknownSession,
    /// The agent refused the caller (a session owned by another uid).
    AccessDenied,
    /// The agent rejected the arguments.
    InvalidRequest,
    /// The gateway could not put the request on the bus (a string D-Bus cannot carry, a
    /// message it cannot encode); sending it again would fail the same way.
    Unsendable,
}

impl FailureCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AgentError => "agent_error",
            Self::UnknownSession => "unknown_session",
            Self::AccessDenied => "access_denied",
            Self::InvalidRequest => "invalid_request",
            Self::Unsendable => "unsendable",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            Self::AgentError,
            Self::UnknownSession,
            Self::AccessDenied,
            Self::InvalidRequest,
            Self::Unsendable,
        ]
        .into_iter()
        .find(|code| code.as_str() == s)
    }
}

/// A final failure as stored in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFailure {
    pub code: FailureCode,
    /// The agent's own error kind (`error` events carry one), if any.
    pub kind: Option<String>,
    pub message: String,
}

/// The final answer of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub text: String,
    /// OpenAI's `finish_reason`: `stop` or `length`.
    pub finish_reason: String,
}

/// What the outbox holds for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Answered(Answer),
    Failed(StoredFailure),
}

/// A request to put in the inbox.
#[derive(Debug, Clone)]
pub struct NewRequest {
    pub request_id: String,
    /// Who asked: for the HTTP API, `api` and the API key's id.
    pub person: Person,
    /// Where from: for the HTTP API, `api` and the session key.
    pub source: Source,
    pub idempotency_key: Option<String>,
    pub session_key: String,
    /// The session is new: the gateway created its key for this request.
    pub create_session: bool,
    pub text: String,
    pub model: Option<String>,
}

/// An inbox row.
#[derive(Debug, Clone)]
pub struct InboxRow {
    pub request_id: String,
    pub person: Person,
    pub source: Source,
    pub idempotency_key: Option<String>,
    pub session_key: String,
    pub create_session: bool,
    pub text: String,
    pub model: Option<String>,
    pub state: RequestState,
    pub created_at_ms: i64,
}

/// An inbox row with its outbox row, if any.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub row: InboxRow,
    pub outcome: Option<Outcome>,
    pub answered_at_ms: Option<i64>,
    pub delivered_at_ms: Option<i64>,
}

/// What [`Store::accept`] did.
#[derive(Debug, Clone)]
pub enum Accepted {
    /// A new inbox row.
    New(InboxRow),
    /// The idempotency key was seen before (for this API key): that request.
    Existing(RequestRecord),
}

/// One message sent to an `api:NAME` target through `Gateway1.Deliver`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: i64,
    pub target: String,
    pub text: String,
    pub reply_to: Option<String>,
    pub silent: bool,
    pub created_at_ms: i64,
}

/// A delivery to store.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub target: String,
    pub text: String,
    pub reply_to: Option<String>,
    pub silent: bool,
    pub caller_uid: u32,
    /// The caller's name for this delivery: the same key from the same uid stores it once.
    pub idempotency_key: Option<String>,
}

/// What [`Store::add_delivery`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// A new delivery with this id.
    New(i64),
    /// The caller delivered this before under the same idempotency key: its id.
    Repeated(i64),
    /// The idempotency key names an earlier delivery with another target or text.
    KeyReused(i64),
}

/// The database, shared by the HTTP API, the turn drivers and the bus service.
#[derive(Debug, Clone)]
pub struct Store {
    db: Database,
}

const INBOX_COLUMNS: &str = "inbox.request_id, inbox.person_platform, inbox.idempotency_key, \
    inbox.session_key, inbox.create_session, inbox.text, inbox.model, inbox.state, \
    inbox.created_at, inbox.person_id, inbox.source_platform, inbox.source_chat";
/// How many columns [`INBOX_COLUMNS`] has: what a query selects after them starts here.
const INBOX_WIDTH: usize = 12;

fn inbox_row(row: &Row<'_>) -> rusqlite::Result<(InboxRow, String)> {
    let state: String = row.get(7)?;
    Ok((
        InboxRow {
            request_id: row.get(0)?,
            person: Person {
                platform: row.get(1)?,
                user: row.get(9)?,
            },
            source: Source {
                platform: row.get(10)?,
                chat: row.get(11)?,
            },
            idempotency_key: row.get(2)?,
            session_key: row.get(3)?,
            create_session: row.get(4)?,
            text: row.get(5)?,
            model: row.get(6)?,
            state: RequestState::Received,
            created_at_ms: row.get(8)?,
        },
        state,
    ))
}

fn with_state((mut row, state): (InboxRow, String)) -> Result<InboxRow, StoreError> {
    row.state = RequestState::parse(&state).ok_or_else(|| StoreError::Corrupt {
        request_id: row.request_id.clone(),
        column: "state",
        value: state,
    })?;
    Ok(row)
}

fn outcome_of(
    request_id: &str,
    answer: Option<String>,
    finish_reason: Option<String>,
    code: Option<String>,
    kind: Option<String>,
    message: Option<String>,
) -> Result<Option<Outcome>, StoreError> {
    if let Some(text) = answer {
        return Ok(Some(Outcome::Answered(Answer {
            text,
            finish_reason: finish_reason.unwrap_or_else(|| "stop".into()),
        })));
    }
    let Some(code) = code else {
        return Ok(None);
    };
    let parsed = FailureCode::parse(&code).ok_or_else(|| StoreError::Corrupt {
        request_id: request_id.to_owned(),
        column: "error_code",
        value: code,
    })?;
    Ok(Some(Outcome::Failed(StoredFailure {
        code: parsed,
        kind,
        message: message.unwrap_or_default(),
    })))
}

fn record(conn: &Connection, request_id: &str) -> Result<Option<RequestRecord>, StoreError> {
    let sql = format!(
        "SELECT {INBOX_COLUMNS}, outbox.answer, outbox.finish_reason, outbox.error_code, \
         outbox.error_kind, outbox.error_message, outbox.created_at, outbox.delivered_at \
         FROM inbox LEFT JOIN outbox USING (request_id) WHERE inbox.request_id = ?1"
    );
    let found = conn
        .query_row(&sql, [request_id], |row| {
            Ok((
                inbox_row(row)?,
                row.get::<_, Option<String>>(INBOX_WIDTH)?,
                row.get::<_, Option<String>>(INBOX_WIDTH + 1)?,
                row.get::<_, Option<String>>(INBOX_WIDTH + 2)?,
                row.get::<_, Option<String>>(INBOX_WIDTH + 3)?,
                row.get::<_, Option<String>>(INBOX_WIDTH + 4)?,
                row.get::<_, Option<i64>>(INBOX_WIDTH + 5)?,
                row.get::<_, Option<i64>>(INBOX_WIDTH + 6)?,
            ))
        })
        .optional()?;
    let Some((row, answer, finish, code, kind, message, answered_at, delivered_at)) = found else {
        return Ok(None);
    };
    let row = with_state(row)?;
    let outcome = outcome_of(&row.request_id, answer, finish, code, kind, message)?;
    Ok(Some(RequestRecord {
        row,
        outcome,
        answered_at_ms: answered_at,
        delivered_at_ms: delivered_at,
    }))
}

impl Store {
    /// Opens (creating if needed, mode 0700) `<state_dir>/gateway.db`, checks it and brings
    /// its schema up to date, on the blocking pool.
    ///
    /// # Errors
    /// The directory cannot be created; the database is not the gateway's, is damaged or
    /// newer than this build (all left untouched), or cannot be opened or migrated.
    pub async fn open(state_dir: &Path) -> Result<Self, StoreError> {
        let mut dir = tokio::fs::DirBuilder::new();
        dir.recursive(true).mode(0o700);
        dir.create(state_dir)
            .await
            .map_err(|error| StoreError::StateDir {
                path: state_dir.to_owned(),
                error,
            })?;
        let db = Database::open(&state_dir.join(DB_FILE), &GATEWAY, OpenOptions::default()).await?;
        Ok(Self { db })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        self.db.path()
    }

    async fn call<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
    {
        self.db.run(f).await
    }

    /// Puts a request in the inbox, or finds the earlier request with the same idempotency
    /// key for the same API key. A new session's key is recorded as belonging to the API key.
    ///
    /// # Errors
    /// Database failures.
    pub async fn accept(&self, request: NewRequest) -> Result<Accepted, StoreError> {
        self.call(move |conn| {
            let tx = conn.transaction()?;
            if let Some(idem) = &request.idempotency_key {
                let existing: Option<String> = tx
                    .query_row(
                        "SELECT request_id FROM inbox WHERE person_platform = ?1 \
                         AND person_id = ?2 AND idempotency_key = ?3",
                        params![request.person.platform, request.person.user, idem],
                        |row| row.get(0),
                    )
                    .optional()?;
                if let Some(request_id) = existing {
                    let found = record(&tx, &request_id)?;
                    tx.commit()?;
                    if let Some(found) = found {
                        return Ok(Accepted::Existing(found));
                    }
                    return Err(StoreError::Vanished { request_id });
                }
            }
            let now = now_ms();
            tx.execute(
                "INSERT INTO inbox (request_id, person_platform, person_id, source_platform, \
                 source_chat, idempotency_key, session_key, create_session, text, model, state, \
                 created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'received', ?11, ?11)",
                params![
                    request.request_id,
                    request.person.platform,
                    request.person.user,
                    request.source.platform,
                    request.source.chat,
                    request.idempotency_key,
                    request.session_key,
                    request.create_session,
                    request.text,
                    request.model,
                    now
                ],
            )?;
            if request.create_session {
                tx.execute(
                    "INSERT OR IGNORE INTO sessions (session_key, key_id, created_at) \
                     VALUES (?1, ?2, ?3)",
                    params![request.session_key, request.person.user, now],
                )?;
            }
            tx.commit()?;
            Ok(Accepted::New(InboxRow {
                request_id: request.request_id,
                person: request.person,
                source: request.source,
                idempotency_key: request.idempotency_key,
                session_key: request.session_key,
                create_session: request.create_session,
                text: request.text,
                model: request.model,
                state: RequestState::Received,
                created_at_ms: now,
            }))
        })
        .await
    }

    /// The request `key_id` made earlier with `idempotency_key`, if any.
    ///
    /// # Errors
    /// Database failures.
    pub async fn idempotent_request(
        &self,
        key_id: &str,
        idempotency_key: &str,
    ) -> Result<Option<String>, StoreError> {
        let (key_id, idempotency_key) = (key_id.to_owned(), idempotency_key.to_owned());
        self.call(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT request_id FROM inbox WHERE person_platform = 'api' \
                     AND person_id = ?1 AND idempotency_key = ?2",
                    params![key_id, idempotency_key],
                    |row| row.get(0),
                )
                .optional()?)
        })
        .await
    }

    /// The API key that started `session_key` through this gateway, if any.
    ///
    /// # Errors
    /// Database failures.
    pub async fn session_owner(&self, session_key: &str) -> Result<Option<String>, StoreError> {
        let session_key = session_key.to_owned();
        self.call(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT key_id FROM sessions WHERE session_key = ?1",
                    [session_key],
                    |row| row.get(0),
                )
                .optional()?)
        })
        .await
    }

    /// The agent accepted the request.
    ///
    /// # Errors
    /// Database failures.
    pub async fn mark_submitted(&self, request_id: &str) -> Result<(), StoreError> {
        let request_id = request_id.to_owned();
        self.call(move |conn| {
            conn.execute(
                "UPDATE inbox SET state = 'submitted', updated_at = ?2 \
                 WHERE request_id = ?1 AND state = 'received'",
                params![request_id, now_ms()],
            )?;
            Ok(())
        })
        .await
    }

    /// Records the final outcome of a request unless one is already recorded; returns the
    /// outcome the outbox holds afterwards (the first one recorded wins). `None` when the
    /// request is not in the inbox.
    ///
    /// # Errors
    /// Database failures.
    pub async fn finish(
        &self,
        request_id: &str,
        outcome: Outcome,
    ) -> Result<Option<Outcome>, StoreError> {
        let request_id = request_id.to_owned();
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let known: Option<String> = tx
                .query_row(
                    "SELECT state FROM inbox WHERE request_id = ?1",
                    [&request_id],
                    |row| row.get(0),
                )
                .optional()?;
            if known.is_none() {
                return Ok(None);
            }
            let now = now_ms();
            let (state, inserted) = match &outcome {
                Outcome::Answered(answer) => (
                    "answered",
                    tx.execute(
                        "INSERT OR IGNORE INTO outbox (request_id, answer, finish_reason, \
                         created_at) VALUES (?1, ?2, ?3, ?4)",
                        params![request_id, answer.text, answer.finish_reason, now],
                    )?,
                ),
                Outcome::Failed(failure) => (
                    "failed",
                    tx.execute(
                        "INSERT OR IGNORE INTO outbox (request_id, error_code, error_kind, \
                         error_message, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![
                            request_id,
                            failure.code.as_str(),
                            failure.kind,
                            failure.message,
                            now
                        ],
                    )?,
                ),
            };
            if inserted == 1 {
                tx.execute(
                    "UPDATE inbox SET state = ?2, updated_at = ?3 WHERE request_id = ?1",
                    params![request_id, state, now],
                )?;
            }
            let stored = record(&tx, &request_id)?.and_then(|r| r.outcome);
            tx.commit()?;
            Ok(stored)
        })
        .await
    }

    /// The client has been handed the outcome (first time only).
    ///
    /// # Errors
    /// Database failures.
    pub async fn mark_delivered(&self, request_id: &str) -> Result<(), StoreError> {
        let request_id = request_id.to_owned();
        self.call(move |conn| {
            conn.execute(
                "UPDATE outbox SET delivered_at = ?2 \
                 WHERE request_id = ?1 AND delivered_at IS NULL",
                params![request_id, now_ms()],
            )?;
            Ok(())
        })
        .await
    }

    /// A request with its outcome, if it is in the inbox.
    ///
    /// # Errors
    /// Database failures.
    pub async fn request(&self, request_id: &str) -> Result<Option<RequestRecord>, StoreError> {
        let request_id = request_id.to_owned();
        self.call(move |conn| record(conn, &request_id)).await
    }

    /// Requests accepted but not yet answered, oldest first.
    ///
    /// # Errors
    /// Database failures.
    pub async fn pending(&self) -> Result<Vec<InboxRow>, StoreError> {
        self.call(|conn| {
            let sql = format!(
                "SELECT {INBOX_COLUMNS} FROM inbox \
                 WHERE state IN ('received', 'submitted') ORDER BY created_at"
            );
            let mut statement = conn.prepare(&sql)?;
            let rows = statement
                .query_map([], inbox_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter().map(with_state).collect()
        })
        .await
    }

    /// Stores a delivery, once per caller and idempotency key.
    ///
    /// # Errors
    /// Database failures.
    pub async fn add_delivery(&self, delivery: NewDelivery) -> Result<Stored, StoreError> {
        self.call(move |conn| {
            let tx = conn.transaction()?;
            if let Some(key) = &delivery.idempotency_key {
                let earlier: Option<(i64, String, String)> = tx
                    .query_row(
                        "SELECT id, target, text FROM deliveries \
                         WHERE caller_uid = ?1 AND idempotency_key = ?2",
                        params![delivery.caller_uid, key],
                        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                    )
                    .optional()?;
                if let Some((id, target, text)) = earlier {
                    return Ok(if target == delivery.target && text == delivery.text {
                        Stored::Repeated(id)
                    } else {
                        Stored::KeyReused(id)
                    });
                }
            }
            tx.execute(
                "INSERT INTO deliveries (target, text, reply_to, silent, caller_uid, created_at, \
                 idempotency_key) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    delivery.target,
                    delivery.text,
                    delivery.reply_to,
                    delivery.silent,
                    delivery.caller_uid,
                    now_ms(),
                    delivery.idempotency_key,
                ],
            )?;
            let id = tx.last_insert_rowid();
            tx.commit()?;
            Ok(Stored::New(id))
        })
        .await
    }

    /// Deliveries to `target` with an id above `after`, oldest first, at most `limit`.
    ///
    /// # Errors
    /// Database failures.
    pub async fn deliveries(
        &self,
        target: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError> {
        let target = target.to_owned();
        self.call(move |conn| {
            let mut statement = conn.prepare(
                "SELECT id, target, text, reply_to, silent, created_at FROM deliveries \
                 WHERE target = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
            )?;
            let rows = statement
                .query_map(params![target, after, limit], |row| {
                    Ok(Delivery {
                        id: row.get(0)?,
                        target: row.get(1)?,
                        text: row.get(2)?,
                        reply_to: row.get(3)?,
                        silent: row.get(4)?,
                        created_at_ms: row.get(5)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(id: &str, idem: Option<&str>) -> NewRequest {
        NewRequest {
            request_id: id.into(),
            person: Person {
                platform: "api".into(),
                user: "k1".into(),
            },
            source: Source {
                platform: "api".into(),
                chat: "api:s1".into(),
            },
            idempotency_key: idem.map(str::to_owned),
            session_key: "api:s1".into(),
            create_session: true,
            text: "hello".into(),
            model: None,
        }
    }

    #[tokio::test]
    async fn idempotency_keys_map_to_one_request_per_api_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let Accepted::New(first) = store.accept(request("r1", Some("idem"))).await.unwrap() else {
            panic!("first accept is new");
        };
        assert_eq!(first.state, RequestState::Received);
        let Accepted::Existing(again) = store.accept(request("r2", Some("idem"))).await.unwrap()
        else {
            panic!("same key is the same request");
        };
        assert_eq!(again.row.request_id, "r1");
        let mut other_key = request("r3", Some("idem"));
        other_key.person.user = "k2".into();
        assert!(matches!(
            store.accept(other_key).await.unwrap(),
            Accepted::New(_)
        ));
        assert_eq!(
            store.session_owner("api:s1").await.unwrap().as_deref(),
            Some("k1")
        );
    }

    #[tokio::test]
    async fn the_first_outcome_wins_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        store.accept(request("r1", None)).await.unwrap();
        store.mark_submitted("r1").await.unwrap();
        assert_eq!(store.pending().await.unwrap().len(), 1);
        let first = Outcome::Answered(Answer {
            text: "one".into(),
            finish_reason: "stop".into(),
        });
        let second = Outcome::Failed(StoredFailure {
            code: FailureCode::AgentError,
            kind: None,
            message: "late".into(),
        });
        assert_eq!(
            store.finish("r1", first.clone()).await.unwrap(),
            Some(first.clone())
        );
        assert_eq!(
            store.finish("r1", second).await.unwrap(),
            Some(first.clone())
        );
        assert_eq!(store.finish("nope", first.clone()).await.unwrap(), None);
        drop(store);
        let store = Store::open(dir.path()).await.unwrap();
        let found = store.request("r1").await.unwrap().unwrap();
        assert_eq!(found.row.state, RequestState::Answered);
        assert_eq!(found.outcome, Some(first));
        assert!(store.pending().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn deliveries_page_by_id() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let add = |target: &str, text: &str| NewDelivery {
            target: target.into(),
            text: text.into(),
            reply_to: None,
            silent: false,
            caller_uid: 0,
            idempotency_key: None,
        };
        let Stored::New(a) = store.add_delivery(add("api:x", "a")).await.unwrap() else {
            panic!("stored");
        };
        store.add_delivery(add("api:y", "b")).await.unwrap();
        let Stored::New(c) = store.add_delivery(add("api:x", "c")).await.unwrap() else {
            panic!("stored");
        };
        let all = store.deliveries("api:x", 0, 10).await.unwrap();
        assert_eq!(
            all.iter().map(|d| d.text.as_str()).collect::<Vec<_>>(),
            ["a", "c"]
        );
        let after = store.deliveries("api:x", a, 10).await.unwrap();
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].id, c);
    }

    /// A `gateway.db` written before the shared SQLite setup (no application id) keeps its
    /// requests and is stamped as the gateway's; another program's file is refused untouched.
    #[tokio::test]
    async fn an_unmarked_gateway_database_is_adopted_and_a_foreign_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
            conn.execute_batch(V1).unwrap();
            conn.execute_batch(
                "PRAGMA user_version = 1;
                 INSERT INTO inbox VALUES ('r-old', 'k', NULL, 's', 1, 'hi', NULL, 'received', 1, 1);",
            )
            .unwrap();
        }
        let store = Store::open(dir.path()).await.unwrap();
        let pending = store.pending().await.unwrap();
        assert_eq!(pending.len(), 1);
        // v3 keeps the row: its API key id became the person, its session the source.
        assert_eq!(
            pending[0].person,
            Person {
                platform: "api".into(),
                user: "k".into()
            }
        );
        assert_eq!(
            pending[0].source,
            Source {
                platform: "api".into(),
                chat: "s".into()
            }
        );
        drop(store);
        let id: i32 = Connection::open(dir.path().join(DB_FILE))
            .unwrap()
            .pragma_query_value(None, "application_id", |row| row.get(0))
            .unwrap();
        assert_eq!(id, GATEWAY.application_id);

        let other = tempfile::tempdir().unwrap();
        Connection::open(other.path().join(DB_FILE))
            .unwrap()
            .execute_batch("CREATE TABLE notes (body TEXT); PRAGMA user_version = 1;")
            .unwrap();
        let before = std::fs::read(other.path().join(DB_FILE)).unwrap();
        let error = Store::open(other.path()).await.unwrap_err();
        assert!(
            matches!(
                error,
                StoreError::Database(talaria_store::StoreError::Corrupt { .. })
            ),
            "{error}"
        );
        assert_eq!(std::fs::read(other.path().join(DB_FILE)).unwrap(), before);
    }

    #[tokio::test]
    async fn a_delivery_repeated_under_its_key_is_stored_once_per_caller() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let add = |uid: u32, text: &str| NewDelivery {
            target: "api:x".into(),
            text: text.into(),
            reply_to: None,
            silent: false,
            caller_uid: uid,
            idempotency_key: Some("run-1".into()),
        };
        let Stored::New(first) = store.add_delivery(add(1000, "a")).await.unwrap() else {
            panic!("stored");
        };
        assert_eq!(
            store.add_delivery(add(1000, "a")).await.unwrap(),
            Stored::Repeated(first)
        );
        assert_eq!(
            store.add_delivery(add(1000, "b")).await.unwrap(),
            Stored::KeyReused(first)
        );
        // Another caller's key space is its own.
        assert!(matches!(
            store.add_delivery(add(1001, "a")).await.unwrap(),
            Stored::New(_)
        ));
        assert_eq!(store.deliveries("api:x", 0, 10).await.unwrap().len(), 2);
    }
}
