use std::time::Duration;

use rusqlite::Connection;
use talaria_store::{OpenOptions, Store, StoreError, migrate_to};

use super::{db_path, new_session, open};

fn short_timeout() -> OpenOptions {
    OpenOptions {
        busy_timeout: Duration::from_millis(100),
    }
}

fn dir_entries(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn open_creates_the_directory_and_uses_wal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/home/state.db");
    let store = open(&path).await;
    assert_eq!(store.path(), path);
    let mode: String = Connection::open(&path)
        .unwrap()
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_reported_and_left_alone() {
    let (dir, path) = db_path();
    let text = "these are my notes, not a database\n".repeat(100);
    std::fs::write(&path, &text).unwrap();

    let err = Store::open(&path).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { path: p, .. } if p == &path),
        "{err}"
    );
    let message = err.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(
        message.contains("not a Talaria database or corrupt"),
        "{message}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    assert_eq!(
        dir_entries(dir.path()),
        ["state.db"],
        "no journal files left behind"
    );
}

#[tokio::test]
async fn another_programs_sqlite_database_is_not_migrated() {
    let (_dir, path) = db_path();
    Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE bookmarks (url TEXT); INSERT INTO bookmarks VALUES ('x');")
        .unwrap();
    let before = std::fs::read(&path).unwrap();
    let err = Store::open(&path).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[tokio::test]
async fn a_write_locked_by_another_connection_gives_locked() {
    let (_dir, path) = db_path();
    let store = Store::open_with(&path, short_timeout()).await.unwrap();
    let holder = Connection::open(&path).unwrap();
    holder
        .execute_batch(
            "BEGIN EXCLUSIVE;
             INSERT INTO sessions (id, model, created_at, updated_at) VALUES ('other', 'm', 1, 1);",
        )
        .unwrap();

    let err = store.create_session(new_session("mine")).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Locked { path: p } if p == &path),
        "{err}"
    );
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );

    holder.execute_batch("COMMIT").unwrap();
    store.create_session(new_session("mine")).await.unwrap();
    assert_eq!(store.list_sessions(10).await.unwrap().len(), 2);
}

#[tokio::test]
async fn opening_a_database_another_connection_has_locked_gives_locked() {
    let (_dir, path) = db_path();
    let holder = Connection::open(&path).unwrap();
    // v1 in rollback-journal mode, so an exclusive lock shuts out readers too and the upgrade
    // cannot even read the schema version.
    migrate_to(&holder, 1).unwrap();
    holder
        .execute_batch("BEGIN EXCLUSIVE; DELETE FROM sessions;")
        .unwrap();

    let err = Store::open_with(&path, short_timeout()).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Locked { path: p } if p == &path),
        "{err}"
    );

    holder.execute_batch("ROLLBACK").unwrap();
    drop(holder);
    Store::open_with(&path, short_timeout()).await.unwrap();
}

/// A Talaria database overwritten in the middle is refused at open (`quick_check`), with a
/// message naming the file and `talaria doctor`, and not one byte of it is written.
#[tokio::test]
async fn a_database_damaged_in_the_middle_is_refused_untouched() {
    let (_dir, path) = db_path();
    let store = open(&path).await;
    store.create_session(new_session("s")).await.unwrap();
    let messages = (0..2000)
        .map(|i| talaria_core::Message::user(format!("message {i}: some words to fill pages")))
        .collect();
    store
        .append_messages(&super::sid("s"), messages)
        .await
        .unwrap();
    drop(store);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2 / 4096 * 4096;
    bytes[middle..middle + 8192].fill(0x5A);
    std::fs::write(&path, &bytes).unwrap();

    let err = Store::open(&path).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Damaged { path: p, .. } | StoreError::Corrupt { path: p, .. } if p == &path),
        "{err}"
    );
    let message = err.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("talaria doctor"), "{message}");
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "not a byte written");
}

/// How long the check at open costs on a large store. Run by hand:
/// `cargo nextest run -p talaria-store --run-ignored only -E 'test(open_cost)' --no-capture`.
#[tokio::test]
#[ignore = "a measurement: builds a 100,000-message store"]
async fn open_cost_of_a_100k_message_store() {
    let (_dir, path) = db_path();
    let store = open(&path).await;
    for s in 0..100 {
        let id = format!("s{s}");
        store.create_session(new_session(&id)).await.unwrap();
        let messages = (0..1000)
            .map(|i| {
                talaria_core::Message::user(format!(
                    "message {i} of session {s}: a sentence of ordinary length that someone \
                     might type to an agent, with a few more words to make it realistic"
                ))
            })
            .collect();
        store
            .append_messages(&super::sid(&id), messages)
            .await
            .unwrap();
    }
    drop(store);
    let size = std::fs::metadata(&path).unwrap().len();
    let mut opens = Vec::new();
    for _ in 0..5 {
        let started = std::time::Instant::now();
        drop(open(&path).await);
        opens.push(started.elapsed());
    }
    let conn = Connection::open(&path).unwrap();
    let mut checks = Vec::new();
    for _ in 0..5 {
        let started = std::time::Instant::now();
        let _: String = conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .unwrap();
        checks.push(started.elapsed());
    }
    eprintln!(
        "100,000 messages, {} MiB: Store::open {opens:?}; PRAGMA quick_check alone {checks:?}",
        size / (1024 * 1024)
    );
}
