//! `tool_search` on a model with a tiny context window: lazy tools are described, loaded on
//! request, sent from then on, and callable.

use std::sync::Arc;

use talaria_agent::{Agent, AgentSettings, TalariaHome, TurnEvent};
use talaria_core::{Config, ModelEntry, ProviderEntry};
use talaria_llm::{Catalogue, EndpointConfig, OpenAiCompatible, RetryPolicy};
use talaria_store::Store;
use talaria_testkit::{FakeModelServer, Reply};
use tokio_util::sync::CancellationToken;

async fn agent(server: &FakeModelServer, home: &std::path::Path, window: u64) -> Agent {
    let home = TalariaHome::new(home);
    home.ensure().unwrap();
    let store = Store::open(&home.database()).await.unwrap();
    let mut endpoint = EndpointConfig::new(server.base_url());
    endpoint.retry = RetryPolicy::none();
    let mut config = Config::default();
    config.model.stream = false;
    config.skills.review_enabled = false;
    config.skills.memory_nudge_enabled = false;
    let mut overrides = std::collections::BTreeMap::new();
    overrides.insert(
        "custom".to_owned(),
        ProviderEntry {
            models: vec![ModelEntry {
                name: "fake-model".into(),
                context_length: Some(window),
                ..ModelEntry::default()
            }],
            ..ProviderEntry::default()
        },
    );
    Agent::new(
        Arc::new(OpenAiCompatible::new(endpoint).unwrap()),
        Arc::new(talaria_testkit::sandboxed_tools(home.root())),
        store,
        home,
        AgentSettings::from_config(&config),
    )
    .with_catalogue(
        Arc::new(Catalogue::builtin_with(&overrides).unwrap()),
        "custom",
    )
}

const LAZY: [&str; 5] = [
    "process",
    "todo",
    "session_search",
    "skill_manage",
    "skill_run",
];

#[tokio::test]
async fn a_small_window_loads_rarely_used_tools_on_demand() {
    let server = FakeModelServer::start().await;
    server.push(Reply::tool_call("tool_search", r#"{"query":"todo"}"#));
    server.push(Reply::tool_call(
        "todo",
        r#"{"todos":[{"id":"1","content":"write the report","status":"in_progress"}]}"#,
    ));
    server.push(Reply::text("done"));
    server.push(Reply::text("again"));
    let home = tempfile::tempdir().unwrap();
    let agent = agent(&server, home.path(), 16_000).await;
    let mut session = agent
        .new_session(std::env::temp_dir(), "fake-model", "test")
        .await
        .unwrap();
    let quiet = |_: TurnEvent| {};
    let outcome = agent
        .run_turn(
            &mut session,
            "plan my day",
            &quiet,
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    assert_eq!(outcome.text, "done");
    agent
        .run_turn(&mut session, "and now?", &quiet, &CancellationToken::new())
        .await
        .unwrap();

    let requests = server.chat_requests();
    assert_eq!(requests.len(), 4);
    let first = requests[0].tool_names();
    eprintln!(
        "first request with tool_search: {} bytes ({} tools, {} bytes of tool schemas)",
        requests[0].body.to_string().len(),
        first.len(),
        requests[0].body["tools"].to_string().len()
    );
    for lazy in LAZY {
        assert!(
            !first.contains(&lazy.to_owned()),
            "{lazy} sent in {first:?}"
        );
    }
    assert!(first.contains(&"tool_search".to_owned()));
    assert!(first.contains(&"terminal".to_owned()));
    let search = requests[0].body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["function"]["name"] == "tool_search")
        .unwrap()["function"]["description"]
        .to_string();
    for lazy in LAZY {
        assert!(
            search.contains(&format!("- {lazy}: ")),
            "{lazy} not described: {search}"
        );
    }
    // The search result carries the schema; the next requests carry the tool.
    let result = &tool_results(&requests[1].body)[0];
    assert!(
        result.contains("loaded todo") && result.contains("in_progress"),
        "{result}"
    );
    for later in &requests[1..] {
        let names = later.tool_names();
        assert!(names.contains(&"todo".to_owned()), "{names:?}");
        assert!(!names.contains(&"process".to_owned()), "{names:?}");
    }
    let todo_result = &tool_results(&requests[2].body)[1];
    assert!(!todo_result.starts_with("error"), "{todo_result}");
    assert!(todo_result.contains("write the report"), "{todo_result}");
}

#[tokio::test]
async fn a_large_window_sends_every_tool_and_no_tool_search() {
    let server = FakeModelServer::start().await;
    server.push(Reply::text("hi"));
    let home = tempfile::tempdir().unwrap();
    let agent = agent(&server, home.path(), 1_000_000).await;
    let mut session = agent
        .new_session(std::env::temp_dir(), "fake-model", "test")
        .await
        .unwrap();
    agent
        .run_turn(&mut session, "hello", &|_| {}, &CancellationToken::new())
        .await
        .unwrap();
    let names = server.chat_requests()[0].tool_names();
    assert!(!names.contains(&"tool_search".to_owned()));
    for lazy in LAZY {
        assert!(
            names.contains(&lazy.to_owned()),
            "{lazy} missing: {names:?}"
        );
    }
}

/// The contents of the tool messages of a request, in order.
fn tool_results(body: &serde_json::Value) -> Vec<String> {
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap_or_default().to_owned())
        .collect()
}
