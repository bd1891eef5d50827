//! The loop: cancellation of a slow model call, and crash recovery on resume.

use std::sync::Arc;
use std::time::Duration;

use talaria_agent::{Agent, AgentSettings, TalariaHome, TurnStop};
use talaria_core::{Config, Message, Role, ToolCall};
use talaria_llm::{EndpointConfig, OpenAiCompatible, RetryPolicy};
use talaria_store::Store;
use talaria_testkit::{FakeModelServer, Reply};
use tokio_util::sync::CancellationToken;

async fn agent(server: &FakeModelServer, home: &std::path::Path) -> Agent {
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
        AgentSettings::from_config(&Config::default()),
    )
}

#[tokio::test]
async fn cancelling_a_slow_model_call_keeps_the_session_consistent() {
    let server = FakeModelServer::start().await;
    let home = tempfile::tempdir().unwrap();
    let agent = agent(&server, home.path()).await;
    let mut session = agent
        .new_session(std::env::temp_dir(), "fake-model", "test")
        .await
        .unwrap();
    server.push(Reply::delayed(
        Duration::from_secs(30),
        Reply::text("too late"),
    ));
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        trigger.cancel();
    });
    let started = std::time::Instant::now();
    let outcome = agent
        .run_turn(&mut session, "slow question", &|_| {}, &cancel)
        .await
        .unwrap();
    assert_eq!(outcome.stop, TurnStop::Interrupted);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the request was dropped, not awaited"
    );

    server.push(Reply::text("fast answer"));
    let mut resumed = agent.resume_session(&session.id).await.unwrap();
    let outcome = agent
        .run_turn(
            &mut resumed,
            "try again",
            &|_| {},
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    assert_eq!(outcome.text, "fast answer");
    let roles: Vec<Role> = resumed.messages().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [Role::System, Role::User, Role::User, Role::Assistant]
    );
}

#[tokio::test]
async fn resume_closes_tool_calls_a_crash_left_open() {
    let server = FakeModelServer::start().await;
    let home = tempfile::tempdir().unwrap();
    let agent = agent(&server, home.path()).await;
    let session = agent
        .new_session(std::env::temp_dir(), "fake-model", "test")
        .await
        .unwrap();
    // What a crash between the model's answer and the tool result leaves behind.
    let call = ToolCall {
        id: "call_9".into(),
        name: "terminal".into(),
        arguments: r#"{"command":"make deploy"}"#.into(),
    };
    agent
        .store()
        .append_messages(
            &session.id,
            vec![Message::user("deploy"), Message::assistant("", vec![call])],
        )
        .await
        .unwrap();

    let resumed = agent.resume_session(&session.id).await.unwrap();
    let last = resumed.messages().last().unwrap().clone();
    assert_eq!(last.role, Role::Tool);
    assert_eq!(last.tool_call_id.as_deref(), Some("call_9"));
    assert!(
        last.content.contains("effects are unknown"),
        "{}",
        last.content
    );
    let again = agent.resume_session(&session.id).await.unwrap();
    assert_eq!(again.len(), resumed.len(), "repairs happen once");
}

#[tokio::test]
async fn undo_removes_the_last_exchange_from_memory_and_store() {
    let server = FakeModelServer::start().await;
    let home = tempfile::tempdir().unwrap();
    let agent = agent(&server, home.path()).await;
    let mut session = agent
        .new_session(std::env::temp_dir(), "fake-model", "test")
        .await
        .unwrap();
    server.push(Reply::text("one"));
    server.push(Reply::text("two"));
    let cancel = CancellationToken::new();
    agent
        .run_turn(&mut session, "first", &|_| {}, &cancel)
        .await
        .unwrap();
    agent
        .run_turn(&mut session, "second", &|_| {}, &cancel)
        .await
        .unwrap();
    assert_eq!(agent.undo(&mut session, "undo").await.unwrap(), "second");
    let stored = agent.store().messages(&session.id).await.unwrap();
    assert_eq!(stored.len(), 3);
    assert_eq!(session.len(), 3);
    assert_eq!(stored.last().unwrap().message.content, "one");
}
