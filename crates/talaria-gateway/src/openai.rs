//! The OpenAI wire shapes the HTTP API speaks: the chat completion request (only the parts
//! the gateway uses), completion objects and chunks, and OpenAI-style errors.
//!
//! The agent keeps each session's history itself, so of the `messages` array only the last
//! `user` message is sent on; system prompts, earlier turns, `tools` and sampling parameters
//! in the request are ignored rather than refused, so stock OpenAI clients work unchanged.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

/// The fields of `POST /v1/chat/completions` the gateway reads.
#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    #[serde(default)]
    pub model: Option<String>,
    pub messages: Vec<ChatMessage>,
    #[serde(default)]
    pub stream: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<Content>,
}

/// A message's content: a string, or an array of typed parts.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Deserialize)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub text: Option<String>,
}

impl ChatRequest {
    /// The text of the last `user` message: its string content, or its text parts joined by
    /// newlines.
    ///
    /// # Errors
    /// No messages, no user message, a last user message without text, or text the bus
    /// cannot carry (a NUL character), named by its place in the body
    /// (`messages[2].content[0].text`).
    pub fn user_text(&self) -> Result<String, ApiError> {
        if self.messages.is_empty() {
            return Err(ApiError::bad_request(
                "missing_messages",
                "`messages` is empty: send at least one message with role \"user\"",
            ));
        }
        let Some((index, last)) = self
            .messages
            .iter()
            .enumerate()
            .rev()
            .find(|(_, m)| m.role == "user")
        else {
            return Err(ApiError::bad_request(
                "no_user_message",
                "`messages` has no message with role \"user\"",
            ));
        };
        let text = match &last.content {
            Some(Content::Text(text)) => {
                bus_text(&format!("messages[{index}].content"), text)?;
                text.clone()
            }
            Some(Content::Parts(parts)) => {
                let mut texts = Vec::new();
                for (part_index, part) in parts.iter().enumerate() {
                    if part.kind != "text" {
                        continue;
                    }
                    if let Some(text) = part.text.as_deref() {
                        bus_text(
                            &format!("messages[{index}].content[{part_index}].text"),
                            text,
                        )?;
                        texts.push(text);
                    }
                }
                texts.join("\n")
            }
            None => String::new(),
        };
        if text.trim().is_empty() {
            return Err(ApiError::bad_request(
                "empty_user_message",
                "the last message with role \"user\" has no text content",
            ));
        }
        Ok(text)
    }
}

/// Refuses text the agent could never be sent: a D-Bus string cannot hold NUL, and the bus
/// daemon drops the connection of a peer that sends one (JSON can carry it as `\u0000`).
/// Everything else JSON can hold is valid UTF-8 already.
///
/// # Errors
/// `invalid_text`, naming `field` and the byte where the NUL is.
pub fn bus_text(field: &str, text: &str) -> Result<(), ApiError> {
    match crate::turn::nul_at(text) {
        None => Ok(()),
        Some(at) => Err(ApiError::bad_request(
            "invalid_text",
            format!(
                "`{field}` contains a NUL character (\\u0000) at byte {at}, which cannot be passed to the agent"
            ),
        )),
    }
}

/// An error response: `{"error": {"message", "type", "code", "param"}}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub code: String,
    pub message: String,
    /// Seconds for the `Retry-After` header.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            kind,
            code: code.into(),
            message: message.into(),
            retry_after: None,
        }
    }

    /// 413 for a body over `limit` bytes.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            "request_too_large",
            format!("the request body is larger than the {limit} bytes the gateway accepts"),
        )
    }

    /// 429 for a key over one of its limits, with how long to wait.
    pub fn limited(refusal: crate::limits::Refusal) -> Self {
        use crate::limits::Refusal;
        let (code, message) = match refusal {
            Refusal::Rate { per_minute, .. } => (
                "rate_limited",
                format!("this API key may make {per_minute} requests a minute"),
            ),
            Refusal::Turns { limit, .. } => (
                "too_many_turns",
                format!("this API key already has {limit} turns running; wait for one to end"),
            ),
        };
        let mut error = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            code,
            message,
        );
        error.retry_after = Some(refusal.retry_after_secs());
        error
    }

    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            code,
            message,
        )
    }

    pub fn not_found(code: &str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            code,
            message,
        )
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "invalid_api_key",
            message,
        )
    }

    pub fn server(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self::new(status, "server_error", code, message)
    }

    /// The JSON body, also used as the `data` of an error event in a stream.
    pub fn body(&self) -> Value {
        json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "code": self.code,
                "param": null,
            }
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // Every refusal is one log line naming its cause (never a key or message text: the
        // messages name fields and positions). Rate-limit refusals come in floods, so they
        // stay at debug.
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            tracing::debug!(
                status = self.status.as_u16(),
                code = self.code,
                "refused: {}",
                self.message
            );
        } else if self.status.is_client_error() {
            tracing::info!(
                status = self.status.as_u16(),
                code = self.code,
                "refused: {}",
                self.message
            );
        }
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(error: crate::store::StoreError) -> Self {
        tracing::error!(%error, "database failure");
        Self::server(
            StatusCode::INTERNAL_SERVER_ERROR,
            "storage_error",
            "the gateway could not read or write its database",
        )
    }
}

/// The identity of one completion in responses.
#[derive(Debug, Clone)]
pub struct Completion {
    pub request_id: String,
    pub session_key: String,
    pub model: String,
    /// Seconds since the Unix epoch.
    pub created: i64,
}

impl Completion {
    pub fn id(&self) -> String {
        format!("chatcmpl-{}", self.request_id)
    }

    /// A whole `chat.completion` object.
    pub fn object(&self, text: &str, finish_reason: &str) -> Value {
        json!({
            "id": self.id(),
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": null,
                "finish_reason": finish_reason,
            }],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        })
    }

    /// One `chat.completion.chunk`.
    pub fn chunk(&self, delta: Value, finish_reason: Option<&str>) -> Value {
        json!({
            "id": self.id(),
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{
                "index": 0,
                "delta": delta,
                "logprobs": null,
                "finish_reason": finish_reason,
            }],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> ChatRequest {
        serde_json::from_str(body).unwrap()
    }

    #[test]
    fn the_last_user_message_is_the_text() {
        let request = parse(
            r#"{"model":"talaria","messages":[
                {"role":"system","content":"be brief"},
                {"role":"user","content":"first"},
                {"role":"assistant","content":"ok"},
                {"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"x"}},{"type":"text","text":"b"}]}
            ]}"#,
        );
        assert_eq!(request.user_text().unwrap(), "a\nb");
        assert_eq!(
            parse(r#"{"messages":[{"role":"user","content":"hi"}]}"#)
                .user_text()
                .unwrap(),
            "hi"
        );
    }

    #[test]
    fn requests_without_user_text_are_refused_by_name() {
        let code = |body: &str| parse(body).user_text().unwrap_err().code;
        assert_eq!(code(r#"{"messages":[]}"#), "missing_messages");
        assert_eq!(
            code(r#"{"messages":[{"role":"system","content":"x"}]}"#),
            "no_user_message"
        );
        assert_eq!(
            code(r#"{"messages":[{"role":"user","content":"  "}]}"#),
            "empty_user_message"
        );
        assert!(serde_json::from_str::<ChatRequest>(r#"{"model":"x"}"#).is_err());
    }

    #[test]
    fn nul_in_user_text_is_refused_naming_the_field() {
        let error = parse(r#"{"messages":[{"role":"user","content":"ok"},{"role":"assistant","content":"a"},{"role":"user","content":"a\u0000b"}]}"#)
            .user_text()
            .unwrap_err();
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        assert_eq!(error.code, "invalid_text");
        assert!(
            error.message.contains("`messages[2].content`") && error.message.contains("byte 1"),
            "{}",
            error.message
        );
        let error = parse(r#"{"messages":[{"role":"user","content":[{"type":"text","text":"fine"},{"type":"text","text":"\u0000"}]}]}"#)
            .user_text()
            .unwrap_err();
        assert!(
            error.message.contains("`messages[0].content[1].text`"),
            "{}",
            error.message
        );
        // A NUL in an earlier message or a non-text part is never sent on, so it is no error.
        assert_eq!(
            parse(r#"{"messages":[{"role":"user","content":"\u0000"},{"role":"user","content":[{"type":"image_url","text":"\u0000"},{"type":"text","text":"hi"}]}]}"#)
                .user_text()
                .unwrap(),
            "hi"
        );
    }
}
