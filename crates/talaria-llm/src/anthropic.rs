//! [`Anthropic`]: the client for Anthropic's native Messages API (`POST {base}/v1/messages`).
//!
//! Talaria's transcript is OpenAI-shaped (a system message, assistant tool calls, one `tool`
//! message per result); this module translates it both ways:
//!
//! - the system messages become the top-level `system`, marked `cache_control: ephemeral`, and
//!   so is the last tool definition, so the stable prefix of every request (tools, then system)
//!   is cached by the provider;
//! - assistant tool calls become `tool_use` blocks; tool results become `tool_result` blocks in
//!   a user turn, and consecutive messages of one role are merged, because the API requires
//!   user and assistant turns to alternate;
//! - thinking blocks (`thinking` with its `signature`, `redacted_thinking`) come back in
//!   [`Message::provider_data`] as `{"anthropic_thinking": [..]}` and are sent back unchanged,
//!   first in their assistant turn, as the API requires for tool use with thinking.
//!
//! The API key goes into the `x-api-key` header (marked sensitive) and nowhere else. Anything
//! the server sends that does not parse is an [`LlmError`], never a panic.

use std::collections::BTreeMap;

use futures_util::StreamExt;
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use serde_json::{Map, Value, json};
use talaria_core::{Message, Role, Secret, ToolCall, Usage};

use crate::error::{LlmError, classify_status, snippet};
use crate::openai::{
    EndpointConfig, EventSink, body_error, error_failure, http_client, transport_error,
};
use crate::retry::{Failure, Retrier, RetryPolicy};
use crate::sse::SseParser;
use crate::wire::{WireModelList, fallback_call_id};
use crate::{ChatProvider, ChatRequest, ChatResponse, StreamEvent};

/// The API version every request names.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// The key of [`Message::provider_data`] under which thinking blocks are kept.
pub const THINKING_KEY: &str = "anthropic_thinking";

/// `max_tokens` when neither the request nor the catalogue gives one.
const FALLBACK_MAX_TOKENS: u32 = 8192;

/// Largest default `max_tokens` of a non-streamed request.
const NON_STREAMING_MAX_TOKENS: u32 = 16_384;

/// A client for Anthropic's Messages API. Cheap to share: it holds a connection pool.
pub struct Anthropic {
    client: reqwest::Client,
    /// The API root without `/v1` and without a trailing slash.
    base_url: String,
    shown_url: String,
    api_key: Option<Secret>,
    key_source: Option<String>,
    retry: RetryPolicy,
    default_max_tokens: u32,
    /// `max_tokens` by model, from the catalogue.
    model_max_tokens: BTreeMap<String, u32>,
}

impl std::fmt::Debug for Anthropic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Anthropic")
            .field("base_url", &self.shown_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl Anthropic {
    /// Validates `config.base_url` (`https://api.anthropic.com`; a trailing `/v1` is accepted
    /// and dropped) and builds the HTTP client.
    ///
    /// # Errors
    /// [`LlmError::InvalidEndpoint`] when `base_url` is not an `http://` or `https://` URL, or
    /// the HTTP client cannot be built.
    pub fn new(config: EndpointConfig) -> Result<Self, LlmError> {
        let (client, base_url, shown_url) = http_client(&config)?;
        let strip = |url: String| match url.strip_suffix("/v1") {
            Some(root) => root.to_owned(),
            None => url,
        };
        Ok(Self {
            client,
            base_url: strip(base_url),
            shown_url: strip(shown_url),
            api_key: config.api_key.filter(|k| !k.is_empty()),
            key_source: config.api_key_source,
            retry: config.retry,
            default_max_tokens: FALLBACK_MAX_TOKENS,
            model_max_tokens: BTreeMap::new(),
        })
    }

    /// `max_tokens` for requests that give none: per model, else `default`. The Messages API
    /// requires the field.
    #[must_use]
    pub fn with_max_tokens(mut self, default: u32, per_model: BTreeMap<String, u32>) -> Self {
        self.default_max_tokens = default.max(1);
        self.model_max_tokens = per_model;
        self
    }

    fn max_tokens_for(&self, request: &ChatRequest) -> u32 {
        if let Some(asked) = request.max_tokens {
            return asked;
        }
        let limit = self
            .model_max_tokens
            .get(&request.model)
            .copied()
            .unwrap_or(self.default_max_tokens);
        // The API refuses a non-streamed request whose answer could take longer than ten
        // minutes; a large model limit is only safe when streaming.
        if request.stream {
            limit
        } else {
            limit.min(NON_STREAMING_MAX_TOKENS)
        }
    }

    fn retrier(&self) -> Retrier<'_> {
        Retrier {
            policy: &self.retry,
            endpoint: &self.shown_url,
            api_key: self.api_key.as_ref(),
            key_source: self.key_source.as_deref(),
        }
    }

    fn headers(&self, builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let builder = builder.header("anthropic-version", ANTHROPIC_VERSION);
        match &self.api_key {
            Some(key) => match HeaderValue::from_str(key.expose()) {
                Ok(mut value) => {
                    value.set_sensitive(true);
                    builder.header("x-api-key", value)
                }
                // A key that cannot be a header value is sent as none; the 401 that follows
                // says what is wrong without quoting it.
                Err(_) => builder,
            },
            None => builder,
        }
    }

    async fn chat_once(
        &self,
        url: &str,
        shown: &str,
        body: &[u8],
        request: &ChatRequest,
        sink: &mut EventSink<'_>,
    ) -> Result<ChatResponse, Failure> {
        let response = self
            .headers(self.client.post(url))
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| transport_error(&e, shown))?;
        if !response.status().is_success() {
            return Err(error_failure(response, shown, Some(&request.model)).await);
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        if request.stream && !content_type.starts_with("application/json") {
            read_stream(response, shown, request, sink).await
        } else {
            let bytes = response
                .bytes()
                .await
                .map_err(|e| transport_error(&e, shown))?;
            let answer = parse_message(&bytes, &request.model)?;
            if !answer.message.content.is_empty() {
                sink.emit(StreamEvent::TextDelta(answer.message.content.clone()));
            }
            for (index, call) in answer.message.tool_calls.iter().enumerate() {
                sink.emit(StreamEvent::ToolCallStarted {
                    index,
                    id: call.id.clone(),
                    name: call.name.clone(),
                });
            }
            Ok(answer)
        }
    }

    async fn models_once(&self, url: &str, shown: &str) -> Result<Vec<String>, Failure> {
        let response = self
            .headers(self.client.get(url))
            .send()
            .await
            .map_err(|e| transport_error(&e, shown))?;
        if !response.status().is_success() {
            return Err(error_failure(response, shown, None).await);
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| transport_error(&e, shown))?;
        let list: WireModelList = serde_json::from_slice(&bytes)
            .map_err(|e| body_error(&e, &bytes, "a model list ({\"data\":[{\"id\":..}]})"))?;
        Ok(list.data.into_iter().map(|m| m.id).collect())
    }
}

#[async_trait::async_trait]
impl ChatProvider for Anthropic {
    fn describe(&self) -> String {
        format!("anthropic {}", self.shown_url)
    }

    async fn chat(
        &self,
        request: &ChatRequest,
        on_event: &mut (dyn FnMut(StreamEvent) + Send),
    ) -> Result<ChatResponse, LlmError> {
        let url = format!("{}/v1/messages", self.base_url);
        let shown = format!("{}/v1/messages", self.shown_url);
        let body = serde_json::to_vec(&request_body(request, self.max_tokens_for(request)))
            .map_err(|e| LlmError::InvalidRequest {
                detail: e.to_string(),
            })?;
        tracing::debug!(
            endpoint = %self.shown_url,
            model = %request.model,
            stream = request.stream,
            messages = request.messages.len(),
            tools = request.tools.len(),
            bytes = body.len(),
            "sending messages request"
        );
        let mut sink = EventSink {
            on_event,
            emitted: false,
        };
        let mut retry = 0;
        loop {
            match self
                .chat_once(&url, &shown, &body, request, &mut sink)
                .await
            {
                Ok(answer) => return Ok(answer),
                Err(failure) if sink.emitted => return Err(self.retrier().scrub(failure.error)),
                Err(failure) => {
                    let delay = self.retrier().delay("messages", retry, failure)?;
                    tokio::time::sleep(delay).await;
                    retry += 1;
                }
            }
        }
    }

    async fn list_models(&self) -> Result<Vec<String>, LlmError> {
        let url = format!("{}/v1/models", self.base_url);
        let shown = format!("{}/v1/models", self.shown_url);
        self.retrier()
            .run("list models", || self.models_once(&url, &shown))
            .await
    }
}

fn ephemeral() -> Value {
    json!({"type": "ephemeral"})
}

/// The JSON body of a `POST /v1/messages` for `request`.
pub(crate) fn request_body(request: &ChatRequest, max_tokens: u32) -> Value {
    let mut system: Vec<Value> = request
        .messages
        .iter()
        .filter(|m| m.role == Role::System && !m.content.is_empty())
        .map(|m| json!({"type": "text", "text": m.content}))
        .collect();
    if let Some(Value::Object(last)) = system.last_mut() {
        last.insert("cache_control".to_owned(), ephemeral());
    }
    let mut tools: Vec<Value> = request
        .tools
        .iter()
        .map(
            |t| json!({"name": t.name, "description": t.description, "input_schema": t.parameters}),
        )
        .collect();
    if let Some(Value::Object(last)) = tools.last_mut() {
        last.insert("cache_control".to_owned(), ephemeral());
    }
    let mut body = Map::new();
    body.insert("model".to_owned(), json!(request.model));
    body.insert("max_tokens".to_owned(), json!(max_tokens));
    if !system.is_empty() {
        body.insert("system".to_owned(), Value::Array(system));
    }
    body.insert(
        "messages".to_owned(),
        Value::Array(turns(&request.messages)),
    );
    if !tools.is_empty() {
        body.insert("tools".to_owned(), Value::Array(tools));
    }
    if request.stream {
        body.insert("stream".to_owned(), Value::Bool(true));
    }
    if let Some(t) = request.temperature {
        body.insert("temperature".to_owned(), json!(t));
    }
    Value::Object(body)
}

/// The conversation as alternating user/assistant turns of content blocks.
fn turns(messages: &[Message]) -> Vec<Value> {
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for m in messages {
        let (role, blocks) = match m.role {
            Role::System => continue,
            Role::User => ("user", text_block(&m.content).into_iter().collect()),
            Role::Tool => (
                "user",
                vec![json!({
                    "type": "tool_result",
                    "tool_use_id": m.tool_call_id.as_deref().unwrap_or_default(),
                    "content": m.content,
                })],
            ),
            Role::Assistant => {
                let mut blocks = thinking_blocks(m);
                blocks.extend(text_block(&m.content));
                blocks.extend(m.tool_calls.iter().map(|c| {
                    json!({"type": "tool_use", "id": c.id, "name": c.name, "input": tool_input(c)})
                }));
                ("assistant", blocks)
            }
        };
        if blocks.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((last_role, last_blocks)) if *last_role == role => last_blocks.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    turns
        .into_iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect()
}

/// Anthropic refuses empty text blocks.
fn text_block(text: &str) -> Option<Value> {
    (!text.is_empty()).then(|| json!({"type": "text", "text": text}))
}

/// The thinking blocks stored with an assistant message, exactly as they were received.
fn thinking_blocks(m: &Message) -> Vec<Value> {
    m.provider_data
        .as_ref()
        .and_then(|d| d.get(THINKING_KEY))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// A tool call's arguments as the `input` object the API requires. Arguments that are not a
/// JSON object (the model's mistake, already reported to it as a tool error) are sent as
/// `{}` rather than failing the whole conversation.
fn tool_input(call: &ToolCall) -> Value {
    match serde_json::from_str::<Value>(&call.arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({}),
    }
}

/// Anthropic's stop reasons in the OpenAI vocabulary the rest of Talaria uses.
fn finish_reason(stop_reason: &str) -> String {
    match stop_reason {
        "end_turn" | "stop_sequence" => "stop",
        "tool_use" => "tool_calls",
        "max_tokens" => "length",
        other => other,
    }
    .to_owned()
}

/// `usage` of a message or of `message_start`/`message_delta`. Anthropic counts cached prompt
/// tokens apart from `input_tokens`; Talaria's prompt count includes them.
fn apply_usage(usage: &mut Usage, wire: &Value) {
    let n = |k: &str| wire.get(k).and_then(Value::as_u64);
    let input = n("input_tokens");
    let read = n("cache_read_input_tokens");
    let created = n("cache_creation_input_tokens");
    if input.is_some() || read.is_some() || created.is_some() {
        // Saturating: the counts are the server's word, and u64::MAX must not panic.
        usage.prompt_tokens = input
            .unwrap_or(0)
            .saturating_add(read.unwrap_or(0))
            .saturating_add(created.unwrap_or(0));
        usage.cached_tokens = read.unwrap_or(0);
        usage.cache_write_tokens = created.unwrap_or(0);
    }
    if let Some(out) = n("output_tokens") {
        usage.completion_tokens = out;
    }
}

fn invalid(detail: String) -> LlmError {
    LlmError::InvalidResponse { detail }
}

/// Builds the assistant message from content blocks.
fn assemble(blocks: Vec<Block>) -> Message {
    let mut text = String::new();
    let mut calls = Vec::new();
    let mut thinking = Vec::new();
    for block in blocks {
        match block {
            Block::Text(t) => text.push_str(&t),
            Block::ToolUse { id, name, input } => {
                let id = if id.is_empty() {
                    fallback_call_id(calls.len())
                } else {
                    id
                };
                let arguments = if input.trim().is_empty() {
                    "{}".to_owned()
                } else {
                    input
                };
                calls.push(ToolCall {
                    id,
                    name,
                    arguments,
                });
            }
            Block::Thinking {
                thinking: t,
                signature,
            } => thinking.push(json!({"type": "thinking", "thinking": t, "signature": signature})),
            Block::Verbatim(v) => thinking.push(v),
            Block::Other => {}
        }
    }
    let mut message = Message::assistant(text, calls);
    if !thinking.is_empty() {
        message.provider_data = Some(json!({ THINKING_KEY: thinking }));
    }
    message
}

/// One content block of an answer, as far as it has arrived.
#[derive(Debug)]
enum Block {
    Text(String),
    /// `input` is JSON text: serialized whole, or the concatenated `partial_json` of a stream.
    ToolUse {
        id: String,
        name: String,
        input: String,
    },
    Thinking {
        thinking: String,
        signature: String,
    },
    /// `redacted_thinking`: opaque, kept as received.
    Verbatim(Value),
    /// A block type Talaria does not use (e.g. server tool results): dropped.
    Other,
}

fn str_field(v: &Value, k: &str) -> String {
    v.get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn block_from(v: &Value, streaming: bool) -> Block {
    match v.get("type").and_then(Value::as_str) {
        Some("text") => Block::Text(str_field(v, "text")),
        Some("tool_use") => Block::ToolUse {
            id: str_field(v, "id"),
            name: str_field(v, "name"),
            // A streamed block starts with `input: {}` and gets its JSON in deltas.
            input: match v.get("input") {
                Some(input) if !streaming => input.to_string(),
                _ => String::new(),
            },
        },
        Some("thinking") => Block::Thinking {
            thinking: str_field(v, "thinking"),
            signature: str_field(v, "signature"),
        },
        Some("redacted_thinking") => Block::Verbatim(v.clone()),
        _ => Block::Other,
    }
}

/// Parses a non-streamed `message` body.
fn parse_message(bytes: &[u8], requested_model: &str) -> Result<ChatResponse, LlmError> {
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| body_error(&e, bytes, "a Messages API message object"))?;
    let Some(content) = v.get("content").and_then(Value::as_array) else {
        return Err(invalid(format!(
            "expected a message with `content` blocks, got: {}",
            snippet(&String::from_utf8_lossy(bytes))
        )));
    };
    let blocks = content.iter().map(|b| block_from(b, false)).collect();
    let mut usage = Usage::default();
    if let Some(u) = v.get("usage") {
        apply_usage(&mut usage, u);
    }
    Ok(ChatResponse {
        message: assemble(blocks),
        usage,
        finish_reason: v
            .get("stop_reason")
            .and_then(Value::as_str)
            .map(finish_reason),
        model: v
            .get("model")
            .and_then(Value::as_str)
            .filter(|m| !m.is_empty())
            .unwrap_or(requested_model)
            .to_owned(),
        provider: None,
    })
}

/// An `error` event or body: `{"type":"error","error":{"type":"overloaded_error",..}}`,
/// classified as the HTTP status the same error type would have had.
fn event_error(v: &Value) -> LlmError {
    let status = match v.pointer("/error/type").and_then(Value::as_str) {
        Some("invalid_request_error") => 400,
        Some("authentication_error") => 401,
        Some("permission_error") => 403,
        Some("not_found_error") => 404,
        Some("request_too_large") => 413,
        Some("rate_limit_error") => 429,
        Some("overloaded_error") => 529,
        _ => 500,
    };
    classify_status(status, &v.to_string(), "the stream", None, None)
}

/// Assembles a streamed answer from Messages API events.
#[derive(Debug, Default)]
struct MessageStream {
    /// Blocks by the server's `index`.
    blocks: BTreeMap<u64, Block>,
    /// The server's index of each tool_use block → its position among the calls.
    call_positions: BTreeMap<u64, usize>,
    usage: Usage,
    stop_reason: Option<String>,
    model: Option<String>,
    started: bool,
    stopped: bool,
    events: usize,
}

impl MessageStream {
    /// Applies one event; `Ok(true)` once `message_stop` arrived.
    fn apply(&mut self, payload: &str, sink: &mut EventSink<'_>) -> Result<bool, LlmError> {
        let payload = payload.trim();
        if payload.is_empty() {
            return Ok(false);
        }
        self.events += 1;
        let v: Value = serde_json::from_str(payload).map_err(|e| {
            invalid(format!(
                "stream event is not a Messages API event ({e}): {}",
                snippet(payload)
            ))
        })?;
        let bad = || invalid(format!("unexpected stream event: {}", snippet(payload)));
        let index = || v.get("index").and_then(Value::as_u64).ok_or_else(bad);
        match v.get("type").and_then(Value::as_str) {
            Some("message_start") => {
                self.started = true;
                let message = v.get("message").ok_or_else(bad)?;
                self.model = message
                    .get("model")
                    .and_then(Value::as_str)
                    .filter(|m| !m.is_empty())
                    .map(str::to_owned);
                if let Some(u) = message.get("usage") {
                    apply_usage(&mut self.usage, u);
                }
            }
            Some("content_block_start") => {
                let index = index()?;
                let block = block_from(v.get("content_block").ok_or_else(bad)?, true);
                match &block {
                    Block::Text(t) if !t.is_empty() => sink.emit(StreamEvent::TextDelta(t.clone())),
                    Block::ToolUse { id, name, .. } => {
                        let position = self.call_positions.len();
                        self.call_positions.insert(index, position);
                        sink.emit(StreamEvent::ToolCallStarted {
                            index: position,
                            id: id.clone(),
                            name: name.clone(),
                        });
                    }
                    _ => {}
                }
                self.blocks.insert(index, block);
            }
            Some("content_block_delta") => {
                let index = index()?;
                let delta = v.get("delta").ok_or_else(bad)?;
                let Some(block) = self.blocks.get_mut(&index) else {
                    return Err(invalid(format!(
                        "a delta for content block {index}, which never started"
                    )));
                };
                let piece = |k: &str| str_field(delta, k);
                match (delta.get("type").and_then(Value::as_str), block) {
                    (Some("text_delta"), Block::Text(text)) => {
                        let t = piece("text");
                        text.push_str(&t);
                        if !t.is_empty() {
                            sink.emit(StreamEvent::TextDelta(t));
                        }
                    }
                    (Some("input_json_delta"), Block::ToolUse { input, .. }) => {
                        input.push_str(&piece("partial_json"));
                    }
                    (Some("thinking_delta"), Block::Thinking { thinking, .. }) => {
                        thinking.push_str(&piece("thinking"));
                    }
                    (Some("signature_delta"), Block::Thinking { signature, .. }) => {
                        signature.push_str(&piece("signature"));
                    }
                    // Deltas of blocks Talaria drops (citations and the like).
                    (_, Block::Other) => {}
                    _ => return Err(bad()),
                }
            }
            Some("content_block_stop") => {
                index()?;
            }
            Some("message_delta") => {
                if let Some(reason) = v.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    self.stop_reason = Some(reason.to_owned());
                }
                if let Some(u) = v.get("usage") {
                    apply_usage(&mut self.usage, u);
                }
            }
            Some("message_stop") => {
                self.stopped = true;
                return Ok(true);
            }
            Some("ping") => {}
            Some("error") => return Err(stream_error(&v, sink.emitted)),
            // New event types are to be expected; the API promises to add them.
            Some(_) => {}
            None => return Err(bad()),
        }
        Ok(false)
    }

    fn is_complete(&self) -> bool {
        self.stopped || self.stop_reason.is_some()
    }

    fn finish(self, requested_model: &str) -> Result<ChatResponse, LlmError> {
        if !self.is_complete() {
            return Err(LlmError::Truncated {
                detail: format!(
                    "the stream ended without message_stop after {} event(s)",
                    self.events
                ),
            });
        }
        Ok(ChatResponse {
            message: assemble(self.blocks.into_values().collect()),
            usage: self.usage,
            finish_reason: self.stop_reason.as_deref().map(finish_reason),
            model: self.model.unwrap_or_else(|| requested_model.to_owned()),
            provider: None,
        })
    }
}

/// An error event: before anything was shown it keeps its kind (so an overload is retried);
/// after, the answer is broken and only the message matters.
fn stream_error(v: &Value, shown: bool) -> LlmError {
    match event_error(v) {
        e @ LlmError::ContextOverflow { .. } => e,
        e if !shown => e,
        LlmError::RateLimited { message, .. }
        | LlmError::Server { message, .. }
        | LlmError::Api { message, .. }
        | LlmError::NotFound { message, .. }
        | LlmError::Auth { message, .. }
        | LlmError::ModelNotFound { message, .. } => LlmError::StreamAborted { message },
        other => other,
    }
}

/// Reads an SSE answer, reporting events as they arrive.
async fn read_stream(
    response: reqwest::Response,
    shown: &str,
    request: &ChatRequest,
    sink: &mut EventSink<'_>,
) -> Result<ChatResponse, Failure> {
    let mut body = std::pin::pin!(response.bytes_stream());
    let mut parser = SseParser::default();
    let mut answer = MessageStream::default();
    let mut payloads = Vec::new();
    let mut head: Vec<u8> = Vec::new();
    while let Some(chunk) = body.next().await {
        let bytes = match chunk {
            Ok(bytes) => bytes,
            Err(_) if answer.is_complete() => break,
            Err(e) => return Err(transport_error(&e, shown).into()),
        };
        if head.len() < 512 {
            head.extend_from_slice(&bytes[..bytes.len().min(512 - head.len())]);
        }
        parser.feed(&bytes, &mut payloads);
        for payload in payloads.drain(..) {
            if answer.apply(&payload, sink)? {
                return Ok(answer.finish(&request.model)?);
            }
        }
    }
    parser.finish(&mut payloads);
    for payload in payloads.drain(..) {
        match answer.apply(&payload, sink) {
            Ok(true) => break,
            Ok(false) => {}
            Err(LlmError::InvalidResponse { .. }) if answer.started && !answer.is_complete() => {
                return Err(LlmError::Truncated {
                    detail: format!(
                        "the stream ended in the middle of an event: {}",
                        snippet(&payload)
                    ),
                }
                .into());
            }
            Err(e) => return Err(e.into()),
        }
    }
    if answer.events == 0 && !head.iter().all(u8::is_ascii_whitespace) {
        return Err(invalid(format!(
            "expected server-sent events, got: {}",
            snippet(&String::from_utf8_lossy(&head))
        ))
        .into());
    }
    Ok(answer.finish(&request.model)?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use talaria_core::ToolSpec;

    /// Found by the fuzz harness: a `message_start` reporting `input_tokens` of u64::MAX
    /// next to cached tokens overflowed (a panic in the agent's debug builds, a wrapped small
    /// count in release).
    #[test]
    fn absurd_token_counts_saturate() {
        let mut usage = Usage::default();
        apply_usage(
            &mut usage,
            &json!({"input_tokens": u64::MAX, "cache_read_input_tokens": 4, "output_tokens": u64::MAX}),
        );
        assert_eq!(usage.prompt_tokens, u64::MAX);
        assert_eq!(usage.cached_tokens, 4);
        assert_eq!(usage.total(), u64::MAX);
        let mut sum = usage;
        sum.add(&usage);
        assert_eq!(sum.completion_tokens, u64::MAX);
    }

    #[test]
    fn base_url_with_or_without_v1_and_no_key_in_debug() {
        let mut config = EndpointConfig::new("https://api.anthropic.com/v1/");
        config.api_key = Some(Secret::new("sk-ant-very-secret"));
        let provider = Anthropic::new(config).unwrap();
        assert_eq!(provider.describe(), "anthropic https://api.anthropic.com");
        assert!(!format!("{provider:?}").contains("sk-ant-very-secret"));
    }

    #[test]
    fn transcript_becomes_alternating_turns() {
        let call = ToolCall {
            id: "toolu_1".into(),
            name: "read_file".into(),
            arguments: r#"{"path":"a"}"#.into(),
        };
        let call2 = ToolCall {
            id: "toolu_2".into(),
            name: "terminal".into(),
            arguments: "not json".into(),
        };
        let request = ChatRequest {
            model: "claude".into(),
            messages: vec![
                Message::system("be brief"),
                Message::user("hi"),
                Message::assistant("", vec![call.clone(), call2.clone()]),
                Message::tool_result(&call, "A"),
                Message::tool_result(&call2, "B"),
                Message::user("and?"),
            ],
            tools: vec![
                ToolSpec {
                    name: "read_file".into(),
                    description: "read".into(),
                    parameters: json!({"type": "object"}),
                },
                ToolSpec {
                    name: "terminal".into(),
                    description: "run".into(),
                    parameters: json!({"type": "object"}),
                },
            ],
            ..ChatRequest::default()
        };
        let body = request_body(&request, 100);
        assert_eq!(body["max_tokens"], 100);
        assert_eq!(
            body["system"],
            json!([{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}])
        );
        assert!(body["tools"][0].get("cache_control").is_none());
        assert_eq!(
            body["tools"][1]["cache_control"],
            json!({"type": "ephemeral"})
        );
        assert_eq!(body["tools"][1]["input_schema"], json!({"type": "object"}));
        let roles: Vec<&str> = body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["role"].as_str().unwrap())
            .collect();
        assert_eq!(roles, ["user", "assistant", "user"]);
        assert_eq!(body["messages"][1]["content"][1]["input"], json!({}));
        let last = &body["messages"][2]["content"];
        assert_eq!(last[0]["tool_use_id"], "toolu_1");
        assert_eq!(last[1]["tool_use_id"], "toolu_2");
        assert_eq!(last[2], json!({"type": "text", "text": "and?"}));
        assert!(body.get("stream").is_none());
    }

    #[test]
    fn malformed_bodies_are_errors() {
        assert!(matches!(
            parse_message(b"<html>", "m"),
            Err(LlmError::InvalidResponse { .. })
        ));
        assert!(matches!(
            parse_message(br#"{"content":[{"type":"text","te"#, "m"),
            Err(LlmError::Truncated { .. })
        ));
        assert!(matches!(
            parse_message(br#"{"type":"message"}"#, "m"),
            Err(LlmError::InvalidResponse { .. })
        ));
        let ok = parse_message(
            br#"{"content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn","usage":{"input_tokens":3,"cache_read_input_tokens":10,"cache_creation_input_tokens":5,"output_tokens":2}}"#,
            "m",
        )
        .unwrap();
        assert_eq!(ok.message.content, "hi");
        assert_eq!(ok.finish_reason.as_deref(), Some("stop"));
        assert_eq!(
            ok.usage,
            Usage {
                prompt_tokens: 18,
                completion_tokens: 2,
                cached_tokens: 10,
                cache_write_tokens: 5,
            }
        );
    }
}
