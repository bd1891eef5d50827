//! The first platform: the OpenAI-compatible HTTP API. Inbound, a request's API key is the
//! person (`api`, key id) and its session the source; the HTTP routes ([`crate::api`]) put it
//! in the inbox like every platform's messages. Outbound, a delivery to `api:NAME` is stored
//! and fetched with `GET /v1/deliveries?target=NAME`: clients poll, so there is nothing to
//! push and nothing to edit once fetched.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{Outbound, Platform, PlatformError, PlatformStatus};
use crate::store::{NewDelivery, Store, Stored};

/// The platform's name in targets and in `Status`.
pub const NAME: &str = "api";

/// The HTTP API as a platform.
#[derive(Debug)]
pub struct ApiPlatform {
    store: Store,
    /// Whether the HTTP API is accepting connections.
    listening: Arc<AtomicBool>,
}

impl ApiPlatform {
    pub fn new(store: Store, listening: Arc<AtomicBool>) -> Self {
        Self { store, listening }
    }
}

#[async_trait::async_trait]
impl Platform for ApiPlatform {
    fn name(&self) -> &'static str {
        NAME
    }

    fn check_chat(&self, chat: &str) -> Result<(), String> {
        let valid = !chat.is_empty()
            && chat.len() <= 128
            && chat
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
        if valid {
            Ok(())
        } else {
            Err("the name must be 1 to 128 letters, digits or _.:-".into())
        }
    }

    async fn deliver(&self, message: Outbound) -> Result<String, PlatformError> {
        let delivery = NewDelivery {
            target: format!("{NAME}:{}", message.chat),
            text: message.text,
            reply_to: message.reply_to,
            silent: message.silent,
            caller_uid: message.caller_uid,
            idempotency_key: message.idempotency_key,
        };
        let stored =
            self.store
                .add_delivery(delivery)
                .await
                .map_err(|source| PlatformError::Store {
                    platform: NAME,
                    source,
                })?;
        match stored {
            Stored::New(id) | Stored::Repeated(id) => Ok(id.to_string()),
            Stored::KeyReused(id) => Err(PlatformError::KeyReused {
                delivery: id.to_string(),
            }),
        }
    }

    async fn edit(&self, _delivery: &str, _text: &str) -> Result<(), PlatformError> {
        Err(PlatformError::Unsupported {
            platform: NAME,
            operation: "edit a delivery (clients fetch it as it was stored)",
        })
    }

    fn status(&self) -> PlatformStatus {
        if self.listening.load(Ordering::SeqCst) {
            PlatformStatus::Listening
        } else {
            PlatformStatus::Stopped
        }
    }
}
