//! When to send a failed request again: jittered exponential backoff and `Retry-After`.
//!
//! Backoff uses "full jitter" (a uniform wait between zero and the capped exponential), which
//! spreads out clients that failed together instead of having them retry in lockstep. A server's
//! `Retry-After` is a floor: we never come back sooner than asked, up to [`MAX_RETRY_AFTER`].

use std::time::{Duration, SystemTime};

use talaria_core::Secret;

use crate::error::LlmError;

/// The longest `Retry-After` we honour; a server asking for more gets retried after this long
/// rather than stalling the user's turn for an unbounded time.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);

/// How often and how patiently to retry a request that failed in a retryable way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt; 0 disables retrying.
    pub max_retries: u32,
    /// Cap of the jittered wait before the first retry; doubles for each further retry.
    pub base_delay: Duration,
    /// Upper bound of any backoff wait (a server's `Retry-After` may exceed it).
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 3,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn none() -> Self {
        Self {
            max_retries: 0,
            ..Self::default()
        }
    }

    /// The wait before retry number `retry` (0-based): uniform in `[0, min(max_delay,
    /// base_delay * 2^retry)]`, raised to `retry_after` (capped at [`MAX_RETRY_AFTER`]).
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let ceiling = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(retry))
            .min(self.max_delay);
        let jittered = ceiling.mul_f64(fastrand::f64());
        match retry_after {
            Some(asked) => jittered.max(asked.min(MAX_RETRY_AFTER)),
            None => jittered,
        }
    }
}

/// Parses a `Retry-After` value: delta-seconds (`"120"`, fractions tolerated) or an HTTP-date,
/// relative to `now`. A date in the past means "now"; anything unparseable is ignored.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(1e9)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A failed attempt, with the server's requested wait when it gave one.
pub(crate) struct Failure {
    pub(crate) error: LlmError,
    pub(crate) retry_after: Option<Duration>,
}

impl From<LlmError> for Failure {
    fn from(error: LlmError) -> Self {
        Self {
            error,
            retry_after: None,
        }
    }
}

/// Both clients' retry decisions: the policy, the endpoint as logs show it, and the key that
/// must never appear in an error that leaves the client.
#[derive(Clone, Copy)]
pub(crate) struct Retrier<'a> {
    pub(crate) policy: &'a RetryPolicy,
    pub(crate) endpoint: &'a str,
    pub(crate) api_key: Option<&'a Secret>,
    /// Where the key came from, named when the endpoint rejects it.
    pub(crate) key_source: Option<&'a str>,
}

impl Retrier<'_> {
    /// `error` with the API key scrubbed from any server text it quotes. Every error leaves a
    /// client, and reaches a log line, through here.
    pub(crate) fn scrub(self, error: LlmError) -> LlmError {
        let error = error.with_key_source(self.key_source);
        match self.api_key {
            Some(key) => error.redacted(key.expose()),
            None => error,
        }
    }

    /// Decides whether to retry after `failure`; returns the wait, or the (scrubbed) error to
    /// give up with.
    pub(crate) fn delay(
        self,
        what: &str,
        retry: u32,
        failure: Failure,
    ) -> Result<Duration, LlmError> {
        let error = self.scrub(failure.error);
        if !error.is_retryable() || retry >= self.policy.max_retries {
            return Err(error);
        }
        let delay = self.policy.delay(retry, failure.retry_after);
        tracing::warn!(
            endpoint = %self.endpoint,
            request = what,
            retry = retry + 1,
            max_retries = self.policy.max_retries,
            delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            error = %error,
            "model request failed; retrying"
        );
        Ok(delay)
    }

    /// Runs `attempt` until it succeeds or [`Self::delay`] gives up.
    pub(crate) async fn run<T, F, Fut>(self, what: &str, mut attempt: F) -> Result<T, LlmError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Failure>>,
    {
        let mut retry = 0;
        loop {
            match attempt().await {
                Ok(value) => return Ok(value),
                Err(failure) => {
                    tokio::time::sleep(self.delay(what, retry, failure)?).await;
                    retry += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn backoff_is_jittered_and_capped() {
        let policy = RetryPolicy {
            max_retries: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
        };
        let mut distinct = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let d0 = policy.delay(0, None);
            assert!(d0 <= Duration::from_millis(100));
            let d3 = policy.delay(3, None);
            assert!(d3 <= Duration::from_millis(800));
            let d9 = policy.delay(9, None);
            assert!(d9 <= Duration::from_millis(1000));
            distinct.insert(d3);
        }
        // Full jitter: the waits actually vary.
        assert!(distinct.len() > 50);
        // Huge retry counts do not overflow.
        assert!(policy.delay(u32::MAX, None) <= Duration::from_millis(1000));
    }

    #[test]
    fn retry_after_is_a_floor_with_a_cap() {
        let policy = RetryPolicy::default();
        for _ in 0..50 {
            assert!(policy.delay(0, Some(Duration::from_secs(5))) >= Duration::from_secs(5));
        }
        assert_eq!(
            RetryPolicy::none().delay(0, Some(Duration::from_secs(3600))),
            MAX_RETRY_AFTER
        );
    }

    #[test]
    fn retry_after_parses_seconds_and_dates() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        assert_eq!(parse_retry_after("1", now), Some(Duration::from_secs(1)));
        assert_eq!(
            parse_retry_after(" 0.5 ", now),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
    }
}
