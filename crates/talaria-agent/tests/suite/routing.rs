//! Model switching and context compression through the agent, against the fake servers.

use std::sync::{Arc, Mutex};

use talaria_agent::compress::{SUMMARY_MARKER, estimate_tokens};
use talaria_agent::{Agent, AgentSettings, TalariaHome, TurnEvent};
use talaria_core::{Config, ModelEntry, ProviderEntry, Role};
use talaria_llm::{Anthropic, Catalogue, EndpointConfig, OpenAiCompatible, RetryPolicy};
use talaria_store::Store;
use talaria_testkit::{AnthropicReply, FakeAnthropicServer, FakeModelServer, Reply};
use tokio_util::sync::CancellationToken;

async fn agent(server: &FakeModelServer, home: &std::path::Path, config: &Config) -> Agent {
    let home = TalariaHome::new(home);
    home.ensure().unwrap();
    let store = Store::open(&home.database()).await.unwrap();
    let mut endpoint = EndpointConfig::new(server.base_url());
    endpoint.retry = RetryPolicy::none();
    let provider = OpenAiCompatible::new(endpoint).unwrap();
    Agent::new(
        Arc::new(provider),
        Arc::new(talaria_testkit::sandboxed_tools(home.root())),
        store,
        home,
        AgentSettings::from_config(config),
    )
}

/// Runs a turn and returns the answer and the notices shown.
async fn turn(
    agent: &Agent,
    session: &mut talaria_agent::Session,
    input: &str,
) -> (String, Vec<String>) {
    let notices = Mutex::new(Vec::new());
    let on_event = |e: TurnEvent| {
        if let TurnEvent::Notice(n) = e {
            notices.lock().unwrap().push(n);
        }
    };
    let outcome = agent
        .run_turn(session, input, &on_event, &CancellationToken::new())
        .await
        .unwrap();
    (outcome.text, notices.into_inner().unwrap())
}

fn contents(request: &serde_json::Value) -> Vec<String> {
    request["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn a_mid_session_switch_keeps_the_history() {
    let first = FakeModelServer::start().await;
    first.push(Reply::text("the first answer"));
    let second = FakeAnthropicServer::start().await;
    second.push(AnthropicReply::text("the second answer"));
    let home = tempfile::tempdir().unwrap();
    let agent = agent(&first, home.path(), &Config::default()).await;
    let mut session = agent
        .new_session(std::env::temp_dir(), "fake-model", "test")
        .await
        .unwrap();
    turn(&agent, &mut session, "the first question").await;

    let mut cfg = EndpointConfig::new(second.base_url());
    cfg.api_key = Some(talaria_core::Secret::new("sk-ant-switch-key"));
    let client = Anthropic::new(cfg).unwrap();
    agent
        .switch_model(
            &mut session,
            Some(("anthropic".into(), Arc::new(client))),
            "claude-sonnet-4-5",
        )
        .await
        .unwrap();
    let (answer, _) = turn(&agent, &mut session, "the second question").await;

    assert_eq!(answer, "the second answer");
    assert_eq!(
        first.chat_requests().len(),
        1,
        "the old provider is not asked again"
    );
    let sent = &second.message_requests()[0];
    assert_eq!(sent.body["model"], "claude-sonnet-4-5");
    let text = sent.body["messages"].to_string();
    for earlier in [
        "the first question",
        "the first answer",
        "the second question",
    ] {
        assert!(text.contains(earlier), "{earlier} missing from {text}");
    }
    let stored = agent.store().session(&session.id).await.unwrap().unwrap();
    assert_eq!(stored.model, "claude-sonnet-4-5");
}

#[tokio::test]
async fn compression_that_fails_drops_nothing_and_is_retried_next_turn() {
    let server = FakeModelServer::start().await;
    let home = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.agent.compress_at_percent = 50;
    config.agent.compress_keep_last = 2;
    let probe = agent(&server, home.path(), &config).await;
    let tool_tokens = estimate_tokens(&[], probe.tools().specs());
    // Half the window leaves room for the tools and ~6000 tokens of conversation.
    let window = 2 * (tool_tokens + 6_000);
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
    let catalogue = Arc::new(Catalogue::builtin_with(&overrides).unwrap());
    let agent = probe.with_catalogue(catalogue, "custom");
    let mut session = agent
        .new_session(std::env::temp_dir(), "fake-model", "test")
        .await
        .unwrap();
    let long = |tag: &str| format!("{tag} {}", "lorem ipsum ".repeat(850));

    server.push(Reply::text("answer one"));
    server.push(Reply::text("answer two"));
    assert!(turn(&agent, &mut session, &long("q1")).await.1.is_empty());
    assert!(turn(&agent, &mut session, &long("q2")).await.1.is_empty());

    // Third turn: over the threshold; the summarizer fails.
    server.push(Reply::server_error());
    server.push(Reply::text("answer three"));
    let (answer, notices) = turn(&agent, &mut session, &long("q3")).await;
    assert_eq!(answer, "answer three");
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert!(
        notices[0].starts_with("context compression failed"),
        "{notices:?}"
    );
    assert!(notices[0].contains("nothing was dropped"));
    let requests = server.chat_requests();
    let summarizer = &requests[2].body;
    assert!(
        summarizer.get("tools").is_none(),
        "the summarizer gets no tools"
    );
    let sent = contents(&requests[3].body);
    assert_eq!(
        sent.len(),
        6,
        "system, three questions, two answers: {sent:?}"
    );
    for (i, tag) in [
        (1, "q1"),
        (2, "answer one"),
        (3, "q2"),
        (4, "answer two"),
        (5, "q3"),
    ] {
        assert!(sent[i].starts_with(tag), "message {i} is not {tag}");
    }

    // Fourth turn: compression is retried and succeeds.
    server.push(Reply::text(
        "SUMMARY: three long questions about lorem ipsum",
    ));
    server.push(Reply::text("answer four"));
    let (answer, notices) = turn(&agent, &mut session, "q4 short").await;
    assert_eq!(answer, "answer four");
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert!(
        notices[0].starts_with("context compressed: 4 earlier messages"),
        "{notices:?}"
    );
    let requests = server.chat_requests();
    let summarized = requests[4].body["messages"][1]["content"].as_str().unwrap();
    assert!(summarized.contains("answer one") && summarized.contains("q3"));
    let sent = contents(&requests[5].body);
    assert_eq!(sent.len(), 5, "{sent:?}");
    assert!(sent[0].len() > 100, "the system prompt is kept");
    assert!(sent[1].starts_with("q1"), "the first user message is kept");
    assert!(sent[2].starts_with(SUMMARY_MARKER));
    assert!(sent[2].contains("SUMMARY: three long questions"));
    assert_eq!(sent[3], "answer three", "the last turns are kept");
    assert_eq!(sent[4], "q4 short");

    // The store still has every message.
    let stored = agent.store().messages(&session.id).await.unwrap();
    let roles: Vec<Role> = stored.iter().map(|m| m.message.role).collect();
    assert_eq!(roles.len(), 9);
    assert!(
        !stored
            .iter()
            .any(|m| m.message.content.starts_with(SUMMARY_MARKER))
    );
}

#[tokio::test]
async fn a_request_too_large_is_compressed_and_sent_again_once() {
    let server = FakeModelServer::start().await;
    let home = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.agent.compress_keep_last = 2;
    let agent = agent(&server, home.path(), &config).await;
    let mut session = agent
        .new_session(std::env::temp_dir(), "fake-model", "test")
        .await
        .unwrap();
    server.push(Reply::text("answer one"));
    server.push(Reply::text("answer two"));
    turn(&agent, &mut session, "q1").await;
    turn(&agent, &mut session, "q2").await;

    // The provider refuses the third request as too large (413): compress, then send again.
    server.push(Reply::Status {
        code: 413,
        body: r#"{"error":{"message":"request entity too large"}}"#.into(),
        retry_after: None,
    });
    server.push(Reply::text("SUMMARY: q1 and q2"));
    server.push(Reply::text("answer three"));
    let (answer, notices) = turn(&agent, &mut session, "q3").await;
    assert_eq!(answer, "answer three");
    assert!(
        notices.iter().any(|n| n.starts_with("context compressed")),
        "{notices:?}"
    );
    let requests = server.chat_requests();
    let resent = contents(&requests.last().unwrap().body);
    assert!(
        resent.iter().any(|m| m.starts_with(SUMMARY_MARKER)),
        "{resent:?}"
    );
    assert_eq!(resent.last().unwrap(), "q3");
}

/// Measures (prints, never asserts) the size of the first request of a session for a one-line
/// question with the default tools: `cargo nextest run -p talaria-agent first_request
/// --no-capture`.
#[tokio::test]
async fn first_request_size_is_reported() {
    let server = FakeModelServer::start().await;
    server.push(Reply::text("It is noon."));
    let home = tempfile::tempdir().unwrap();
    let agent = agent(&server, home.path(), &Config::default()).await;
    let mut session = agent
        .new_session(std::env::temp_dir(), "fake-model", "test")
        .await
        .unwrap();
    turn(&agent, &mut session, "what time is it?").await;
    let request = &server.chat_requests()[0];
    assert_eq!(
        request.last_message().unwrap()["content"],
        "what time is it?"
    );
    let bytes = request.body.to_string().len();
    let tools = request.tool_names();
    let tool_bytes = request.body["tools"].to_string().len();
    let system_bytes = request.body["messages"][0]["content"]
        .as_str()
        .unwrap()
        .len();
    eprintln!(
        "first request for \"what time is it?\": {bytes} bytes ({} tools, {tool_bytes} bytes of tool schemas, {system_bytes} bytes of system prompt)",
        tools.len()
    );
    assert!(!tools.is_empty());
}
