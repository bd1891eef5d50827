//! Turns a scripted [`Reply`] into the bytes an OpenAI-compatible server would send.
//!
//! The shapes follow OpenAI's Chat Completions API as observed on the wire, including the
//! details clients trip over: `content: null` beside tool calls, the role arriving in the first
//! stream delta, tool-call `id`/`name` only in a call's first fragment, `usage: null` on every
//! chunk but the separate final usage chunk (whose `choices` is empty).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::{FakeToolCall, RecordedRequest, Reply};

/// A fixed creation time keeps bodies deterministic.
const CREATED: u64 = 1_700_000_000;
/// Characters per streamed text delta: small, so clients see many deltas.
const TEXT_PIECE: usize = 4;
/// Upper bound on characters per streamed `arguments` piece.
const ARGUMENT_PIECE: usize = 8;

/// What the fake model says, with call ids assigned.
struct Answer {
    text: String,
    calls: Vec<FakeToolCall>,
}

impl Answer {
    fn new(text: String, calls: Vec<FakeToolCall>, sequence: usize) -> Self {
        let calls = calls
            .into_iter()
            .enumerate()
            .map(|(i, mut call)| {
                if call.id.is_empty() {
                    call.id = format!("call_{sequence}_{i}");
                }
                call
            })
            .collect();
        Self { text, calls }
    }

    fn finish_reason(&self) -> &'static str {
        if self.calls.is_empty() {
            "stop"
        } else {
            "tool_calls"
        }
    }

    fn completion_tokens(&self) -> u64 {
        let chars = self.text.chars().count()
            + self
                .calls
                .iter()
                .map(|c| c.name.chars().count() + c.arguments.chars().count())
                .sum::<usize>();
        (chars as u64 / 4).max(1)
    }
}

/// Prompt tokens the fake reports: a quarter of the request's JSON length.
pub(crate) fn prompt_tokens(body: &Value) -> u64 {
    body.to_string().len() as u64 / 4
}

fn usage(request: &RecordedRequest, completion_tokens: u64, cached_tokens: u64) -> Value {
    let prompt = prompt_tokens(&request.body);
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached_tokens},
    })
}

fn model(request: &RecordedRequest) -> String {
    request
        .body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("fake-model")
        .to_owned()
}

/// Renders `reply` for `request`, the `sequence`-th chat request (1-based).
pub(crate) async fn reply(
    mut reply: Reply,
    request: &RecordedRequest,
    sequence: usize,
    cached_tokens: u64,
) -> Response {
    while let Reply::Delay(delay, inner) = reply {
        tokio::time::sleep(delay).await;
        reply = *inner;
    }
    let stream = request.is_stream();
    match reply {
        Reply::Text(text) => answer(
            Answer::new(text, Vec::new(), sequence),
            request,
            sequence,
            cached_tokens,
        ),
        Reply::ToolCalls { text, calls } => answer(
            Answer::new(text, calls, sequence),
            request,
            sequence,
            cached_tokens,
        ),
        Reply::Status {
            code,
            body,
            retry_after,
        } => status(code, body, retry_after),
        Reply::NotJson(body) => {
            (StatusCode::OK, [(header::CONTENT_TYPE, "text/html")], body).into_response()
        }
        Reply::TruncatedStream if stream => {
            let mut events = vec![chunk(
                request,
                sequence,
                json!({"role": "assistant", "content": ""}),
                None,
            )];
            for piece in pieces("This answer was cut sh", TEXT_PIECE) {
                events.push(chunk(request, sequence, json!({"content": piece}), None));
            }
            sse(events, false)
        }
        Reply::TruncatedStream => {
            let answer = Answer::new(
                "This answer was cut short.".to_owned(),
                Vec::new(),
                sequence,
            );
            let full = completion(&answer, request, sequence, cached_tokens).to_string();
            let half: String = full.chars().take(full.chars().count() / 2).collect();
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                half,
            )
                .into_response()
        }
        Reply::Delay(..) => unreachable_delay(),
    }
}

/// The loop above unwraps every `Delay`; answering 500 beats a panic should that ever change.
fn unreachable_delay() -> Response {
    status(
        500,
        "testkit: nested delay was not unwrapped".to_owned(),
        None,
    )
}

fn answer(
    answer: Answer,
    request: &RecordedRequest,
    sequence: usize,
    cached_tokens: u64,
) -> Response {
    if !request.is_stream() {
        let body = completion(&answer, request, sequence, cached_tokens).to_string();
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
    }
    let mut events = Vec::new();
    let mut calls = answer.calls.iter().enumerate();
    if answer.text.is_empty() && !answer.calls.is_empty() {
        // OpenAI folds the role into the first tool-call fragment when there is no text.
        if let Some((i, call)) = calls.next() {
            let mut delta = first_call_fragment(i, call);
            delta["role"] = json!("assistant");
            delta["content"] = Value::Null;
            events.push(chunk(request, sequence, delta, None));
            push_argument_pieces(&mut events, request, sequence, i, call);
        }
    } else {
        events.push(chunk(
            request,
            sequence,
            json!({"role": "assistant", "content": ""}),
            None,
        ));
        for piece in pieces(&answer.text, TEXT_PIECE) {
            events.push(chunk(request, sequence, json!({"content": piece}), None));
        }
    }
    for (i, call) in calls {
        events.push(chunk(request, sequence, first_call_fragment(i, call), None));
        push_argument_pieces(&mut events, request, sequence, i, call);
    }
    events.push(chunk(
        request,
        sequence,
        json!({}),
        Some(answer.finish_reason()),
    ));
    if request.wants_stream_usage() {
        let mut last = envelope(request, sequence, Vec::new());
        last["usage"] = usage(request, answer.completion_tokens(), cached_tokens);
        events.push(last);
    }
    sse(events, true)
}

/// `{"tool_calls":[{index, id, type, function:{name, arguments:""}}]}`
fn first_call_fragment(index: usize, call: &FakeToolCall) -> Value {
    json!({"tool_calls": [{
        "index": index,
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": ""},
    }]})
}

fn push_argument_pieces(
    events: &mut Vec<Value>,
    request: &RecordedRequest,
    sequence: usize,
    index: usize,
    call: &FakeToolCall,
) {
    // At least two pieces whenever the text has two characters, so clients must concatenate.
    let size = call
        .arguments
        .chars()
        .count()
        .div_ceil(2)
        .clamp(1, ARGUMENT_PIECE);
    for piece in pieces(&call.arguments, size) {
        let delta = json!({"tool_calls": [{"index": index, "function": {"arguments": piece}}]});
        events.push(chunk(request, sequence, delta, None));
    }
}

/// Splits on character boundaries into pieces of at most `size` characters.
fn pieces(text: &str, size: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars
        .chunks(size.max(1))
        .map(|c| c.iter().collect())
        .collect()
}

fn envelope(request: &RecordedRequest, sequence: usize, choices: Vec<Value>) -> Value {
    let mut v = json!({
        "id": format!("chatcmpl-fake-{sequence}"),
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": model(request),
        "system_fingerprint": "fp_testkit",
        "choices": choices,
    });
    if request.wants_stream_usage() {
        v["usage"] = Value::Null;
    }
    v
}

fn chunk(request: &RecordedRequest, sequence: usize, delta: Value, finish: Option<&str>) -> Value {
    envelope(
        request,
        sequence,
        vec![json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish})],
    )
}

fn completion(
    answer: &Answer,
    request: &RecordedRequest,
    sequence: usize,
    cached_tokens: u64,
) -> Value {
    let mut message = json!({
        "role": "assistant",
        "content": if answer.text.is_empty() && !answer.calls.is_empty() { Value::Null } else { json!(answer.text) },
        "refusal": null,
    });
    if !answer.calls.is_empty() {
        message["tool_calls"] = answer
            .calls
            .iter()
            .map(|c| {
                json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}})
            })
            .collect();
    }
    json!({
        "id": format!("chatcmpl-fake-{sequence}"),
        "object": "chat.completion",
        "created": CREATED,
        "model": model(request),
        "system_fingerprint": "fp_testkit",
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": answer.finish_reason()}],
        "usage": usage(request, answer.completion_tokens(), cached_tokens),
    })
}

fn sse(events: Vec<Value>, done: bool) -> Response {
    let mut body = String::new();
    for event in events {
        body.push_str("data: ");
        body.push_str(&event.to_string());
        body.push_str("\n\n");
    }
    if done {
        body.push_str("data: [DONE]\n\n");
    }
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

fn status(code: u16, body: String, retry_after: Option<String>) -> Response {
    let Ok(status) = StatusCode::from_u16(code) else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("testkit: {code} is not an HTTP status code"),
        )
            .into_response();
    };
    let content_type = if serde_json::from_str::<Value>(&body).is_ok() {
        "application/json"
    } else {
        "text/plain"
    };
    let mut response = (status, [(header::CONTENT_TYPE, content_type)], body).into_response();
    if let Some(value) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn pieces_split_on_char_boundaries() {
        assert_eq!(pieces("héllo", 2), vec!["hé", "ll", "o"]);
        assert!(pieces("", 3).is_empty());
    }

    #[test]
    fn completion_uses_null_content_beside_tool_calls() {
        let request = RecordedRequest {
            body: json!({"model": "m", "messages": []}),
            authorization: None,
            path: "/v1/chat/completions".to_owned(),
        };
        let answer = Answer::new(String::new(), vec![FakeToolCall::new("t", "{}")], 3);
        let v = completion(&answer, &request, 3, 0);
        assert_eq!(v["choices"][0]["message"]["content"], Value::Null);
        assert_eq!(
            v["choices"][0]["message"]["tool_calls"][0]["id"],
            "call_3_0"
        );
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(v["model"], "m");
    }
}
