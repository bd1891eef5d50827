//! What can go wrong talking to a model endpoint, and how an HTTP error response is classified.
//!
//! Every variant reads as a sentence a user can act on. Server text is quoted from the
//! OpenAI-style `{"error":{"message":..}}` body when there is one, otherwise from the raw body,
//! truncated. No variant ever carries the API key: it is only ever put in a request header.

use std::time::Duration;

/// Longest excerpt of a server body quoted in an error.
const SNIPPET_CHARS: usize = 300;

/// Which wait ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutPhase {
    /// Establishing the TCP (and TLS) connection.
    Connect,
    /// Waiting for the next bytes of the response (headers or body).
    Read,
}

impl TimeoutPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            TimeoutPhase::Connect => "connect",
            TimeoutPhase::Read => "read",
        }
    }
}

impl std::fmt::Display for TimeoutPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error(
        "the model endpoint rejected the API key ({}): {message}; check {}",
        status_label(*status),
        key_source.as_deref().unwrap_or("--api-key / TALARIA_API_KEY")
    )]
    Auth {
        status: u16,
        message: String,
        /// Where the rejected key came from (`ANTHROPIC_API_KEY`, `--api-key`, …), when the
        /// client knows.
        key_source: Option<String>,
    },

    #[error("the model endpoint does not serve model {model:?}: {message}; check --model")]
    ModelNotFound { model: String, message: String },

    #[error("the conversation does not fit the model's context window: {message}")]
    ContextOverflow { message: String },

    #[error("the model endpoint is rate limiting requests (429 Too Many Requests){}: {message}", retry_hint(*retry_after))]
    RateLimited {
        message: String,
        retry_after: Option<Duration>,
    },

    #[error("the model endpoint failed ({}): {message}", status_label(*status))]
    Server { status: u16, message: String },

    #[error("the model endpoint refused the request ({}): {message}", status_label(*status))]
    Api { status: u16, message: String },

    #[error(
        "the model endpoint has no {url} (404 Not Found): {message}; check the base URL \
         (OpenAI-compatible servers usually serve the API under /v1)"
    )]
    NotFound { url: String, message: String },

    #[error("cannot reach the model endpoint at {url}: {reason}")]
    Unreachable { url: String, reason: String },

    #[error("the connection to the model endpoint at {url} failed: {reason}")]
    Connection { url: String, reason: String },

    #[error("the model endpoint at {url} did not answer in time ({phase} timeout)")]
    Timeout { url: String, phase: TimeoutPhase },

    #[error("the model endpoint sent an invalid response: {detail}")]
    InvalidResponse { detail: String },

    #[error("the model endpoint's response was cut short: {detail}")]
    Truncated { detail: String },

    #[error("the model endpoint reported an error in the middle of its answer: {message}")]
    StreamAborted { message: String },

    #[error("cannot encode the chat request: {detail}")]
    InvalidRequest { detail: String },

    #[error("invalid model endpoint {base_url:?}: {reason}")]
    InvalidEndpoint { base_url: String, reason: String },
}

impl LlmError {
    /// Whether the same request may succeed if sent again later: rate limits, overload and
    /// gateway errors, transport failures and timeouts.
    pub fn is_retryable(&self) -> bool {
        match self {
            LlmError::RateLimited { .. }
            | LlmError::Unreachable { .. }
            | LlmError::Connection { .. }
            | LlmError::Timeout { .. } => true,
            LlmError::Server { status, .. } => is_retryable_status(*status),
            LlmError::Auth { .. }
            | LlmError::ModelNotFound { .. }
            | LlmError::ContextOverflow { .. }
            | LlmError::Api { .. }
            | LlmError::NotFound { .. }
            | LlmError::InvalidResponse { .. }
            | LlmError::Truncated { .. }
            | LlmError::StreamAborted { .. }
            | LlmError::InvalidRequest { .. }
            | LlmError::InvalidEndpoint { .. } => false,
        }
    }

    /// This error naming `source` as where its rejected key came from.
    pub(crate) fn with_key_source(self, source: Option<&str>) -> LlmError {
        match self {
            LlmError::Auth {
                status, message, ..
            } if source.is_some() => LlmError::Auth {
                status,
                message,
                key_source: source.map(str::to_owned),
            },
            other => other,
        }
    }

    /// This error with every occurrence of `secret` in its text replaced by `[redacted]`: a
    /// server may echo the key it rejected, and errors end up in logs and on screens.
    pub(crate) fn redacted(self, secret: &str) -> LlmError {
        // Too short to be a real key; replacing it would mangle ordinary words.
        if secret.len() < 8 {
            return self;
        }
        let r = |text: String| text.replace(secret, "[redacted]");
        match self {
            LlmError::Auth {
                status,
                message,
                key_source,
            } => LlmError::Auth {
                status,
                message: r(message),
                key_source,
            },
            LlmError::ModelNotFound { model, message } => LlmError::ModelNotFound {
                model,
                message: r(message),
            },
            LlmError::ContextOverflow { message } => LlmError::ContextOverflow {
                message: r(message),
            },
            LlmError::RateLimited {
                message,
                retry_after,
            } => LlmError::RateLimited {
                message: r(message),
                retry_after,
            },
            LlmError::Server { status, message } => LlmError::Server {
                status,
                message: r(message),
            },
            LlmError::Api { status, message } => LlmError::Api {
                status,
                message: r(message),
            },
            LlmError::NotFound { url, message } => LlmError::NotFound {
                url,
                message: r(message),
            },
            LlmError::Unreachable { url, reason } => LlmError::Unreachable {
                url,
                reason: r(reason),
            },
            LlmError::Connection { url, reason } => LlmError::Connection {
                url,
                reason: r(reason),
            },
            LlmError::Timeout { url, phase } => LlmError::Timeout { url, phase },
            LlmError::InvalidResponse { detail } => LlmError::InvalidResponse { detail: r(detail) },
            LlmError::Truncated { detail } => LlmError::Truncated { detail: r(detail) },
            LlmError::StreamAborted { message } => LlmError::StreamAborted {
                message: r(message),
            },
            LlmError::InvalidRequest { detail } => LlmError::InvalidRequest { detail: r(detail) },
            LlmError::InvalidEndpoint { base_url, reason } => LlmError::InvalidEndpoint {
                base_url,
                reason: r(reason),
            },
        }
    }

    /// The wait the server asked for, on a rate limit.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            LlmError::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Statuses worth retrying: rate limits and transient server or gateway trouble (529 is the
/// "overloaded" status some providers use).
pub(crate) fn is_retryable_status(status: u16) -> bool {
    matches!(status, 429 | 500 | 502 | 503 | 504 | 529)
}

fn status_label(status: u16) -> String {
    match reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
    {
        Some(reason) => format!("{status} {reason}"),
        None => status.to_string(),
    }
}

fn retry_hint(retry_after: Option<Duration>) -> String {
    match retry_after {
        Some(d) => format!(", asked to wait {}s", d.as_secs_f64().ceil()),
        None => String::new(),
    }
}

/// The server's explanation from an error body: `error.message` of an OpenAI-style body (or
/// `error` as a plain string, or a top-level `message`/`detail`), else the raw text truncated.
pub(crate) fn server_message(body: &str) -> String {
    let parsed = serde_json::from_str::<serde_json::Value>(body).ok();
    let from_json = parsed.as_ref().and_then(|v| {
        let error = v.get("error");
        error
            .and_then(|e| e.get("message"))
            .or(error.filter(|e| e.is_string()))
            .or_else(|| v.get("message"))
            .or_else(|| v.get("detail"))
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    });
    match from_json {
        Some(message) if !message.trim().is_empty() => snippet(message.trim()),
        _ if body.trim().is_empty() => "(empty response body)".to_owned(),
        _ => snippet(body.trim()),
    }
}

/// `error.code` (string or number) and `error.type` of an OpenAI-style body.
fn error_codes(body: &str) -> Vec<String> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
        return Vec::new();
    };
    let Some(error) = v.get("error") else {
        return Vec::new();
    };
    ["code", "type"]
        .iter()
        .filter_map(|k| match error.get(*k)? {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
        .collect()
}

/// Phrases servers use for "the prompt is longer than the context window": OpenAI, vLLM,
/// llama.cpp, Ollama, Anthropic-compatible gateways and others.
const CONTEXT_OVERFLOW_MARKERS: &[&str] = &[
    "context_length_exceeded",
    "maximum context length",
    "context window",
    "context length",
    "context size",
    "exceed_context_size",
    "too many tokens",
    "prompt is too long",
    "prompt too long",
];

fn mentions_context_overflow(body: &str) -> bool {
    let lower = body.to_lowercase();
    CONTEXT_OVERFLOW_MARKERS.iter().any(|m| lower.contains(m))
}

/// Whether a 404 body is about a model rather than a missing route. Servers that do not know a
/// model say so ("model \"x\" not found"); a wrong base URL gets a generic "Not Found" page,
/// and calling that a missing model would send the user hunting in the wrong place.
fn is_about_a_model(body: &str, codes: &[String]) -> bool {
    codes.iter().any(|c| c == "model_not_found") || body.to_lowercase().contains("model")
}

/// Classifies a non-success response to a request for `url` (shown in the error, so it must
/// be the redacted one). `model` is the model the request named, `None` for requests that name
/// none (listing models), where a 404 can only mean the route.
pub(crate) fn classify_status(
    status: u16,
    body: &str,
    url: &str,
    model: Option<&str>,
    retry_after: Option<Duration>,
) -> LlmError {
    let message = server_message(body);
    let codes = error_codes(body);
    let model_not_found = || LlmError::ModelNotFound {
        model: model.unwrap_or_default().to_owned(),
        message: message.clone(),
    };
    match status {
        401 | 403 => LlmError::Auth {
            status,
            message,
            key_source: None,
        },
        404 if model.is_some() && is_about_a_model(body, &codes) => model_not_found(),
        404 => LlmError::NotFound {
            url: url.to_owned(),
            message,
        },
        400 if codes.iter().any(|c| c == "model_not_found") => model_not_found(),
        400 | 413 if mentions_context_overflow(body) => LlmError::ContextOverflow { message },
        429 => LlmError::RateLimited {
            message,
            retry_after,
        },
        500..=599 => LlmError::Server { status, message },
        _ => LlmError::Api { status, message },
    }
}

/// At most [`SNIPPET_CHARS`] characters of `text`, marked when cut.
pub(crate) fn snippet(text: &str) -> String {
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(SNIPPET_CHARS).collect();
    if chars.next().is_some() {
        format!("{head}… (truncated)")
    } else {
        head
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const URL: &str = "http://127.0.0.1:8080/v1/chat/completions";

    const OPENAI_401: &str = r#"{"error":{"message":"Incorrect API key provided: sk-abc***xyz.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#;

    #[test]
    fn auth_error_reads_as_advice() {
        let e = classify_status(401, OPENAI_401, URL, Some("gpt"), None);
        assert!(matches!(e, LlmError::Auth { status: 401, .. }));
        assert_eq!(
            e.to_string(),
            "the model endpoint rejected the API key (401 Unauthorized): Incorrect API key \
             provided: sk-abc***xyz.; check --api-key / TALARIA_API_KEY"
        );
        assert!(!e.is_retryable());
        assert!(matches!(
            classify_status(403, "forbidden", URL, Some("m"), None),
            LlmError::Auth { status: 403, .. }
        ));
    }

    #[test]
    fn model_not_found_from_404_or_400_code() {
        let e = classify_status(
            404,
            r#"{"error":{"message":"no such model"}}"#,
            URL,
            Some("llama"),
            None,
        );
        match &e {
            LlmError::ModelNotFound { model, message } => {
                assert_eq!(model, "llama");
                assert_eq!(message, "no such model");
            }
            other => panic!("unexpected {other:?}"),
        }
        let e = classify_status(
            400,
            r#"{"error":{"message":"The model `x` does not exist","code":"model_not_found"}}"#,
            URL,
            Some("x"),
            None,
        );
        assert!(matches!(e, LlmError::ModelNotFound { .. }));
        // Ollama's wording.
        assert!(matches!(
            classify_status(
                404,
                r#"{"error":{"message":"model \"qwen\" not found, try pulling it first"}}"#,
                URL,
                Some("qwen"),
                None
            ),
            LlmError::ModelNotFound { .. }
        ));
    }

    #[test]
    fn route_404_points_at_the_base_url() {
        // A generic 404 page is a wrong base URL, with or without a model in the request.
        for model in [Some("llama"), None] {
            let e = classify_status(404, "<h1>Not Found</h1>", URL, model, None);
            assert!(matches!(e, LlmError::NotFound { .. }), "{e:?}");
            assert_eq!(
                e.to_string(),
                "the model endpoint has no http://127.0.0.1:8080/v1/chat/completions (404 Not \
                 Found): <h1>Not Found</h1>; check the base URL (OpenAI-compatible servers \
                 usually serve the API under /v1)"
            );
        }
        // A model-related 404 on the model list stays a route problem: no model was named.
        assert!(matches!(
            classify_status(404, "model list unavailable", URL, None, None),
            LlmError::NotFound { .. }
        ));
    }

    #[test]
    fn context_overflow_across_server_dialects() {
        let bodies = [
            r#"{"error":{"message":"This model's maximum context length is 8192 tokens.","code":"context_length_exceeded"}}"#,
            r#"{"error":{"code":400,"message":"the request exceeds the available context size, try increasing it","type":"exceed_context_size_error"}}"#,
            r#"{"object":"error","message":"This model's maximum context length is 4096 tokens. However, you requested 5000 tokens","type":"BadRequestError","code":400}"#,
            r#"{"error":{"message":"prompt is too long: 210000 tokens > 200000 maximum"}}"#,
            "Too many tokens in the request",
        ];
        for body in bodies {
            let e = classify_status(400, body, URL, Some("m"), None);
            assert!(
                matches!(e, LlmError::ContextOverflow { .. }),
                "{body} -> {e:?}"
            );
        }
        assert!(matches!(
            classify_status(
                413,
                "input exceeds the context window",
                URL,
                Some("m"),
                None
            ),
            LlmError::ContextOverflow { .. }
        ));
        // A 400 about something else stays an API error.
        assert!(matches!(
            classify_status(
                400,
                r#"{"error":{"message":"temperature must be <= 2"}}"#,
                URL,
                Some("m"),
                None
            ),
            LlmError::Api { status: 400, .. }
        ));
    }

    #[test]
    fn vllm_style_top_level_message_is_extracted() {
        let e = classify_status(
            400,
            r#"{"object":"error","message":"bad tool schema","type":"BadRequestError"}"#,
            URL,
            Some("m"),
            None,
        );
        assert_eq!(
            e.to_string(),
            "the model endpoint refused the request (400 Bad Request): bad tool schema"
        );
    }

    #[test]
    fn rate_limit_and_server_errors_are_retryable() {
        let e = classify_status(
            429,
            "slow down",
            URL,
            Some("m"),
            Some(Duration::from_secs(7)),
        );
        assert!(e.is_retryable());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        assert_eq!(
            e.to_string(),
            "the model endpoint is rate limiting requests (429 Too Many Requests), asked to \
             wait 7s: slow down"
        );
        for status in [500, 502, 503, 504, 529] {
            let e = classify_status(status, "", URL, Some("m"), None);
            assert!(matches!(e, LlmError::Server { .. }), "{status}");
            assert!(e.is_retryable(), "{status}");
        }
        let e = classify_status(501, "", URL, Some("m"), None);
        assert!(matches!(e, LlmError::Server { status: 501, .. }));
        assert!(!e.is_retryable());
        assert!(!classify_status(422, "", URL, Some("m"), None).is_retryable());
    }

    #[test]
    fn echoed_keys_are_redacted() {
        let body = r#"{"error":{"message":"key sk-live-0123456789 is revoked"}}"#;
        let e = classify_status(401, body, URL, Some("m"), None).redacted("sk-live-0123456789");
        assert!(e.to_string().contains("key [redacted] is revoked"), "{e}");
        // Short "keys" are left alone rather than mangling the message.
        let e = classify_status(401, "bad key", URL, Some("m"), None).redacted("key");
        assert!(e.to_string().contains("bad key"));
    }

    #[test]
    fn raw_bodies_are_truncated() {
        let html = format!("<html>{}</html>", "x".repeat(1000));
        let e = classify_status(502, &html, URL, Some("m"), None);
        let text = e.to_string();
        assert!(text.starts_with("the model endpoint failed (502 Bad Gateway): <html>xxx"));
        assert!(text.ends_with("… (truncated)"));
        assert!(text.len() < 400);
        assert_eq!(server_message("  "), "(empty response body)");
        assert_eq!(
            server_message(r#"{"error":"plain string"}"#),
            "plain string"
        );
    }
}
