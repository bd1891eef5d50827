//! Versioned schema migrations.
//!
//! This module owns the database schema and its history. The version lives in
//! `PRAGMA user_version`; `PRAGMA application_id` marks the file as Talaria's. Migrations run in
//! order, each in its own `BEGIN IMMEDIATE` transaction together with the version bump, so a
//! crash leaves the database at the old version or the new one, never in between.
//!
//! It must never touch a database it does not understand: a file that belongs to another program
//! is refused as [`StoreError::Corrupt`], one written by a newer Talaria as
//! [`StoreError::TooNew`], in both cases before anything is written.
//!
//! Schema history:
//! - v1: `sessions` (id, title, model, timestamps) and `messages` (per-session `seq` from 0,
//!   role, content, tool calls as JSON text, tool_call_id, name, created_at).
//! - v2: `messages.tool_names` (space-separated tool names, backfilled) and the external-content
//!   FTS5 table `messages_fts` over (content, tool_names), kept in step by triggers.
//! - v3: `sessions.source` and `sessions.cwd`, and the `usage` table of per-call token counts.
//! - v4: `session_keys` (a caller's name for a session, owned by a uid) and `turn_requests`
//!   (submitted turns by idempotency id: running, done with the answer, or failed).
//! - v5: the skill registry: `skills` (name, look-alike skeleton, state, pinned, current and
//!   pending version, projected hash), `skill_versions` (content-addressed, with provenance),
//!   `skill_files` (each version's files) and `skill_audit` (append-only, hash-chained). Triggers
//!   refuse any UPDATE or DELETE of versions, files and audit rows.
//! - v6: `messages.provider_data`: JSON a provider needs back verbatim (Anthropic's signed
//!   thinking blocks), NULL for every message written before and for most written after.
//! - v7: the learning loop's bookkeeping: `skill_usage` (per skill: uses, views, patches, last
//!   use, when the curator marked it stale) and `skill_catalogue_fts`, an FTS5 table over the
//!   name and description of active skills that ranks the prompt's catalogue (rebuilt from the
//!   registry whenever a catalogue is computed, so it holds nothing the registry does not).
//! - v8: `session_keys.user`: the person a bus caller vouches for (the gateway's API key id);
//!   keys made before it belong to the caller's `default` user.
//! - v9: usage accounting: `usage.provider`, `usage.task` (`turn`, `compression`, `title`,
//!   `review`, `memory_nudge`; earlier rows are `turn`), `usage.cache_write_tokens` and
//!   `usage.cost` (US dollars from the catalogue's prices at record time, NULL when unknown);
//!   `sessions.provider`, the provider chosen for the session (NULL: the configured one).
//! - v10: `session_keys.surface`: the surface the session's person came in on (`owner`,
//!   `allowlisted_user`, `webhook`), which narrows every tool call's sandbox profile; it can only
//!   ever narrow. Keys made before it were all made by the gateway or the scheduler on behalf
//!   of someone other than the owner at the CLI, so they become `allowlisted_user`.
//! - v11: `skill_audit.action` may also be `approve_profile` (the owner approved the sandbox
//!   profile an agent-written version declares). SQLite cannot change a CHECK constraint, so
//!   the table is rebuilt with every row copied verbatim (the hash chain is unchanged) and its
//!   append-only triggers made again.

use rusqlite::Connection;
use talaria_core::ToolCall;

use crate::database::{self, Durability, Legacy, Migration, Schema};
use crate::error::StoreError;

/// The schema version this build writes and understands.
pub const SCHEMA_VERSION: u32 = 11;

/// `PRAGMA application_id` of a Talaria database: "TALA" in ASCII.
const APPLICATION_ID: i32 = 0x5441_4C41;

/// `state.db`: the agent's sessions, messages, usage, turn requests and skill registry.
pub(crate) static STATE: Schema = Schema {
    application_id: APPLICATION_ID,
    migrations: MIGRATIONS,
    durability: Durability::Normal,
    legacy: Legacy::None,
};

/// Every migration, oldest first. Never edit a released entry: add a new one.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "sessions and messages",
        apply: v1_sessions_and_messages,
    },
    Migration {
        version: 2,
        name: "full-text search",
        apply: v2_full_text_search,
    },
    Migration {
        version: 3,
        name: "usage and session origin",
        apply: v3_usage_and_session_origin,
    },
    Migration {
        version: 4,
        name: "session keys and turn requests",
        apply: v4_session_keys_and_turn_requests,
    },
    Migration {
        version: 5,
        name: "skill registry",
        apply: v5_skill_registry,
    },
    Migration {
        version: 6,
        name: "message provider data",
        apply: v6_message_provider_data,
    },
    Migration {
        version: 7,
        name: "skill usage and catalogue",
        apply: v7_skill_usage_and_catalogue,
    },
    Migration {
        version: 8,
        name: "session key user",
        apply: v8_session_key_user,
    },
    Migration {
        version: 9,
        name: "usage accounting and session provider",
        apply: v9_usage_accounting_and_session_provider,
    },
    Migration {
        version: 10,
        name: "session key surface",
        apply: v10_session_key_surface,
    },
    Migration {
        version: 11,
        name: "audit action approve_profile",
        apply: v11_audit_approve_profile,
    },
];

fn v11_audit_approve_profile(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE skill_audit_v11 (
             seq       INTEGER PRIMARY KEY NOT NULL CHECK (seq >= 1),
             at        INTEGER NOT NULL,
             action    TEXT NOT NULL CHECK (action IN ('create', 'patch', 'delete', 'approve',
                           'reject', 'rollback', 'import', 'external_edit', 'approve_profile')),
             skill     TEXT NOT NULL,
             version   TEXT,
             actor     TEXT NOT NULL,
             reason    TEXT NOT NULL,
             prev_hash TEXT NOT NULL,
             hash      TEXT NOT NULL UNIQUE
         ) STRICT;
         INSERT INTO skill_audit_v11 SELECT * FROM skill_audit ORDER BY seq;
         DROP TABLE skill_audit;
         ALTER TABLE skill_audit_v11 RENAME TO skill_audit;
         CREATE INDEX skill_audit_by_skill ON skill_audit (skill, seq);
         CREATE TRIGGER skill_audit_no_update BEFORE UPDATE ON skill_audit BEGIN
             SELECT RAISE (ABORT, 'skill_audit is append-only');
         END;
         CREATE TRIGGER skill_audit_no_delete BEFORE DELETE ON skill_audit BEGIN
             SELECT RAISE (ABORT, 'skill_audit is append-only');
         END;",
    )
}

fn v10_session_key_surface(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "ALTER TABLE session_keys ADD COLUMN surface TEXT NOT NULL DEFAULT 'allowlisted_user';",
    )
}

fn v9_usage_accounting_and_session_provider(conn: &Connection) -> rusqlite::Result<()> {
    // Rows written before v9 were all turn-loop calls of an unrecorded provider and price.
    conn.execute_batch(
        "ALTER TABLE usage ADD COLUMN provider TEXT;
         ALTER TABLE usage ADD COLUMN task TEXT NOT NULL DEFAULT 'turn';
         ALTER TABLE usage ADD COLUMN cache_write_tokens INTEGER NOT NULL DEFAULT 0;
         ALTER TABLE usage ADD COLUMN cost REAL;
         CREATE INDEX usage_by_time ON usage (created_at);
         ALTER TABLE sessions ADD COLUMN provider TEXT;",
    )
}

fn v7_skill_usage_and_catalogue(conn: &Connection) -> rusqlite::Result<()> {
    // Counters, not history: the registry's audit log is the history. A row exists once a skill
    // was used, viewed, patched or marked stale.
    conn.execute_batch(
        "CREATE TABLE skill_usage (
             name         TEXT PRIMARY KEY NOT NULL,
             uses         INTEGER NOT NULL DEFAULT 0 CHECK (uses >= 0),
             views        INTEGER NOT NULL DEFAULT 0 CHECK (views >= 0),
             patches      INTEGER NOT NULL DEFAULT 0 CHECK (patches >= 0),
             last_used_at INTEGER,
             stale_since  INTEGER
         ) STRICT;
         CREATE VIRTUAL TABLE skill_catalogue_fts USING fts5 (
             name, description, tokenize = 'porter unicode61'
         );",
    )
}

fn v8_session_key_user(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "ALTER TABLE session_keys ADD COLUMN user TEXT NOT NULL DEFAULT 'default';
         CREATE INDEX session_keys_by_person ON session_keys (owner_uid, user);
         CREATE INDEX session_keys_by_session ON session_keys (session_id);",
    )
}

fn v6_message_provider_data(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch("ALTER TABLE messages ADD COLUMN provider_data TEXT;")
}

fn v1_sessions_and_messages(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE sessions (
             id         TEXT PRIMARY KEY NOT NULL,
             title      TEXT,
             model      TEXT NOT NULL,
             created_at INTEGER NOT NULL,
             updated_at INTEGER NOT NULL
         ) STRICT;
         CREATE INDEX sessions_by_update ON sessions (updated_at);

         CREATE TABLE messages (
             id           INTEGER PRIMARY KEY,
             session_id   TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
             seq          INTEGER NOT NULL CHECK (seq >= 0),
             role         TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant', 'tool')),
             content      TEXT NOT NULL,
             tool_calls   TEXT,
             tool_call_id TEXT,
             name         TEXT,
             created_at   INTEGER NOT NULL,
             UNIQUE (session_id, seq)
         ) STRICT;",
    )
}

fn v2_full_text_search(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch("ALTER TABLE messages ADD COLUMN tool_names TEXT NOT NULL DEFAULT '';")?;
    // Backfilled in Rust rather than with SQLite's JSON functions so the names are derived by the
    // same decoder the store reads messages with.
    let mut select = conn.prepare(
        "SELECT id, tool_calls, name FROM messages
         WHERE tool_calls IS NOT NULL OR name IS NOT NULL",
    )?;
    let mut update = conn.prepare("UPDATE messages SET tool_names = ?2 WHERE id = ?1")?;
    let mut rows = select.query([])?;
    while let Some(row) = rows.next()? {
        let id: i64 = row.get(0)?;
        let calls = crate::sessions::decode_tool_calls(1, row.get(1)?)?;
        let name: Option<String> = row.get(2)?;
        let names: Vec<&str> = calls
            .iter()
            .map(|c: &ToolCall| c.name.as_str())
            .chain(name.as_deref())
            .collect();
        update.execute(rusqlite::params![id, names.join(" ")])?;
    }
    conn.execute_batch(
        "CREATE VIRTUAL TABLE messages_fts USING fts5 (
             content, tool_names,
             content = 'messages', content_rowid = 'id',
             tokenize = 'unicode61 remove_diacritics 2'
         );
         CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
             INSERT INTO messages_fts (rowid, content, tool_names)
             VALUES (new.id, new.content, new.tool_names);
         END;
         CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
             INSERT INTO messages_fts (messages_fts, rowid, content, tool_names)
             VALUES ('delete', old.id, old.content, old.tool_names);
         END;
         CREATE TRIGGER messages_fts_update AFTER UPDATE OF content, tool_names ON messages BEGIN
             INSERT INTO messages_fts (messages_fts, rowid, content, tool_names)
             VALUES ('delete', old.id, old.content, old.tool_names);
             INSERT INTO messages_fts (rowid, content, tool_names)
             VALUES (new.id, new.content, new.tool_names);
         END;
         INSERT INTO messages_fts (messages_fts) VALUES ('rebuild');",
    )
}

fn v4_session_keys_and_turn_requests(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE session_keys (
             key        TEXT PRIMARY KEY NOT NULL,
             owner_uid  INTEGER NOT NULL,
             session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
             created_at INTEGER NOT NULL
         ) STRICT;
         CREATE INDEX session_keys_by_owner ON session_keys (owner_uid);

         CREATE TABLE turn_requests (
             request_id  TEXT PRIMARY KEY NOT NULL,
             owner_uid   INTEGER NOT NULL,
             session_key TEXT NOT NULL,
             session_id  TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
             text        TEXT NOT NULL,
             state       TEXT NOT NULL CHECK (state IN ('running', 'done', 'failed')),
             answer      TEXT,
             error       TEXT,
             created_at  INTEGER NOT NULL,
             finished_at INTEGER
         ) STRICT;
         CREATE INDEX turn_requests_running ON turn_requests (state) WHERE state = 'running';",
    )
}

fn v5_skill_registry(conn: &Connection) -> rusqlite::Result<()> {
    // Versions and their files are immutable (a version is named by the hash of its files) and
    // the audit log is append-only; the triggers make that hold for any writer of this file, not
    // only for this crate's code, which has no statement that would try.
    conn.execute_batch(
        "CREATE TABLE skills (
             name            TEXT PRIMARY KEY NOT NULL,
             skeleton        TEXT NOT NULL UNIQUE,
             state           TEXT NOT NULL
                             CHECK (state IN ('active', 'quarantined', 'rejected', 'archived')),
             pinned          INTEGER NOT NULL DEFAULT 0 CHECK (pinned IN (0, 1)),
             current_version TEXT NOT NULL,
             pending_version TEXT,
             projected_hash  TEXT,
             created_at      INTEGER NOT NULL,
             updated_at      INTEGER NOT NULL
         ) STRICT;

         CREATE TABLE skill_versions (
             hash              TEXT PRIMARY KEY NOT NULL,
             name              TEXT NOT NULL,
             parent            TEXT,
             author            TEXT NOT NULL CHECK (author IN ('agent', 'user', 'import')),
             session_id        TEXT,
             untrusted_context INTEGER NOT NULL CHECK (untrusted_context IN (0, 1)),
             created_at        INTEGER NOT NULL
         ) STRICT;
         CREATE INDEX skill_versions_by_name ON skill_versions (name, created_at);

         CREATE TABLE skill_files (
             version    TEXT NOT NULL REFERENCES skill_versions (hash),
             path       TEXT NOT NULL,
             executable INTEGER NOT NULL CHECK (executable IN (0, 1)),
             sha256     TEXT NOT NULL,
             content    BLOB NOT NULL,
             PRIMARY KEY (version, path)
         ) STRICT, WITHOUT ROWID;

         CREATE TABLE skill_audit (
             seq       INTEGER PRIMARY KEY NOT NULL CHECK (seq >= 1),
             at        INTEGER NOT NULL,
             action    TEXT NOT NULL CHECK (action IN ('create', 'patch', 'delete', 'approve',
                           'reject', 'rollback', 'import', 'external_edit')),
             skill     TEXT NOT NULL,
             version   TEXT,
             actor     TEXT NOT NULL,
             reason    TEXT NOT NULL,
             prev_hash TEXT NOT NULL,
             hash      TEXT NOT NULL UNIQUE
         ) STRICT;
         CREATE INDEX skill_audit_by_skill ON skill_audit (skill, seq);

         CREATE TRIGGER skill_audit_no_update BEFORE UPDATE ON skill_audit BEGIN
             SELECT RAISE (ABORT, 'skill_audit is append-only');
         END;
         CREATE TRIGGER skill_audit_no_delete BEFORE DELETE ON skill_audit BEGIN
             SELECT RAISE (ABORT, 'skill_audit is append-only');
         END;
         CREATE TRIGGER skill_versions_no_update BEFORE UPDATE ON skill_versions BEGIN
             SELECT RAISE (ABORT, 'skill versions are immutable');
         END;
         CREATE TRIGGER skill_versions_no_delete BEFORE DELETE ON skill_versions BEGIN
             SELECT RAISE (ABORT, 'skill versions are immutable');
         END;
         CREATE TRIGGER skill_files_no_update BEFORE UPDATE ON skill_files BEGIN
             SELECT RAISE (ABORT, 'skill files are immutable');
         END;
         CREATE TRIGGER skill_files_no_delete BEFORE DELETE ON skill_files BEGIN
             SELECT RAISE (ABORT, 'skill files are immutable');
         END;",
    )
}

fn v3_usage_and_session_origin(conn: &Connection) -> rusqlite::Result<()> {
    // Sessions older than v3 can only have come from the CLI; their directory was not recorded.
    conn.execute_batch(
        "ALTER TABLE sessions ADD COLUMN source TEXT NOT NULL DEFAULT 'cli';
         ALTER TABLE sessions ADD COLUMN cwd TEXT NOT NULL DEFAULT '';

         CREATE TABLE usage (
             id                INTEGER PRIMARY KEY,
             session_id        TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
             model             TEXT NOT NULL,
             prompt_tokens     INTEGER NOT NULL,
             completion_tokens INTEGER NOT NULL,
             cached_tokens     INTEGER NOT NULL,
             created_at        INTEGER NOT NULL
         ) STRICT;
         CREATE INDEX usage_by_session ON usage (session_id);",
    )
}

/// Bring the database on `conn` forward to schema `version` (`1..=SCHEMA_VERSION`), applying
/// each missing migration in order. A database already at or past `version` is left alone:
/// there are no downgrades.
///
/// [`Store::open`](crate::Store::open) migrates to the latest version by itself; this is for
/// tests and tools that need a database at an older version, e.g. to test an upgrade.
///
/// # Errors
/// [`StoreError::UnknownSchemaVersion`] for a version this build does not know,
/// [`StoreError::Corrupt`] if the database is not Talaria's, [`StoreError::TooNew`] if it is
/// newer than this build, and [`StoreError::Migration`] if a step fails (that step is rolled
/// back).
pub fn migrate_to(conn: &Connection, version: u32) -> Result<(), StoreError> {
    let path = database::connection_path(conn);
    database::migrate(conn, &path, &STATE, version).map_err(|e| e.at(&path))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn version(conn: &Connection) -> i64 {
        database::user_version(conn).unwrap()
    }

    #[test]
    fn migrations_are_numbered_in_order_up_to_the_schema_version() {
        let versions: Vec<u32> = MIGRATIONS.iter().map(|m| m.version).collect();
        let expected: Vec<u32> = (1..=SCHEMA_VERSION).collect();
        assert_eq!(versions, expected);
    }

    #[test]
    fn migrates_step_by_step_and_never_backwards() {
        let conn = Connection::open_in_memory().unwrap();
        migrate_to(&conn, 1).unwrap();
        assert_eq!(version(&conn), 1);
        let has_fts = |conn: &Connection| {
            conn.query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name = 'messages_fts'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .unwrap()
        };
        assert_eq!(has_fts(&conn), 0);
        migrate_to(&conn, 2).unwrap();
        assert_eq!(has_fts(&conn), 1);
        migrate_to(&conn, SCHEMA_VERSION).unwrap();
        migrate_to(&conn, 1).unwrap();
        assert_eq!(version(&conn), i64::from(SCHEMA_VERSION));
    }

    #[test]
    fn unknown_target_versions_are_refused() {
        let conn = Connection::open_in_memory().unwrap();
        for requested in [0, SCHEMA_VERSION + 1] {
            let err = migrate_to(&conn, requested).unwrap_err();
            assert!(
                matches!(err, StoreError::UnknownSchemaVersion { requested: r, .. } if r == requested),
                "{err}"
            );
        }
        assert_eq!(version(&conn), 0, "nothing was applied");
    }

    #[test]
    fn v2_backfills_tool_names_and_the_index() {
        let conn = Connection::open_in_memory().unwrap();
        migrate_to(&conn, 1).unwrap();
        conn.execute_batch(
            r#"INSERT INTO sessions VALUES ('s', NULL, 'm', 1, 1);
               INSERT INTO messages (session_id, seq, role, content, tool_calls, tool_call_id, name, created_at)
               VALUES ('s', 0, 'assistant', '', '[{"id":"a","name":"read_file","arguments":"{}"},{"id":"b","name":"grep","arguments":"x"}]', NULL, NULL, 1),
                      ('s', 1, 'tool', 'file body', NULL, 'a', 'read_file', 1),
                      ('s', 2, 'user', 'thanks', NULL, NULL, NULL, 1);"#,
        )
        .unwrap();
        migrate_to(&conn, 2).unwrap();
        let names: Vec<String> = conn
            .prepare("SELECT tool_names FROM messages ORDER BY seq")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(names, ["read_file grep", "read_file", ""]);
        let hits: i64 = conn
            .query_row(
                "SELECT count(*) FROM messages_fts WHERE messages_fts MATCH 'grep'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(hits, 1);
    }

    #[test]
    fn v11_keeps_the_audit_chain_and_its_triggers_and_allows_approve_profile() {
        let conn = Connection::open_in_memory().unwrap();
        migrate_to(&conn, 10).unwrap();
        conn.execute_batch(
            "INSERT INTO skill_audit VALUES (1, 1, 'create', 'n', 'h', 'agent', '', 'p', 'x');
             INSERT INTO skill_audit VALUES (2, 2, 'approve', 'n', 'h', 'user', '', 'x', 'y');",
        )
        .unwrap();
        assert!(
            conn.execute_batch(
                "INSERT INTO skill_audit VALUES (3, 3, 'approve_profile', 'n', 'h', 'user', '', 'y', 'z')"
            )
            .is_err(),
            "v10 does not know the action"
        );
        migrate_to(&conn, 11).unwrap();
        conn.execute_batch(
            "INSERT INTO skill_audit VALUES (3, 3, 'approve_profile', 'n', 'h', 'user', '', 'y', 'z')",
        )
        .unwrap();
        let rows: Vec<(i64, String, String)> = conn
            .prepare("SELECT seq, action, hash FROM skill_audit ORDER BY seq")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rows,
            [
                (1, "create".into(), "x".into()),
                (2, "approve".into(), "y".into()),
                (3, "approve_profile".into(), "z".into())
            ]
        );
        for statement in [
            "UPDATE skill_audit SET reason = 'x'",
            "DELETE FROM skill_audit",
        ] {
            let err = conn.execute_batch(statement).unwrap_err();
            assert!(
                err.to_string().contains("append-only"),
                "{statement}: {err}"
            );
        }
        assert!(
            conn.execute_batch(
                "INSERT INTO skill_audit VALUES (4, 4, 'bogus', 'n', 'h', 'user', '', 'z', 'w')"
            )
            .is_err()
        );
    }

    #[test]
    fn v5_skill_versions_files_and_audit_refuse_update_and_delete() {
        let conn = Connection::open_in_memory().unwrap();
        migrate_to(&conn, 5).unwrap();
        conn.execute_batch(
            "INSERT INTO skill_versions VALUES ('h', 'n', NULL, 'agent', NULL, 0, 1);
             INSERT INTO skill_files VALUES ('h', 'SKILL.md', 0, 'd', x'00');
             INSERT INTO skill_audit VALUES (1, 1, 'create', 'n', 'h', 'agent', '', 'p', 'x');",
        )
        .unwrap();
        for statement in [
            "UPDATE skill_audit SET reason = 'x'",
            "DELETE FROM skill_audit",
            "UPDATE skill_versions SET author = 'user'",
            "DELETE FROM skill_versions",
            "UPDATE skill_files SET content = x'01'",
            "DELETE FROM skill_files",
        ] {
            let err = conn.execute_batch(statement).unwrap_err();
            assert!(
                err.to_string().contains("append-only") || err.to_string().contains("immutable"),
                "{statement}: {err}"
            );
        }
    }

    #[test]
    fn a_foreign_sqlite_database_is_not_ours() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE accounts (id INTEGER PRIMARY KEY);")
            .unwrap();
        let err = migrate_to(&conn, SCHEMA_VERSION).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        assert_eq!(version(&conn), 0);
    }
}
