//! Whose sessions a reader may see, and the three ways `session_search` reads them: discovery
//! (ranked sessions, one hit each), scroll (a window of messages) and browse (most recent).
//!
//! Isolation is decided here, in SQL, so no caller can forget it: every query of this module
//! takes a [`SessionScope`] and never returns a session outside it. A bus person sees only the
//! sessions keyed to their caller uid and user; the owner sees unkeyed (CLI) sessions and the
//! keyed sessions of their own uid's default user.

use rusqlite::{Connection, named_params};
use talaria_core::person::DEFAULT_USER;
use talaria_core::{Person, Role, SessionId};

use crate::error::StoreError;
use crate::search::{SNIPPET_TOKENS, fts_query};
use crate::sessions::{
    NEWEST_FIRST, SESSION_COLUMNS, SessionRecord, StoredMessage, messages, role, session_from_row,
    session_id,
};

/// The sessions one reader may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionScope {
    /// The owner of the home: sessions without a key (the CLI's), and keyed sessions created by
    /// `uid` for its default user.
    Owner { uid: u32 },
    /// One person over the bus: sessions keyed by `uid` for `user`, nothing else.
    Remote { uid: u32, user: String },
}

impl SessionScope {
    /// The scope of a session that talks to `person`; `owner_uid` is the owner's uid.
    pub fn of(person: &Person, owner_uid: u32) -> Self {
        match person {
            Person::Owner => SessionScope::Owner { uid: owner_uid },
            Person::Remote { uid, user } => SessionScope::Remote {
                uid: *uid,
                user: user.as_str().to_owned(),
            },
        }
    }

    fn params(&self) -> (i64, u32, &str) {
        match self {
            SessionScope::Owner { uid } => (0, *uid, DEFAULT_USER),
            SessionScope::Remote { uid, user } => (1, *uid, user.as_str()),
        }
    }
}

/// `s.id` is visible to the scope bound as `:kind`, `:uid`, `:user`.
const IN_SCOPE: &str = "CASE :kind
        WHEN 0 THEN NOT EXISTS (SELECT 1 FROM session_keys k WHERE k.session_id = s.id)
                    OR EXISTS (SELECT 1 FROM session_keys k WHERE k.session_id = s.id
                               AND k.owner_uid = :uid AND k.user = :user)
        ELSE EXISTS (SELECT 1 FROM session_keys k WHERE k.session_id = s.id
                     AND k.owner_uid = :uid AND k.user = :user)
    END";

/// A session that matched a discovery search: its best message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionHit {
    pub session_id: SessionId,
    pub title: Option<String>,
    /// The best-ranked matching message.
    pub seq: i64,
    pub role: Role,
    /// Text around the match, matched terms marked `«like this»`, cuts marked `…`.
    pub snippet: String,
    /// The session's `updated_at`, unix milliseconds.
    pub updated_at: i64,
    /// How many of the session's messages matched.
    pub matches: u64,
}

pub(crate) fn discover(
    conn: &Connection,
    query: &str,
    scope: &SessionScope,
    exclude: Option<&SessionId>,
    limit: usize,
) -> Result<Vec<SessionHit>, StoreError> {
    let Some(fts) = fts_query(query) else {
        return Ok(Vec::new());
    };
    let (kind, uid, user) = scope.params();
    let sql = format!(
        "WITH hits AS (
             SELECT m.session_id AS sid, m.seq AS seq, m.role AS role,
                    snippet(messages_fts, -1, '«', '»', '…', :tokens) AS snip,
                    bm25(messages_fts) AS rank
             FROM messages_fts
             JOIN messages m ON m.id = messages_fts.rowid
             JOIN sessions s ON s.id = m.session_id
             WHERE messages_fts MATCH :query AND ({IN_SCOPE})
               AND (:exclude IS NULL OR s.id <> :exclude)
         ), ranked AS (
             SELECT *, row_number() OVER (PARTITION BY sid ORDER BY rank, seq) AS n,
                    count(*) OVER (PARTITION BY sid) AS total
             FROM hits
         )
         SELECT r.sid, s.title, r.seq, r.role, r.snip, s.updated_at, r.total
         FROM ranked r JOIN sessions s ON s.id = r.sid
         WHERE r.n = 1
         ORDER BY r.rank, s.updated_at DESC
         LIMIT :limit"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let hits = stmt
        .query_map(
            named_params! {
                ":query": fts,
                ":tokens": SNIPPET_TOKENS,
                ":kind": kind,
                ":uid": uid,
                ":user": user,
                ":exclude": exclude.map(SessionId::as_str),
                ":limit": i64::try_from(limit).unwrap_or(i64::MAX),
            },
            |row| {
                Ok(SessionHit {
                    session_id: session_id(row, 0)?,
                    title: row.get(1)?,
                    seq: row.get(2)?,
                    role: role(row, 3)?,
                    snippet: row.get(4)?,
                    updated_at: row.get(5)?,
                    matches: u64::try_from(row.get::<_, i64>(6)?).unwrap_or(0),
                })
            },
        )?
        .collect::<Result<_, _>>()?;
    Ok(hits)
}

pub(crate) fn recent(
    conn: &Connection,
    scope: &SessionScope,
    exclude: Option<&SessionId>,
    limit: usize,
) -> Result<Vec<SessionRecord>, StoreError> {
    let (kind, uid, user) = scope.params();
    let sql = format!(
        "{SESSION_COLUMNS} WHERE ({IN_SCOPE}) AND (:exclude IS NULL OR s.id <> :exclude)
         {NEWEST_FIRST} LIMIT :limit"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt
        .query_map(
            named_params! {
                ":kind": kind,
                ":uid": uid,
                ":user": user,
                ":exclude": exclude.map(SessionId::as_str),
                ":limit": i64::try_from(limit).unwrap_or(i64::MAX),
            },
            session_from_row,
        )?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

pub(crate) fn visible(
    conn: &Connection,
    scope: &SessionScope,
    id: &SessionId,
) -> Result<bool, StoreError> {
    let (kind, uid, user) = scope.params();
    let sql = format!("SELECT count(*) FROM sessions s WHERE s.id = :id AND ({IN_SCOPE})");
    let n: i64 = conn.prepare_cached(&sql)?.query_row(
        named_params! {":id": id.as_str(), ":kind": kind, ":uid": uid, ":user": user},
        |row| row.get(0),
    )?;
    Ok(n > 0)
}

/// Up to `before` messages before `seq`, the message at `seq`, and up to `after` after it;
/// `None` when the session does not exist or is outside the scope (the two look the same, so a
/// reader cannot probe for others' session ids).
pub(crate) fn window(
    conn: &Connection,
    scope: &SessionScope,
    id: &SessionId,
    seq: i64,
    before: usize,
    after: usize,
) -> Result<Option<Vec<StoredMessage>>, StoreError> {
    if !visible(conn, scope, id)? {
        return Ok(None);
    }
    let all = messages(conn, id)?;
    let at = all.partition_point(|m| m.seq < seq);
    let start = at.saturating_sub(before);
    let end = at.saturating_add(after).saturating_add(1).min(all.len());
    Ok(Some(
        all.get(start..end).map(<[_]>::to_vec).unwrap_or_default(),
    ))
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;
    use talaria_core::{Message, UserId};

    use super::*;
    use crate::requests::{SessionKey, bind_session_key};
    use crate::sessions::{NewSession, append_messages, create_session};

    fn session(conn: &mut Connection, id: &str, texts: &[&str]) -> SessionId {
        let id = SessionId::parse(id).unwrap();
        create_session(
            conn,
            &NewSession {
                id: id.clone(),
                model: "m".into(),
                source: "test".into(),
                cwd: String::new(),
            },
        )
        .unwrap();
        let messages: Vec<Message> = texts.iter().map(|t| Message::user(*t)).collect();
        append_messages(conn, &id, &messages).unwrap();
        id
    }

    fn key(conn: &mut Connection, id: &SessionId, uid: u32, user: &str) {
        bind_session_key(
            conn,
            &SessionKey {
                key: format!("{uid}-{user}-{id}"),
                owner_uid: uid,
                user: UserId::parse(user).unwrap(),
                session_id: id.clone(),
                surface: talaria_core::Surface::AllowlistedUser,
            },
        )
        .unwrap();
    }

    fn remote(uid: u32, user: &str) -> SessionScope {
        SessionScope::Remote {
            uid,
            user: user.into(),
        }
    }

    /// Owner at the CLI, alice and bob through the gateway (uid 900), a scheduler job (uid 901).
    fn people() -> (Connection, [SessionId; 5]) {
        let mut conn = crate::database::open_memory(&crate::migrations::STATE).unwrap();
        let cli = session(&mut conn, "cli", &["owner notes about ZEBRA"]);
        let alice = session(
            &mut conn,
            "alice",
            &["my secret word is ZEBRA", "ZEBRA again"],
        );
        key(&mut conn, &alice, 900, "alice");
        let bob = session(&mut conn, "bob", &["bob likes ZEBRA crossings"]);
        key(&mut conn, &bob, 900, "bob");
        let job = session(&mut conn, "job", &["ZEBRA report"]);
        key(&mut conn, &job, 901, "default");
        let mine = session(&mut conn, "mine", &["ZEBRA from my own gateway"]);
        key(&mut conn, &mine, 1000, "default");
        (conn, [cli, alice, bob, job, mine])
    }

    fn ids(hits: &[SessionHit]) -> Vec<&str> {
        hits.iter().map(|h| h.session_id.as_str()).collect()
    }

    #[test]
    fn a_person_never_discovers_another_persons_sessions() {
        let (conn, _) = people();
        let bob = discover(&conn, "secret word", &remote(900, "bob"), None, 50).unwrap();
        assert!(bob.is_empty(), "bob found alice's secret: {bob:?}");
        let bob = discover(&conn, "ZEBRA", &remote(900, "bob"), None, 50).unwrap();
        assert_eq!(ids(&bob), ["bob"]);
        let alice = discover(&conn, "ZEBRA", &remote(900, "alice"), None, 50).unwrap();
        assert_eq!(ids(&alice), ["alice"]);
        assert_eq!(
            alice[0].matches, 2,
            "one hit per session, counting its matches"
        );
        // Same user name under another caller uid is another person.
        assert!(
            discover(&conn, "ZEBRA", &remote(901, "alice"), None, 50)
                .unwrap()
                .is_empty()
        );
        let owner = discover(&conn, "ZEBRA", &SessionScope::Owner { uid: 1000 }, None, 50).unwrap();
        let mut seen = ids(&owner);
        seen.sort_unstable();
        assert_eq!(seen, ["cli", "mine"]);
    }

    #[test]
    fn browse_and_scroll_respect_the_scope() {
        let (conn, [cli, alice, ..]) = people();
        let recent_ids = |scope: &SessionScope, exclude: Option<&SessionId>| -> Vec<String> {
            recent(&conn, scope, exclude, 10)
                .unwrap()
                .into_iter()
                .map(|r| r.id.to_string())
                .collect()
        };
        assert_eq!(recent_ids(&remote(900, "alice"), None), ["alice"]);
        assert_eq!(
            recent_ids(&SessionScope::Owner { uid: 1000 }, None),
            ["mine", "cli"]
        );
        assert_eq!(
            recent_ids(&SessionScope::Owner { uid: 1000 }, Some(&cli)),
            ["mine"]
        );
        assert!(
            window(&conn, &remote(900, "bob"), &alice, 0, 5, 5)
                .unwrap()
                .is_none()
        );
        let own = window(&conn, &remote(900, "alice"), &alice, 1, 0, 0)
            .unwrap()
            .unwrap();
        assert_eq!(own.len(), 1);
        assert_eq!(own[0].message.content, "ZEBRA again");
    }

    #[test]
    fn discovery_ranks_sessions_and_scroll_windows_clip() {
        let mut conn = crate::database::open_memory(&crate::migrations::STATE).unwrap();
        let texts: Vec<String> = (0..10).map(|i| format!("message {i}")).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let long = session(&mut conn, "long", &refs);
        session(
            &mut conn,
            "weak",
            &["rust is a word among many other words in this line"],
        );
        session(&mut conn, "strong", &["rust rust rust"]);
        let owner = SessionScope::Owner { uid: 1 };
        let hits = discover(&conn, "rust", &owner, None, 10).unwrap();
        assert_eq!(ids(&hits), ["strong", "weak"]);
        assert!(hits[0].snippet.contains("«rust»"), "{}", hits[0].snippet);
        let seqs = |w: Vec<StoredMessage>| w.iter().map(|m| m.seq).collect::<Vec<_>>();
        assert_eq!(
            seqs(window(&conn, &owner, &long, 5, 2, 1).unwrap().unwrap()),
            [3, 4, 5, 6]
        );
        assert_eq!(
            seqs(window(&conn, &owner, &long, 0, 3, 1).unwrap().unwrap()),
            [0, 1]
        );
        assert_eq!(
            seqs(window(&conn, &owner, &long, 9, 1, 5).unwrap().unwrap()),
            [8, 9]
        );
        assert!(
            discover(&conn, "\" * (", &owner, None, 10)
                .unwrap()
                .is_empty()
        );
    }
}
