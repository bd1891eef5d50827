//! The OpenAI Chat Completions wire format: request bodies out, completions and chunks in.
//!
//! Outgoing shapes are exact (servers validate them, some strictly). Incoming shapes are
//! lenient: every field a server might omit or send as `null` is optional, because local
//! servers (llama.cpp, vLLM, Ollama, LM Studio) each leave out something different.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use talaria_core::{Message, Role, ToolCall, Usage};

use crate::ChatRequest;

#[derive(Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    messages: Vec<WireMessage<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<WireTool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<&'static str>,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

#[derive(Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    /// `null` only for an assistant message that carries tool calls and no text, as OpenAI
    /// sends it; some servers reject an empty string there, others reject a missing field.
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<WireToolCall<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<&'a str>,
}

#[derive(Serialize)]
struct WireToolCall<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: WireFunctionCall<'a>,
}

#[derive(Serialize)]
struct WireFunctionCall<'a> {
    name: &'a str,
    arguments: &'a str,
}

#[derive(Serialize)]
struct WireTool<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: WireFunction<'a>,
}

#[derive(Serialize)]
struct WireFunction<'a> {
    name: &'a str,
    description: &'a str,
    parameters: &'a Value,
}

fn wire_message(m: &Message) -> WireMessage<'_> {
    let calls_only = m.role == Role::Assistant && m.content.is_empty() && !m.tool_calls.is_empty();
    WireMessage {
        role: m.role.as_str(),
        content: (!calls_only).then_some(m.content.as_str()),
        tool_calls: match m.role {
            Role::Assistant => m
                .tool_calls
                .iter()
                .map(|c| WireToolCall {
                    id: &c.id,
                    kind: "function",
                    function: WireFunctionCall {
                        name: &c.name,
                        arguments: &c.arguments,
                    },
                })
                .collect(),
            Role::System | Role::User | Role::Tool => Vec::new(),
        },
        tool_call_id: match m.role {
            Role::Tool => m.tool_call_id.as_deref(),
            Role::System | Role::User | Role::Assistant => None,
        },
    }
}

/// The JSON body of a `POST /chat/completions` for `request`.
pub(crate) fn request_body(request: &ChatRequest) -> Result<Vec<u8>, serde_json::Error> {
    let has_tools = !request.tools.is_empty();
    serde_json::to_vec(&WireRequest {
        model: &request.model,
        messages: request.messages.iter().map(wire_message).collect(),
        tools: request
            .tools
            .iter()
            .map(|t| WireTool {
                kind: "function",
                function: WireFunction {
                    name: &t.name,
                    description: &t.description,
                    parameters: &t.parameters,
                },
            })
            .collect(),
        tool_choice: has_tools.then_some("auto"),
        stream: request.stream,
        stream_options: request.stream.then_some(StreamOptions {
            include_usage: true,
        }),
        max_tokens: request.max_tokens,
        temperature: request.temperature,
    })
}

/// `usage` of a completion or of the final stream chunk.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct WireUsage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
    #[serde(default)]
    prompt_tokens_details: Option<PromptTokensDetails>,
    /// DeepSeek reports cache hits here instead of `prompt_tokens_details`.
    #[serde(default)]
    prompt_cache_hit_tokens: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
struct PromptTokensDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

impl WireUsage {
    pub(crate) fn to_usage(&self) -> Usage {
        Usage {
            prompt_tokens: self.prompt_tokens.unwrap_or(0),
            completion_tokens: self.completion_tokens.unwrap_or(0),
            cached_tokens: self
                .prompt_tokens_details
                .as_ref()
                .and_then(|d| d.cached_tokens)
                .or(self.prompt_cache_hit_tokens)
                .unwrap_or(0),
            cache_write_tokens: 0,
        }
    }
}

/// A non-streaming `chat.completion` object.
#[derive(Debug, Deserialize)]
pub(crate) struct WireCompletion {
    #[serde(default)]
    pub model: Option<String>,
    pub choices: Vec<WireChoice>,
    #[serde(default)]
    pub usage: Option<WireUsage>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireChoice {
    pub message: WireResponseMessage,
    #[serde(default)]
    pub finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireResponseMessage {
    #[serde(default)]
    content: Option<Value>,
    #[serde(default)]
    tool_calls: Option<Vec<WireResponseToolCall>>,
}

#[derive(Debug, Deserialize)]
struct WireResponseToolCall {
    #[serde(default)]
    id: Option<String>,
    function: WireResponseFunction,
}

#[derive(Debug, Deserialize)]
struct WireResponseFunction {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<Value>,
}

/// Text of a `content` field: a string, `null`, or an array of `{"type":"text","text":..}`
/// parts (which a few servers send even in responses).
fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

/// Arguments as raw text. OpenAI sends a JSON string; some servers send the object itself.
fn arguments_text(arguments: Option<&Value>) -> String {
    match arguments {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => String::new(),
        Some(other) => other.to_string(),
    }
}

/// A stand-in id for servers that omit call ids; the agent needs one to pair results.
pub(crate) fn fallback_call_id(position: usize) -> String {
    format!("call_{position}")
}

impl WireResponseMessage {
    pub(crate) fn into_message(self) -> Message {
        let tool_calls = self
            .tool_calls
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, c)| ToolCall {
                id: c
                    .id
                    .filter(|id| !id.is_empty())
                    .unwrap_or_else(|| fallback_call_id(i)),
                name: c.function.name.unwrap_or_default(),
                arguments: arguments_text(c.function.arguments.as_ref()),
            })
            .collect();
        Message::assistant(content_text(self.content.as_ref()), tool_calls)
    }
}

/// One `chat.completion.chunk` event of a stream.
#[derive(Debug, Deserialize)]
pub(crate) struct WireChunk {
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub choices: Option<Vec<WireChunkChoice>>,
    #[serde(default)]
    pub usage: Option<WireUsage>,
    /// Some servers report failures mid-stream as an event with an `error` object.
    #[serde(default)]
    pub error: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireChunkChoice {
    #[serde(default)]
    pub index: Option<u64>,
    #[serde(default)]
    pub delta: Option<WireDelta>,
    #[serde(default)]
    pub finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireDelta {
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub tool_calls: Option<Vec<WireToolCallDelta>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireToolCallDelta {
    #[serde(default)]
    pub index: Option<usize>,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub function: Option<WireFunctionDelta>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireFunctionDelta {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    arguments: Option<Value>,
}

impl WireFunctionDelta {
    pub(crate) fn arguments(&self) -> String {
        arguments_text(self.arguments.as_ref())
    }
}

/// `GET /models`: `{"object":"list","data":[{"id":..}]}`.
#[derive(Debug, Deserialize)]
pub(crate) struct WireModelList {
    pub data: Vec<WireModel>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireModel {
    pub id: String,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use serde_json::json;
    use talaria_core::ToolSpec;

    use super::*;

    #[test]
    fn request_body_speaks_openai() {
        let call = ToolCall {
            id: "call_1".into(),
            name: "read_file".into(),
            arguments: r#"{"path":"a"}"#.into(),
        };
        let request = ChatRequest {
            model: "m".into(),
            messages: vec![
                Message::system("sys"),
                Message::user("hi"),
                Message::assistant("", vec![call.clone()]),
                Message::tool_result(&call, "contents"),
            ],
            tools: vec![ToolSpec {
                name: "read_file".into(),
                description: "Read a file".into(),
                parameters: json!({"type": "object"}),
            }],
            stream: true,
            max_tokens: Some(100),
            temperature: Some(0.7),
        };
        let body: Value = serde_json::from_slice(&request_body(&request).unwrap()).unwrap();
        assert_eq!(
            body,
            json!({
                "model": "m",
                "messages": [
                    {"role": "system", "content": "sys"},
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": null, "tool_calls": [
                        {"id": "call_1", "type": "function", "function": {"name": "read_file", "arguments": "{\"path\":\"a\"}"}}
                    ]},
                    {"role": "tool", "content": "contents", "tool_call_id": "call_1"},
                ],
                "tools": [{"type": "function", "function": {"name": "read_file", "description": "Read a file", "parameters": {"type": "object"}}}],
                "tool_choice": "auto",
                "stream": true,
                "stream_options": {"include_usage": true},
                "max_tokens": 100,
                "temperature": 0.7,
            })
        );
    }

    #[test]
    fn plain_request_omits_optional_fields() {
        let request = ChatRequest {
            model: "m".into(),
            messages: vec![Message::assistant("text", Vec::new())],
            ..ChatRequest::default()
        };
        let body: Value = serde_json::from_slice(&request_body(&request).unwrap()).unwrap();
        assert_eq!(
            body,
            json!({"model": "m", "messages": [{"role": "assistant", "content": "text"}], "stream": false})
        );
    }

    #[test]
    fn completion_message_tolerates_server_variants() {
        let msg: WireResponseMessage = serde_json::from_value(json!({
            "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
            "tool_calls": [
                {"function": {"name": "t", "arguments": {"x": 1}}},
                {"id": "c2", "type": "function", "function": {"name": "u", "arguments": "{}"}},
            ],
        }))
        .unwrap();
        let m = msg.into_message();
        assert_eq!(m.content, "ab");
        assert_eq!(m.tool_calls[0].id, "call_0");
        assert_eq!(m.tool_calls[0].arguments, r#"{"x":1}"#);
        assert_eq!(m.tool_calls[1].id, "c2");
    }

    #[test]
    fn usage_maps_cached_tokens() {
        let u: WireUsage = serde_json::from_value(json!({
            "prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120,
            "prompt_tokens_details": {"cached_tokens": 64}
        }))
        .unwrap();
        assert_eq!(
            u.to_usage(),
            Usage {
                prompt_tokens: 100,
                completion_tokens: 20,
                cached_tokens: 64,
                cache_write_tokens: 0,
            }
        );
        let deepseek: WireUsage = serde_json::from_value(
            json!({"prompt_tokens": 10, "completion_tokens": 2, "prompt_cache_hit_tokens": 8}),
        )
        .unwrap();
        assert_eq!(deepseek.to_usage().cached_tokens, 8);
    }
}
