//! Test fakes that speak real protocols over real sockets.
//!
//! This crate owns [`FakeModelServer`] and [`FakeAnthropicServer`] (the Anthropic Messages
//! API, see its module), and hands tests of the agent loop the real tool executor
//! ([`sandboxed_tools`]: the same sandbox a user's tool calls get). [`FakeModelServer`] is a
//! scripted OpenAI-compatible `/v1/chat/completions` server on a loopback port. Tests push [`Reply`] values; each `POST /v1/chat/completions`
//! consumes one, and the server renders it in the mode the request asked for: a
//! `chat.completion` JSON object, or `chat.completion.chunk` server-sent events shaped the way
//! OpenAI streams them (role delta first, text in small deltas, tool calls with `id` and `name` in
//! their first fragment and `arguments` in pieces, a usage chunk, `data: [DONE]`). Nothing here
//! mocks the HTTP client: the code under test opens a TCP connection and parses real bytes.
//!
//! It is a dev-only crate. It must never be a dependency of a shipped binary, and it never
//! panics on a poisoned lock: a test that panicked while holding one has already failed, and the
//! server keeps answering so that failure is the one reported.

mod anthropic;
mod render;
mod sandboxed;

pub use anthropic::{AnthropicReply, AnthropicRequest, FakeAnthropicServer, FakeBlock};
pub use sandboxed::{TEST_APPROVAL, sandboxed_tools, sandboxed_tools_with, workspace_binary};

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// Decides the reply to a request when the script is empty.
type Fallback = Arc<dyn Fn(&RecordedRequest) -> Reply + Send + Sync + 'static>;

/// A scripted OpenAI-compatible model server on `127.0.0.1`.
///
/// Cloning gives another handle to the same server. The server shuts down when the last handle
/// is dropped (in-flight replies finish first), or at the latest when the runtime ends.
#[derive(Clone)]
pub struct FakeModelServer {
    state: Arc<ServerState>,
    addr: SocketAddr,
    _shutdown: Arc<ShutdownOnDrop>,
}

impl fmt::Debug for FakeModelServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeModelServer")
            .field("base_url", &self.base_url())
            .field("scripted_replies", &lock(&self.state.script).len())
            .field("requests", &lock(&self.state.requests).len())
            .finish_non_exhaustive()
    }
}

/// State shared between the handles and the server task.
struct ServerState {
    script: Mutex<VecDeque<Reply>>,
    fallback: Mutex<Option<Fallback>>,
    requests: Mutex<Vec<RecordedRequest>>,
    api_key: Mutex<Option<String>>,
    models: Mutex<Vec<String>>,
}

/// Signals the server task to stop when the last [`FakeModelServer`] handle goes away.
struct ShutdownOnDrop(Mutex<Option<oneshot::Sender<()>>>);

impl Drop for ShutdownOnDrop {
    fn drop(&mut self) {
        if let Some(tx) = lock(&self.0).take() {
            // The server may already be gone (runtime shut down); nothing to stop then.
            let _ = tx.send(());
        }
    }
}

impl ShutdownOnDrop {
    /// Serves `app` on `listener` in the background until the returned handle is dropped.
    fn serve(listener: tokio::net::TcpListener, app: Router) -> Arc<Self> {
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = rx.await;
            };
            // An accept error ends the server; the test then sees connection errors, which
            // name the real problem better than anything we could add here.
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await;
        });
        Arc::new(Self(Mutex::new(Some(tx))))
    }
}

/// Locks a mutex, recovering the data if a panicking test poisoned it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl FakeModelServer {
    /// Starts a server on `127.0.0.1:0` in the current tokio runtime.
    ///
    /// # Panics
    /// When no loopback port can be bound: the test cannot run at all then, and saying so
    /// loudly is the most useful thing a test fixture can do.
    pub async fn start() -> FakeModelServer {
        match Self::try_start().await {
            Ok(server) => server,
            Err(e) => panic!("testkit: cannot start the fake model server on 127.0.0.1: {e}"),
        }
    }

    /// Starts a server on `127.0.0.1:0`, returning the bind error instead of panicking.
    ///
    /// # Errors
    /// When the loopback listener cannot be bound.
    pub async fn try_start() -> std::io::Result<FakeModelServer> {
        Self::start_on("127.0.0.1:0").await
    }

    /// Start on a given address (`127.0.0.1:8080`), e.g. for a fake model a person talks to.
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub async fn start_on(addr: &str) -> std::io::Result<FakeModelServer> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(ServerState {
            script: Mutex::new(VecDeque::new()),
            fallback: Mutex::new(None),
            requests: Mutex::new(Vec::new()),
            api_key: Mutex::new(None),
            models: Mutex::new(vec!["fake-model".to_owned()]),
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(chat_completions))
            .route("/v1/models", get(list_models))
            .fallback(unknown_route)
            .with_state(Arc::clone(&state));
        Ok(FakeModelServer {
            state,
            addr,
            _shutdown: ShutdownOnDrop::serve(listener, app),
        })
    }

    /// The endpoint to hand to a client: `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Appends a reply to the script. Each `POST /v1/chat/completions` consumes the oldest one.
    pub fn push(&self, reply: Reply) {
        lock(&self.state.script).push_back(reply);
    }

    /// Decides replies once the script is empty, e.g. "call a tool, then answer in text after
    /// the tool result" for a benchmark with an unbounded number of turns.
    pub fn set_fallback(&self, f: impl Fn(&RecordedRequest) -> Reply + Send + Sync + 'static) {
        *lock(&self.state.fallback) = Some(Arc::new(f));
    }

    /// Every request received so far, in arrival order, including `GET /v1/models` and
    /// requests later refused for a missing API key.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state.requests).clone()
    }

    /// Only the `POST /v1/chat/completions` requests, in arrival order.
    pub fn chat_requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state.requests)
            .iter()
            .filter(|r| r.path == CHAT_PATH)
            .cloned()
            .collect()
    }

    /// Requires `Authorization: Bearer <key>` on every `/v1` route; others get a 401 with an
    /// OpenAI-style error body (and consume no scripted reply).
    pub fn require_api_key(&self, key: &str) {
        *lock(&self.state.api_key) = Some(key.to_owned());
    }

    /// The model ids `GET /v1/models` lists. Default: `["fake-model"]`.
    pub fn set_models(&self, models: Vec<String>) {
        *lock(&self.state.models) = models;
    }
}

const CHAT_PATH: &str = "/v1/chat/completions";

/// One HTTP request the server received.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    /// The JSON body; `Value::Null` for a bodyless request, a JSON string holding the raw text
    /// for a body that was not JSON.
    pub body: Value,
    /// The `Authorization` header, verbatim.
    pub authorization: Option<String>,
    /// The request path, e.g. `/v1/chat/completions`.
    pub path: String,
}

impl RecordedRequest {
    /// The last entry of `messages`, if any.
    pub fn last_message(&self) -> Option<&Value> {
        self.body.get("messages")?.as_array()?.last()
    }

    /// Whether the client asked for server-sent events (`"stream": true`).
    pub fn is_stream(&self) -> bool {
        self.body.get("stream").and_then(Value::as_bool) == Some(true)
    }

    /// The names of the tools the client offered, in order.
    pub fn tool_names(&self) -> Vec<String> {
        self.body
            .get("tools")
            .and_then(Value::as_array)
            .map(|tools| {
                tools
                    .iter()
                    .filter_map(|t| t.pointer("/function/name")?.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether the client asked for a usage chunk at the end of the stream.
    fn wants_stream_usage(&self) -> bool {
        self.body
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            == Some(true)
    }
}

/// A tool call the fake model makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeToolCall {
    /// Call id; when empty the server assigns `call_<request number>_<position>`.
    pub id: String,
    pub name: String,
    /// Raw argument text, sent as-is: it may be invalid JSON on purpose.
    pub arguments: String,
}

impl FakeToolCall {
    /// A call with a server-assigned id.
    pub fn new(name: impl Into<String>, arguments: impl Into<String>) -> Self {
        Self {
            id: String::new(),
            name: name.into(),
            arguments: arguments.into(),
        }
    }
}

/// One scripted answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// A plain text answer, finish reason `stop`.
    Text(String),
    /// Tool calls, optionally preceded by text, finish reason `tool_calls`.
    ToolCalls {
        text: String,
        calls: Vec<FakeToolCall>,
    },
    /// A non-200 status with this body (sent in either mode, before any stream starts).
    Status {
        code: u16,
        body: String,
        retry_after: Option<String>,
    },
    /// Sleeps, then answers with the inner reply. The request is recorded on arrival.
    Delay(Duration, Box<Reply>),
    /// A 200 whose body is this text, with `Content-Type: text/html`.
    NotJson(String),
    /// Streaming: a role chunk and a few text deltas, then a clean close without a finish reason
    /// or `[DONE]`. Non-streaming: the first half of a `chat.completion` body.
    TruncatedStream,
}

impl Reply {
    /// A text answer.
    pub fn text(text: impl Into<String>) -> Self {
        Reply::Text(text.into())
    }

    /// A single tool call with a server-assigned id and no text.
    pub fn tool_call(name: impl Into<String>, arguments: impl Into<String>) -> Self {
        Reply::ToolCalls {
            text: String::new(),
            calls: vec![FakeToolCall::new(name, arguments)],
        }
    }

    /// Sleeps `delay`, then sends `reply`.
    pub fn delayed(delay: Duration, reply: Reply) -> Self {
        Reply::Delay(delay, Box::new(reply))
    }

    /// 429 with `Retry-After: <secs>` and OpenAI's rate-limit error body.
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        Reply::Status {
            code: 429,
            body: error_body(
                "Rate limit reached for requests. Please try again later.",
                "requests",
                Some("rate_limit_exceeded"),
            ),
            retry_after: Some(retry_after_secs.to_string()),
        }
    }

    /// 500 with OpenAI's generic server error body.
    pub fn server_error() -> Self {
        Reply::Status {
            code: 500,
            body: error_body(
                "The server had an error while processing your request. Sorry about that!",
                "server_error",
                None,
            ),
            retry_after: None,
        }
    }

    /// 401 with OpenAI's invalid-key error body.
    pub fn unauthorized() -> Self {
        Reply::Status {
            code: 401,
            body: invalid_api_key_body(),
            retry_after: None,
        }
    }

    /// 400 with OpenAI's `context_length_exceeded` error body.
    pub fn context_overflow() -> Self {
        Reply::Status {
            code: 400,
            body: error_body(
                "This model's maximum context length is 8192 tokens. However, your messages \
                 resulted in 9001 tokens. Please reduce the length of the messages.",
                "invalid_request_error",
                Some("context_length_exceeded"),
            ),
            retry_after: None,
        }
    }

    /// 404 with OpenAI's `model_not_found` error body.
    pub fn model_not_found() -> Self {
        Reply::Status {
            code: 404,
            body: error_body(
                "The model does not exist or you do not have access to it.",
                "invalid_request_error",
                Some("model_not_found"),
            ),
            retry_after: None,
        }
    }
}

/// An OpenAI-style error body: `{"error":{"message","type","param","code"}}`.
fn error_body(message: &str, kind: &str, code: Option<&str>) -> String {
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}}).to_string()
}

fn invalid_api_key_body() -> String {
    error_body(
        "Incorrect API key provided.",
        "invalid_request_error",
        Some("invalid_api_key"),
    )
}

fn json_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Records the request; `None` when an API key is required and was not presented (answer with
/// [`unauthorized`] then).
fn record_and_authorize(
    state: &ServerState,
    headers: &HeaderMap,
    path: String,
    body: Value,
) -> Option<RecordedRequest> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let recorded = RecordedRequest {
        body,
        authorization,
        path,
    };
    lock(&state.requests).push(recorded.clone());
    if let Some(key) = lock(&state.api_key).as_deref()
        && recorded.authorization.as_deref() != Some(format!("Bearer {key}").as_str())
    {
        return None;
    }
    Some(recorded)
}

fn unauthorized() -> Response {
    json_response(StatusCode::UNAUTHORIZED, invalid_api_key_body())
}

async fn chat_completions(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed = serde_json::from_slice::<Value>(&body);
    let body_value = match &parsed {
        Ok(v) => v.clone(),
        Err(_) => Value::String(String::from_utf8_lossy(&body).into_owned()),
    };
    let Some(request) = record_and_authorize(&state, &headers, CHAT_PATH.to_owned(), body_value)
    else {
        return unauthorized();
    };
    if let Err(e) = parsed {
        return json_response(
            StatusCode::BAD_REQUEST,
            error_body(
                &format!("testkit: request body is not JSON: {e}"),
                "invalid_request_error",
                None,
            ),
        );
    }
    let sequence = lock(&state.requests)
        .iter()
        .filter(|r| r.path == CHAT_PATH)
        .count();
    let scripted = lock(&state.script).pop_front();
    let reply = match scripted {
        Some(reply) => reply,
        None => {
            // Clone the Arc out so the user's closure never runs under our lock.
            let fallback = lock(&state.fallback).clone();
            match fallback {
                Some(f) => f(&request),
                None => {
                    return json_response(
                        StatusCode::BAD_REQUEST,
                        error_body(
                            &format!(
                                "testkit: script exhausted (chat request #{sequence} had no \
                                 scripted reply and no fallback is set)"
                            ),
                            "invalid_request_error",
                            Some("testkit_script_exhausted"),
                        ),
                    );
                }
            }
        }
    };
    let cached_tokens = prefix_cached_tokens(&state, &request);
    render::reply(reply, &request, sequence, cached_tokens).await
}

/// Simulates a provider's prefix cache: when this request's messages extend the previous chat
/// request's messages, the previous prompt counts as cached (never more than this prompt).
/// Deterministic, and nonzero on the second turn of a conversation, which is what usage
/// accounting tests need.
fn prefix_cached_tokens(state: &ServerState, request: &RecordedRequest) -> u64 {
    let requests = lock(&state.requests);
    let mut chats = requests.iter().rev().filter(|r| r.path == CHAT_PATH);
    // The first match is `request` itself (recorded on arrival).
    let (Some(_), Some(previous)) = (chats.next(), chats.next()) else {
        return 0;
    };
    let messages = |r: &RecordedRequest| r.body.get("messages").and_then(Value::as_array).cloned();
    match (messages(previous), messages(request)) {
        (Some(old), Some(new)) if !old.is_empty() && new.starts_with(&old) => {
            render::prompt_tokens(&previous.body).min(render::prompt_tokens(&request.body))
        }
        _ => 0,
    }
}

async fn list_models(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    if record_and_authorize(&state, &headers, uri.path().to_owned(), Value::Null).is_none() {
        return unauthorized();
    }
    let data: Vec<Value> = lock(&state.models)
        .iter()
        .map(|id| json!({"id": id, "object": "model", "created": 1_700_000_000, "owned_by": "testkit"}))
        .collect();
    json_response(
        StatusCode::OK,
        json!({"object": "list", "data": data}).to_string(),
    )
}

async fn unknown_route(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let path = uri.path().to_owned();
    lock(&state.requests).push(RecordedRequest {
        body: Value::Null,
        authorization: headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        path: path.clone(),
    });
    json_response(
        StatusCode::NOT_FOUND,
        error_body(
            &format!("testkit: unknown route {path}"),
            "invalid_request_error",
            None,
        ),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn recorded_request_helpers_read_the_body() {
        let r = RecordedRequest {
            body: json!({
                "stream": true,
                "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}],
                "tools": [{"type": "function", "function": {"name": "read_file"}},
                          {"type": "function", "function": {"name": "terminal"}}],
            }),
            authorization: None,
            path: CHAT_PATH.to_owned(),
        };
        assert!(r.is_stream());
        assert_eq!(r.last_message().unwrap()["content"], "hi");
        assert_eq!(r.tool_names(), vec!["read_file", "terminal"]);
        let empty = RecordedRequest {
            body: Value::Null,
            authorization: None,
            path: "/v1/models".to_owned(),
        };
        assert!(!empty.is_stream());
        assert!(empty.last_message().is_none());
        assert!(empty.tool_names().is_empty());
    }
}
