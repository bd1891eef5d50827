//! `org.talaria.Gateway1`, served at `/org/talaria/Gateway1`: other units hand the gateway
//! messages to deliver (`Deliver`) and ask how its platforms are doing (`Status`).
//!
//! Every call is authorized from the caller's bus credentials ([`Callers`]): this process's
//! uid, root and the users named with `--allow-user` (the agent and scheduler units). A target
//! `platform:chat` goes to the registered platform of that name ([`crate::platforms`]); an
//! unknown platform is refused with an error naming it and the registered ones, never dropped.

use talaria_bus::VariantDict;
use talaria_daemon::{Activity, Callers};
use zbus::message::Header;
use zbus::{Connection, OwnedVariant, Str, fdo, interface};

use crate::platforms::{Outbound, PlatformError, Registry};

/// Longest text accepted for one delivery.
pub const MAX_DELIVERY_BYTES: usize = 1 << 20;

/// The `Gateway1` object.
#[derive(Debug)]
pub struct GatewayService {
    pub platforms: Registry,
    pub callers: Callers,
    pub activity: Activity,
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

/// A platform's refusal as the bus error a caller can act on.
fn bus_error(error: PlatformError) -> fdo::Error {
    match error {
        PlatformError::NotATarget { .. }
        | PlatformError::UnknownPlatform { .. }
        | PlatformError::BadChat { .. }
        | PlatformError::KeyReused { .. } => fdo::Error::InvalidArgs(error.to_string()),
        PlatformError::Unsupported { .. } => fdo::Error::NotSupported(error.to_string()),
        PlatformError::Store { platform, source } => {
            tracing::error!(error = %source, platform, "cannot store a delivery");
            fdo::Error::Failed(format!("{platform}: cannot store the delivery"))
        }
    }
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
        let (platform, chat) = self.platforms.resolve(&target).map_err(bus_error)?;
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
        let message = Outbound {
            chat: chat.to_owned(),
            text,
            reply_to: option_str(&options, "reply_to")?,
            silent: option_bool(&options, "silent")?,
            caller_uid: uid,
            idempotency_key,
        };
        let id = platform.deliver(message).await.map_err(bus_error)?;
        tracing::info!(target, delivery_id = id, uid, "delivered");
        Ok(id)
    }

    #[zbus(out_args("platforms"))]
    async fn status(
        &self,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> fdo::Result<VariantDict> {
        self.activity.touch();
        self.callers.check(connection, &header, "Status").await?;
        Ok(self
            .platforms
            .status()
            .into_iter()
            .map(|(name, status)| {
                (
                    name.to_owned(),
                    OwnedVariant::from(Str::from(status.as_str().to_owned())),
                )
            })
            .collect())
    }
}
