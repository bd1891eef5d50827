use talaria_core::{Message, Role, ToolCall, Usage};
use talaria_store::Store;

use super::{db_path, new_session, open, sid};

fn conversation() -> Vec<Message> {
    let read = ToolCall {
        id: "call_1".into(),
        name: "read_file".into(),
        arguments: r#"{"path":"src/main.rs"}"#.into(),
    };
    // What a model really sends sometimes: cut-off JSON, with odd whitespace and non-ASCII.
    let broken = ToolCall {
        id: "call_2".into(),
        name: "shell".into(),
        arguments: "{\"cmd\": \"echo héllo\",\n  ".into(),
    };
    vec![
        Message::system("You are Talaria."),
        Message::user("Why does the build fail?\nIt says linker error."),
        Message {
            // Anthropic's signed thinking, which must go back to the provider unchanged.
            provider_data: Some(serde_json::json!({"anthropic_thinking": [
                {"type": "thinking", "thinking": "Check main.rs — \"first\".", "signature": "EqQB+/="},
                {"type": "redacted_thinking", "data": "opaque"},
            ]})),
            ..Message::assistant("", vec![read.clone(), broken.clone()])
        },
        Message::tool_result(&read, "fn main() {}"),
        Message::tool_result(&broken, "error: invalid arguments"),
        Message::assistant("The linker cannot find libfoo.", Vec::new()),
    ]
}

#[tokio::test]
async fn a_conversation_with_tool_calls_round_trips_through_the_file() {
    let (_dir, path) = db_path();
    let store = open(&path).await;
    let id = sid("20260101-120000-abcdef");
    store
        .create_session(new_session(id.as_str()))
        .await
        .unwrap();

    let messages = conversation();
    let first = store
        .append_messages(&id, messages[..2].to_vec())
        .await
        .unwrap();
    let rest = store
        .append_messages(&id, messages[2..].to_vec())
        .await
        .unwrap();
    assert_eq!(first, [0, 1]);
    assert_eq!(rest, [2, 3, 4, 5]);
    store
        .record_usage(
            &id,
            "test-model",
            Usage {
                prompt_tokens: 120,
                completion_tokens: 30,
                cached_tokens: 100,
                cache_write_tokens: 0,
            },
        )
        .await
        .unwrap();
    store.set_model(&id, "bigger-model").await.unwrap();
    drop(store);

    let store = open(&path).await;
    let stored = store.messages(&id).await.unwrap();
    let seqs: Vec<i64> = stored.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, [0, 1, 2, 3, 4, 5]);
    let back: Vec<Message> = stored.iter().map(|m| m.message.clone()).collect();
    assert_eq!(back, messages);
    assert!(stored.iter().all(|m| m.created_at > 0));

    let record = store.session(&id).await.unwrap().unwrap();
    assert_eq!(record.title.as_deref(), Some("Why does the build fail?"));
    assert_eq!(record.model, "bigger-model");
    assert_eq!(record.source, "cli");
    assert_eq!(record.cwd, "/home/u/project");
    assert_eq!(record.message_count, 6);
    assert_eq!(record.usage.total(), 150);
    assert_eq!(record.usage.cached_tokens, 100);
    assert!(record.updated_at >= record.created_at);
    assert_eq!(store.integrity_check().await.unwrap(), Vec::<String>::new());
}

#[tokio::test]
async fn truncate_from_drops_the_tail_and_numbering_continues() {
    let store = Store::open_in_memory().await.unwrap();
    let id = sid("s");
    store.create_session(new_session("s")).await.unwrap();
    let batch: Vec<Message> = (0..5).map(|i| Message::user(format!("turn{i}"))).collect();
    store.append_messages(&id, batch).await.unwrap();
    let before = store.session(&id).await.unwrap().unwrap().updated_at;

    assert_eq!(store.truncate_from(&id, 3).await.unwrap(), 2);
    assert_eq!(store.truncate_from(&id, 3).await.unwrap(), 0);
    let after = store.session(&id).await.unwrap().unwrap();
    assert_eq!(after.message_count, 3);
    assert!(after.updated_at > before, "an undo counts as activity");

    let seqs = store
        .append_messages(&id, vec![Message::user("again")])
        .await
        .unwrap();
    assert_eq!(seqs, [3]);
    let contents: Vec<String> = store
        .messages(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.message.content)
        .collect();
    assert_eq!(contents, ["turn0", "turn1", "turn2", "again"]);

    assert!(store.search("turn4", 10).await.unwrap().is_empty());
    assert_eq!(store.search("turn2", 10).await.unwrap().len(), 1);
    assert_eq!(store.integrity_check().await.unwrap(), Vec::<String>::new());
}

#[tokio::test]
async fn sessions_are_listed_most_recently_updated_first() {
    let store = Store::open_in_memory().await.unwrap();
    for id in ["a", "b", "c"] {
        store.create_session(new_session(id)).await.unwrap();
    }
    store
        .append_messages(&sid("a"), vec![Message::user("hello")])
        .await
        .unwrap();
    let listed: Vec<String> = store
        .list_sessions(10)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id.to_string())
        .collect();
    assert_eq!(listed, ["a", "c", "b"]);
    assert_eq!(store.list_sessions(2).await.unwrap().len(), 2);
    assert_eq!(store.latest_session().await.unwrap(), Some(sid("a")));
    assert_eq!(
        Store::open_in_memory()
            .await
            .unwrap()
            .latest_session()
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn deleting_a_session_removes_its_messages_usage_and_search_hits() {
    let store = Store::open_in_memory().await.unwrap();
    for id in ["gone", "kept"] {
        store.create_session(new_session(id)).await.unwrap();
        store
            .append_messages(&sid(id), conversation())
            .await
            .unwrap();
        store
            .record_usage(&sid(id), "m", Usage::default())
            .await
            .unwrap();
    }
    assert_eq!(store.search("linker", 10).await.unwrap().len(), 4);

    assert!(store.delete_session(&sid("gone")).await.unwrap());
    assert!(!store.delete_session(&sid("gone")).await.unwrap());
    assert_eq!(store.session(&sid("gone")).await.unwrap(), None);
    let hits = store.search("linker", 10).await.unwrap();
    assert_eq!(hits.len(), 2);
    assert!(hits.iter().all(|h| h.session_id == sid("kept")));
    assert!(hits.iter().any(|h| h.role == Role::Assistant));
    assert_eq!(store.messages(&sid("kept")).await.unwrap().len(), 6);
    assert_eq!(store.integrity_check().await.unwrap(), Vec::<String>::new());
}
