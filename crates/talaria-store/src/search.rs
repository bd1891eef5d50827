//! Full-text search over message text and tool names.
//!
//! User text never reaches FTS5 as query syntax: every term (split at whitespace) becomes a quoted
//! phrase, and the phrases are ANDed. So `foo-bar`, a stray `"`, `*`, `NEAR(` or `OR` are
//! searched for as words, and a query can never be a syntax error.

use rusqlite::{Connection, params};
use talaria_core::{Role, SessionId};

use crate::error::StoreError;
use crate::sessions::{role, session_id};

/// One matching message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchHit {
    pub session_id: SessionId,
    pub title: Option<String>,
    pub seq: i64,
    pub role: Role,
    /// Text around the match, matched terms marked `«like this»`, cuts marked `…`.
    pub snippet: String,
    /// The session's `updated_at`, unix milliseconds.
    pub updated_at: i64,
}

/// Tokens of context `snippet()` keeps around a match.
pub(crate) const SNIPPET_TOKENS: i32 = 16;

pub(crate) fn search(
    conn: &Connection,
    query: &str,
    limit: usize,
) -> Result<Vec<SearchHit>, StoreError> {
    let Some(fts_query) = fts_query(query) else {
        return Ok(Vec::new());
    };
    let mut stmt = conn.prepare_cached(
        "SELECT m.session_id, s.title, m.seq, m.role,
                snippet(messages_fts, -1, '«', '»', '…', ?3), s.updated_at
         FROM messages_fts
         JOIN messages m ON m.id = messages_fts.rowid
         JOIN sessions s ON s.id = m.session_id
         WHERE messages_fts MATCH ?1
         ORDER BY bm25(messages_fts), s.updated_at DESC, m.seq
         LIMIT ?2",
    )?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let hits = stmt
        .query_map(params![fts_query, limit, SNIPPET_TOKENS], |row| {
            Ok(SearchHit {
                session_id: session_id(row, 0)?,
                title: row.get(1)?,
                seq: row.get(2)?,
                role: role(row, 3)?,
                snippet: row.get(4)?,
                updated_at: row.get(5)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(hits)
}

/// Turn user text into an FTS5 query of quoted phrases, or `None` if nothing searchable is left.
pub(crate) fn fts_query(text: &str) -> Option<String> {
    let phrases: Vec<String> = text
        // Control characters split terms too: FTS5 reads the query as a C string, so a NUL
        // inside a phrase would cut it short and leave its quote unterminated.
        .split(|c: char| c.is_whitespace() || c.is_control())
        // A term without letters or digits tokenizes to nothing (FTS5 ignores such a phrase);
        // dropping it here lets a query of pure punctuation return nothing without a lookup.
        .filter(|term| term.chars().any(char::is_alphanumeric))
        .map(|term| format!("\"{}\"", term.replace('"', "\"\"")))
        .collect();
    (!phrases.is_empty()).then(|| phrases.join(" "))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use talaria_core::Message;

    use super::*;
    use crate::sessions::{NewSession, append_messages, create_session};

    #[test]
    fn user_text_becomes_quoted_phrases() {
        assert_eq!(
            fts_query("foo-bar baz").as_deref(),
            Some(r#""foo-bar" "baz""#)
        );
        assert_eq!(fts_query(r#"say "hi"#).as_deref(), Some(r#""say" """hi""#));
        assert_eq!(fts_query("NEAR(a b)").as_deref(), Some(r#""NEAR(a" "b)""#));
        assert_eq!(fts_query("  * - ( ) \" "), None);
        assert_eq!(fts_query(""), None);
        assert_eq!(fts_query("a\u{0}b").as_deref(), Some(r#""a" "b""#));
    }

    #[test]
    fn every_hostile_query_is_valid_fts5() {
        let mut conn = crate::database::open_memory(&crate::migrations::STATE).unwrap();
        let id = SessionId::parse("s").unwrap();
        create_session(
            &mut conn,
            &NewSession {
                id: id.clone(),
                model: "m".into(),
                source: "cli".into(),
                cwd: String::new(),
            },
        )
        .unwrap();
        append_messages(&mut conn, &id, &[Message::user("the foo-bar near here")]).unwrap();
        for query in [
            "\"",
            "\"\"",
            "foo\"bar",
            "-foo",
            "foo*",
            "*",
            "NEAR(foo bar)",
            "NEAR",
            "(foo",
            "foo)",
            "AND",
            "foo OR",
            "NOT foo",
            "content:foo",
            "{content}: foo",
            "^foo",
            "foo + bar",
            "'",
            "\\",
            "foo\u{0}bar",
        ] {
            search(&conn, query, 10).unwrap_or_else(|e| panic!("query {query:?} failed: {e}"));
        }
        assert_eq!(search(&conn, "foo-bar", 10).unwrap().len(), 1);
        assert_eq!(
            search(&conn, "NEAR", 10).unwrap().len(),
            1,
            "NEAR is just a word"
        );
    }
}
