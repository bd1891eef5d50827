//! Session keys and turn requests: what lets the agent unit serve callers over the bus without
//! losing or repeating a turn.
//!
//! A *session key* is the name a caller (the gateway, the scheduler) gives a conversation; it
//! belongs to the uid that created it. A *turn request* is one submitted turn, keyed by the
//! caller's idempotency id. Starting a request and storing its user message happen in one
//! transaction, so after a crash a request is either unknown (submit it again) or has its
//! message stored (resume it) — never half-started.

use rusqlite::{Connection, OptionalExtension, Row, params};
use talaria_core::{Message, SessionId, Surface, UserId};

use crate::error::StoreError;
use crate::sessions::{append_in, now_ms, session_id, write};

/// A caller's name for a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionKey {
    pub key: String,
    pub owner_uid: u32,
    /// The person the caller vouches for ([`UserId::default_user`] when it named none).
    pub user: UserId,
    pub session_id: SessionId,
    /// The surface the person came in on; it narrows every tool call of the session and can
    /// only ever narrow further ([`narrow_session_surface`]).
    pub surface: Surface,
}

/// Where a turn request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestState {
    /// Started; its user message is stored. After a crash it is resumed.
    Running,
    /// Answered; `answer` holds the final text.
    Done,
    /// Ended with an error; `error` says why.
    Failed,
}

impl RequestState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }
}

/// One submitted turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnRequest {
    pub request_id: String,
    pub owner_uid: u32,
    pub session_key: String,
    pub session_id: SessionId,
    pub text: String,
    pub state: RequestState,
    pub answer: Option<String>,
    pub error: Option<String>,
}

pub(crate) fn bind_session_key(conn: &mut Connection, key: &SessionKey) -> Result<(), StoreError> {
    write(conn, |tx| {
        let inserted = tx.execute(
            "INSERT INTO session_keys (key, owner_uid, session_id, created_at, user, surface)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (key) DO NOTHING",
            params![
                key.key,
                key.owner_uid,
                key.session_id.as_str(),
                now_ms(),
                key.user.as_str(),
                key.surface.name(),
            ],
        )?;
        if inserted == 0 {
            return Err(StoreError::SessionExists(key.key.clone()));
        }
        Ok(())
    })
}

pub(crate) fn session_key(conn: &Connection, key: &str) -> Result<Option<SessionKey>, StoreError> {
    let found = conn
        .prepare_cached(
            "SELECT key, owner_uid, session_id, user, surface FROM session_keys WHERE key = ?1",
        )?
        .query_row([key], key_from_row)
        .optional()?;
    Ok(found)
}

/// The key that names a session, if a bus caller made it.
pub(crate) fn key_of_session(
    conn: &Connection,
    id: &SessionId,
) -> Result<Option<SessionKey>, StoreError> {
    let found = conn
        .prepare_cached(
            "SELECT key, owner_uid, session_id, user, surface FROM session_keys WHERE session_id = ?1
             ORDER BY created_at LIMIT 1",
        )?
        .query_row([id.as_str()], key_from_row)
        .optional()?;
    Ok(found)
}

fn key_from_row(row: &Row<'_>) -> rusqlite::Result<SessionKey> {
    let user: String = row.get(3)?;
    Ok(SessionKey {
        key: row.get(0)?,
        owner_uid: row.get(1)?,
        user: UserId::parse(&user).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, Box::new(e))
        })?,
        session_id: session_id(row, 2)?,
        // A value this version does not know narrows to the narrowest.
        surface: Surface::from_wire(row.get::<_, Option<String>>(4)?.as_deref()).0,
    })
}

/// Narrows the surface of the session named `key` to `surface` when that is narrower than the
/// stored one; never widens. Returns the surface now in force.
pub(crate) fn narrow_session_surface(
    conn: &mut Connection,
    key: &str,
    surface: Surface,
) -> Result<Option<Surface>, StoreError> {
    write(conn, |tx| {
        let Some(stored) = tx
            .query_row(
                "SELECT surface FROM session_keys WHERE key = ?1",
                [key],
                |row| row.get::<_, String>(0),
            )
            .optional()?
        else {
            return Ok(None);
        };
        let stored = Surface::from_wire(Some(&stored)).0;
        let narrowed = stored.narrower(surface);
        if narrowed != stored {
            tx.execute(
                "UPDATE session_keys SET surface = ?2 WHERE key = ?1",
                params![key, narrowed.name()],
            )?;
        }
        Ok(Some(narrowed))
    })
}

pub(crate) fn start_request(
    conn: &mut Connection,
    request: &TurnRequest,
) -> Result<i64, StoreError> {
    write(conn, |tx| {
        tx.execute(
            "INSERT INTO turn_requests
                 (request_id, owner_uid, session_key, session_id, text, state, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, 'running', ?6)",
            params![
                request.request_id,
                request.owner_uid,
                request.session_key,
                request.session_id.as_str(),
                request.text,
                now_ms()
            ],
        )?;
        let seqs = append_in(tx, &request.session_id, &[Message::user(&request.text)])?;
        Ok(seqs.first().copied().unwrap_or_default())
    })
}

pub(crate) fn turn_request(
    conn: &Connection,
    request_id: &str,
) -> Result<Option<TurnRequest>, StoreError> {
    let found = conn
        .prepare_cached(&format!("{REQUEST_COLUMNS} WHERE request_id = ?1"))?
        .query_row([request_id], request_from_row)
        .optional()?;
    Ok(found)
}

pub(crate) fn running_requests(conn: &Connection) -> Result<Vec<TurnRequest>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "{REQUEST_COLUMNS} WHERE state = 'running' ORDER BY created_at"
    ))?;
    let rows = stmt
        .query_map([], request_from_row)?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

pub(crate) fn finish_request(
    conn: &mut Connection,
    request_id: &str,
    outcome: Result<&str, &str>,
) -> Result<(), StoreError> {
    let (state, answer, error) = match outcome {
        Ok(answer) => (RequestState::Done, Some(answer), None),
        Err(error) => (RequestState::Failed, None, Some(error)),
    };
    write(conn, |tx| {
        tx.execute(
            "UPDATE turn_requests SET state = ?2, answer = ?3, error = ?4, finished_at = ?5
             WHERE request_id = ?1",
            params![request_id, state.as_str(), answer, error, now_ms()],
        )?;
        Ok(())
    })
}

const REQUEST_COLUMNS: &str = "SELECT request_id, owner_uid, session_key, session_id, text, state,
        answer, error FROM turn_requests";

fn request_from_row(row: &Row<'_>) -> rusqlite::Result<TurnRequest> {
    let state: String = row.get(5)?;
    let state = match state.as_str() {
        "done" => RequestState::Done,
        "failed" => RequestState::Failed,
        _ => RequestState::Running,
    };
    Ok(TurnRequest {
        request_id: row.get(0)?,
        owner_uid: row.get(1)?,
        session_key: row.get(2)?,
        session_id: session_id(row, 3)?,
        text: row.get(4)?,
        state,
        answer: row.get(6)?,
        error: row.get(7)?,
    })
}
