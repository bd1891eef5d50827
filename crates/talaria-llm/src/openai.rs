//! [`OpenAiCompatible`]: the HTTP client for any OpenAI-compatible endpoint.
//!
//! One attempt is: send, classify a non-success status, then read either a `chat.completion`
//! body or an SSE stream. Around it sits the retry loop, which only repeats an attempt whose
//! failure is retryable ([`LlmError::is_retryable`]) and which has not yet shown the user any
//! part of the answer. The API key goes into the `Authorization` header (marked sensitive) and
//! nowhere else: not into the `Debug` output, URLs shown in errors, or log fields.

use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use talaria_core::Secret;

use crate::error::{LlmError, TimeoutPhase, classify_status, is_retryable_status, snippet};
use crate::retry::{Failure, Retrier, RetryPolicy, parse_retry_after};
use crate::sse::{Progress, SseParser, StreamAccumulator};
use crate::wire::{WireCompletion, WireModelList, request_body};
use crate::{ChatProvider, ChatRequest, ChatResponse, StreamEvent};

/// Where and how to reach an endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointConfig {
    /// The API root including `/v1`, e.g. `http://127.0.0.1:8080/v1`; a trailing slash is fine.
    pub base_url: String,
    /// Sent as `Authorization: Bearer <key>` when set.
    pub api_key: Option<Secret>,
    /// Where the key came from (`--api-key`, a variable's name, …): named when it is rejected.
    pub api_key_source: Option<String>,
    /// Longest wait for the TCP/TLS connection.
    pub connect_timeout: Duration,
    /// Longest wait for the next bytes of a response, including the first ones: a local model
    /// processing a long prompt may send nothing for a while.
    pub read_timeout: Duration,
    pub retry: RetryPolicy,
}

impl EndpointConfig {
    /// `base_url` with the defaults of `talaria_core::config::ModelConfig`: 10 s to connect,
    /// 300 s between reads, [`RetryPolicy::default`].
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            api_key: None,
            api_key_source: None,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(300),
            retry: RetryPolicy::default(),
        }
    }
}

/// A client for one OpenAI-compatible endpoint. Cheap to share: it holds a connection pool.
pub struct OpenAiCompatible {
    client: reqwest::Client,
    /// `base_url` without its trailing slash.
    base_url: String,
    /// `base_url` with any password in it replaced, for messages and logs.
    shown_url: String,
    api_key: Option<Secret>,
    key_source: Option<String>,
    retry: RetryPolicy,
}

impl std::fmt::Debug for OpenAiCompatible {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiCompatible")
            .field("base_url", &self.shown_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// Forwards events to the caller and remembers whether any was sent, because after that a
/// retry would show the user a second, different beginning of the answer.
pub(crate) struct EventSink<'a> {
    pub(crate) on_event: &'a mut (dyn FnMut(StreamEvent) + Send),
    pub(crate) emitted: bool,
}

impl EventSink<'_> {
    pub(crate) fn emit(&mut self, event: StreamEvent) {
        self.emitted = true;
        (self.on_event)(event);
    }
}

impl OpenAiCompatible {
    /// Validates `config.base_url` and builds the HTTP client.
    ///
    /// # Errors
    /// [`LlmError::InvalidEndpoint`] when `base_url` is not an `http://` or `https://` URL, or
    /// the HTTP client cannot be built.
    pub fn new(config: EndpointConfig) -> Result<Self, LlmError> {
        let (client, base_url, shown_url) = http_client(&config)?;
        Ok(Self {
            client,
            base_url,
            shown_url,
            api_key: config.api_key.filter(|k| !k.is_empty()),
            key_source: config.api_key_source,
            retry: config.retry,
        })
    }

    fn retrier(&self) -> Retrier<'_> {
        Retrier {
            policy: &self.retry,
            endpoint: &self.shown_url,
            api_key: self.api_key.as_ref(),
            key_source: self.key_source.as_deref(),
        }
    }

    fn authorized(&self, builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.api_key {
            Some(key) => builder.bearer_auth(key.expose()),
            None => builder,
        }
    }

    /// Reads a non-success response into its classified error.
    async fn error_response(
        &self,
        response: reqwest::Response,
        shown: &str,
        model: Option<&str>,
    ) -> Failure {
        error_failure(response, shown, model).await
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
            .authorized(self.client.post(url))
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| transport_error(&e, shown))?;
        if !response.status().is_success() {
            return Err(self
                .error_response(response, shown, Some(&request.model))
                .await);
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        // Some servers ignore `stream: true` and answer with one JSON object.
        if request.stream && !content_type.starts_with("application/json") {
            let declared_sse = content_type.starts_with("text/event-stream");
            read_stream(response, shown, declared_sse, request, sink).await
        } else {
            let bytes = response
                .bytes()
                .await
                .map_err(|e| transport_error(&e, shown))?;
            let answer = parse_completion(&bytes, &request.model)?;
            report_whole_answer(&answer, sink);
            Ok(answer)
        }
    }

    async fn models_once(&self, url: &str, shown: &str) -> Result<Vec<String>, Failure> {
        let response = self
            .authorized(self.client.get(url))
            .send()
            .await
            .map_err(|e| transport_error(&e, shown))?;
        if !response.status().is_success() {
            return Err(self.error_response(response, shown, None).await);
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
impl ChatProvider for OpenAiCompatible {
    fn describe(&self) -> String {
        format!("openai-compatible {}", self.shown_url)
    }

    async fn chat(
        &self,
        request: &ChatRequest,
        on_event: &mut (dyn FnMut(StreamEvent) + Send),
    ) -> Result<ChatResponse, LlmError> {
        let url = format!("{}/chat/completions", self.base_url);
        let shown = format!("{}/chat/completions", self.shown_url);
        let body = request_body(request).map_err(|e| LlmError::InvalidRequest {
            detail: e.to_string(),
        })?;
        tracing::debug!(
            endpoint = %self.shown_url,
            model = %request.model,
            stream = request.stream,
            messages = request.messages.len(),
            tools = request.tools.len(),
            bytes = body.len(),
            "sending chat request"
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
                // The user has seen part of this answer: a retry would show a different one.
                Err(failure) if sink.emitted => return Err(self.retrier().scrub(failure.error)),
                Err(failure) => {
                    let delay = self.retrier().delay("chat", retry, failure)?;
                    tokio::time::sleep(delay).await;
                    retry += 1;
                }
            }
        }
    }

    async fn list_models(&self) -> Result<Vec<String>, LlmError> {
        let url = format!("{}/models", self.base_url);
        let shown = format!("{}/models", self.shown_url);
        self.retrier()
            .run("list models", || self.models_once(&url, &shown))
            .await
    }
}

/// Reads an SSE answer, reporting events as they arrive.
async fn read_stream(
    response: reqwest::Response,
    shown: &str,
    declared_sse: bool,
    request: &ChatRequest,
    sink: &mut EventSink<'_>,
) -> Result<ChatResponse, Failure> {
    let mut body = std::pin::pin!(response.bytes_stream());
    let mut parser = SseParser::default();
    let mut answer = StreamAccumulator::default();
    let mut payloads = Vec::new();
    let mut events = 0usize;
    // The start of the body, to quote when it turns out not to be SSE at all.
    let mut head: Vec<u8> = Vec::new();
    while let Some(chunk) = body.next().await {
        let bytes = match chunk {
            Ok(bytes) => bytes,
            // The answer is complete; a connection dropped before `[DONE]` loses nothing.
            Err(_) if answer.is_complete() => break,
            Err(e) => return Err(transport_error(&e, shown).into()),
        };
        if head.len() < 512 {
            head.extend_from_slice(&bytes[..bytes.len().min(512 - head.len())]);
        }
        parser.feed(&bytes, &mut payloads);
        for payload in payloads.drain(..) {
            events += 1;
            if answer.apply(&payload, &mut |e| sink.emit(e))? == Progress::Done {
                return Ok(answer.finish(&request.model)?);
            }
        }
    }
    parser.finish(&mut payloads);
    for payload in payloads.drain(..) {
        events += 1;
        match answer.apply(&payload, &mut |e| sink.emit(e)) {
            Ok(Progress::Done) => break,
            Ok(Progress::More) => {}
            // An event cut off by the end of the body is truncation, not a malformed server.
            Err(LlmError::InvalidResponse { .. }) if !answer.is_complete() => {
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
    // An HTML error page from a proxy is not a truncated stream. (A body declared as SSE that
    // ends without events is: the server started answering and stopped.)
    if events == 0 && !declared_sse && !head.iter().all(u8::is_ascii_whitespace) {
        return Err(LlmError::InvalidResponse {
            detail: format!(
                "expected server-sent events, got: {}",
                snippet(&String::from_utf8_lossy(&head))
            ),
        }
        .into());
    }
    Ok(answer.finish(&request.model)?)
}

/// Validates `config.base_url` and builds an HTTP client with its timeouts. Returns the client,
/// the base URL without its trailing slash, and that URL with any password redacted.
///
/// # Errors
/// [`LlmError::InvalidEndpoint`] when `base_url` is not an `http://` or `https://` URL, or
/// the HTTP client cannot be built.
pub(crate) fn http_client(
    config: &EndpointConfig,
) -> Result<(reqwest::Client, String, String), LlmError> {
    let base_url = config.base_url.trim().trim_end_matches('/').to_owned();
    let invalid = |reason: String| LlmError::InvalidEndpoint {
        base_url: config.base_url.clone(),
        reason,
    };
    let mut parsed = reqwest::Url::parse(&base_url).map_err(|e| invalid(e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid(
            "only http:// and https:// URLs are supported".to_owned(),
        ));
    }
    if parsed.password().is_some() {
        // Only the URL shown to people is redacted; the request URL keeps the password.
        let _ = parsed.set_password(Some("redacted"));
    }
    let shown_url = parsed.as_str().trim_end_matches('/').to_owned();
    // reqwest is built without a default crypto provider; installing ring twice is a no-op
    // error we can ignore.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .connect_timeout(config.connect_timeout)
        .read_timeout(config.read_timeout)
        .user_agent(concat!("talaria/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| LlmError::InvalidEndpoint {
            base_url: shown_url.clone(),
            reason: format!("cannot build the HTTP client: {}", root_cause(&e)),
        })?;
    Ok((client, base_url, shown_url))
}

/// The `Retry-After` of a 429 or 5xx response, and the classified error of its body.
pub(crate) async fn error_failure(
    response: reqwest::Response,
    shown: &str,
    model: Option<&str>,
) -> Failure {
    let status = response.status().as_u16();
    let retry_after = if status == 429 || (500..600).contains(&status) {
        response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()))
    } else {
        None
    };
    // The status alone is enough to classify; an unreadable body only costs the message.
    let body = response.text().await.unwrap_or_default();
    Failure {
        error: classify_status(status, &body, shown, model, retry_after),
        retry_after: if is_retryable_status(status) {
            retry_after
        } else {
            None
        },
    }
}

/// Parses a `chat.completion` body.
fn parse_completion(bytes: &[u8], requested_model: &str) -> Result<ChatResponse, LlmError> {
    let completion: WireCompletion = serde_json::from_slice(bytes)
        .map_err(|e| body_error(&e, bytes, "a chat.completion JSON object"))?;
    let Some(choice) = completion.choices.into_iter().next() else {
        return Err(LlmError::InvalidResponse {
            detail: format!(
                "the chat.completion has no choices: {}",
                snippet(&String::from_utf8_lossy(bytes))
            ),
        });
    };
    Ok(ChatResponse {
        message: choice.message.into_message(),
        usage: completion.usage.map(|u| u.to_usage()).unwrap_or_default(),
        finish_reason: choice.finish_reason.filter(|r| !r.is_empty()),
        model: completion
            .model
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| requested_model.to_owned()),
        provider: None,
    })
}

/// Reports a complete, non-streamed answer the way a stream would have.
fn report_whole_answer(answer: &ChatResponse, sink: &mut EventSink<'_>) {
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
}

/// A body that did not decode as `expected`: cut short (JSON ended early) or simply wrong.
pub(crate) fn body_error(e: &serde_json::Error, bytes: &[u8], expected: &str) -> LlmError {
    let text = String::from_utf8_lossy(bytes);
    if text.trim().is_empty() {
        return LlmError::InvalidResponse {
            detail: format!("expected {expected}, got an empty body"),
        };
    }
    if e.is_eof() {
        return LlmError::Truncated {
            detail: format!(
                "the JSON body ended after {} bytes: {}",
                bytes.len(),
                snippet(&text)
            ),
        };
    }
    LlmError::InvalidResponse {
        detail: format!("expected {expected} ({e}), got: {}", snippet(&text)),
    }
}

/// Classifies a transport-level failure. `url` is the redacted URL for the message.
pub(crate) fn transport_error(e: &reqwest::Error, url: &str) -> LlmError {
    let url = url.to_owned();
    if e.is_timeout() {
        let phase = if e.is_connect() {
            TimeoutPhase::Connect
        } else {
            TimeoutPhase::Read
        };
        return LlmError::Timeout { url, phase };
    }
    let reason = root_cause(e);
    if e.is_connect() {
        LlmError::Unreachable { url, reason }
    } else if e.is_body() || e.is_decode() {
        LlmError::Truncated {
            detail: format!("reading the response failed: {reason}"),
        }
    } else {
        LlmError::Connection { url, reason }
    }
}

/// The innermost error's message: "Connection refused (os error 111)" says more than
/// "error sending request", and unlike reqwest's own message it does not repeat the URL.
pub(crate) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn base_url_is_validated_and_credentials_stay_hidden() {
        let mut config = EndpointConfig::new("http://user:hunter2@127.0.0.1:8080/v1/");
        config.api_key = Some(Secret::new("sk-very-secret"));
        let provider = OpenAiCompatible::new(config).unwrap();
        assert_eq!(
            provider.describe(),
            "openai-compatible http://user:redacted@127.0.0.1:8080/v1"
        );
        let debug = format!("{provider:?}");
        assert!(
            !debug.contains("sk-very-secret") && !debug.contains("hunter2"),
            "{debug}"
        );

        for bad in ["127.0.0.1:8080/v1", "ftp://host/v1", "not a url"] {
            let err = OpenAiCompatible::new(EndpointConfig::new(bad)).unwrap_err();
            assert!(
                matches!(err, LlmError::InvalidEndpoint { .. }),
                "{bad}: {err:?}"
            );
        }
    }

    #[test]
    fn completion_body_errors_are_classified() {
        assert!(matches!(
            parse_completion(b"<html>502</html>", "m"),
            Err(LlmError::InvalidResponse { .. })
        ));
        assert!(matches!(
            parse_completion(br#"{"id":"x","choices":[{"message":{"content":"hi"#, "m"),
            Err(LlmError::Truncated { .. })
        ));
        assert!(matches!(
            parse_completion(br#"{"choices":[]}"#, "m"),
            Err(LlmError::InvalidResponse { .. })
        ));
        assert!(matches!(
            parse_completion(br#"{"object":"list","data":[]}"#, "m"),
            Err(LlmError::InvalidResponse { .. })
        ));
        let ok = parse_completion(
            br#"{"choices":[{"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}"#,
            "m",
        )
        .unwrap();
        assert_eq!(ok.message.content, "hi");
        assert_eq!(ok.model, "m");
    }
}
