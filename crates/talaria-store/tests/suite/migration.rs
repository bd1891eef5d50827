use rusqlite::Connection;
use talaria_core::{Message, Role, ToolCall};
use talaria_store::{SCHEMA_VERSION, Store, StoreError, migrate_to};

use super::{db_path, open, sid};

fn user_version(path: &std::path::Path) -> u32 {
    Connection::open(path)
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap()
}

#[tokio::test]
async fn a_v1_database_is_upgraded_with_its_data_intact_and_searchable() {
    let (_dir, path) = db_path();
    {
        let conn = Connection::open(&path).unwrap();
        migrate_to(&conn, 1).unwrap();
        // Rows exactly as a v1 build wrote them: no tool_names, source, cwd or usage yet.
        conn.execute_batch(
            r#"
            INSERT INTO sessions (id, title, model, created_at, updated_at)
            VALUES ('20250101-000000-aaaaaa', 'Old chat', 'old-model', 1000, 2000),
                   ('20250102-000000-bbbbbb', NULL, 'old-model', 3000, 3000);
            INSERT INTO messages (session_id, seq, role, content, tool_calls, tool_call_id, name, created_at)
            VALUES ('20250101-000000-aaaaaa', 0, 'user', 'Summarise the osprey report', NULL, NULL, NULL, 1000),
                   ('20250101-000000-aaaaaa', 1, 'assistant', '',
                    '[{"id":"c1","name":"web_fetch","arguments":"{\"url\": \"http"}]', NULL, NULL, 1500),
                   ('20250101-000000-aaaaaa', 2, 'tool', 'fetched 3 pages', NULL, 'c1', 'web_fetch', 1600),
                   ('20250101-000000-aaaaaa', 3, 'assistant', 'The osprey report says...', NULL, NULL, NULL, 2000);
            "#,
        )
        .unwrap();
    }
    assert_eq!(user_version(&path), 1);

    let store = open(&path).await;
    assert_eq!(user_version(&path), SCHEMA_VERSION);

    let id = sid("20250101-000000-aaaaaa");
    let record = store.session(&id).await.unwrap().unwrap();
    assert_eq!(record.title.as_deref(), Some("Old chat"));
    assert_eq!((record.created_at, record.updated_at), (1000, 2000));
    assert_eq!(record.source, "cli");
    assert_eq!(record.cwd, "");
    assert_eq!(record.message_count, 4);
    assert_eq!(record.usage.total(), 0);

    let messages = store.messages(&id).await.unwrap();
    assert_eq!(messages.len(), 4);
    assert_eq!(
        messages[1].message.tool_calls,
        [ToolCall {
            id: "c1".into(),
            name: "web_fetch".into(),
            arguments: r#"{"url": "http"#.into(),
        }]
    );
    assert_eq!(messages[2].created_at, 1600);

    assert_eq!(store.search("osprey", 10).await.unwrap().len(), 2);
    let by_tool: Vec<(i64, Role)> = store
        .search("web_fetch", 10)
        .await
        .unwrap()
        .iter()
        .map(|h| (h.seq, h.role))
        .collect();
    assert_eq!(by_tool.len(), 2, "call and result found by tool name");
    assert!(by_tool.contains(&(1, Role::Assistant)));

    // The upgraded database takes new writes like a new one.
    let seqs = store
        .append_messages(&id, vec![Message::user("and the heron one?")])
        .await
        .unwrap();
    assert_eq!(seqs, [4]);
    assert_eq!(store.search("heron", 10).await.unwrap().len(), 1);
    let other = sid("20250102-000000-bbbbbb");
    store
        .record_usage(&other, "old-model", talaria_core::Usage::default())
        .await
        .unwrap();
    assert_eq!(store.integrity_check().await.unwrap(), Vec::<String>::new());
}

#[tokio::test]
async fn a_database_from_a_newer_build_is_refused_untouched() {
    let (_dir, path) = db_path();
    {
        let store = open(&path).await;
        store
            .create_session(super::new_session("future"))
            .await
            .unwrap();
    }
    {
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
    }
    let before = std::fs::read(&path).unwrap();

    let err = Store::open(&path).await.unwrap_err();
    match &err {
        StoreError::TooNew {
            path: p,
            found,
            supported,
        } => {
            assert_eq!(p, &path);
            assert_eq!((*found, *supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
        }
        other => panic!("expected TooNew, got {other}"),
    }
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert_eq!(user_version(&path), SCHEMA_VERSION + 1);
}
