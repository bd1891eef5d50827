//! [`FakeAnthropicServer`]: a scripted Anthropic Messages API (`POST /v1/messages`) on a
//! loopback port.
//!
//! Each request consumes one [`AnthropicReply`], rendered as a `message` JSON object or, when
//! the request says `"stream": true`, as the server-sent events Anthropic sends
//! (`message_start`, `ping`, `content_block_start`/`_delta`/`_stop` with `text_delta`,
//! `input_json_delta`, `thinking_delta` and `signature_delta` in small pieces, `message_delta`
//! with the stop reason and usage, `message_stop`). Like the real API it refuses, with a 400
//! `invalid_request_error`, a request without `anthropic-version` or `max_tokens`, with a
//! `system` role in `messages`, with turns that do not alternate starting from the user, or with
//! a `tool_result` that answers no `tool_use` of the turn before; so a client that gets those
//! wrong fails its tests here, not in production.

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::{ShutdownOnDrop, lock};

const MESSAGES_PATH: &str = "/v1/messages";

/// One content block of a scripted answer.
#[derive(Debug, Clone, PartialEq)]
pub enum FakeBlock {
    Text(String),
    /// `id` empty: the server assigns `toolu_<request>_<position>`.
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
    Thinking {
        thinking: String,
        signature: String,
    },
    RedactedThinking(String),
}

/// One scripted answer.
#[derive(Debug, Clone, PartialEq)]
pub enum AnthropicReply {
    /// A message with these blocks; the stop reason is `tool_use` when a block is one, else
    /// `end_turn`.
    Message(Vec<FakeBlock>),
    /// A non-200 status with this body, before any stream starts.
    Status {
        code: u16,
        body: String,
        retry_after: Option<String>,
    },
    /// A 200 whose body is this text verbatim, with this content type.
    Raw { content_type: String, body: String },
    /// Streaming: `message_start` and some text, then a close without `message_stop`.
    TruncatedStream,
    /// Sleeps, then answers with the inner reply.
    Delay(Duration, Box<AnthropicReply>),
}

fn error_body(kind: &str, message: &str) -> String {
    json!({"type": "error", "error": {"type": kind, "message": message}}).to_string()
}

impl AnthropicReply {
    pub fn text(text: impl Into<String>) -> Self {
        AnthropicReply::Message(vec![FakeBlock::Text(text.into())])
    }

    /// One `tool_use` block with a server-assigned id.
    pub fn tool_use(name: impl Into<String>, input: Value) -> Self {
        AnthropicReply::Message(vec![FakeBlock::ToolUse {
            id: String::new(),
            name: name.into(),
            input,
        }])
    }

    /// 429 `rate_limit_error` with `retry-after: <secs>`.
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        AnthropicReply::Status {
            code: 429,
            body: error_body(
                "rate_limit_error",
                "Number of request tokens has exceeded your per-minute rate limit",
            ),
            retry_after: Some(retry_after_secs.to_string()),
        }
    }

    /// 529 `overloaded_error`.
    pub fn overloaded() -> Self {
        AnthropicReply::Status {
            code: 529,
            body: error_body("overloaded_error", "Overloaded"),
            retry_after: None,
        }
    }

    /// 400 `invalid_request_error`: the prompt is longer than the context window.
    pub fn prompt_too_long() -> Self {
        AnthropicReply::Status {
            code: 400,
            body: error_body(
                "invalid_request_error",
                "prompt is too long: 212345 tokens > 200000 maximum",
            ),
            retry_after: None,
        }
    }
}

/// One request the server received.
#[derive(Debug, Clone, PartialEq)]
pub struct AnthropicRequest {
    pub path: String,
    /// The JSON body (`Value::Null` without one).
    pub body: Value,
    /// `x-api-key`, verbatim.
    pub api_key: Option<String>,
    /// `anthropic-version`, verbatim.
    pub version: Option<String>,
}

impl AnthropicRequest {
    pub fn is_stream(&self) -> bool {
        self.body.get("stream").and_then(Value::as_bool) == Some(true)
    }

    /// `messages` of the body.
    pub fn messages(&self) -> Vec<Value> {
        self.body
            .get("messages")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    }
}

struct AnthropicState {
    script: Mutex<VecDeque<AnthropicReply>>,
    requests: Mutex<Vec<AnthropicRequest>>,
    api_key: Mutex<Option<String>>,
}

/// A scripted Anthropic Messages API server on `127.0.0.1`. Cloning gives another handle; the
/// server stops when the last one is dropped.
#[derive(Clone)]
pub struct FakeAnthropicServer {
    state: Arc<AnthropicState>,
    addr: SocketAddr,
    _shutdown: Arc<ShutdownOnDrop>,
}

impl fmt::Debug for FakeAnthropicServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeAnthropicServer")
            .field("base_url", &self.base_url())
            .finish_non_exhaustive()
    }
}

impl FakeAnthropicServer {
    /// Starts a server on `127.0.0.1:0` in the current tokio runtime.
    ///
    /// # Panics
    /// When no loopback port can be bound.
    pub async fn start() -> FakeAnthropicServer {
        match Self::start_on("127.0.0.1:0").await {
            Ok(server) => server,
            Err(e) => panic!("testkit: cannot start the fake Anthropic server: {e}"),
        }
    }

    /// Starts on a given address.
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub async fn start_on(addr: &str) -> std::io::Result<FakeAnthropicServer> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(AnthropicState {
            script: Mutex::new(VecDeque::new()),
            requests: Mutex::new(Vec::new()),
            api_key: Mutex::new(None),
        });
        let app = Router::new()
            .route(MESSAGES_PATH, post(messages))
            .route("/v1/models", get(models))
            .fallback(unknown_route)
            .with_state(Arc::clone(&state));
        Ok(FakeAnthropicServer {
            state,
            addr,
            _shutdown: ShutdownOnDrop::serve(listener, app),
        })
    }

    /// The API root, `http://127.0.0.1:PORT` (requests go to `/v1/messages` under it).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn push(&self, reply: AnthropicReply) {
        lock(&self.state.script).push_back(reply);
    }

    /// Requires `x-api-key: <key>`; other requests get a 401 `authentication_error`.
    pub fn require_api_key(&self, key: &str) {
        *lock(&self.state.api_key) = Some(key.to_owned());
    }

    /// Every request, in arrival order.
    pub fn requests(&self) -> Vec<AnthropicRequest> {
        lock(&self.state.requests).clone()
    }

    /// Only the `POST /v1/messages` requests.
    pub fn message_requests(&self) -> Vec<AnthropicRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == MESSAGES_PATH)
            .collect()
    }
}

fn json_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn bad_request(message: &str) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        error_body("invalid_request_error", message),
    )
}

fn record(
    state: &AnthropicState,
    headers: &HeaderMap,
    path: &str,
    body: Value,
) -> AnthropicRequest {
    let h = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let request = AnthropicRequest {
        path: path.to_owned(),
        body,
        api_key: h("x-api-key"),
        version: h("anthropic-version"),
    };
    lock(&state.requests).push(request.clone());
    request
}

fn authorized(state: &AnthropicState, request: &AnthropicRequest) -> bool {
    match lock(&state.api_key).as_deref() {
        Some(key) => request.api_key.as_deref() == Some(key),
        None => true,
    }
}

fn unauthorized() -> Response {
    json_response(
        StatusCode::UNAUTHORIZED,
        error_body("authentication_error", "invalid x-api-key"),
    )
}

/// What the real API would refuse about this request, if anything.
fn protocol_violation(request: &AnthropicRequest) -> Option<String> {
    if request.version.is_none() {
        return Some("anthropic-version: header is required".to_owned());
    }
    let body = &request.body;
    if body.get("model").and_then(Value::as_str).is_none() {
        return Some("model: Field required".to_owned());
    }
    if body.get("max_tokens").and_then(Value::as_u64).is_none() {
        return Some("max_tokens: Field required".to_owned());
    }
    let messages = request.messages();
    if messages.is_empty() {
        return Some("messages: at least one message is required".to_owned());
    }
    let mut expected = "user";
    let mut open_tool_uses: Vec<String> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
        if role != expected {
            return Some(format!(
                "messages.{i}.role: expected `{expected}`, got `{role}` (roles must alternate, \
                 starting with user; the system prompt goes in the top-level `system`)"
            ));
        }
        let blocks = match m.get("content") {
            Some(Value::String(s)) if !s.is_empty() => Vec::new(),
            Some(Value::Array(blocks)) if !blocks.is_empty() => blocks.clone(),
            _ => return Some(format!("messages.{i}.content: must not be empty")),
        };
        let mut answered = Vec::new();
        for (j, b) in blocks.iter().enumerate() {
            match b.get("type").and_then(Value::as_str) {
                Some("text") if b.get("text").and_then(Value::as_str) == Some("") => {
                    return Some(format!(
                        "messages.{i}.content.{j}.text: text content blocks must be non-empty"
                    ));
                }
                Some("tool_result") => {
                    let id = b
                        .get("tool_use_id")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    if !open_tool_uses.iter().any(|u| u == id) {
                        return Some(format!(
                            "messages.{i}.content.{j}: unexpected `tool_use_id` found in \
                             `tool_result` blocks: {id}"
                        ));
                    }
                    answered.push(id.to_owned());
                }
                Some("tool_use") if !b.get("input").is_some_and(Value::is_object) => {
                    return Some(format!("messages.{i}.content.{j}.input: must be an object"));
                }
                _ => {}
            }
        }
        if role == "user"
            && let Some(missing) = open_tool_uses.iter().find(|u| !answered.contains(u))
        {
            return Some(format!(
                "messages.{i}: `tool_use` ids were found without `tool_result` blocks \
                 immediately after: {missing}"
            ));
        }
        open_tool_uses = blocks
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_use"))
            .filter_map(|b| b.get("id").and_then(Value::as_str).map(str::to_owned))
            .collect();
        expected = if role == "user" { "assistant" } else { "user" };
    }
    None
}

async fn messages(
    State(state): State<Arc<AnthropicState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed = serde_json::from_slice::<Value>(&body);
    let value = match &parsed {
        Ok(v) => v.clone(),
        Err(_) => Value::String(String::from_utf8_lossy(&body).into_owned()),
    };
    let request = record(&state, &headers, MESSAGES_PATH, value);
    if !authorized(&state, &request) {
        return unauthorized();
    }
    if let Err(e) = parsed {
        return bad_request(&format!("testkit: request body is not JSON: {e}"));
    }
    if let Some(violation) = protocol_violation(&request) {
        return bad_request(&violation);
    }
    let sequence = lock(&state.requests)
        .iter()
        .filter(|r| r.path == MESSAGES_PATH)
        .count();
    let Some(reply) = lock(&state.script).pop_front() else {
        return bad_request(&format!(
            "testkit: script exhausted (messages request #{sequence} had no scripted reply)"
        ));
    };
    render(reply, &request, sequence).await
}

fn render(
    reply: AnthropicReply,
    request: &AnthropicRequest,
    sequence: usize,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response> + Send + '_>> {
    Box::pin(async move {
        match reply {
            AnthropicReply::Delay(d, inner) => {
                tokio::time::sleep(d).await;
                render(*inner, request, sequence).await
            }
            AnthropicReply::Status {
                code,
                body,
                retry_after,
            } => {
                let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
                let mut response = json_response(status, body);
                if let Some(v) = retry_after.and_then(|v| v.parse().ok()) {
                    response.headers_mut().insert("retry-after", v);
                }
                response
            }
            AnthropicReply::Raw { content_type, body } => {
                (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], body).into_response()
            }
            AnthropicReply::TruncatedStream => {
                let mut out = event(&message_start(request, sequence));
                out.push_str(&event(&json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})));
                out.push_str(&event(&json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Half an ans"}})));
                sse(out)
            }
            AnthropicReply::Message(blocks) => {
                let blocks = assign_ids(blocks, sequence);
                if request.is_stream() {
                    sse(stream(&blocks, request, sequence))
                } else {
                    let mut message = message_start(request, sequence)["message"].clone();
                    message["content"] = Value::Array(blocks.iter().map(block_json).collect());
                    message["stop_reason"] = json!(stop_reason(&blocks));
                    message["usage"]["output_tokens"] = json!(output_tokens(&blocks));
                    json_response(StatusCode::OK, message.to_string())
                }
            }
        }
    })
}

fn assign_ids(blocks: Vec<FakeBlock>, sequence: usize) -> Vec<FakeBlock> {
    blocks
        .into_iter()
        .enumerate()
        .map(|(i, b)| match b {
            FakeBlock::ToolUse { id, name, input } if id.is_empty() => FakeBlock::ToolUse {
                id: format!("toolu_{sequence}_{i}"),
                name,
                input,
            },
            other => other,
        })
        .collect()
}

fn block_json(b: &FakeBlock) -> Value {
    match b {
        FakeBlock::Text(t) => json!({"type": "text", "text": t}),
        FakeBlock::ToolUse { id, name, input } => {
            json!({"type": "tool_use", "id": id, "name": name, "input": input})
        }
        FakeBlock::Thinking {
            thinking,
            signature,
        } => json!({"type": "thinking", "thinking": thinking, "signature": signature}),
        FakeBlock::RedactedThinking(data) => json!({"type": "redacted_thinking", "data": data}),
    }
}

fn stop_reason(blocks: &[FakeBlock]) -> &'static str {
    if blocks
        .iter()
        .any(|b| matches!(b, FakeBlock::ToolUse { .. }))
    {
        "tool_use"
    } else {
        "end_turn"
    }
}

fn output_tokens(blocks: &[FakeBlock]) -> usize {
    blocks
        .iter()
        .map(|b| block_json(b).to_string().len() / 4 + 1)
        .sum()
}

/// `message_start`, with usage that looks like prompt caching at work: the first request
/// writes the cache, later ones read it, when the request marks anything `cache_control`.
fn message_start(request: &AnthropicRequest, sequence: usize) -> Value {
    let cached = request.body.to_string().contains("\"cache_control\"");
    let prompt = (request.body.to_string().len() / 4) as u64;
    let (write, read) = match (cached, sequence) {
        (false, _) => (0, 0),
        (true, 1) => (prompt / 2, 0),
        (true, _) => (0, prompt / 2),
    };
    json!({"type": "message_start", "message": {
        "id": format!("msg_fake_{sequence}"),
        "type": "message",
        "role": "assistant",
        "model": request.body.get("model").cloned().unwrap_or(Value::Null),
        "content": [],
        "stop_reason": null,
        "stop_sequence": null,
        "usage": {
            "input_tokens": prompt - write - read,
            "cache_creation_input_tokens": write,
            "cache_read_input_tokens": read,
            "output_tokens": 1
        }
    }})
}

fn event(data: &Value) -> String {
    let kind = data
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("message");
    format!("event: {kind}\ndata: {data}\n\n")
}

/// `s` in pieces of at most `n` characters.
fn pieces(s: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    chars.chunks(n).map(|c| c.iter().collect()).collect()
}

fn stream(blocks: &[FakeBlock], request: &AnthropicRequest, sequence: usize) -> String {
    let mut out = event(&message_start(request, sequence));
    out.push_str(&event(&json!({"type": "ping"})));
    for (index, block) in blocks.iter().enumerate() {
        let (start, deltas): (Value, Vec<Value>) = match block {
            FakeBlock::Text(t) => (
                json!({"type": "text", "text": ""}),
                pieces(t, 4)
                    .into_iter()
                    .map(|p| json!({"type": "text_delta", "text": p}))
                    .collect(),
            ),
            FakeBlock::ToolUse { id, name, input } => (
                json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                pieces(&input.to_string(), 7)
                    .into_iter()
                    .map(|p| json!({"type": "input_json_delta", "partial_json": p}))
                    .collect(),
            ),
            FakeBlock::Thinking {
                thinking,
                signature,
            } => (
                json!({"type": "thinking", "thinking": ""}),
                pieces(thinking, 5)
                    .into_iter()
                    .map(|p| json!({"type": "thinking_delta", "thinking": p}))
                    .chain(std::iter::once(
                        json!({"type": "signature_delta", "signature": signature}),
                    ))
                    .collect(),
            ),
            FakeBlock::RedactedThinking(_) => (block_json(block), Vec::new()),
        };
        out.push_str(&event(
            &json!({"type": "content_block_start", "index": index, "content_block": start}),
        ));
        for delta in deltas {
            out.push_str(&event(
                &json!({"type": "content_block_delta", "index": index, "delta": delta}),
            ));
        }
        out.push_str(&event(
            &json!({"type": "content_block_stop", "index": index}),
        ));
    }
    out.push_str(&event(&json!({
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason(blocks), "stop_sequence": null},
        "usage": {"output_tokens": output_tokens(blocks)}
    })));
    out.push_str(&event(&json!({"type": "message_stop"})));
    out
}

fn sse(text: String) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        text,
    )
        .into_response()
}

async fn models(
    State(state): State<Arc<AnthropicState>>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let request = record(&state, &headers, uri.path(), Value::Null);
    if !authorized(&state, &request) {
        return unauthorized();
    }
    json_response(
        StatusCode::OK,
        json!({"data": [{"type": "model", "id": "claude-sonnet-4-5", "display_name": "Claude Sonnet 4.5"}], "has_more": false}).to_string(),
    )
}

async fn unknown_route(
    State(state): State<Arc<AnthropicState>>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    record(&state, &headers, uri.path(), Value::Null);
    json_response(
        StatusCode::NOT_FOUND,
        error_body(
            "not_found_error",
            &format!("testkit: unknown route {}", uri.path()),
        ),
    )
}
