//! `org.talaria.Gateway1`, served at `/org/talaria/Gateway1`: other units hand the gateway
//! messages to deliver (`Deliver`) and ask how its platforms are doing (`Status`).
//!
//! Every call is authorized from the caller's bus credentials ([`Callers`]): this process's
//! uid, root and the users named with `--allow-user` (the agent and scheduler units). The
//! only platform so far is `api`: a delivery to `api:NAME` is stored and fetched over HTTP
//! with `GET /v1/deliveries?target=NAME`. Unknown platforms are refused, never dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use talaria_bus::VariantDict;
use talaria_daemon::{Activity, Callers};
use zbus::message::Header;
use zbus::{Connection, OwnedVariant, Str, fdo, interface};

use crate::store::{NewDelivery, Store, Stored};

/// Longest text accepted for one delivery.
pub const MAX_DELIVERY_BYTES: usize = 1 << 20;

/// The `Gateway1` object.
#[derive(Debug)]
pub struct GatewayService {
    pub store: Store,
    pub callers: Callers,
    pub activity: Activity,
    /// Whether the HTTP API is accepting connections.
    pub listening: Arc<AtomicBool>,
}

fn option_str(options: &VariantDict, key: &str) -> fdo::Result<Option<String>> {
    options
        .get(key)
        .map(|value| {
            String::try_from(&**value)
                .map_err(|_| fdo::Error::InvalidArgs(format!("option {key:?} must be a string")))
        })
        .transpose()
}

fn option_bool(options: &VariantDict, key: &str) -> fdo::Result<bool> {
    options.get(key).map_or(Ok(false), |value| {
        bool::try_from(&**value)
            .map_err(|_| fdo::Error::InvalidArgs(format!("option {key:?} must be a boolean")))
    })
}

/// The `NAME` of an `api:NAME` target.
fn api_target(target: &str) -> fdo::Result<&str> {
    let Some((platform, name)) = target.split_once(':') else {
        return Err(fdo::Error::InvalidArgs(format!(
            "target {target:?} is not platform:chat-id"
        )));
    };
    if platform != "api" {
        return Err(fdo::Error::InvalidArgs(format!(
            "target {target:?}: unknown platform {platform:?} (this gateway delivers to api:NAME only)"
        )));
    }
    let valid = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
    if !valid {
        return Err(fdo::Error::InvalidArgs(format!(
            "target {target:?}: the name must be 1 to 128 letters, digits or _.:-"
        )));
    }
    Ok(name)
}

#[interface(name = "org.talaria.Gateway1")]
impl GatewayService {
    #[zbus(out_args("delivery_id"))]
    async fn deliver(
        &self,
        target: String,
        text: String,
        options: VariantDict,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> fdo::Result<String> {
        let _busy = self.activity.busy();
        let uid = self.callers.check(connection, &header, "Deliver").await?;
        api_target(&target)?;
        if text.len() > MAX_DELIVERY_BYTES {
            return Err(fdo::Error::InvalidArgs(format!(
                "text is {} bytes; at most {MAX_DELIVERY_BYTES} are delivered",
                text.len()
            )));
        }
        let idempotency_key = option_str(&options, "idempotency_key")?;
        if let Some(key) = &idempotency_key {
            talaria_bus::ids::check_request_id(key).map_err(|_| {
                fdo::Error::InvalidArgs(format!(
                    "option idempotency_key {key:?} is not 1 to 128 of A-Z a-z 0-9 _ . : -"
                ))
            })?;
        }
        let delivery = NewDelivery {
            target: target.clone(),
            text,
            reply_to: option_str(&options, "reply_to")?,
            silent: option_bool(&options, "silent")?,
            caller_uid: uid,
            idempotency_key,
        };
        let stored = self.store.add_delivery(delivery).await.map_err(|error| {
            tracing::error!(%error, target, "cannot store a delivery");
            fdo::Error::Failed(format!("cannot store the delivery to {target}"))
        })?;
        match stored {
            Stored::New(id) => {
                tracing::info!(target, delivery_id = id, uid, "delivery stored");
                Ok(id.to_string())
            }
            Stored::Repeated(id) => {
                tracing::info!(
                    target,
                    delivery_id = id,
                    uid,
                    "delivery repeated under its idempotency key; stored once"
                );
                Ok(id.to_string())
            }
            Stored::KeyReused(id) => Err(fdo::Error::InvalidArgs(format!(
                "option idempotency_key was already used for delivery {id} with another target or text"
            ))),
        }
    }

    #[zbus(out_args("platforms"))]
    async fn status(
        &self,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> fdo::Result<VariantDict> {
        self.activity.touch();
        self.callers.check(connection, &header, "Status").await?;
        let api = if self.listening.load(Ordering::SeqCst) {
            "listening"
        } else {
            "stopped"
        };
        let mut platforms = VariantDict::new();
        platforms.insert("api".into(), OwnedVariant::from(Str::from(api)));
        Ok(platforms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_api_targets_are_known() {
        assert_eq!(api_target("api:inbox").unwrap(), "inbox");
        let unknown = api_target("telegram:123").unwrap_err().to_string();
        assert!(unknown.contains("telegram:123"), "{unknown}");
        assert!(api_target("api:").is_err());
        assert!(api_target("api:a/b").is_err());
        assert!(api_target("nocolon").is_err());
    }
}
