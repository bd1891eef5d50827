//! Retrying: Retry-After, recovery from 5xx, giving up, and never retrying a half-shown answer.

use std::time::{Duration, Instant};

use talaria_llm::{LlmError, OpenAiCompatible, RetryPolicy, TimeoutPhase};
use talaria_testkit::{FakeModelServer, Reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{chat, client, config, quick_retries, request, text_of};

#[tokio::test]
async fn rate_limit_is_retried_after_the_servers_retry_after() {
    let server = FakeModelServer::start().await;
    server.push(Reply::rate_limited(1));
    server.push(Reply::text("worth the wait"));
    // Backoff alone would wait at most 20 ms; only Retry-After explains a one-second wait.
    let provider = client(&server, quick_retries(3));

    let started = Instant::now();
    let answer = chat(&provider, &request(true)).await.0.unwrap();
    let waited = started.elapsed();

    assert_eq!(answer.message.content, "worth the wait");
    assert_eq!(server.chat_requests().len(), 2);
    assert!(
        waited >= Duration::from_millis(950),
        "waited only {waited:?}"
    );
    assert!(waited < Duration::from_secs(5), "waited {waited:?}");
}

#[tokio::test]
async fn server_error_is_retried() {
    let server = FakeModelServer::start().await;
    server.push(Reply::server_error());
    server.push(Reply::text("recovered"));
    let provider = client(&server, quick_retries(3));

    let (result, events) = chat(&provider, &request(false)).await;
    assert_eq!(result.unwrap().message.content, "recovered");
    assert_eq!(server.chat_requests().len(), 2);
    assert_eq!(text_of(&events), "recovered");
}

#[tokio::test]
async fn streaming_request_is_retried_when_nothing_was_shown_yet() {
    let server = FakeModelServer::start().await;
    server.push(Reply::Status {
        code: 503,
        body: "upstream overloaded".into(),
        retry_after: None,
    });
    server.push(Reply::text("second try"));
    let provider = client(&server, quick_retries(1));

    let (result, events) = chat(&provider, &request(true)).await;
    assert_eq!(result.unwrap().message.content, "second try");
    assert_eq!(text_of(&events), "second try");
    assert_eq!(server.chat_requests().len(), 2);
}

#[tokio::test]
async fn rate_limit_after_spent_retries_is_reported() {
    let server = FakeModelServer::start().await;
    for _ in 0..3 {
        server.push(Reply::rate_limited(0));
    }
    let provider = client(&server, quick_retries(2));

    let err = chat(&provider, &request(true)).await.0.unwrap_err();
    match &err {
        LlmError::RateLimited {
            message,
            retry_after,
        } => {
            assert!(message.contains("Rate limit reached"), "{message}");
            assert_eq!(*retry_after, Some(Duration::ZERO));
        }
        other => panic!("expected RateLimited, got {other:?}"),
    }
    assert_eq!(server.chat_requests().len(), 3);
}

#[tokio::test]
async fn server_error_after_spent_retries_is_reported() {
    let server = FakeModelServer::start().await;
    for _ in 0..3 {
        server.push(Reply::server_error());
    }
    let provider = client(&server, quick_retries(2));

    let err = chat(&provider, &request(false)).await.0.unwrap_err();
    assert!(
        matches!(err, LlmError::Server { status: 500, .. }),
        "{err:?}"
    );
    assert!(err.to_string().starts_with(
        "the model endpoint failed (500 Internal Server Error): The server had an error"
    ));
    assert_eq!(server.chat_requests().len(), 3);
}

#[tokio::test]
async fn zero_retries_means_one_attempt() {
    let server = FakeModelServer::start().await;
    server.push(Reply::server_error());
    server.push(Reply::text("never sent"));
    let provider = client(&server, RetryPolicy::none());

    let err = chat(&provider, &request(true)).await.0.unwrap_err();
    assert!(matches!(err, LlmError::Server { .. }), "{err:?}");
    assert_eq!(server.chat_requests().len(), 1);
}

/// A stream that stalls after its first text delta must not be retried: the user has seen
/// that text, and a second attempt would start a different answer under it. The fake server
/// cannot stall mid-stream, so this test speaks HTTP/1.1 by hand.
#[tokio::test]
async fn stream_that_stalls_after_text_is_not_retried() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}/v1", listener.local_addr().unwrap());
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let _ = socket.read(&mut buf).await;
                let event =
                    "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Partial\"}}]}\n\n";
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(event.as_bytes()).await;
                tokio::time::sleep(Duration::from_secs(3)).await;
            });
        }
    });
    let mut cfg = config(base_url, quick_retries(3));
    cfg.read_timeout = Duration::from_millis(300);
    let provider = OpenAiCompatible::new(cfg).unwrap();

    let (result, events) = chat(&provider, &request(true)).await;
    let err = result.unwrap_err();
    assert!(
        matches!(
            err,
            LlmError::Timeout {
                phase: TimeoutPhase::Read,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(text_of(&events), "Partial");
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
}
