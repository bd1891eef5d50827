//! The ids a turn is named by, checked the same way by every unit that accepts them: the
//! agent (`SubmitTurn`), the gateway (its HTTP edge) and the scheduler (its run ids).
//!
//! A **request id** is the idempotency key of a turn and its turn id: 1 to 128 characters of
//! `A-Z a-z 0-9 _ . : -`, safe to log, to use in file names and to put in a match rule. A
//! **session key** names a conversation for the caller that made it (`api:…`, `cron:…`, and
//! later `telegram:…`): 1 to 256 bytes, not blank, without control characters (a NUL would get
//! the sender's bus connection dropped; newlines would forge log lines).

/// The longest request id, in bytes.
pub const REQUEST_ID_MAX: usize = 128;
/// The longest session key, in bytes.
pub const SESSION_KEY_MAX: usize = 256;

/// An id that is not valid; the message names the input and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("request id {0:?} is not 1 to 128 of A-Z a-z 0-9 _ . : -")]
    RequestId(String),
    #[error("session key {0:?} is not 1 to 256 bytes of printable text")]
    SessionKey(String),
}

/// Ids in error messages are cut to this many characters (an invalid one may be huge).
const SHOWN: usize = 64;

fn shown(id: &str) -> String {
    id.chars().take(SHOWN).collect()
}

/// Checks a request id.
///
/// # Errors
/// [`IdError::RequestId`] when it is empty, too long or holds another character.
pub fn check_request_id(id: &str) -> Result<(), IdError> {
    let valid = (1..=REQUEST_ID_MAX).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(IdError::RequestId(shown(id)))
    }
}

/// Checks a session key.
///
/// # Errors
/// [`IdError::SessionKey`] when it is blank, too long or holds a control character.
pub fn check_session_key(key: &str) -> Result<(), IdError> {
    let valid = (1..=SESSION_KEY_MAX).contains(&key.len())
        && !key.trim().is_empty()
        && !key.chars().any(char::is_control);
    if valid {
        Ok(())
    } else {
        Err(IdError::SessionKey(shown(key)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids() {
        for good in ["req-0a", "run-1f", "a", "x:y.z_w-1", &"r".repeat(128)] {
            assert_eq!(check_request_id(good), Ok(()), "{good}");
        }
        for bad in ["", "a b", "a/b", "é", "a\0", &"r".repeat(129)] {
            assert!(check_request_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn session_keys() {
        for good in [
            "api:0a",
            "cron:job-1",
            "telegram:42:7",
            "a b",
            &"k".repeat(256),
        ] {
            assert_eq!(check_session_key(good), Ok(()), "{good}");
        }
        for bad in ["", "   ", "a\0b", "a\nb", &"k".repeat(257)] {
            assert!(check_session_key(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            check_session_key("a\nb").unwrap_err().to_string(),
            r#"session key "a\nb" is not 1 to 256 bytes of printable text"#
        );
    }
}
