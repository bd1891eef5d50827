//! The router against real fake servers: a dead primary falls back and is restored after its
//! cool-down, 429 and 402 rotate keys, overflow and refusals come back to the caller.

use std::sync::Arc;
use std::time::{Duration, Instant};

use talaria_core::Secret;
use talaria_llm::{
    Anthropic, ChatProvider, LlmError, OpenAiCompatible, RetryPolicy, Route, Router, StreamEvent,
};
use talaria_testkit::{AnthropicReply, FakeAnthropicServer, FakeModelServer, Reply};

use super::{chat, config, quick_retries, request, text_of};

fn openai(base_url: String, key: Option<&str>) -> Arc<dyn ChatProvider> {
    let mut cfg = config(base_url, RetryPolicy::none());
    cfg.api_key = key.map(Secret::new);
    Arc::new(OpenAiCompatible::new(cfg).unwrap())
}

fn anthropic(server: &FakeAnthropicServer, key: &str) -> Arc<dyn ChatProvider> {
    let mut cfg = config(server.base_url(), RetryPolicy::none());
    cfg.api_key = Some(Secret::new(key));
    Arc::new(Anthropic::new(cfg).unwrap())
}

fn notices(events: &[StreamEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Notice(n) => Some(n.clone()),
            _ => None,
        })
        .collect()
}

/// A loopback URL where nothing listens.
fn dead_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/v1")
}

#[tokio::test]
async fn a_dead_primary_falls_back_and_is_restored_after_the_cool_down() {
    let primary = FakeModelServer::start().await;
    for _ in 0..3 {
        primary.push(Reply::server_error());
    }
    let fallback = FakeAnthropicServer::start().await;
    fallback.push(AnthropicReply::text("from the fallback"));
    fallback.push(AnthropicReply::text("still the fallback"));
    let router = Router::new(
        Route {
            provider: "custom".into(),
            model: None,
            clients: vec![openai(primary.base_url(), None)],
        },
        vec![Route {
            provider: "anthropic".into(),
            model: Some("claude-sonnet-4-5".into()),
            clients: vec![anthropic(&fallback, "sk-ant-fallback-key")],
        }],
        quick_retries(2),
        Duration::from_millis(400),
    );

    let (result, events) = chat(&router, &request(true)).await;
    let response = result.unwrap();
    assert_eq!(response.message.content, "from the fallback");
    assert_eq!(text_of(&events), "from the fallback");
    assert_eq!(
        notices(&events),
        vec!["custom:fake-model server error: falling back to anthropic:claude-sonnet-4-5"]
    );
    assert_eq!(primary.chat_requests().len(), 3, "one try and two retries");
    let sent = fallback.message_requests();
    assert_eq!(sent[0].body["model"], "claude-sonnet-4-5");
    assert_eq!(sent[0].api_key.as_deref(), Some("sk-ant-fallback-key"));

    // Benched: the next turn goes straight to the fallback.
    let (result, _) = chat(&router, &request(false)).await;
    assert_eq!(result.unwrap().message.content, "still the fallback");
    assert_eq!(primary.chat_requests().len(), 3);

    // After the cool-down the primary is asked first again, and is restored.
    tokio::time::sleep(Duration::from_millis(450)).await;
    primary.push(Reply::text("the primary is back"));
    let (result, events) = chat(&router, &request(true)).await;
    assert_eq!(result.unwrap().message.content, "the primary is back");
    assert_eq!(
        notices(&events),
        vec!["custom:fake-model is answering again"]
    );
    assert_eq!(fallback.message_requests().len(), 2);
}

#[tokio::test]
async fn connection_refused_falls_back() {
    let fallback = FakeModelServer::start().await;
    fallback.push(Reply::text("here"));
    let router = Router::new(
        Route {
            provider: "custom".into(),
            model: None,
            clients: vec![openai(dead_url(), None)],
        },
        vec![Route {
            provider: "ollama".into(),
            model: Some("qwen3".into()),
            clients: vec![openai(fallback.base_url(), None)],
        }],
        quick_retries(1),
        Duration::from_secs(60),
    );
    let (result, events) = chat(&router, &request(true)).await;
    assert_eq!(result.unwrap().message.content, "here");
    assert_eq!(
        notices(&events),
        vec!["custom:fake-model unreachable: falling back to ollama:qwen3"]
    );
    assert_eq!(fallback.chat_requests()[0].body["model"], "qwen3");
}

#[tokio::test]
async fn rate_limits_and_billing_rotate_to_the_next_key_without_waiting() {
    let server = FakeModelServer::start().await;
    server.push(Reply::rate_limited(60));
    server.push(Reply::text("second key answered"));
    server.push(Reply::Status {
        code: 402,
        body: r#"{"error":{"message":"Insufficient credits","code":402}}"#.into(),
        retry_after: None,
    });
    server.push(Reply::text("first key again"));
    let router = Router::new(
        Route {
            provider: "openrouter".into(),
            model: None,
            clients: vec![
                openai(server.base_url(), Some("sk-pool-key-one")),
                openai(server.base_url(), Some("sk-pool-key-two")),
            ],
        },
        Vec::new(),
        quick_retries(3),
        Duration::from_secs(60),
    );

    let started = Instant::now();
    let (result, events) = chat(&router, &request(true)).await;
    assert_eq!(result.unwrap().message.content, "second key answered");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the 60 s Retry-After of the first key was waited out"
    );
    assert_eq!(
        notices(&events),
        vec!["openrouter:fake-model rate limited: switching to key 2 of 2"]
    );
    let (result, events) = chat(&router, &request(false)).await;
    assert_eq!(result.unwrap().message.content, "first key again");
    assert_eq!(
        notices(&events),
        vec!["openrouter:fake-model out of credit or quota: switching to key 1 of 2"]
    );
    let keys: Vec<Option<String>> = server
        .chat_requests()
        .iter()
        .map(|r| r.authorization.clone())
        .collect();
    let bearer = |k: &str| Some(format!("Bearer {k}"));
    assert_eq!(
        keys,
        vec![
            bearer("sk-pool-key-one"),
            bearer("sk-pool-key-two"),
            bearer("sk-pool-key-two"),
            bearer("sk-pool-key-one"),
        ]
    );
}

#[tokio::test]
async fn anthropic_429_rotates_keys() {
    let server = FakeAnthropicServer::start().await;
    server.push(AnthropicReply::rate_limited(60));
    server.push(AnthropicReply::text("ok"));
    let router = Router::new(
        Route {
            provider: "anthropic".into(),
            model: Some("claude-sonnet-4-5".into()),
            clients: vec![
                anthropic(&server, "sk-ant-key-aaaa"),
                anthropic(&server, "sk-ant-key-bbbb"),
            ],
        },
        Vec::new(),
        quick_retries(3),
        Duration::from_secs(60),
    );
    let (result, _) = chat(&router, &request(true)).await;
    assert_eq!(result.unwrap().message.content, "ok");
    let keys: Vec<Option<String>> = server
        .message_requests()
        .iter()
        .map(|r| r.api_key.clone())
        .collect();
    assert_eq!(
        keys,
        vec![
            Some("sk-ant-key-aaaa".into()),
            Some("sk-ant-key-bbbb".into())
        ]
    );
}

#[tokio::test]
async fn context_overflow_is_returned_for_the_agent_to_compress() {
    let primary = FakeModelServer::start().await;
    primary.push(Reply::context_overflow());
    let fallback = FakeModelServer::start().await;
    let router = Router::new(
        Route {
            provider: "custom".into(),
            model: None,
            clients: vec![openai(primary.base_url(), None)],
        },
        vec![Route {
            provider: "custom".into(),
            model: Some("other".into()),
            clients: vec![openai(fallback.base_url(), None)],
        }],
        quick_retries(3),
        Duration::from_secs(60),
    );
    let err = chat(&router, &request(true)).await.0.unwrap_err();
    assert!(matches!(err, LlmError::ContextOverflow { .. }), "{err:?}");
    assert!(fallback.chat_requests().is_empty());
    assert_eq!(primary.chat_requests().len(), 1);
}
