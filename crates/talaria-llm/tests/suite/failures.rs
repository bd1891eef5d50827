//! Failures a user must be able to tell apart: bad key, wrong model, overflow, garbage,
//! truncation, timeouts, nobody listening.

use std::time::{Duration, Instant};

use talaria_core::{Message, Secret};
use talaria_llm::{ChatProvider, ChatRequest, LlmError, OpenAiCompatible, TimeoutPhase};
use talaria_testkit::{FakeModelServer, Reply};

use super::{chat, client, config, quick_retries, request, text_of};

#[tokio::test]
async fn rejected_key_is_an_auth_error_that_names_the_fix() {
    let server = FakeModelServer::start().await;
    server.require_api_key("sk-right");
    let mut cfg = config(server.base_url(), quick_retries(3));
    cfg.api_key = Some(Secret::new("sk-wrong-key"));
    let provider = OpenAiCompatible::new(cfg).unwrap();

    let err = chat(&provider, &request(true)).await.0.unwrap_err();

    assert!(matches!(err, LlmError::Auth { status: 401, .. }), "{err:?}");
    assert!(!err.is_retryable());
    assert_eq!(
        err.to_string(),
        "the model endpoint rejected the API key (401 Unauthorized): Incorrect API key \
         provided.; check --api-key / TALARIA_API_KEY"
    );
    assert!(!format!("{err} {err:?}").contains("sk-wrong-key"));
    assert_eq!(server.requests().len(), 1, "auth errors are not retried");

    let err = provider.list_models().await.unwrap_err();
    assert!(matches!(err, LlmError::Auth { .. }), "{err:?}");
}

#[tokio::test]
async fn a_key_echoed_by_the_server_is_redacted() {
    let server = FakeModelServer::start().await;
    server.push(Reply::Status {
        code: 403,
        body: r#"{"error":{"message":"key sk-echoed-secret-42 has been revoked"}}"#.into(),
        retry_after: None,
    });
    let mut cfg = config(server.base_url(), quick_retries(0));
    cfg.api_key = Some(Secret::new("sk-echoed-secret-42"));
    let provider = OpenAiCompatible::new(cfg).unwrap();

    let err = chat(&provider, &request(true)).await.0.unwrap_err();

    assert!(matches!(err, LlmError::Auth { status: 403, .. }), "{err:?}");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("sk-echoed-secret-42"), "{shown}");
    assert!(shown.contains("key [redacted] has been revoked"), "{shown}");
}

#[tokio::test]
async fn scripted_401_is_an_auth_error() {
    let server = FakeModelServer::start().await;
    server.push(Reply::unauthorized());
    let provider = client(&server, quick_retries(3));
    let err = chat(&provider, &request(false)).await.0.unwrap_err();
    assert!(matches!(err, LlmError::Auth { status: 401, .. }), "{err:?}");
}

#[tokio::test]
async fn unknown_model_is_model_not_found() {
    let server = FakeModelServer::start().await;
    server.push(Reply::model_not_found());
    let provider = client(&server, quick_retries(3));
    let req = ChatRequest {
        model: "no-such-model".into(),
        ..request(true)
    };

    let err = chat(&provider, &req).await.0.unwrap_err();

    match &err {
        LlmError::ModelNotFound { model, message } => {
            assert_eq!(model, "no-such-model");
            assert!(message.contains("does not exist"), "{message}");
        }
        other => panic!("expected ModelNotFound, got {other:?}"),
    }
    assert!(err.to_string().contains("\"no-such-model\""));
    assert_eq!(server.chat_requests().len(), 1);
}

#[tokio::test]
async fn over_long_conversation_is_context_overflow() {
    let server = FakeModelServer::start().await;
    server.push(Reply::context_overflow());
    let provider = client(&server, quick_retries(3));
    let mut req = request(false);
    req.messages.push(Message::user("x".repeat(10_000)));

    let err = chat(&provider, &req).await.0.unwrap_err();

    assert!(matches!(err, LlmError::ContextOverflow { .. }), "{err:?}");
    assert!(err.to_string().contains("maximum context length is 8192"));
    assert_eq!(server.chat_requests().len(), 1);
}

#[tokio::test]
async fn non_json_body_is_an_invalid_response_quoting_it() {
    let server = FakeModelServer::start().await;
    server.push(Reply::NotJson(
        "<html><body>502 Bad Gateway (nginx)</body></html>".into(),
    ));
    server.push(Reply::NotJson(
        "<html><body>502 Bad Gateway (nginx)</body></html>".into(),
    ));
    let provider = client(&server, quick_retries(3));

    for stream in [false, true] {
        let (result, events) = chat(&provider, &request(stream)).await;
        let err = result.unwrap_err();
        assert!(
            matches!(err, LlmError::InvalidResponse { .. }),
            "stream={stream}: {err:?}"
        );
        assert!(
            err.to_string().contains("502 Bad Gateway (nginx)"),
            "stream={stream}: {err}"
        );
        assert!(events.is_empty());
    }
    assert_eq!(server.chat_requests().len(), 2, "not retried");
}

#[tokio::test]
async fn stream_cut_short_is_truncated_after_showing_what_arrived() {
    let server = FakeModelServer::start().await;
    server.push(Reply::TruncatedStream);
    let provider = client(&server, quick_retries(3));

    let (result, events) = chat(&provider, &request(true)).await;
    let err = result.unwrap_err();

    assert!(matches!(err, LlmError::Truncated { .. }), "{err:?}");
    assert!(!text_of(&events).is_empty());
    assert_eq!(server.chat_requests().len(), 1);
}

#[tokio::test]
async fn json_body_cut_short_is_truncated() {
    let server = FakeModelServer::start().await;
    server.push(Reply::TruncatedStream);
    let provider = client(&server, quick_retries(3));

    let (result, events) = chat(&provider, &request(false)).await;
    let err = result.unwrap_err();

    assert!(matches!(err, LlmError::Truncated { .. }), "{err:?}");
    assert!(events.is_empty());
}

#[tokio::test]
async fn slow_server_hits_the_read_timeout() {
    let server = FakeModelServer::start().await;
    for _ in 0..2 {
        server.push(Reply::delayed(
            Duration::from_secs(2),
            Reply::text("too late"),
        ));
    }
    let mut cfg = config(server.base_url(), quick_retries(1));
    cfg.read_timeout = Duration::from_millis(300);
    let provider = OpenAiCompatible::new(cfg).unwrap();

    let started = Instant::now();
    let err = chat(&provider, &request(true)).await.0.unwrap_err();
    let waited = started.elapsed();

    match &err {
        LlmError::Timeout { url, phase } => {
            assert_eq!(*phase, TimeoutPhase::Read);
            assert_eq!(url, &format!("{}/chat/completions", server.base_url()));
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(err.to_string().contains("(read timeout)"), "{err}");
    // Timeouts are retried: two attempts of ~300 ms each, far less than the server's delay.
    assert_eq!(server.chat_requests().len(), 2);
    assert!(waited >= Duration::from_millis(600), "{waited:?}");
    assert!(waited < Duration::from_secs(2), "{waited:?}");
}

#[tokio::test]
async fn nobody_listening_is_unreachable() {
    // Bind then release a port so nothing listens on it.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let base_url = format!("http://127.0.0.1:{port}/v1");
    let provider = OpenAiCompatible::new(config(base_url.clone(), quick_retries(2))).unwrap();

    let err = chat(&provider, &request(true)).await.0.unwrap_err();
    match &err {
        LlmError::Unreachable { url, reason } => {
            assert_eq!(url, &format!("{base_url}/chat/completions"));
            assert!(
                reason.to_lowercase().contains("refused"),
                "reason should name the cause: {reason}"
            );
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
    assert!(err.is_retryable());
    let err = provider.list_models().await.unwrap_err();
    assert!(matches!(err, LlmError::Unreachable { .. }), "{err:?}");
}

#[tokio::test]
async fn exhausted_script_fails_fast_with_a_clear_message() {
    let server = FakeModelServer::start().await;
    let provider = client(&server, quick_retries(3));

    let err = chat(&provider, &request(true)).await.0.unwrap_err();

    assert!(matches!(err, LlmError::Api { status: 400, .. }), "{err:?}");
    assert!(
        err.to_string().contains("testkit: script exhausted"),
        "{err}"
    );
    assert_eq!(server.chat_requests().len(), 1);
}

#[tokio::test]
async fn missing_route_is_not_found_not_a_missing_model() {
    let server = FakeModelServer::start().await;
    // Forgot the `/v1`: the routes do not exist.
    let root = server.base_url().trim_end_matches("/v1").to_owned();
    let provider = OpenAiCompatible::new(config(root, quick_retries(3))).unwrap();

    let err = provider.list_models().await.unwrap_err();
    assert!(matches!(err, LlmError::NotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("check the base URL"), "{err}");
    let err = chat(&provider, &request(true)).await.0.unwrap_err();
    assert!(matches!(err, LlmError::NotFound { .. }), "{err:?}");
    let paths: Vec<String> = server.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, vec!["/models", "/chat/completions"]);
}
