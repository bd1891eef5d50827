//! Who a session talks to: the owner at the CLI, or a person reached over the bus.
//!
//! A bus person is named by the uid of the unit that submitted the turn (the gateway, the
//! scheduler) and the user that unit vouches for (the gateway passes the API key id). The pair
//! decides whose `USER.md` a session sees and whose sessions `session_search` may return, so
//! the user part is validated here to be safe as one file-name component: no separators, no
//! dot-only names, no control characters.

use serde::{Deserialize, Serialize};

/// The user a bus caller names when it gives none.
pub const DEFAULT_USER: &str = "default";

/// A user name a bus caller vouches for: 1 to 64 of `A-Z a-z 0-9 _ . @ -`, not starting with
/// `.` (so never `.` or `..`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserId(String);

impl UserId {
    /// # Errors
    /// [`InvalidUserId`] naming the input when it is empty, too long, starts with a dot or has
    /// other characters.
    pub fn parse(s: &str) -> Result<Self, InvalidUserId> {
        let ok = (1..=64).contains(&s.len())
            && !s.starts_with('.')
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'@' | b'-'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidUserId(s.to_owned()))
        }
    }

    /// The user of a bus caller that named none.
    pub fn default_user() -> Self {
        Self(DEFAULT_USER.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for UserId {
    type Error = InvalidUserId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<UserId> for String {
    fn from(id: UserId) -> Self {
        id.0
    }
}

impl std::fmt::Display for UserId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "invalid user id {0:?}: use 1 to 64 of letters, digits, '_', '.', '@', '-', not starting with '.'"
)]
pub struct InvalidUserId(pub String);

/// Who a session talks to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Person {
    /// The owner of the Talaria home, at the CLI.
    Owner,
    /// Someone reached through a bus caller: the caller's uid and the user it names.
    Remote { uid: u32, user: UserId },
}

impl Person {
    pub fn is_owner(&self) -> bool {
        matches!(self, Person::Owner)
    }

    /// `owner`, or `UID/USER`: how the CLI names a person (`talaria memory show --user`).
    pub fn label(&self) -> String {
        match self {
            Person::Owner => "owner".to_owned(),
            Person::Remote { uid, user } => format!("{uid}/{user}"),
        }
    }

    /// Parse [`Person::label`]'s form back; `UID` alone means the caller's default user.
    ///
    /// # Errors
    /// A message naming the input when the uid is not a number or the user is invalid.
    pub fn parse_label(s: &str) -> Result<Self, String> {
        if s == "owner" {
            return Ok(Person::Owner);
        }
        let (uid, user) = s.split_once('/').unwrap_or((s, DEFAULT_USER));
        let uid = uid
            .parse::<u32>()
            .map_err(|_| format!("invalid person {s:?}: expected `owner` or `UID/USER`"))?;
        let user = UserId::parse(user).map_err(|e| e.to_string())?;
        Ok(Person::Remote { uid, user })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_are_one_safe_path_component() {
        for good in ["alice", "key-0f3a", "a.b@example.org", "default", "x_1"] {
            assert!(UserId::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "../etc",
            "a/b",
            ".hidden",
            "a\\b",
            "a b",
            "a\0",
            "é",
            &"x".repeat(65),
        ] {
            assert!(UserId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn labels_round_trip() {
        let p = Person::Remote {
            uid: 985,
            user: UserId::parse("alice").unwrap(),
        };
        assert_eq!(p.label(), "985/alice");
        assert_eq!(Person::parse_label("985/alice").unwrap(), p);
        assert_eq!(Person::parse_label("owner").unwrap(), Person::Owner);
        assert_eq!(
            Person::parse_label("985").unwrap(),
            Person::Remote {
                uid: 985,
                user: UserId::default_user()
            }
        );
        assert!(Person::parse_label("985/../x").is_err());
        assert!(Person::parse_label("me/alice").is_err());
    }
}
