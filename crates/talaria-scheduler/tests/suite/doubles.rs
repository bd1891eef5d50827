//! Test doubles that speak the real interfaces on the private bus: an agent (idempotent by
//! request id, unicast `TurnEvent`s, able to hang mid-turn), a gateway that records
//! deliveries, and a polkit authority that records the subjects it was asked about.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use talaria_bus::turn::TurnEvent;
use talaria_bus::{StopReason, TurnErrorKind, VariantDict, names, paths};
use zbus::names::BusName;
use zbus::object_server::SignalEmitter;
use zbus::{Connection, OwnedVariant, Variant, fdo, interface};

/// `(bba{ss})`: polkit's reply is one structure, not three arguments.
#[derive(Debug, serde::Serialize, zbus::Type)]
pub struct AuthorizationResult(bool, bool, HashMap<String, String>);

use super::private_bus::PrivateBus;

/// One `SubmitTurn` the agent double received.
#[derive(Debug, Clone)]
pub struct Submit {
    pub session_key: String,
    pub text: String,
    pub request_id: String,
    pub create: Option<bool>,
}

/// What the agent doubles saw and did; shared across restarts like the real agent's database.
#[derive(Debug, Default)]
pub struct AgentLog {
    pub submits: Mutex<Vec<Submit>>,
    /// Turns actually started, per request id: idempotency means this never exceeds 1.
    pub started: Mutex<HashMap<String, u32>>,
    /// Finished answers, per request id.
    pub finished: Mutex<HashMap<String, String>>,
}

impl AgentLog {
    pub fn submits(&self) -> Vec<Submit> {
        self.submits.lock().unwrap().clone()
    }

    pub fn started(&self, request_id: &str) -> u32 {
        self.started
            .lock()
            .unwrap()
            .get(request_id)
            .copied()
            .unwrap_or(0)
    }
}

/// How an agent double behaves on a new turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentMode {
    /// Answers `answer for <prompt>` at once.
    Answer,
    /// Accepts the turn and never finishes it (then the test takes the agent away).
    Hang,
    /// Reports an error event.
    Fail,
}

pub struct FakeAgent {
    log: Arc<AgentLog>,
    mode: AgentMode,
}

fn string_option(options: &VariantDict, key: &str) -> Option<String> {
    match options.get(key).map(|v| &**v) {
        Some(Variant::Str(s)) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

#[interface(name = "org.talaria.Agent1")]
impl FakeAgent {
    #[zbus(out_args("turn_id"))]
    async fn submit_turn(
        &self,
        session_key: String,
        text: String,
        options: VariantDict,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> fdo::Result<String> {
        let request_id = string_option(&options, "request_id")
            .ok_or_else(|| fdo::Error::InvalidArgs("request_id is required here".into()))?;
        let create = match options.get("create").map(|v| &**v) {
            Some(Variant::Bool(b)) => Some(*b),
            _ => None,
        };
        self.log.submits.lock().unwrap().push(Submit {
            session_key: session_key.clone(),
            text: text.clone(),
            request_id: request_id.clone(),
            create,
        });
        {
            let mut started = self.log.started.lock().unwrap();
            // A request id seen before is resumed or replayed, never started again.
            started.entry(request_id.clone()).or_insert(1);
        }
        let sender = header.sender().unwrap().to_owned();
        let emitter = emitter.set_destination(BusName::Unique(sender));
        match self.mode {
            AgentMode::Hang => {}
            AgentMode::Answer => {
                let answer = self
                    .log
                    .finished
                    .lock()
                    .unwrap()
                    .entry(request_id.clone())
                    .or_insert_with(|| format!("answer for {text}"))
                    .clone();
                let (kind, delta) = TurnEvent::TextDelta {
                    text: "partial ".into(),
                }
                .to_wire()
                .unwrap();
                Self::turn_event(&emitter, &request_id, kind, &delta).await?;
                let (kind, done) = TurnEvent::Done {
                    text: answer,
                    stop: StopReason::Completed,
                    session_key: session_key.clone(),
                }
                .to_wire()
                .unwrap();
                Self::turn_event(&emitter, &request_id, kind, &done).await?;
            }
            AgentMode::Fail => {
                let (kind, error) = TurnEvent::Error {
                    message: "model unavailable".into(),
                    kind: TurnErrorKind::Turn,
                    alive: false,
                }
                .to_wire()
                .unwrap();
                Self::turn_event(&emitter, &request_id, kind, &error).await?;
            }
        }
        Ok(request_id)
    }

    #[zbus(signal)]
    async fn turn_event(
        emitter: &SignalEmitter<'_>,
        turn_id: &str,
        kind: &str,
        payload: &str,
    ) -> zbus::Result<()>;
}

/// Serves an agent double under `org.talaria.Agent1`; dropping the connection takes it away.
pub async fn serve_agent(bus: &PrivateBus, log: &Arc<AgentLog>, mode: AgentMode) -> Connection {
    bus.builder()
        .serve_at(
            paths::AGENT,
            FakeAgent {
                log: Arc::clone(log),
                mode,
            },
        )
        .name(names::AGENT)
        .build()
        .await
        .unwrap()
}

/// One `Deliver` the gateway double received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub target: String,
    pub text: String,
    pub job_id: Option<String>,
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Default)]
pub struct GatewayLog {
    pub deliveries: Mutex<Vec<Delivered>>,
}

impl GatewayLog {
    pub fn deliveries(&self) -> Vec<Delivered> {
        self.deliveries.lock().unwrap().clone()
    }
}

pub struct FakeGateway {
    log: Arc<GatewayLog>,
}

#[interface(name = "org.talaria.Gateway1")]
impl FakeGateway {
    #[zbus(out_args("delivery_id"))]
    async fn deliver(&self, target: String, text: String, options: VariantDict) -> String {
        let mut deliveries = self.log.deliveries.lock().unwrap();
        deliveries.push(Delivered {
            target,
            text,
            job_id: string_option(&options, "job_id"),
            idempotency_key: string_option(&options, "idempotency_key"),
        });
        format!("delivery-{}", deliveries.len())
    }

    #[zbus(out_args("state"))]
    async fn status(&self) -> VariantDict {
        VariantDict::new()
    }
}

pub async fn serve_gateway(bus: &PrivateBus, log: &Arc<GatewayLog>) -> Connection {
    bus.builder()
        .serve_at(
            paths::GATEWAY,
            FakeGateway {
                log: Arc::clone(log),
            },
        )
        .name(names::GATEWAY)
        .build()
        .await
        .unwrap()
}

/// One `CheckAuthorization` the polkit double answered.
#[derive(Debug, Clone)]
pub struct Check {
    pub kind: String,
    pub details: HashMap<String, String>,
    pub action: String,
    /// The uid polkit determined for the subject (from the bus or `/proc`, as polkit does).
    pub uid: Option<u32>,
    pub flags: u32,
}

#[derive(Debug, Default)]
pub struct PolkitLog {
    pub allowed: HashSet<u32>,
    pub checks: Mutex<Vec<Check>>,
}

pub struct FakePolkit {
    log: Arc<PolkitLog>,
}

fn proc_uid(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[interface(name = "org.freedesktop.PolicyKit1.Authority")]
impl FakePolkit {
    #[zbus(out_args("result"))]
    async fn check_authorization(
        &self,
        subject: (String, HashMap<String, OwnedVariant>),
        action_id: String,
        details: HashMap<String, String>,
        flags: u32,
        cancellation_id: String,
        #[zbus(connection)] connection: &Connection,
    ) -> fdo::Result<AuthorizationResult> {
        let _ = (details, cancellation_id);
        let (kind, subject_details) = subject;
        let text: HashMap<String, String> = subject_details
            .iter()
            .map(|(k, v)| (k.clone(), format!("{}", &**v)))
            .collect();
        let uid = match kind.as_str() {
            "system-bus-name" => match subject_details.get("name").map(|v| &**v) {
                Some(Variant::Str(name)) => {
                    let dbus = fdo::DBusProxy::new(connection).await?;
                    let name = zbus::names::BusName::try_from(name.as_str().to_owned())
                        .map_err(|e| fdo::Error::InvalidArgs(e.to_string()))?;
                    dbus.get_connection_credentials(name).await?.unix_user_id()
                }
                _ => None,
            },
            "unix-process" => {
                let pid = match subject_details.get("pid").map(|v| &**v) {
                    Some(Variant::U32(pid)) => Some(*pid),
                    _ => None,
                };
                let claimed = match subject_details.get("uid").map(|v| &**v) {
                    Some(Variant::I32(uid)) => u32::try_from(*uid).ok(),
                    _ => None,
                };
                // Like polkit: the uid must be the process's real one.
                pid.and_then(proc_uid).filter(|real| Some(*real) == claimed)
            }
            _ => None,
        };
        self.log.checks.lock().unwrap().push(Check {
            kind,
            details: text,
            action: action_id.clone(),
            uid,
            flags,
        });
        let authorized = action_id == talaria_scheduler::authz::POLKIT_ACTION
            && uid.is_some_and(|uid| self.log.allowed.contains(&uid));
        Ok(AuthorizationResult(authorized, false, HashMap::new()))
    }
}

/// Serves a polkit double under `org.freedesktop.PolicyKit1` on `bus`.
pub async fn serve_polkit(bus: &PrivateBus, log: &Arc<PolkitLog>) -> Connection {
    bus.builder()
        .serve_at(
            "/org/freedesktop/PolicyKit1/Authority",
            FakePolkit {
                log: Arc::clone(log),
            },
        )
        .name("org.freedesktop.PolicyKit1")
        .build()
        .await
        .unwrap()
}

/// Polls `check` every 50 ms until it holds; panics after 30 s naming `what`.
pub async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
