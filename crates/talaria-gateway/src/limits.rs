//! The limits that keep one client from starving the others: how long a client may take to
//! send its headers and body and to read the answer, how large they may be, how many
//! connections are open at once, and how many requests and turns one API key may have.
//!
//! The connection-level limits are enforced by [`crate::server`]; the per-key ones here, by
//! the handlers ([`KeyLimits::check_rate`] for every authenticated request,
//! [`KeyLimits::reserve_turn`] for every new turn). Per-key state exists only for the
//! configured keys, so no client can make it grow.
//!
//! The defaults suit a small host (one vCPU, 1 GiB, a service manager's default soft limit of
//! 1024 open files): 512 connections, 10 s for headers (and for an idle keep-alive connection),
//! 30 s for a body, 60 s for a client that stops reading, 16 KiB of headers, 1 MiB of body,
//! 120 requests a minute and 4 turns at once per key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::keys::KeyId;

/// Most connections open at once by default (`--max-connections`).
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
/// Time to send a request's headers, and most time a keep-alive connection may sit idle.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Time to send a request's body, from the end of its headers.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a write to a client may wait for the client to read.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest request line plus headers, in bytes.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 << 10;
/// Largest request body, in bytes.
pub const DEFAULT_BODY_LIMIT: usize = 1 << 20;
/// Requests one API key may make per minute (as a burst, refilled evenly).
pub const DEFAULT_KEY_REQUESTS_PER_MINUTE: u32 = 120;
/// Turns one API key may have running at once.
pub const DEFAULT_KEY_CONCURRENT_TURNS: u32 = 4;
/// What a client is told to wait when its key has all its turns running: turns take seconds,
/// and the client cannot know when one ends.
const TURN_RETRY_AFTER: Duration = Duration::from_secs(2);

/// The HTTP limits, with defaults in [`HttpLimits::default`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    /// Most connections open at once; at the cap, idle and half-sent connections are closed
    /// to make room, and when every connection is busy a new one gets 503.
    pub max_connections: usize,
    /// Time to send the headers of a request; also how long a keep-alive connection may
    /// wait for its next request.
    pub header_timeout: Duration,
    /// Time to send a request's body once its headers are in (408 after it).
    pub body_timeout: Duration,
    /// Longest a response may wait for the client to read before the connection is closed.
    pub send_timeout: Duration,
    /// Largest request line plus headers (431 past it, without reading the rest).
    pub max_header_bytes: usize,
    /// Largest request body (413; a larger `Content-Length` is refused before any of the
    /// body is read, a chunked body is cut at the limit).
    pub body_limit: usize,
    /// Requests per minute per API key, 0 for no limit (429 with `Retry-After` past it).
    pub key_requests_per_minute: u32,
    /// Turns running at once per API key, 0 for no limit (429 with `Retry-After` past it).
    pub key_concurrent_turns: u32,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            send_timeout: DEFAULT_SEND_TIMEOUT,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            body_limit: DEFAULT_BODY_LIMIT,
            key_requests_per_minute: DEFAULT_KEY_REQUESTS_PER_MINUTE,
            key_concurrent_turns: DEFAULT_KEY_CONCURRENT_TURNS,
        }
    }
}

/// Smallest header limit accepted: a request line and a bearer key must fit.
const MIN_HEADER_BYTES: usize = 1024;
/// Largest header limit accepted: anything larger only helps a client waste memory.
const MAX_HEADER_BYTES: usize = 1 << 20;

/// The command-line options for [`HttpLimits`], shared by `talaria-gatewayd` and
/// `talaria serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct LimitArgs {
    /// Most HTTP connections open at once. At the cap, idle keep-alive and half-sent
    /// connections are closed (oldest first) to make room; when all are busy, 503.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,

    /// Seconds a client has to send a request's headers; also how long an idle keep-alive
    /// connection stays open.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_HEADER_TIMEOUT.as_secs())]
    pub header_timeout: u64,

    /// Seconds a client has to send a request's body once its headers are in (408 after).
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_BODY_TIMEOUT.as_secs())]
    pub body_timeout: u64,

    /// Seconds an answer may wait for a client that stopped reading before the connection
    /// is closed.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_SEND_TIMEOUT.as_secs())]
    pub send_timeout: u64,

    /// Largest request line plus headers in bytes (431 past it).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_HEADER_BYTES)]
    pub max_header_bytes: usize,

    /// Largest request body in bytes (413 past it, refused before reading when announced).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_BODY_LIMIT)]
    pub max_body_bytes: usize,

    /// Requests per minute one API key may make (429 with Retry-After past it; 0: no limit).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_KEY_REQUESTS_PER_MINUTE)]
    pub key_requests_per_minute: u32,

    /// Turns one API key may have running at once (429 with Retry-After past it; 0: no
    /// limit).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_KEY_CONCURRENT_TURNS)]
    pub key_concurrent_turns: u32,
}

impl LimitArgs {
    /// The limits these options describe.
    ///
    /// # Errors
    /// A value out of range, naming its option.
    pub fn limits(&self) -> Result<HttpLimits, String> {
        if self.max_connections == 0 {
            return Err("--max-connections must be at least 1".into());
        }
        for (name, secs) in [
            ("--header-timeout", self.header_timeout),
            ("--body-timeout", self.body_timeout),
            ("--send-timeout", self.send_timeout),
        ] {
            if secs == 0 {
                return Err(format!("{name} must be at least 1 second"));
            }
        }
        if !(MIN_HEADER_BYTES..=MAX_HEADER_BYTES).contains(&self.max_header_bytes) {
            return Err(format!(
                "--max-header-bytes must be between {MIN_HEADER_BYTES} and {MAX_HEADER_BYTES}"
            ));
        }
        if self.max_body_bytes == 0 {
            return Err("--max-body-bytes must be at least 1".into());
        }
        Ok(HttpLimits {
            max_connections: self.max_connections,
            header_timeout: Duration::from_secs(self.header_timeout),
            body_timeout: Duration::from_secs(self.body_timeout),
            send_timeout: Duration::from_secs(self.send_timeout),
            max_header_bytes: self.max_header_bytes,
            body_limit: self.max_body_bytes,
            key_requests_per_minute: self.key_requests_per_minute,
            key_concurrent_turns: self.key_concurrent_turns,
        })
    }
}

/// Why a key was refused, and how long it should wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// More requests this minute than the key may make.
    Rate {
        per_minute: u32,
        retry_after: Duration,
    },
    /// All the turns the key may run at once are running.
    Turns { limit: u32, retry_after: Duration },
}

impl Refusal {
    /// Whole seconds to put in `Retry-After` (at least 1).
    pub fn retry_after_secs(self) -> u64 {
        let wait = match self {
            Self::Rate { retry_after, .. } | Self::Turns { retry_after, .. } => retry_after,
        };
        (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
    }
}

#[derive(Debug)]
struct KeyState {
    /// Requests the key may still make now (a token bucket holding up to a minute's worth).
    tokens: f64,
    refilled: Instant,
    turns: u32,
}

/// Per-key request rate and running turns.
#[derive(Debug)]
pub struct KeyLimits {
    per_minute: u32,
    concurrent_turns: u32,
    keys: Mutex<HashMap<KeyId, KeyState>>,
}

impl KeyLimits {
    pub fn new(limits: &HttpLimits) -> Arc<Self> {
        Arc::new(Self {
            per_minute: limits.key_requests_per_minute,
            concurrent_turns: limits.key_concurrent_turns,
            keys: Mutex::new(HashMap::new()),
        })
    }

    fn with_key<T>(&self, key: &KeyId, f: impl FnOnce(&mut KeyState) -> T) -> T {
        let mut keys = self
            .keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let state = keys.entry(key.clone()).or_insert_with(|| KeyState {
            tokens: f64::from(self.per_minute),
            refilled: Instant::now(),
            turns: 0,
        });
        f(state)
    }

    /// Counts one request of `key`.
    ///
    /// # Errors
    /// [`Refusal::Rate`] when the key has used up its requests for now.
    pub fn check_rate(&self, key: &KeyId) -> Result<(), Refusal> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let capacity = f64::from(self.per_minute);
        let per_second = capacity / 60.0;
        self.with_key(key, |state| {
            let now = Instant::now();
            let elapsed = now.duration_since(state.refilled).as_secs_f64();
            state.tokens = (state.tokens + elapsed * per_second).min(capacity);
            state.refilled = now;
            if state.tokens >= 1.0 {
                state.tokens -= 1.0;
                Ok(())
            } else {
                Err(Refusal::Rate {
                    per_minute: self.per_minute,
                    retry_after: Duration::from_secs_f64((1.0 - state.tokens) / per_second),
                })
            }
        })
    }

    /// Reserves one of `key`'s running turns until the slot is dropped.
    ///
    /// # Errors
    /// [`Refusal::Turns`] when the key has all its turns running.
    pub fn reserve_turn(self: &Arc<Self>, key: &KeyId) -> Result<TurnSlot, Refusal> {
        if self.concurrent_turns == 0 {
            return Ok(TurnSlot { held: None });
        }
        self.with_key(key, |state| {
            if state.turns >= self.concurrent_turns {
                return Err(Refusal::Turns {
                    limit: self.concurrent_turns,
                    retry_after: TURN_RETRY_AFTER,
                });
            }
            state.turns += 1;
            Ok(TurnSlot {
                held: Some((Arc::clone(self), key.clone())),
            })
        })
    }
}

/// One running turn of a key; the turn's driver holds it until the turn ends.
#[derive(Debug)]
pub struct TurnSlot {
    held: Option<(Arc<KeyLimits>, KeyId)>,
}

impl Drop for TurnSlot {
    fn drop(&mut self) {
        if let Some((limits, key)) = self.held.take() {
            limits.with_key(&key, |state| state.turns = state.turns.saturating_sub(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::ApiKeys;

    const A: &str = "key-a-0123456789abcdef0123456789abcdef";
    const B: &str = "key-b-0123456789abcdef0123456789abcdef";

    fn ids() -> (KeyId, KeyId) {
        let keys = ApiKeys::parse(&format!("{A}\n{B}\n"), "test").unwrap();
        (keys.verify(A).unwrap(), keys.verify(B).unwrap())
    }

    fn limits(per_minute: u32, turns: u32) -> Arc<KeyLimits> {
        KeyLimits::new(&HttpLimits {
            key_requests_per_minute: per_minute,
            key_concurrent_turns: turns,
            ..HttpLimits::default()
        })
    }

    #[test]
    fn a_key_gets_its_minute_as_a_burst_and_others_are_unaffected() {
        let (a, b) = ids();
        let limits = limits(3, 0);
        for _ in 0..3 {
            limits.check_rate(&a).unwrap();
        }
        let Err(refusal @ Refusal::Rate { per_minute: 3, .. }) = limits.check_rate(&a) else {
            panic!("the fourth request in a minute is refused");
        };
        // One request comes back every 20 s.
        assert!(
            (1..=20).contains(&refusal.retry_after_secs()),
            "{refusal:?}"
        );
        limits.check_rate(&b).unwrap();
    }

    #[test]
    fn turn_slots_are_counted_per_key_and_released_on_drop() {
        let (a, b) = ids();
        let limits = limits(0, 2);
        let first = limits.reserve_turn(&a).unwrap();
        let _second = limits.reserve_turn(&a).unwrap();
        let refused = limits.reserve_turn(&a).unwrap_err();
        assert_eq!(refused.retry_after_secs(), 2);
        let _other = limits.reserve_turn(&b).unwrap();
        drop(first);
        let _third = limits.reserve_turn(&a).unwrap();
    }

    #[test]
    fn zero_means_no_limit() {
        let (a, _) = ids();
        let limits = limits(0, 0);
        let slots: Vec<_> = (0..1000)
            .map(|_| {
                limits.check_rate(&a).unwrap();
                limits.reserve_turn(&a).unwrap()
            })
            .collect();
        assert_eq!(slots.len(), 1000);
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let rate = |ms| Refusal::Rate {
            per_minute: 1,
            retry_after: Duration::from_millis(ms),
        };
        assert_eq!(rate(0).retry_after_secs(), 1);
        assert_eq!(rate(1).retry_after_secs(), 1);
        assert_eq!(rate(1000).retry_after_secs(), 1);
        assert_eq!(rate(1001).retry_after_secs(), 2);
    }

    #[test]
    fn options_out_of_range_name_themselves() {
        let args = LimitArgs {
            max_connections: 1,
            header_timeout: 1,
            body_timeout: 1,
            send_timeout: 1,
            max_header_bytes: 1024,
            max_body_bytes: 1,
            key_requests_per_minute: 0,
            key_concurrent_turns: 0,
        };
        assert!(args.limits().is_ok());
        let bad = |f: fn(&mut LimitArgs)| {
            let mut a = args.clone();
            f(&mut a);
            a.limits().unwrap_err()
        };
        assert!(bad(|a| a.max_connections = 0).contains("--max-connections"));
        assert!(bad(|a| a.body_timeout = 0).contains("--body-timeout"));
        assert!(bad(|a| a.max_header_bytes = 100).contains("--max-header-bytes"));
        assert!(bad(|a| a.max_body_bytes = 0).contains("--max-body-bytes"));
    }
}
