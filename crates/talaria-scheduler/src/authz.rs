//! Who may call the scheduler, and which jobs each caller may see and touch.
//!
//! Every method call is authorized from the bus's view of the caller
//! (`GetConnectionCredentials`), never from anything in the payload, in this order:
//! 1. the caller's uid is root, the scheduler's own uid, or one of `--allow-user`: allowed;
//! 2. otherwise polkit decides, for action [`POLKIT_ACTION`], without interaction;
//! 3. polkit absent, unreachable, slow or erroring: **denied** (fail closed).
//!
//! Then, per job: a job belongs to the uid that created it. Only that uid or root may remove
//! it or run it now (`AccessDenied` otherwise), and `ListJobs` shows a caller only its own jobs
//! (root sees all). Job ids are 64 random bits, so the difference between "no such job" and
//! "not yours" tells a prober nothing useful.

use std::collections::HashMap;
use std::time::Duration;

use talaria_daemon::{BusTarget, Callers};
use zbus::Variant as Value;
use zbus::message::Header;
use zbus::{Connection, fdo, proxy};

/// The polkit action that lets a user outside the allowed uids manage their own jobs.
pub const POLKIT_ACTION: &str = "org.talaria.scheduler.manage-jobs";

/// How long polkit may take before the call is denied.
const POLKIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where to ask polkit about callers outside the allowed uids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Polkit {
    /// The authority on the bus the scheduler serves on, asked about the caller's unique bus
    /// name (`system-bus-name`): right when the scheduler is on the system bus.
    ServiceBus,
    /// The authority on another bus (normally the system bus), asked about the caller's
    /// process (`unix-process`: pid, start time and uid), for a scheduler on a session or
    /// private bus.
    Bus(BusTarget),
    /// No polkit: callers outside the allowed uids are denied.
    Disabled,
}

impl Polkit {
    /// The right choice for a scheduler serving on `bus`.
    pub fn for_service_bus(bus: &BusTarget) -> Self {
        match bus {
            BusTarget::System => Self::ServiceBus,
            BusTarget::Session | BusTarget::Address(_) => Self::Bus(BusTarget::System),
        }
    }
}

#[proxy(
    interface = "org.freedesktop.PolicyKit1.Authority",
    default_service = "org.freedesktop.PolicyKit1",
    default_path = "/org/freedesktop/PolicyKit1/Authority"
)]
trait Authority {
    fn check_authorization(
        &self,
        subject: &(&str, HashMap<&str, Value<'_>>),
        action_id: &str,
        details: &HashMap<&str, &str>,
        flags: u32,
        cancellation_id: &str,
    ) -> zbus::Result<(bool, bool, HashMap<String, String>)>;
}

/// Decides whether a caller may use the scheduler at all.
#[derive(Debug)]
pub struct Authorizer {
    callers: Callers,
    polkit: Polkit,
    /// The connection to polkit's bus for [`Polkit::Bus`], made on first use.
    polkit_bus: tokio::sync::Mutex<Option<Connection>>,
}

/// Whether `caller` may see, remove or run a job owned by `owner`.
pub fn may_manage(caller: u32, owner: u32) -> bool {
    caller == 0 || caller == owner
}

impl Authorizer {
    pub fn new(callers: Callers, polkit: Polkit) -> Self {
        Self {
            callers,
            polkit,
            polkit_bus: tokio::sync::Mutex::new(None),
        }
    }

    /// The caller's uid if it may call `method`.
    ///
    /// # Errors
    /// `AccessDenied` naming the uid and the reason.
    pub async fn authorize(
        &self,
        connection: &Connection,
        header: &Header<'_>,
        method: &str,
    ) -> fdo::Result<u32> {
        let uid = talaria_daemon::caller_uid(connection, header).await?;
        if self.callers.allows(uid) {
            return Ok(uid);
        }
        match tokio::time::timeout(POLKIT_TIMEOUT, self.ask_polkit(connection, header, uid)).await {
            Ok(Ok(true)) => {
                tracing::debug!(uid, method, "polkit allowed the call");
                Ok(uid)
            }
            Ok(Ok(false)) => {
                tracing::warn!(uid, method, "call refused by polkit");
                Err(fdo::Error::AccessDenied(format!(
                    "uid {uid} may not call {method}: polkit did not authorize {POLKIT_ACTION}"
                )))
            }
            Ok(Err(reason)) => {
                tracing::warn!(uid, method, %reason, "call refused: polkit could not decide");
                Err(fdo::Error::AccessDenied(format!(
                    "uid {uid} may not call {method}: it is not an allowed user and polkit could not authorize it ({reason})"
                )))
            }
            Err(_) => {
                tracing::warn!(uid, method, "call refused: polkit did not answer in time");
                Err(fdo::Error::AccessDenied(format!(
                    "uid {uid} may not call {method}: polkit did not answer within {POLKIT_TIMEOUT:?}"
                )))
            }
        }
    }

    async fn ask_polkit(
        &self,
        connection: &Connection,
        header: &Header<'_>,
        uid: u32,
    ) -> Result<bool, String> {
        let sender = header.sender().ok_or("the call has no sender")?.to_string();
        let (bus, subject) = match &self.polkit {
            Polkit::Disabled => return Err("polkit is not configured".into()),
            Polkit::ServiceBus => {
                let details = HashMap::from([("name", Value::from(sender))]);
                (connection.clone(), ("system-bus-name", details))
            }
            Polkit::Bus(target) => {
                let pid = caller_pid(connection, &sender).await?;
                let start_time = process_start_time(pid)?;
                let uid = i32::try_from(uid).map_err(|_| format!("uid {uid} out of range"))?;
                let details = HashMap::from([
                    ("pid", Value::from(pid)),
                    ("start-time", Value::from(start_time)),
                    ("uid", Value::from(uid)),
                ]);
                (
                    self.polkit_connection(target).await?,
                    ("unix-process", details),
                )
            }
        };
        let authority = AuthorityProxy::new(&bus)
            .await
            .map_err(|e| format!("no polkit authority: {e}"))?;
        let (authorized, _challenge, _details) = authority
            .check_authorization(&subject, POLKIT_ACTION, &HashMap::new(), 0, "")
            .await
            .map_err(|e| format!("polkit: {e}"))?;
        Ok(authorized)
    }

    async fn polkit_connection(&self, target: &BusTarget) -> Result<Connection, String> {
        let mut cached = self.polkit_bus.lock().await;
        if let Some(connection) = cached.as_ref() {
            return Ok(connection.clone());
        }
        let connection = target
            .builder()
            .map_err(|e| format!("bad polkit bus address: {e}"))?
            .build()
            .await
            .map_err(|e| format!("cannot reach {target}: {e}"))?;
        *cached = Some(connection.clone());
        Ok(connection)
    }
}

async fn caller_pid(connection: &Connection, sender: &str) -> Result<u32, String> {
    let bus = fdo::DBusProxy::new(connection)
        .await
        .map_err(|e| e.to_string())?;
    let name = zbus::names::BusName::try_from(sender).map_err(|e| e.to_string())?;
    bus.get_connection_credentials(name)
        .await
        .map_err(|e| e.to_string())?
        .process_id()
        .ok_or_else(|| format!("the bus does not know the pid of {sender}"))
}

/// The start time of `pid` in clock ticks since boot (field 22 of `/proc/<pid>/stat`), which
/// polkit uses to tell a process from a later one that reuses its pid.
fn process_start_time(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    // The command name (field 2) may contain spaces and parentheses; fields resume after the
    // last `)`.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| format!("{path}: no command name"))?;
    rest.split_whitespace()
        .nth(19)
        .and_then(|field| field.parse().ok())
        .ok_or_else(|| format!("{path}: no start time"))
}
