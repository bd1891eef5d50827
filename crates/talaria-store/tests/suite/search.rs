use talaria_core::{Message, Role, ToolCall};
use talaria_store::Store;

use super::{new_session, sid};

async fn store_with_history() -> Store {
    let store = Store::open_in_memory().await.unwrap();
    store.create_session(new_session("docs")).await.unwrap();
    store.create_session(new_session("code")).await.unwrap();
    let grep = ToolCall {
        id: "c1".into(),
        name: "grep_files".into(),
        arguments: r#"{"pattern":"TODO"}"#.into(),
    };
    store
        .append_messages(
            &sid("docs"),
            vec![
                Message::user("Write the release notes for the kestrel project"),
                Message::assistant(
                    "Here is a long draft that mentions kestrel once among many other words \
                     about versions, changelogs, contributors, dates and upgrade steps.",
                    Vec::new(),
                ),
            ],
        )
        .await
        .unwrap();
    store
        .append_messages(
            &sid("code"),
            vec![
                Message::user("kestrel kestrel kestrel"),
                Message::assistant("", vec![grep.clone()]),
                Message::tool_result(&grep, "src/lib.rs:3: // TODO: tidy-up the foo-bar module"),
                Message::user("Unrelated question about (parentheses) and \"quotes\""),
            ],
        )
        .await
        .unwrap();
    store
}

#[tokio::test]
async fn search_finds_text_ranks_by_relevance_and_marks_the_match() {
    let store = store_with_history().await;
    let hits = store.search("kestrel", 10).await.unwrap();
    assert_eq!(hits.len(), 3);
    // bm25: the short message saying only "kestrel" beats the long one mentioning it once.
    assert_eq!((hits[0].session_id.as_str(), hits[0].seq), ("code", 0));
    assert_eq!((hits[2].session_id.as_str(), hits[2].seq), ("docs", 1));
    assert!(
        hits.iter().all(|h| h.snippet.contains("«kestrel»")),
        "{hits:#?}"
    );
    assert_eq!(
        hits[1].title.as_deref(),
        Some("Write the release notes for the kestrel project")
    );
    assert_eq!(hits[1].role, Role::User);
    assert!(hits[0].updated_at > 0);

    assert_eq!(store.search("kestrel", 1).await.unwrap().len(), 1);
    let both = store.search("release KESTREL", 10).await.unwrap();
    assert_eq!(both.len(), 1, "terms are ANDed, case-insensitively");
}

#[tokio::test]
async fn search_matches_tool_names() {
    let store = store_with_history().await;
    let hits = store.search("grep_files", 10).await.unwrap();
    let found: Vec<(i64, Role)> = hits.iter().map(|h| (h.seq, h.role)).collect();
    assert_eq!(found.len(), 2, "{hits:#?}");
    assert!(found.contains(&(1, Role::Assistant)), "the call");
    assert!(found.contains(&(2, Role::Tool)), "the result");
    assert!(
        hits.iter().any(|h| h.snippet.contains("«grep_files»")),
        "{hits:#?}"
    );
}

#[tokio::test]
async fn hostile_query_text_is_searched_for_not_parsed() {
    let store = store_with_history().await;
    for query in [
        "\"",
        "\"unbalanced",
        "foo-bar",
        "-foo",
        "*",
        "kest*",
        "NEAR(kestrel release)",
        "NEAR",
        "(parentheses",
        ")",
        "AND OR NOT",
        "tool_names:grep",
        "^kestrel",
        "'; DROP TABLE messages; --",
    ] {
        if let Err(e) = store.search(query, 10).await {
            panic!("query {query:?} failed: {e}");
        }
    }
    let hits = store.search("foo-bar", 10).await.unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].role, Role::Tool);
    assert_eq!(store.search("(parentheses)", 10).await.unwrap().len(), 1);
    assert_eq!(store.search("\"quotes\"", 10).await.unwrap().len(), 1);
    assert!(
        store.messages(&sid("code")).await.unwrap().len() == 4,
        "nothing was dropped"
    );
}

#[tokio::test]
async fn search_without_a_match_finds_nothing() {
    let store = store_with_history().await;
    assert_eq!(store.search("albatross", 10).await.unwrap(), []);
    assert_eq!(store.search("kestrel albatross", 10).await.unwrap(), []);
    assert_eq!(store.search("", 10).await.unwrap(), []);
    assert_eq!(store.search(" - * ", 10).await.unwrap(), []);
    assert_eq!(store.search("kestrel", 0).await.unwrap(), []);
}
