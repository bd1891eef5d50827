//! Session identifiers.

use serde::{Deserialize, Serialize};

/// A session id: `YYYYMMDD-HHMMSS-xxxxxx` (UTC time of creation plus six random hex digits), so
/// ids sort by creation time and can be typed by a human.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionId(String);

impl SessionId {
    /// Build an id from a timestamp already formatted as `YYYYMMDD-HHMMSS` and a random number.
    pub fn from_parts(timestamp: &str, random: u32) -> Self {
        Self(format!("{timestamp}-{:06x}", random & 0x00ff_ffff))
    }

    /// Accept an id typed by a user. Only the characters ids are made of are allowed, so an id
    /// can be put in a file name or a log line without escaping.
    ///
    /// # Errors
    /// Returns the offending input when it is empty, too long or has other characters.
    pub fn parse(s: &str) -> Result<Self, InvalidSessionId> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidSessionId(s.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid session id {0:?}: use letters, digits, '-' and '_' only")]
pub struct InvalidSessionId(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_readable_and_validated() {
        let id = SessionId::from_parts("20261121-020109", 0xabcdef12);
        assert_eq!(id.as_str(), "20261121-020109-cdef12");
        assert!(SessionId::parse("../etc").is_err());
        assert!(SessionId::parse("").is_err());
        assert_eq!(SessionId::parse(id.as_str()).unwrap(), id);
    }
}
