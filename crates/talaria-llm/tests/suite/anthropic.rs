//! The Anthropic Messages client against the test kit's fake Messages API over loopback HTTP.

use std::time::{Duration, Instant};

use serde_json::json;
use talaria_core::{Message, ToolSpec};
use talaria_llm::{Anthropic, ChatRequest, LlmError, StreamEvent, THINKING_KEY};
use talaria_testkit::{AnthropicReply, FakeAnthropicServer, FakeBlock};

use super::{chat, config, quick_retries, text_of};

const KEY: &str = "sk-ant-test-0123456789";

fn client(server: &FakeAnthropicServer, retries: u32) -> Anthropic {
    let mut config = config(server.base_url(), quick_retries(retries));
    config.api_key = Some(talaria_core::Secret::new(KEY));
    Anthropic::new(config).unwrap()
}

fn tools() -> Vec<ToolSpec> {
    ["read_file", "terminal"]
        .into_iter()
        .map(|name| ToolSpec {
            name: name.into(),
            description: format!("the {name} tool"),
            parameters: json!({"type": "object", "properties": {"path": {"type": "string"}}}),
        })
        .collect()
}

fn request(stream: bool) -> ChatRequest {
    ChatRequest {
        model: "claude-sonnet-4-5".into(),
        messages: vec![
            Message::system("You are terse."),
            Message::user("Say hello."),
        ],
        tools: tools(),
        stream,
        ..ChatRequest::default()
    }
}

#[tokio::test]
async fn plain_and_streamed_text_with_headers_and_usage() {
    for stream in [false, true] {
        let server = FakeAnthropicServer::start().await;
        server.require_api_key(KEY);
        server.push(AnthropicReply::text("Hello there, friend."));
        let (result, events) = chat(&client(&server, 0), &request(stream)).await;
        let answer = result.unwrap();
        assert_eq!(answer.message.content, "Hello there, friend.");
        assert_eq!(answer.finish_reason.as_deref(), Some("stop"));
        assert_eq!(answer.model, "claude-sonnet-4-5");
        assert_eq!(text_of(&events), "Hello there, friend.");
        if stream {
            // The fake sends text in 4-character deltas; each reaches the caller as it comes.
            assert!(events.len() > 3, "{events:?}");
        }
        assert!(answer.usage.prompt_tokens > 0 && answer.usage.completion_tokens > 0);

        let sent = &server.message_requests()[0];
        assert_eq!(sent.api_key.as_deref(), Some(KEY));
        assert_eq!(sent.version.as_deref(), Some("2023-06-01"));
        assert_eq!(sent.is_stream(), stream);
        assert!(sent.body["max_tokens"].as_u64().unwrap() > 0);
    }
}

#[tokio::test]
async fn cache_control_marks_system_and_last_tool_and_cached_tokens_are_counted() {
    let server = FakeAnthropicServer::start().await;
    server.push(AnthropicReply::text("one"));
    server.push(AnthropicReply::text("two"));
    let provider = client(&server, 0);
    let first = chat(&provider, &request(true)).await.0.unwrap();
    let second = chat(&provider, &request(false)).await.0.unwrap();
    // The fake writes the cache on the first request and reads it on the next.
    assert_eq!(first.usage.cached_tokens, 0);
    assert!(second.usage.cached_tokens > 0);
    assert!(second.usage.prompt_tokens > second.usage.cached_tokens);

    let body = &server.message_requests()[0].body;
    assert_eq!(
        body["system"],
        json!([{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}])
    );
    let tools = body["tools"].as_array().unwrap();
    assert_eq!(tools.len(), 2);
    assert!(tools[0].get("cache_control").is_none());
    assert_eq!(tools[1]["cache_control"], json!({"type": "ephemeral"}));
    assert_eq!(tools[1]["name"], "terminal");
    assert!(tools[1]["input_schema"].is_object());
    // No system role among the messages: the API refuses it.
    assert!(
        body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["role"] != "system")
    );
}

#[tokio::test]
async fn tool_calls_round_trip_as_tool_use_and_merged_tool_results() {
    for stream in [false, true] {
        let server = FakeAnthropicServer::start().await;
        server.push(AnthropicReply::Message(vec![
            FakeBlock::Text("Let me look.".into()),
            FakeBlock::ToolUse {
                id: "toolu_a".into(),
                name: "read_file".into(),
                input: json!({"path": "a.txt"}),
            },
            FakeBlock::ToolUse {
                id: "toolu_b".into(),
                name: "terminal".into(),
                input: json!({"command": "ls -la", "nested": {"deep": [1, 2, "три"]}}),
            },
        ]));
        server.push(AnthropicReply::text("Both done."));
        let provider = client(&server, 0);

        let mut req = request(stream);
        let (result, events) = chat(&provider, &req).await;
        let answer = result.unwrap();
        assert_eq!(answer.finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(answer.message.content, "Let me look.");
        let calls = &answer.message.tool_calls;
        assert_eq!(calls.len(), 2);
        assert_eq!(
            (calls[0].id.as_str(), calls[0].name.as_str()),
            ("toolu_a", "read_file")
        );
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&calls[1].arguments).unwrap(),
            json!({"command": "ls -la", "nested": {"deep": [1, 2, "три"]}})
        );
        let started: Vec<(usize, String)> = events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::ToolCallStarted { index, name, .. } => Some((*index, name.clone())),
                StreamEvent::TextDelta(_) | StreamEvent::Notice(_) => None,
            })
            .collect();
        assert_eq!(started, [(0, "read_file".into()), (1, "terminal".into())]);

        req.messages.push(answer.message.clone());
        req.messages
            .push(Message::tool_result(&calls[0], "contents of a"));
        req.messages
            .push(Message::tool_result(&calls[1], "total 0"));
        let done = chat(&provider, &req).await.0.unwrap();
        assert_eq!(done.message.content, "Both done.");

        // The fake refuses non-alternating roles and unanswered tool_use ids, so getting an
        // answer already proves the shape; check it explicitly anyway.
        let messages = server.message_requests()[1].messages();
        let roles: Vec<&str> = messages
            .iter()
            .map(|m| m["role"].as_str().unwrap())
            .collect();
        assert_eq!(roles, ["user", "assistant", "user"]);
        assert_eq!(
            messages[1]["content"],
            json!([
                {"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": "toolu_a", "name": "read_file", "input": {"path": "a.txt"}},
                {"type": "tool_use", "id": "toolu_b", "name": "terminal",
                 "input": {"command": "ls -la", "nested": {"deep": [1, 2, "три"]}}},
            ])
        );
        assert_eq!(
            messages[2]["content"],
            json!([
                {"type": "tool_result", "tool_use_id": "toolu_a", "content": "contents of a"},
                {"type": "tool_result", "tool_use_id": "toolu_b", "content": "total 0"},
            ])
        );
    }
}

#[tokio::test]
async fn thinking_blocks_are_sent_back_unchanged() {
    let thinking = "The user wants a file.\nI should call read_file — carefully: \"a\\b\" ✓";
    let signature = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds+/=";
    for stream in [false, true] {
        let server = FakeAnthropicServer::start().await;
        server.push(AnthropicReply::Message(vec![
            FakeBlock::Thinking {
                thinking: thinking.into(),
                signature: signature.into(),
            },
            FakeBlock::RedactedThinking("opaque+/=data".into()),
            FakeBlock::ToolUse {
                id: String::new(),
                name: "read_file".into(),
                input: json!({"path": "a"}),
            },
        ]));
        server.push(AnthropicReply::text("ok"));
        let provider = client(&server, 0);
        let mut req = request(stream);
        let (result, events) = chat(&provider, &req).await;
        let answer = result.unwrap();
        // Thinking is not answer text.
        assert_eq!(text_of(&events), "");
        assert_eq!(answer.message.content, "");
        let expected = json!([
            {"type": "thinking", "thinking": thinking, "signature": signature},
            {"type": "redacted_thinking", "data": "opaque+/=data"},
        ]);
        assert_eq!(
            answer.message.provider_data.as_ref().unwrap()[THINKING_KEY],
            expected
        );

        // The transcript goes through its stored form (JSON) before the next request, as it
        // does through the session store.
        let stored = serde_json::to_string(&answer.message).unwrap();
        let restored: Message = serde_json::from_str(&stored).unwrap();
        let call = restored.tool_calls[0].clone();
        req.messages.push(restored);
        req.messages.push(Message::tool_result(&call, "A"));
        chat(&provider, &req).await.0.unwrap();

        let assistant = &server.message_requests()[1].messages()[1];
        let content = assistant["content"].as_array().unwrap();
        assert_eq!(content[0], expected[0]);
        assert_eq!(content[1], expected[1]);
        assert_eq!(content[2]["type"], "tool_use");
        // Byte for byte: the thinking text and signature are the exact strings received.
        assert_eq!(content[0]["thinking"].as_str(), Some(thinking));
        assert_eq!(content[0]["signature"].as_str(), Some(signature));
    }
}

#[tokio::test]
async fn rate_limit_is_retried_after_retry_after() {
    let server = FakeAnthropicServer::start().await;
    server.push(AnthropicReply::rate_limited(1));
    server.push(AnthropicReply::text("worth the wait"));
    let started = Instant::now();
    let answer = chat(&client(&server, 3), &request(true)).await.0.unwrap();
    let waited = started.elapsed();
    assert_eq!(answer.message.content, "worth the wait");
    assert_eq!(server.message_requests().len(), 2);
    // Backoff alone waits at most 20 ms here; only retry-after explains a second.
    assert!(waited >= Duration::from_millis(950), "waited {waited:?}");
}

#[tokio::test]
async fn overloaded_529_is_retried_then_reported() {
    let server = FakeAnthropicServer::start().await;
    server.push(AnthropicReply::overloaded());
    server.push(AnthropicReply::text("recovered"));
    let answer = chat(&client(&server, 2), &request(false)).await.0.unwrap();
    assert_eq!(answer.message.content, "recovered");

    let server = FakeAnthropicServer::start().await;
    server.push(AnthropicReply::overloaded());
    server.push(AnthropicReply::overloaded());
    let err = chat(&client(&server, 1), &request(true))
        .await
        .0
        .unwrap_err();
    assert!(
        matches!(err, LlmError::Server { status: 529, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("Overloaded"), "{err}");
    assert_eq!(server.message_requests().len(), 2);
}

#[tokio::test]
async fn prompt_too_long_is_context_overflow_and_not_retried() {
    let server = FakeAnthropicServer::start().await;
    server.push(AnthropicReply::prompt_too_long());
    let err = chat(&client(&server, 3), &request(true))
        .await
        .0
        .unwrap_err();
    assert!(matches!(err, LlmError::ContextOverflow { .. }), "{err:?}");
    assert_eq!(server.message_requests().len(), 1);
}

#[tokio::test]
async fn bad_key_is_an_auth_error_without_the_key() {
    let server = FakeAnthropicServer::start().await;
    server.require_api_key("the-right-key-123");
    let err = chat(&client(&server, 3), &request(false))
        .await
        .0
        .unwrap_err();
    assert!(matches!(err, LlmError::Auth { status: 401, .. }), "{err:?}");
    assert!(!err.to_string().contains(KEY));
    assert_eq!(server.message_requests().len(), 1);
}

#[tokio::test]
async fn malformed_answers_are_errors_not_panics() {
    let cases: Vec<(AnthropicReply, bool)> = vec![
        (
            AnthropicReply::Raw {
                content_type: "application/json".into(),
                body: "{\"content\": [ {\"type\"".into(),
            },
            false,
        ),
        (
            AnthropicReply::Raw {
                content_type: "application/json".into(),
                body: "[1,2,3]".into(),
            },
            false,
        ),
        (
            AnthropicReply::Raw {
                content_type: "text/html".into(),
                body: "<html>502 Bad Gateway</html>".into(),
            },
            true,
        ),
        (
            AnthropicReply::Raw {
                content_type: "text/event-stream".into(),
                body: "event: message_start\ndata: {not json}\n\n".into(),
            },
            true,
        ),
        (
            AnthropicReply::Raw {
                content_type: "text/event-stream".into(),
                body: "data: {\"type\":\"content_block_delta\",\"index\":3,\"delta\":{\"type\":\"text_delta\",\"text\":\"x\"}}\n\n".into(),
            },
            true,
        ),
        (
            AnthropicReply::Raw {
                content_type: "text/event-stream".into(),
                body: "data: {\"type\":\"message_start\",\"message\":{}}\n\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\"}}\n\n".into(),
            },
            true,
        ),
        (AnthropicReply::TruncatedStream, true),
    ];
    for (reply, stream) in cases {
        let server = FakeAnthropicServer::start().await;
        let shown = format!("{reply:?}");
        server.push(reply);
        let err = chat(&client(&server, 0), &request(stream))
            .await
            .0
            .unwrap_err();
        assert!(
            matches!(
                err,
                LlmError::InvalidResponse { .. } | LlmError::Truncated { .. }
            ),
            "{shown}: {err:?}"
        );
    }
}

#[tokio::test]
async fn error_event_mid_stream_is_reported() {
    let server = FakeAnthropicServer::start().await;
    server.push(AnthropicReply::Raw {
        content_type: "text/event-stream".into(),
        body: "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"m\",\"usage\":{\"input_tokens\":1}}}\n\n\
               data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
               data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hal\"}}\n\n\
               event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"
            .into(),
    });
    let (result, events) = chat(&client(&server, 3), &request(true)).await;
    let err = result.unwrap_err();
    assert!(matches!(err, LlmError::StreamAborted { .. }), "{err:?}");
    assert_eq!(text_of(&events), "Hal");
    // Part of the answer was shown: no retry.
    assert_eq!(server.message_requests().len(), 1);
}
