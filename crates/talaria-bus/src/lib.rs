//! Talaria's D-Bus contracts: the well-known names, object paths, argument types and client
//! proxies through which the four units — gateway, agent, scheduler and executor — talk.
//!
//! This crate owns the *shape* of the bus API and nothing else. The introspection XML checked in
//! under `interfaces/` is the reviewed contract; the suite serves a mirror of every interface and
//! fails when the code and the XML disagree.
//!
//! It must never depend on platform SDKs, chat-service clients, container or sandbox code: every
//! unit links it, and the executor's attack surface must not grow because a contract did.
//!
//! # Authorization
//!
//! Servers authorize every call from the bus's view of the caller — the unique name's
//! `org.freedesktop.DBus.GetConnectionCredentials` (Unix uid, pid, security label) — never from a
//! session key, turn id or any other id carried in the payload, which the caller chooses.
//! Bus policy files additionally restrict who may send to each name (the executor accepts only
//! the agent unit). Servers register their objects before requesting the well-known name so a
//! call that triggered activation never reaches a name without its object.
//!
//! # Wire conventions
//!
//! Arguments are typed where the shape is fixed; JSON strings appear only for model-defined
//! payloads (tool arguments, turn-event payloads). Extensible requests and reports are
//! `a{sv}` dictionaries ([`VariantDict`]). Long output travels as file descriptors, not in
//! message bodies.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use zbus::DBusError;
use zbus::{OwnedFd, OwnedVariant, Type, proxy};

/// An extensible `a{sv}` dictionary: options, requests and reports whose keys may grow.
pub type VariantDict = HashMap<String, OwnedVariant>;

/// Well-known bus names, one per unit. The trailing `1` is the interface version.
pub mod names {
    /// The agent unit: sessions and turns.
    pub const AGENT: &str = "org.talaria.Agent1";
    /// The executor unit: runs commands in a sandbox on the agent's behalf.
    pub const EXECUTOR: &str = "org.talaria.Executor1";
    /// The scheduler unit: timed jobs.
    pub const SCHEDULER: &str = "org.talaria.Scheduler1";
    /// The gateway unit: delivery to chat platforms.
    pub const GATEWAY: &str = "org.talaria.Gateway1";
}

/// Object paths at which each unit serves its interface.
pub mod paths {
    /// Where `org.talaria.Agent1` is served.
    pub const AGENT: &str = "/org/talaria/Agent1";
    /// Where `org.talaria.Executor1` is served.
    pub const EXECUTOR: &str = "/org/talaria/Executor1";
    /// Where `org.talaria.Scheduler1` is served.
    pub const SCHEDULER: &str = "/org/talaria/Scheduler1";
    /// Where `org.talaria.Gateway1` is served.
    pub const GATEWAY: &str = "/org/talaria/Gateway1";
}

/// One session in `Agent1.ListSessions`: `(sssxt)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct SessionSummary {
    /// The session key.
    pub id: String,
    /// Human-readable title (may be empty).
    pub title: String,
    /// The model the session last used.
    pub model: String,
    /// Last update, milliseconds since the Unix epoch.
    pub updated_at_ms: i64,
    /// Number of stored messages.
    pub message_count: u64,
}

/// One hit in `Agent1.SearchSessions`: `(ssxs)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct SessionMatch {
    /// The session key.
    pub session_id: String,
    /// The session's title.
    pub title: String,
    /// The session's last update, milliseconds since the Unix epoch.
    pub updated_at_ms: i64,
    /// A short excerpt of the session's best matching message, matched terms marked
    /// `«like this»`.
    pub snippet: String,
}

/// The kinds of `Agent1.TurnEvent`; on the wire the `kind` argument is [`Self::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TurnEventKind {
    /// A piece of assistant text; payload `{"text": …}`.
    TextDelta,
    /// A tool call began; payload carries the tool name and its (model-defined) arguments.
    ToolStarted,
    /// A tool call ended; payload carries its result summary.
    ToolFinished,
    /// The turn completed; no more events follow for this turn id.
    Done,
    /// The turn failed; see [`turn::TurnEvent::Error`] for when more events follow.
    Error,
    /// Something the user should know that does not end the turn (a fallback model answered,
    /// the context was compressed); payload `{"text": …}`.
    Notice,
}

impl TurnEventKind {
    /// Every kind, in wire order.
    pub const ALL: [Self; 6] = [
        Self::TextDelta,
        Self::ToolStarted,
        Self::ToolFinished,
        Self::Done,
        Self::Error,
        Self::Notice,
    ];

    /// The wire spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TextDelta => "text_delta",
            Self::ToolStarted => "tool_started",
            Self::ToolFinished => "tool_finished",
            Self::Done => "done",
            Self::Error => "error",
            Self::Notice => "notice",
        }
    }
}

impl fmt::Display for TurnEventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `TurnEvent` kind that this version of the contract does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownTurnEventKind(pub String);

impl fmt::Display for UnknownTurnEventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown turn event kind {:?}", self.0)
    }
}

impl std::error::Error for UnknownTurnEventKind {}

impl FromStr for TurnEventKind {
    type Err = UnknownTurnEventKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| UnknownTurnEventKind(s.to_owned()))
    }
}

/// The reply of `Executor1.Run`: `(iibhhssttb)`, sent as ten out arguments.
#[derive(Debug, Serialize, Deserialize, Type)]
pub struct RunOutcome {
    /// Exit status, or `-1` when the process was killed by a signal.
    pub exit_code: i32,
    /// The terminating signal, `0` when the process exited.
    pub signal: i32,
    /// Whether the executor killed the process for exceeding its time limit.
    pub timed_out: bool,
    /// Captured standard output (head and tail within the output limit), readable from the
    /// start.
    pub stdout: OwnedFd,
    /// Captured standard error, likewise.
    pub stderr: OwnedFd,
    /// The policy profile the command ran under.
    pub profile: String,
    /// The sandbox backend that ran it (`landlock` or `oci`).
    pub backend: String,
    /// Bytes dropped from the middle of stdout and stderr to stay within the output limit.
    pub dropped_bytes: u64,
    /// Wall time of the command, milliseconds.
    pub duration_ms: u64,
    /// The command could reach a network (its resolved profile's network was not `off`), so
    /// its output is outside text: untrusted for the learning loop.
    pub networked: bool,
}

/// One job in `Scheduler1.ListJobs`: `(ssss)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct JobSummary {
    /// The job id.
    pub id: String,
    /// Human-readable name.
    pub name: String,
    /// The schedule as written in the spec (cron expression or interval).
    pub schedule: String,
    /// Next run as RFC 3339, empty when the job is paused or finished.
    pub next_run: String,
}

/// `org.talaria.Agent1`: sessions and turns, served by the agent unit.
///
/// Callers: the gateway and scheduler units and local clients of the human user. The agent
/// authorizes by the caller's credentials and checks that the session key belongs to a surface
/// that caller may speak for.
#[proxy(
    interface = "org.talaria.Agent1",
    default_service = "org.talaria.Agent1",
    default_path = "/org/talaria/Agent1"
)]
pub trait Agent {
    /// Starts a turn: `text` as the user's message in session `session_key`. Returns at once
    /// with the turn id; progress arrives as `TurnEvent` signals carrying that id.
    ///
    /// `options` keys (all optional): `request_id` (s, `[A-Za-z0-9_.:-]{1,128}`): the
    /// idempotency key, which is also the turn id — submitting it again never runs it twice:
    /// a finished turn re-emits its `done`, a running one sends its remaining events to the
    /// new submitter, one a crash interrupted is resumed; `create` (b): start the session if
    /// the key is new (otherwise an unknown key is `org.talaria.Error.UnknownSession`);
    /// `model` (s); `user` (s, `[A-Za-z0-9_.@-]{1,64}`, not starting with `.`; default
    /// `default`): the person the caller vouches for (the gateway passes the API key id). The
    /// session talks to that person: its prompt carries their own USER.md (under
    /// `memories/users/<uid>/<user>/`), its `session_search` sees only their sessions, and
    /// their memory writes wait for the owner's approval; `surface` (s: `owner`,
    /// `allowlisted_user`, `webhook`; default, and for a session first made without it, the
    /// narrowest, `webhook`): who that person is to the sandbox. It narrows every tool call of
    /// the session (the executor narrows the tool's profile for it), can only ever narrow a
    /// session further, and anything but `owner` makes the session's turns untrusted for the
    /// learning loop. An unknown name is `InvalidArgs`.
    ///
    /// A session key belongs to the uid and user that created it (another user is
    /// `AccessDenied`); `TurnEvent` signals go to the submitting connection only.
    fn submit_turn(
        &self,
        session_key: &str,
        text: &str,
        options: &VariantDict,
    ) -> zbus::Result<String>;

    /// Asks a running turn to stop; a `TurnEvent` of kind `error` or `done` follows. Only the
    /// connection that submitted the turn (or the same uid) may cancel it.
    fn cancel_turn(&self, turn_id: &str) -> zbus::Result<()>;

    /// The most recently updated sessions of one person — the caller's uid and `user` (as
    /// `SubmitTurn`'s option; empty means `default`) — newest first, at most `limit`. A `user`
    /// that is not a valid user id is `InvalidArgs`.
    fn list_sessions(&self, user: &str, limit: u32) -> zbus::Result<Vec<SessionSummary>>;

    /// Discovery over one person's sessions (as [`Self::list_sessions`]): sessions whose
    /// messages match `query`, one match per session with a snippet, best first, at most
    /// `limit`. Another person's sessions are never searched.
    fn search_sessions(
        &self,
        user: &str,
        query: &str,
        limit: u32,
    ) -> zbus::Result<Vec<SessionMatch>>;

    /// Progress of a turn, sent to the submitter only: one [`turn::TurnEvent`], encoded
    /// by [`turn::TurnEvent::to_wire`] and decoded by [`turn::TurnEvent::from_wire`]. `kind` is a
    /// [`TurnEventKind`] spelling; `payload` is a JSON object of the kind's fields:
    /// `text_delta {text}`, `tool_started {summary}`, `tool_finished {summary, ok,
    /// duration_ms}`, `notice {text}`, `done {text, stop, session_key}` with `stop` a
    /// [`StopReason`] (`completed`, `budget_exhausted`, `interrupted`), `error {message, kind,
    /// alive}` with `kind` a [`TurnErrorKind`] (`turn`, `store`) and `alive` true when the agent
    /// keeps the request to resume it (submit the same id again to get the resumed turn).
    #[zbus(signal)]
    fn turn_event(&self, turn_id: &str, kind: &str, payload: &str) -> zbus::Result<()>;
}

/// `org.talaria.Executor1`: runs tool commands under a policy profile, served by the executor
/// unit.
///
/// Callers: the agent unit's identity **only**. The executor checks the caller's uid from
/// `GetConnectionCredentials` on every call (bus policy enforces the same, defence in depth).
/// Which tool, session and workspace a request is for is the agent's word — the agent is the
/// only caller — but the policy that confines it is the executor's.
///
/// Request keys (`a{sv}`, encoded and decoded by [`exec::wire`]) shared by `Run`,
/// `StartBackground` and `WriteFile`: `tool` (s, the tool whose policy applies), `session` (s),
/// `workspace` (s, the policy's `${workspace}`), `surface` (s: `owner`, `allowlisted_user` or
/// `webhook`; narrows the profile — **missing or unknown is the narrowest**, never the owner),
/// and optionally `tool_profile` (s, the tool's declared default profile; a `tools.toml`
/// mapping wins) and `profile` (s, an explicit profile, still narrowed). Commands add `argv`
/// (as), `cwd` (s), `command_line` (s, what approval rules match), `timeout_ms` (t),
/// `output_limit` (t) and `run_id` (s, for `Cancel`). Refusals are
/// `org.talaria.Error.Refused` with the reason.
#[proxy(
    interface = "org.talaria.Executor1",
    default_service = "org.talaria.Executor1",
    default_path = "/org/talaria/Executor1"
)]
pub trait Executor {
    /// Runs a command to completion with `stdin` as its standard input and returns its status;
    /// output comes back as file descriptors so large output never enters a message body.
    fn run(&self, request: &VariantDict, stdin: zbus::Fd<'_>) -> zbus::Result<RunOutcome>;

    /// Kills the command started with this `run_id` (its `Run` then returns); unknown ids are
    /// ignored, since the command may have just finished.
    fn cancel(&self, run_id: &str) -> zbus::Result<()>;

    /// Creates or replaces the file at `request["path"]` (s) with the bytes read from
    /// `contents`, inside the sandbox the tool's policy describes.
    fn write_file(&self, request: &VariantDict, contents: zbus::Fd<'_>) -> zbus::Result<()>;

    /// Starts a command in the background; returns its id (`proc_N`).
    fn start_background(&self, request: &VariantDict) -> zbus::Result<String>;

    /// An operation on a background process of `session`: `action` is `list`, `poll`, `log`,
    /// `wait`, `kill` or `write`; `args` carries `id` (s), `offset` (t), `limit` (t),
    /// `timeout_ms` (t), `data` (s) and `close` (b) as the action needs. Returns the report
    /// for the model as JSON. Another session's process is "unknown".
    fn process(&self, session: &str, action: &str, args: &VariantDict) -> zbus::Result<String>;

    /// The session is over: kill its background processes and release its containers.
    fn end_session(&self, session: &str) -> zbus::Result<()>;
}

/// `org.talaria.Scheduler1`: timed jobs, served by the scheduler unit.
///
/// Callers: the agent unit (jobs the model creates) and the human user's local clients; a job
/// records its creator's uid from the bus credentials, and only that uid may remove it.
#[proxy(
    interface = "org.talaria.Scheduler1",
    default_service = "org.talaria.Scheduler1",
    default_path = "/org/talaria/Scheduler1"
)]
pub trait Scheduler {
    /// Creates a job; returns its id. `spec` keys: `name` (s), `schedule` (s), `prompt` (s),
    /// `deliver_to` (s).
    fn create_job(&self, spec: &VariantDict) -> zbus::Result<String>;

    /// Every job, in creation order.
    fn list_jobs(&self) -> zbus::Result<Vec<JobSummary>>;

    /// Removes a job; running instances finish.
    fn remove_job(&self, job_id: &str) -> zbus::Result<()>;

    /// Starts a job immediately, outside its schedule; returns the run id.
    fn run_now(&self, job_id: &str) -> zbus::Result<String>;
}

/// `org.talaria.Gateway1`: delivery to chat platforms, served by the gateway unit.
///
/// Callers: the agent and scheduler units. The gateway checks the caller's uid and that the
/// target is one its configuration allows that caller to reach.
#[proxy(
    interface = "org.talaria.Gateway1",
    default_service = "org.talaria.Gateway1",
    default_path = "/org/talaria/Gateway1"
)]
pub trait Gateway {
    /// Sends `text` to `target` (`platform:chat-id`); returns the delivery id. `options` keys:
    /// `reply_to` (s), `silent` (b), `idempotency_key` (s, `[A-Za-z0-9_.:-]{1,128}`): the
    /// caller's name for this delivery — the same key from the same uid is delivered once and
    /// returns the first delivery's id (with another target or text it is `InvalidArgs`); the
    /// scheduler passes its run id.
    fn deliver(&self, target: &str, text: &str, options: &VariantDict) -> zbus::Result<String>;

    /// Connection state per platform, for example `telegram` → `connected` (s).
    fn status(&self) -> zbus::Result<VariantDict>;
}

/// Errors the Talaria services return, as D-Bus error names `org.talaria.Error.<Variant>`
/// (`org.talaria.Error.AccessDenied`, `org.talaria.Error.InvalidArgs`, …). A refusal by the
/// bus daemon itself (its policy) arrives as `org.freedesktop.DBus.Error.AccessDenied`.
#[derive(Debug, DBusError)]
#[zbus(prefix = "org.talaria.Error")]
pub enum Error {
    #[zbus(error)]
    ZBus(zbus::Error),
    /// The caller's uid may not make this call (or not for this session or job).
    AccessDenied(String),
    /// An argument is missing, of the wrong type or out of range; the message names it.
    InvalidArgs(String),
    /// The session key is unknown (and `create` was not set).
    UnknownSession(String),
    /// Policy or sandbox refused the request; the message says why.
    Refused(String),
    /// The working directory does not exist or is not a directory.
    BadWorkdir(String),
    /// The command could not be started or its output not read.
    Failed(String),
    /// The request was cancelled before it finished.
    Cancelled(String),
}

impl From<zbus::fdo::Error> for Error {
    fn from(error: zbus::fdo::Error) -> Self {
        match error {
            zbus::fdo::Error::AccessDenied(message) => Self::AccessDenied(message),
            zbus::fdo::Error::InvalidArgs(message) => Self::InvalidArgs(message),
            zbus::fdo::Error::ZBus(inner) => Self::ZBus(inner),
            other => Self::Failed(other.to_string()),
        }
    }
}

/// A `BadWorkdir`/`Refused`/… error as it arrives at a client: its D-Bus name and message.
pub fn error_parts(error: &zbus::Error) -> Option<(String, String)> {
    match error {
        zbus::Error::MethodError(name, message, _) => Some((
            name.as_str().to_owned(),
            message.clone().unwrap_or_default(),
        )),
        zbus::Error::FDO(fdo) => Some((
            fdo.name().to_string(),
            fdo.description().unwrap_or_default().to_owned(),
        )),
        _ => None,
    }
}

pub mod client;
pub mod dict;
pub mod exec;
pub mod fd;
pub mod ids;
pub mod introspection;
pub mod turn;

pub use client::AgentClient;
pub use turn::{StopReason, TurnErrorKind};
