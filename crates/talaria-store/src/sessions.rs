//! Sessions, their messages and their token usage: the synchronous SQL behind
//! [`Store`](crate::Store).
//!
//! Every write runs in a `BEGIN IMMEDIATE` transaction. Taking the write lock up front lets
//! SQLite's busy timeout wait for another process instead of failing when a read transaction
//! would have had to be upgraded.
//!
//! `updated_at` is wall-clock milliseconds, but kept strictly increasing across the database
//! so that "most recently updated" never ties, even for writes in the same millisecond.

use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};
use talaria_core::{Message, Role, SessionId, ToolCall, Usage};

use crate::error::StoreError;

/// A session to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    pub id: SessionId,
    pub model: String,
    /// Where the session was started from: `"cli"`, later `"gateway"`.
    pub source: String,
    /// Working directory the session was started in.
    pub cwd: String,
}

/// A stored session with its message count and summed usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub id: SessionId,
    /// The first line of the first user message, once there is one.
    pub title: Option<String>,
    pub model: String,
    /// The provider chosen for this session (`talaria model set`, `/model`); `None`: the
    /// configured one.
    pub provider: Option<String>,
    pub source: String,
    pub cwd: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds of creation or the last append or truncation.
    pub updated_at: i64,
    pub message_count: u64,
    /// The sum of every recorded usage.
    pub usage: Usage,
}

/// A message as stored, with its position in the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Ordinal within the session, from 0.
    pub seq: i64,
    pub message: Message,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// Longest title derived from a user message, in characters.
const TITLE_MAX_CHARS: usize = 60;

pub(crate) const SESSION_COLUMNS: &str =
    "SELECT s.id, s.title, s.model, s.source, s.cwd, s.created_at,
        s.updated_at,
        (SELECT count(*) FROM messages WHERE session_id = s.id),
        (SELECT coalesce(sum(prompt_tokens), 0) FROM usage WHERE session_id = s.id),
        (SELECT coalesce(sum(completion_tokens), 0) FROM usage WHERE session_id = s.id),
        (SELECT coalesce(sum(cached_tokens), 0) FROM usage WHERE session_id = s.id),
        (SELECT coalesce(sum(cache_write_tokens), 0) FROM usage WHERE session_id = s.id),
        s.provider
    FROM sessions s";

/// Newest first; `rowid` breaks ties left by databases written before the clock was monotonic.
pub(crate) const NEWEST_FIRST: &str = "ORDER BY s.updated_at DESC, s.rowid DESC";

pub(crate) fn create_session(conn: &mut Connection, new: &NewSession) -> Result<(), StoreError> {
    write(conn, |tx| {
        let now = next_update_time(tx)?;
        let inserted = tx.execute(
            "INSERT INTO sessions (id, title, model, source, cwd, created_at, updated_at)
             VALUES (?1, NULL, ?2, ?3, ?4, ?5, ?5)
             ON CONFLICT (id) DO NOTHING",
            params![new.id.as_str(), new.model, new.source, new.cwd, now],
        )?;
        if inserted == 0 {
            return Err(StoreError::SessionExists(new.id.to_string()));
        }
        Ok(())
    })
}

pub(crate) fn session(
    conn: &Connection,
    id: &SessionId,
) -> Result<Option<SessionRecord>, StoreError> {
    let sql = format!("{SESSION_COLUMNS} WHERE s.id = ?1");
    let record = conn
        .prepare_cached(&sql)?
        .query_row([id.as_str()], session_from_row)
        .optional()?;
    Ok(record)
}

pub(crate) fn list_sessions(
    conn: &Connection,
    limit: usize,
) -> Result<Vec<SessionRecord>, StoreError> {
    let sql = format!("{SESSION_COLUMNS} {NEWEST_FIRST} LIMIT ?1");
    let mut stmt = conn.prepare_cached(&sql)?;
    let records = stmt
        .query_map([sql_int(limit)], session_from_row)?
        .collect::<Result<_, _>>()?;
    Ok(records)
}

pub(crate) fn latest_session(conn: &Connection) -> Result<Option<SessionId>, StoreError> {
    let sql = format!("SELECT s.id FROM sessions s {NEWEST_FIRST} LIMIT 1");
    let id = conn
        .prepare_cached(&sql)?
        .query_row([], |row| session_id(row, 0))
        .optional()?;
    Ok(id)
}

pub(crate) fn append_messages(
    conn: &mut Connection,
    id: &SessionId,
    messages: &[Message],
) -> Result<Vec<i64>, StoreError> {
    write(conn, |tx| append_in(tx, id, messages))
}

/// Appends `messages` inside the caller's transaction.
pub(crate) fn append_in(
    tx: &Transaction<'_>,
    id: &SessionId,
    messages: &[Message],
) -> Result<Vec<i64>, StoreError> {
    let title: Option<String> = tx
        .query_row(
            "SELECT title FROM sessions WHERE id = ?1",
            [id.as_str()],
            |row| row.get(0),
        )
        .optional()?
        .ok_or_else(|| StoreError::NoSuchSession(id.to_string()))?;
    if messages.is_empty() {
        return Ok(Vec::new());
    }
    let first_seq: i64 = tx.query_row(
        "SELECT coalesce(max(seq) + 1, 0) FROM messages WHERE session_id = ?1",
        [id.as_str()],
        |row| row.get(0),
    )?;
    let now = now_ms();
    let mut insert = tx.prepare_cached(
        "INSERT INTO messages
             (session_id, seq, role, content, tool_calls, tool_call_id, name, tool_names,
              created_at, provider_data)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    let mut seqs = Vec::with_capacity(messages.len());
    for (seq, message) in (first_seq..).zip(messages) {
        insert.execute(params![
            id.as_str(),
            seq,
            message.role.as_str(),
            message.content,
            encode_tool_calls(&message.tool_calls)?,
            message.tool_call_id,
            message.name,
            message.tool_names().join(" "),
            now,
            message.provider_data.as_ref().map(|v| v.to_string()),
        ])?;
        seqs.push(seq);
    }
    if title.is_none() {
        let title = messages
            .iter()
            .filter(|m| m.role == Role::User)
            .find_map(|m| title_from(&m.content));
        if let Some(title) = title {
            tx.execute(
                "UPDATE sessions SET title = ?2 WHERE id = ?1",
                params![id.as_str(), title],
            )?;
        }
    }
    touch(tx, id)?;
    Ok(seqs)
}

pub(crate) fn messages(
    conn: &Connection,
    id: &SessionId,
) -> Result<Vec<StoredMessage>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, role, content, tool_calls, tool_call_id, name, created_at, provider_data
         FROM messages WHERE session_id = ?1 ORDER BY seq",
    )?;
    let messages: Vec<StoredMessage> = stmt
        .query_map([id.as_str()], |row| {
            Ok(StoredMessage {
                seq: row.get(0)?,
                message: Message {
                    role: role(row, 1)?,
                    content: row.get(2)?,
                    tool_calls: decode_tool_calls(3, row.get(3)?)?,
                    tool_call_id: row.get(4)?,
                    name: row.get(5)?,
                    provider_data: decode_provider_data(7, row.get(7)?)?,
                },
                created_at: row.get(6)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    if messages.is_empty() {
        require_session(conn, id)?;
    }
    Ok(messages)
}

pub(crate) fn truncate_from(
    conn: &mut Connection,
    id: &SessionId,
    seq: i64,
) -> Result<usize, StoreError> {
    write(conn, |tx| {
        require_session(tx, id)?;
        let deleted = tx.execute(
            "DELETE FROM messages WHERE session_id = ?1 AND seq >= ?2",
            params![id.as_str(), seq],
        )?;
        if deleted > 0 {
            touch(tx, id)?;
        }
        Ok(deleted)
    })
}

pub(crate) fn set_model(
    conn: &mut Connection,
    id: &SessionId,
    model: &str,
) -> Result<(), StoreError> {
    write(conn, |tx| {
        let updated = tx.execute(
            "UPDATE sessions SET model = ?2 WHERE id = ?1",
            params![id.as_str(), model],
        )?;
        if updated == 0 {
            return Err(StoreError::NoSuchSession(id.to_string()));
        }
        Ok(())
    })
}

/// Set (or with `None` clear) the session's provider.
pub(crate) fn set_provider(
    conn: &mut Connection,
    id: &SessionId,
    provider: Option<&str>,
) -> Result<(), StoreError> {
    write(conn, |tx| {
        let updated = tx.execute(
            "UPDATE sessions SET provider = ?2 WHERE id = ?1",
            params![id.as_str(), provider],
        )?;
        if updated == 0 {
            return Err(StoreError::NoSuchSession(id.to_string()));
        }
        Ok(())
    })
}

pub(crate) fn record_usage(
    conn: &mut Connection,
    id: &SessionId,
    model: &str,
    usage: &Usage,
) -> Result<(), StoreError> {
    write(conn, |tx| {
        require_session(tx, id)?;
        tx.execute(
            "INSERT INTO usage
                 (session_id, model, prompt_tokens, completion_tokens, cached_tokens, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                id.as_str(),
                model,
                sql_int(usage.prompt_tokens),
                sql_int(usage.completion_tokens),
                sql_int(usage.cached_tokens),
                now_ms(),
            ],
        )?;
        Ok(())
    })
}

pub(crate) fn delete_session(conn: &mut Connection, id: &SessionId) -> Result<bool, StoreError> {
    write(conn, |tx| {
        // Explicit rather than relying on ON DELETE CASCADE alone, so the outcome does not depend
        // on the connection having foreign keys enabled. The delete trigger updates the index.
        tx.execute("DELETE FROM messages WHERE session_id = ?1", [id.as_str()])?;
        tx.execute("DELETE FROM usage WHERE session_id = ?1", [id.as_str()])?;
        let deleted = tx.execute("DELETE FROM sessions WHERE id = ?1", [id.as_str()])?;
        Ok(deleted > 0)
    })
}

/// Problems SQLite finds in the database, its foreign keys and the full-text index, one line
/// each; empty when all is well.
pub(crate) fn integrity_check(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut problems: Vec<String> = conn
        .prepare("PRAGMA integrity_check")?
        .query_map([], |row| row.get::<_, String>(0))?
        .filter(|line| !matches!(line.as_deref(), Ok("ok")))
        .collect::<Result<_, _>>()?;
    let mut fk = conn.prepare("PRAGMA foreign_key_check")?;
    let mut rows = fk.query([])?;
    while let Some(row) = rows.next()? {
        let table: String = row.get(0)?;
        let rowid: Option<i64> = row.get(1)?;
        let parent: String = row.get(2)?;
        problems.push(format!(
            "row {} of {table} refers to a missing {parent} row",
            rowid.map_or_else(|| "?".to_owned(), |r| r.to_string())
        ));
    }
    // Rank 1 also compares the index with the messages table it is built from.
    let fts = conn.execute(
        "INSERT INTO messages_fts (messages_fts, rank) VALUES ('integrity-check', 1)",
        [],
    );
    match fts {
        Ok(_) => {}
        Err(e) if crate::error::sqlite_code(&e) == Some(rusqlite::ErrorCode::DatabaseCorrupt) => {
            problems.push(format!("full-text index: {e}"));
        }
        Err(e) => return Err(e.into()),
    }
    Ok(problems)
}

/// Run `f` in a `BEGIN IMMEDIATE` transaction, committing if it succeeds.
pub(crate) fn write<T>(
    conn: &mut Connection,
    f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let value = f(&tx)?;
    tx.commit()?;
    Ok(value)
}

pub(crate) fn require_session(conn: &Connection, id: &SessionId) -> Result<(), StoreError> {
    let exists = conn
        .prepare_cached("SELECT 1 FROM sessions WHERE id = ?1")?
        .exists([id.as_str()])?;
    if exists {
        Ok(())
    } else {
        Err(StoreError::NoSuchSession(id.to_string()))
    }
}

/// Now, or one past the newest `updated_at` if the clock has not moved on (or went back).
fn next_update_time(tx: &Transaction<'_>) -> rusqlite::Result<i64> {
    let newest: Option<i64> =
        tx.query_row("SELECT max(updated_at) FROM sessions", [], |row| row.get(0))?;
    Ok(newest.map_or(now_ms(), |newest| now_ms().max(newest.saturating_add(1))))
}

fn touch(tx: &Transaction<'_>, id: &SessionId) -> rusqlite::Result<()> {
    let now = next_update_time(tx)?;
    tx.execute(
        "UPDATE sessions SET updated_at = ?2 WHERE id = ?1",
        params![id.as_str(), now],
    )?;
    Ok(())
}

pub(crate) fn now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

/// The first non-blank line, trimmed, cut to [`TITLE_MAX_CHARS`] with an ellipsis.
fn title_from(content: &str) -> Option<String> {
    let line = content.lines().map(str::trim).find(|l| !l.is_empty())?;
    if line.chars().count() <= TITLE_MAX_CHARS {
        return Some(line.to_owned());
    }
    let cut: String = line.chars().take(TITLE_MAX_CHARS - 1).collect();
    Some(format!("{}…", cut.trim_end()))
}

/// Decode the `provider_data` column (`idx`): NULL is none; anything else must be JSON.
fn decode_provider_data(
    idx: usize,
    text: Option<String>,
) -> rusqlite::Result<Option<serde_json::Value>> {
    text.map(|t| {
        serde_json::from_str(&t).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e))
        })
    })
    .transpose()
}

fn encode_tool_calls(calls: &[ToolCall]) -> Result<Option<String>, StoreError> {
    if calls.is_empty() {
        return Ok(None);
    }
    serde_json::to_string(calls)
        .map(Some)
        .map_err(|e| StoreError::Sqlite(rusqlite::Error::ToSqlConversionFailure(Box::new(e))))
}

/// Decode the `tool_calls` column (`idx`): NULL is no calls. Arguments are a JSON string holding
/// the model's raw text, so invalid argument JSON survives the round trip untouched.
pub(crate) fn decode_tool_calls(
    idx: usize,
    text: Option<String>,
) -> rusqlite::Result<Vec<ToolCall>> {
    match text {
        None => Ok(Vec::new()),
        Some(text) => serde_json::from_str(&text)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e))),
    }
}

pub(crate) fn role(row: &Row<'_>, idx: usize) -> rusqlite::Result<Role> {
    let text: String = row.get(idx)?;
    Role::parse(&text).map_err(|unknown| {
        rusqlite::Error::FromSqlConversionFailure(
            idx,
            Type::Text,
            format!("unknown role {unknown:?}").into(),
        )
    })
}

pub(crate) fn session_id(row: &Row<'_>, idx: usize) -> rusqlite::Result<SessionId> {
    let text: String = row.get(idx)?;
    SessionId::parse(&text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e)))
}

pub(crate) fn session_from_row(row: &Row<'_>) -> rusqlite::Result<SessionRecord> {
    Ok(SessionRecord {
        id: session_id(row, 0)?,
        title: row.get(1)?,
        model: row.get(2)?,
        source: row.get(3)?,
        cwd: row.get(4)?,
        provider: row.get(12)?,
        created_at: row.get(5)?,
        updated_at: row.get(6)?,
        message_count: count(row.get(7)?),
        usage: Usage {
            prompt_tokens: count(row.get(8)?),
            completion_tokens: count(row.get(9)?),
            cached_tokens: count(row.get(10)?),
            cache_write_tokens: count(row.get(11)?),
        },
    })
}

/// SQLite integers are signed; counts are stored from `u64` and saturate rather than wrap.
pub(crate) fn sql_int(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

pub(crate) fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn db() -> Connection {
        crate::database::open_memory(&crate::migrations::STATE).unwrap()
    }

    fn new_session(conn: &mut Connection, id: &str) -> SessionId {
        let id = SessionId::parse(id).unwrap();
        create_session(
            conn,
            &NewSession {
                id: id.clone(),
                model: "m".into(),
                source: "cli".into(),
                cwd: "/w".into(),
            },
        )
        .unwrap();
        id
    }

    #[test]
    fn titles_come_from_the_first_non_blank_line_and_are_bounded() {
        assert_eq!(
            title_from("\n  fix the build  \nplease").as_deref(),
            Some("fix the build")
        );
        assert_eq!(title_from(" \n\t\n"), None);
        let long = "é".repeat(100);
        let title = title_from(&long).unwrap();
        assert_eq!(title.chars().count(), TITLE_MAX_CHARS);
        assert!(title.ends_with('…'));
        let exact = "x".repeat(TITLE_MAX_CHARS);
        assert_eq!(title_from(&exact).unwrap(), exact);
    }

    #[test]
    fn title_is_set_once_from_a_user_message() {
        let mut conn = db();
        let id = new_session(&mut conn, "s1");
        append_messages(&mut conn, &id, &[Message::system("you are helpful")]).unwrap();
        assert_eq!(session(&conn, &id).unwrap().unwrap().title, None);
        append_messages(
            &mut conn,
            &id,
            &[
                Message::user("first question\nmore"),
                Message::user("second"),
            ],
        )
        .unwrap();
        append_messages(&mut conn, &id, &[Message::user("later")]).unwrap();
        assert_eq!(
            session(&conn, &id).unwrap().unwrap().title.as_deref(),
            Some("first question")
        );
    }

    #[test]
    fn updated_at_strictly_increases_across_sessions() {
        let mut conn = db();
        let a = new_session(&mut conn, "a");
        let b = new_session(&mut conn, "b");
        append_messages(&mut conn, &a, &[Message::user("hi")]).unwrap();
        let (ra, rb) = (
            session(&conn, &a).unwrap().unwrap(),
            session(&conn, &b).unwrap().unwrap(),
        );
        assert!(ra.updated_at > rb.updated_at, "{ra:?} {rb:?}");
        assert_eq!(latest_session(&conn).unwrap(), Some(a));
    }

    #[test]
    fn unknown_sessions_are_reported_not_created() {
        let mut conn = db();
        let ghost = SessionId::parse("ghost").unwrap();
        for err in [
            append_messages(&mut conn, &ghost, &[Message::user("x")]).unwrap_err(),
            messages(&conn, &ghost).unwrap_err(),
            truncate_from(&mut conn, &ghost, 0).unwrap_err(),
            set_model(&mut conn, &ghost, "m").unwrap_err(),
            record_usage(&mut conn, &ghost, "m", &Usage::default()).unwrap_err(),
        ] {
            assert!(
                matches!(&err, StoreError::NoSuchSession(id) if id == "ghost"),
                "{err}"
            );
        }
        assert!(!delete_session(&mut conn, &ghost).unwrap());
        assert_eq!(list_sessions(&conn, 10).unwrap(), []);
    }

    #[test]
    fn creating_a_session_twice_is_an_error() {
        let mut conn = db();
        let id = new_session(&mut conn, "dup");
        let err = create_session(
            &mut conn,
            &NewSession {
                id,
                model: "other".into(),
                source: "cli".into(),
                cwd: String::new(),
            },
        )
        .unwrap_err();
        assert!(matches!(err, StoreError::SessionExists(_)), "{err}");
    }

    #[test]
    fn usage_is_summed_per_session() {
        let mut conn = db();
        let a = new_session(&mut conn, "a");
        let b = new_session(&mut conn, "b");
        let u = |p, c, k| Usage {
            prompt_tokens: p,
            completion_tokens: c,
            cached_tokens: k,
            cache_write_tokens: 0,
        };
        record_usage(&mut conn, &a, "m1", &u(10, 2, 4)).unwrap();
        record_usage(&mut conn, &a, "m2", &u(5, 1, 0)).unwrap();
        record_usage(&mut conn, &b, "m1", &u(100, 100, 100)).unwrap();
        assert_eq!(session(&conn, &a).unwrap().unwrap().usage, u(15, 3, 4));
        assert!(delete_session(&mut conn, &b).unwrap());
        let left: i64 = conn
            .query_row("SELECT count(*) FROM usage", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 2);
    }

    #[test]
    fn integrity_check_notices_an_index_out_of_step_with_messages() {
        let mut conn = db();
        let id = new_session(&mut conn, "s");
        append_messages(
            &mut conn,
            &id,
            &[Message::user("alpha beta"), Message::user("gamma")],
        )
        .unwrap();
        assert_eq!(integrity_check(&conn).unwrap(), Vec::<String>::new());
        // Change a message behind the triggers' back.
        conn.execute_batch(
            "DROP TRIGGER messages_fts_update;
             UPDATE messages SET content = 'delta' WHERE seq = 0;",
        )
        .unwrap();
        let problems = integrity_check(&conn).unwrap();
        assert!(!problems.is_empty(), "the damaged index went unnoticed");
    }
}
