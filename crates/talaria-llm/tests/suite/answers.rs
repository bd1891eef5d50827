//! Successful answers: text, streamed text, parallel tool calls, usage, auth, model listing.

use serde_json::json;
use talaria_core::{Message, Secret, ToolSpec, Usage};
use talaria_llm::{ChatProvider, ChatRequest, OpenAiCompatible, RetryPolicy, StreamEvent};
use talaria_testkit::{FakeModelServer, FakeToolCall, Reply};

use super::{chat, client, config, quick_retries, request, text_of};

fn tools() -> Vec<ToolSpec> {
    ["read_file", "terminal"]
        .into_iter()
        .map(|name| ToolSpec {
            name: name.into(),
            description: format!("the {name} tool"),
            parameters: json!({"type": "object", "properties": {}}),
        })
        .collect()
}

#[tokio::test]
async fn plain_answer_without_streaming() {
    let server = FakeModelServer::start().await;
    server.push(Reply::text("Hello there, friend."));
    let provider = client(&server, RetryPolicy::none());

    let (result, events) = chat(&provider, &request(false)).await;
    let answer = result.unwrap();

    assert_eq!(answer.message.content, "Hello there, friend.");
    assert!(answer.message.tool_calls.is_empty());
    assert_eq!(answer.finish_reason.as_deref(), Some("stop"));
    assert_eq!(answer.model, "fake-model");
    // Without streaming the whole text is reported once, so callers render both modes alike.
    assert_eq!(
        events,
        vec![StreamEvent::TextDelta("Hello there, friend.".into())]
    );

    let sent = server.chat_requests();
    assert_eq!(sent.len(), 1);
    assert!(!sent[0].is_stream());
    assert!(sent[0].body.get("stream_options").is_none());
    assert!(sent[0].body.get("tools").is_none());
    assert_eq!(
        sent[0].body["messages"],
        json!([
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Say hello."},
        ])
    );
    assert_eq!(sent[0].authorization, None);
}

#[tokio::test]
async fn streamed_text_arrives_in_several_deltas() {
    let server = FakeModelServer::start().await;
    server.push(Reply::text("The quick brown fox jumps over the lazy dog."));
    let provider = client(&server, RetryPolicy::none());

    let (result, events) = chat(&provider, &request(true)).await;
    let answer = result.unwrap();

    assert_eq!(
        answer.message.content,
        "The quick brown fox jumps over the lazy dog."
    );
    assert!(events.len() > 3, "expected many deltas, got {events:?}");
    assert_eq!(text_of(&events), answer.message.content);
    assert_eq!(answer.finish_reason.as_deref(), Some("stop"));

    let sent = &server.chat_requests()[0];
    assert!(sent.is_stream());
    assert_eq!(sent.body["stream_options"], json!({"include_usage": true}));
}

#[tokio::test]
async fn streamed_parallel_tool_calls_are_assembled_from_pieces() {
    let server = FakeModelServer::start().await;
    server.push(Reply::ToolCalls {
        text: String::new(),
        calls: vec![
            FakeToolCall::new("read_file", r#"{"path": "src/main.rs", "limit": 200}"#),
            FakeToolCall::new("terminal", r#"{"command": "ls -la /tmp"}"#),
        ],
    });
    server.push(Reply::text("Both done."));
    let provider = client(&server, RetryPolicy::none());
    let mut req = ChatRequest {
        tools: tools(),
        ..request(true)
    };

    let (result, events) = chat(&provider, &req).await;
    let answer = result.unwrap();

    let calls = &answer.message.tool_calls;
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].name, "read_file");
    assert_eq!(
        calls[0].arguments,
        r#"{"path": "src/main.rs", "limit": 200}"#
    );
    assert_eq!(calls[1].name, "terminal");
    assert_eq!(calls[1].arguments, r#"{"command": "ls -la /tmp"}"#);
    assert_ne!(calls[0].id, calls[1].id);
    assert_eq!(answer.message.content, "");
    assert_eq!(answer.finish_reason.as_deref(), Some("tool_calls"));
    assert_eq!(
        events,
        vec![
            StreamEvent::ToolCallStarted {
                index: 0,
                id: calls[0].id.clone(),
                name: "read_file".into()
            },
            StreamEvent::ToolCallStarted {
                index: 1,
                id: calls[1].id.clone(),
                name: "terminal".into()
            },
        ]
    );
    let sent = &server.chat_requests()[0];
    assert_eq!(sent.tool_names(), vec!["read_file", "terminal"]);
    assert_eq!(sent.body["tool_choice"], "auto");

    // The results go back in OpenAI's shape and the conversation continues.
    req.messages.push(answer.message.clone());
    for call in calls {
        req.messages.push(Message::tool_result(
            call,
            format!("output of {}", call.name),
        ));
    }
    let (result, _) = chat(&provider, &req).await;
    assert_eq!(result.unwrap().message.content, "Both done.");
    let sent = &server.chat_requests()[1];
    let messages = sent.body["messages"].as_array().unwrap();
    assert_eq!(
        messages[2],
        json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": calls[0].id, "type": "function", "function": {"name": "read_file", "arguments": calls[0].arguments}},
            {"id": calls[1].id, "type": "function", "function": {"name": "terminal", "arguments": calls[1].arguments}},
        ]})
    );
    assert_eq!(
        sent.last_message().unwrap(),
        &json!({"role": "tool", "tool_call_id": calls[1].id, "content": "output of terminal"})
    );
}

#[tokio::test]
async fn non_streamed_tool_calls_keep_raw_arguments() {
    let server = FakeModelServer::start().await;
    server.push(Reply::ToolCalls {
        text: "Let me look.".into(),
        calls: vec![FakeToolCall {
            id: "call_custom".into(),
            name: "read_file".into(),
            arguments: r#"{"path": "unterminated"#.into(),
        }],
    });
    let provider = client(&server, RetryPolicy::none());

    let (result, events) = chat(&provider, &request(false)).await;
    let answer = result.unwrap();

    assert_eq!(answer.message.content, "Let me look.");
    assert_eq!(answer.message.tool_calls.len(), 1);
    assert_eq!(answer.message.tool_calls[0].id, "call_custom");
    // Invalid JSON is passed through for the agent to report back to the model.
    assert_eq!(
        answer.message.tool_calls[0].arguments,
        r#"{"path": "unterminated"#
    );
    assert_eq!(
        events,
        vec![
            StreamEvent::TextDelta("Let me look.".into()),
            StreamEvent::ToolCallStarted {
                index: 0,
                id: "call_custom".into(),
                name: "read_file".into()
            },
        ]
    );
}

#[tokio::test]
async fn usage_is_reported_in_both_modes_with_cached_tokens() {
    let server = FakeModelServer::start().await;
    server.push(Reply::text("First answer."));
    server.push(Reply::text("Second answer."));
    let provider = client(&server, RetryPolicy::none());

    let mut req = request(true);
    let first = chat(&provider, &req).await.0.unwrap();
    req.messages.push(first.message.clone());
    req.messages
        .push(Message::user("And again, without streaming."));
    req.stream = false;
    let second = chat(&provider, &req).await.0.unwrap();

    let sent = server.chat_requests();
    let prompt_tokens = |i: usize| sent[i].body.to_string().len() as u64 / 4;
    assert_eq!(
        first.usage,
        Usage {
            prompt_tokens: prompt_tokens(0),
            completion_tokens: "First answer.".len() as u64 / 4,
            cached_tokens: 0,
            cache_write_tokens: 0,
        }
    );
    // The second request extends the first, so the fake reports the first prompt as cached.
    assert_eq!(
        second.usage,
        Usage {
            prompt_tokens: prompt_tokens(1),
            completion_tokens: "Second answer.".len() as u64 / 4,
            cached_tokens: prompt_tokens(0),
            cache_write_tokens: 0,
        }
    );
    assert!(second.usage.prompt_tokens > first.usage.prompt_tokens);
}

#[tokio::test]
async fn api_key_is_sent_as_bearer_token_only_when_set() {
    let server = FakeModelServer::start().await;
    server.require_api_key("sk-test-123");
    server.push(Reply::text("authorized"));
    let mut with_key = config(server.base_url(), RetryPolicy::none());
    with_key.api_key = Some(Secret::new("sk-test-123"));
    let provider = OpenAiCompatible::new(with_key).unwrap();

    let answer = chat(&provider, &request(true)).await.0.unwrap();
    assert_eq!(answer.message.content, "authorized");
    assert_eq!(
        server.requests()[0].authorization.as_deref(),
        Some("Bearer sk-test-123")
    );
    assert!(!format!("{provider:?}").contains("sk-test-123"));
    assert!(!provider.describe().contains("sk-test-123"));
    assert_eq!(provider.list_models().await.unwrap(), vec!["fake-model"]);
    assert_eq!(
        server.requests()[1].authorization.as_deref(),
        Some("Bearer sk-test-123")
    );
}

#[tokio::test]
async fn list_models_reads_the_model_list() {
    let server = FakeModelServer::start().await;
    server.set_models(vec!["qwen3-coder".into(), "llama-3.3-70b".into()]);
    let provider = client(&server, RetryPolicy::none());

    assert_eq!(
        provider.list_models().await.unwrap(),
        vec!["qwen3-coder", "llama-3.3-70b"]
    );
    let sent = server.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].path, "/v1/models");
    assert_eq!(
        provider.describe(),
        format!("openai-compatible {}", server.base_url())
    );
}

#[tokio::test]
async fn fallback_answers_once_the_script_is_empty() {
    let server = FakeModelServer::start().await;
    server.set_fallback(|req| match req.last_message() {
        Some(m) if m["role"] == "tool" => Reply::text(format!("tool said: {}", m["content"])),
        _ => Reply::tool_call("terminal", r#"{"command":"pwd"}"#),
    });
    let provider = client(&server, quick_retries(0));
    let mut req = request(true);

    let first = chat(&provider, &req).await.0.unwrap();
    let call = first.message.tool_calls[0].clone();
    assert_eq!(call.name, "terminal");
    assert_eq!(call.arguments, r#"{"command":"pwd"}"#);
    req.messages.push(first.message);
    req.messages.push(Message::tool_result(&call, "/home"));
    let second = chat(&provider, &req).await.0.unwrap();
    assert_eq!(second.message.content, r#"tool said: "/home""#);
}
