//! The surface a request came in on: who is asking, as far as the sandbox is concerned.
//!
//! A tool maps to a sandbox profile; the surface can only take rights away from it (see
//! `talaria-policy`'s narrowing). The surface travels with every call from the person to the
//! executor. Where it is missing or unknown, the **narrowest** surface applies — never the
//! owner's — so a caller that forgets it, or a newer caller naming a surface this version does
//! not know, can only lose rights.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Who asked for a tool call, ordered from the widest rights to the narrowest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Surface {
    /// The owner at the CLI or through a channel only the owner holds a key to: the profile as
    /// written.
    Owner,
    /// Someone the owner allow-listed: an API key holder, a chat-platform user.
    #[serde(alias = "allowlisted")]
    AllowlistedUser,
    /// An inbound webhook: nobody is there to answer a prompt.
    Webhook,
}

impl Surface {
    /// Every surface, widest first.
    pub const ALL: [Surface; 3] = [Surface::Owner, Surface::AllowlistedUser, Surface::Webhook];

    /// What applies when a request names no surface, or one this version does not know.
    pub const NARROWEST: Surface = Surface::Webhook;

    /// The wire and message spelling.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Surface::Owner => "owner",
            Surface::AllowlistedUser => "allowlisted_user",
            Surface::Webhook => "webhook",
        }
    }

    /// The narrower of two surfaces: asking twice never widens.
    #[must_use]
    pub fn narrower(self, other: Surface) -> Surface {
        self.max(other)
    }

    /// The surface a wire value names; missing or unknown → [`Surface::NARROWEST`], with the
    /// reason when it was not a plain missing value (so callers can log it).
    pub fn from_wire(value: Option<&str>) -> (Surface, Option<UnknownSurface>) {
        match value {
            None => (Surface::NARROWEST, None),
            Some(name) => match name.parse() {
                Ok(surface) => (surface, None),
                Err(unknown) => (Surface::NARROWEST, Some(unknown)),
            },
        }
    }
}

impl fmt::Display for Surface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A surface name this version does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown surface {0:?}: expected owner, allowlisted_user or webhook")]
pub struct UnknownSurface(pub String);

impl FromStr for Surface {
    type Err = UnknownSurface;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "owner" => Ok(Surface::Owner),
            "allowlisted_user" | "allowlisted" => Ok(Surface::AllowlistedUser),
            "webhook" => Ok(Surface::Webhook),
            other => Err(UnknownSurface(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_is_narrowest() {
        for surface in Surface::ALL {
            assert_eq!(surface.name().parse::<Surface>().unwrap(), surface);
        }
        assert_eq!(Surface::from_wire(None), (Surface::Webhook, None));
        let (surface, unknown) = Surface::from_wire(Some("root"));
        assert_eq!(surface, Surface::Webhook);
        assert_eq!(unknown, Some(UnknownSurface("root".into())));
        assert_eq!(
            Surface::Owner.narrower(Surface::AllowlistedUser),
            Surface::AllowlistedUser
        );
        assert_eq!(Surface::Webhook.narrower(Surface::Owner), Surface::Webhook);
    }
}
