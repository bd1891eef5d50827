//! The platform seam: every place people talk to Talaria through — the OpenAI-compatible HTTP
//! API today, chat services (Telegram, Matrix, Slack, …) tomorrow — is a [`Platform`]: inbound
//! messages become turns for a platform-neutral [`Person`] from a [`Source`]; outbound messages
//! are delivered (and, where the platform can, edited) to a chat; and it reports its status.
//! The gateway holds them in a [`Registry`] and routes `Gateway1.Deliver` targets
//! (`platform:chat`) by name, so adding a platform is adding a file here and one `register`
//! call — no edit to the bus service or the HTTP API.
//!
//! Heavy platform SDKs go behind Cargo features of this crate (`telegram`, `matrix`, …), one
//! per platform, so a gateway built without one links none of its code; none exist yet.
//!
//! A platform must never talk to the agent itself: inbound turns go through the gateway's
//! inbox and turn drivers (durable, idempotent), so every platform gets the same recovery.

pub mod api;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::store::StoreError;

/// Who a message is from, on which platform: the platform's own id for the person (an API key
/// id, a Telegram user id). The agent keeps one person's memory and sessions apart from
/// another's by it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Person {
    pub platform: String,
    pub user: String,
}

/// Where a message came from and where its answer goes: a chat (and, where the platform has
/// them, a thread) on a platform.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Source {
    pub platform: String,
    pub chat: String,
}

/// A message to deliver to one chat of a platform.
#[derive(Debug, Clone)]
pub struct Outbound {
    /// The chat part of the target (after `platform:`), checked by the platform.
    pub chat: String,
    pub text: String,
    /// The message this one answers, in the platform's terms.
    pub reply_to: Option<String>,
    /// Deliver without a notification, where the platform can.
    pub silent: bool,
    /// The bus caller's uid.
    pub caller_uid: u32,
    /// The caller's name for this delivery: the same key from the same uid is delivered once.
    pub idempotency_key: Option<String>,
}

/// A platform's connection state, as `Gateway1.Status` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlatformStatus {
    /// Connected to its service and receiving messages.
    Connected,
    /// Serving a listener of its own (the HTTP API).
    Listening,
    /// Not accepting messages right now (stopped, reconnecting).
    Stopped,
    /// Failing; the text says why.
    Failed(String),
}

impl PlatformStatus {
    /// The wire spelling.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            Self::Connected => "connected",
            Self::Listening => "listening",
            Self::Stopped => "stopped",
            Self::Failed(why) => why,
        }
    }
}

/// Why a delivery or an edit was not made.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error("target {target:?} is not platform:chat")]
    NotATarget { target: String },
    #[error("target {target:?}: unknown platform {platform:?} (this gateway has: {known})")]
    UnknownPlatform {
        target: String,
        platform: String,
        known: String,
    },
    #[error("target {target:?}: {reason}")]
    BadChat { target: String, reason: String },
    #[error("idempotency_key was already used for delivery {delivery} with another target or text")]
    KeyReused { delivery: String },
    #[error("{platform} cannot {operation}")]
    Unsupported {
        platform: &'static str,
        operation: &'static str,
    },
    #[error("{platform}: {source}")]
    Store {
        platform: &'static str,
        #[source]
        source: StoreError,
    },
}

/// One platform. Implementations live in their own file in this folder.
#[async_trait::async_trait]
pub trait Platform: Send + Sync + fmt::Debug {
    /// The name targets use (`NAME:chat`), lowercase.
    fn name(&self) -> &'static str;

    /// Checks the chat part of a target before anything is stored or sent.
    ///
    /// # Errors
    /// [`PlatformError::BadChat`] naming what is wrong.
    fn check_chat(&self, chat: &str) -> Result<(), String>;

    /// Delivers `message`; returns the delivery's id on this platform.
    ///
    /// # Errors
    /// The platform refused or could not be reached, or the idempotency key names another
    /// delivery.
    async fn deliver(&self, message: Outbound) -> Result<String, PlatformError>;

    /// Replaces the text of an earlier delivery (a streamed answer growing in place).
    ///
    /// # Errors
    /// [`PlatformError::Unsupported`] where the platform has no edits.
    async fn edit(&self, delivery: &str, text: &str) -> Result<(), PlatformError>;

    /// The platform's state now.
    fn status(&self) -> PlatformStatus;
}

/// The platforms this gateway serves, by name.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    platforms: BTreeMap<&'static str, Arc<dyn Platform>>,
}

impl Registry {
    /// Adds `platform`; a second platform of the same name replaces the first.
    pub fn register(&mut self, platform: Arc<dyn Platform>) {
        self.platforms.insert(platform.name(), platform);
    }

    /// The registered names, sorted.
    pub fn names(&self) -> Vec<&'static str> {
        self.platforms.keys().copied().collect()
    }

    /// The platform and chat a `platform:chat` target names; the chat is checked by its
    /// platform.
    ///
    /// # Errors
    /// A target without `:`, an unregistered platform (the error lists the registered ones),
    /// or a chat the platform refuses.
    pub fn resolve<'t>(
        &self,
        target: &'t str,
    ) -> Result<(Arc<dyn Platform>, &'t str), PlatformError> {
        let Some((name, chat)) = target.split_once(':') else {
            return Err(PlatformError::NotATarget {
                target: target.to_owned(),
            });
        };
        let Some(platform) = self.platforms.get(name) else {
            return Err(PlatformError::UnknownPlatform {
                target: target.to_owned(),
                platform: name.to_owned(),
                known: self.names().join(", "),
            });
        };
        platform
            .check_chat(chat)
            .map_err(|reason| PlatformError::BadChat {
                target: target.to_owned(),
                reason,
            })?;
        Ok((Arc::clone(platform), chat))
    }

    /// Every platform's status, by name.
    pub fn status(&self) -> Vec<(&'static str, PlatformStatus)> {
        self.platforms
            .iter()
            .map(|(name, platform)| (*name, platform.status()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A platform that only exists in this test: the registry routes to it by name.
    #[derive(Debug)]
    struct Echo;

    #[async_trait::async_trait]
    impl Platform for Echo {
        fn name(&self) -> &'static str {
            "echo"
        }

        fn check_chat(&self, chat: &str) -> Result<(), String> {
            if chat.chars().all(|c| c.is_ascii_digit()) && !chat.is_empty() {
                Ok(())
            } else {
                Err("the chat must be a number".into())
            }
        }

        async fn deliver(&self, message: Outbound) -> Result<String, PlatformError> {
            Ok(format!("echo-{}", message.chat))
        }

        async fn edit(&self, _delivery: &str, _text: &str) -> Result<(), PlatformError> {
            Ok(())
        }

        fn status(&self) -> PlatformStatus {
            PlatformStatus::Connected
        }
    }

    #[tokio::test]
    async fn targets_route_to_the_registered_platform_and_unknown_ones_are_named() {
        let mut registry = Registry::default();
        registry.register(Arc::new(Echo));
        let (platform, chat) = registry.resolve("echo:42").unwrap();
        assert_eq!((platform.name(), chat), ("echo", "42"));
        let id = platform
            .deliver(Outbound {
                chat: chat.into(),
                text: "hi".into(),
                reply_to: None,
                silent: false,
                caller_uid: 0,
                idempotency_key: None,
            })
            .await
            .unwrap();
        assert_eq!(id, "echo-42");
        let unknown = registry.resolve("telegram:1").unwrap_err().to_string();
        assert_eq!(
            unknown,
            r#"target "telegram:1": unknown platform "telegram" (this gateway has: echo)"#
        );
        let bad = registry.resolve("echo:abc").unwrap_err().to_string();
        assert_eq!(bad, r#"target "echo:abc": the chat must be a number"#);
        assert!(matches!(
            registry.resolve("echo"),
            Err(PlatformError::NotATarget { .. })
        ));
        assert_eq!(registry.status(), [("echo", PlatformStatus::Connected)]);
    }
}
