//! The execution protocol: what the agent asks of the executor and what comes back, defined
//! once for every side of it — the tools that describe work, the in-process executor of
//! `talaria chat`, [`ExecutorClient`] (the agent unit's way to `org.talaria.Executor1`) and the
//! executor unit's service, which decodes the same requests with [`wire`].
//!
//! Tools never spawn processes or write files themselves: they describe what they need as a
//! [`CommandSpec`] or a file write and hand it to a [`ToolExecutor`]. Which backend confines the
//! call is the executor's business; what the tool gets back is the same [`CommandOutcome`]
//! whatever ran it.

mod client;
pub mod files;
pub mod wire;

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use talaria_core::SessionId;
use tokio_util::sync::CancellationToken;

pub use client::ExecutorClient;
pub use talaria_core::{ExitKind, Surface};

/// Who asks: the tool (which selects the policy), the session and its workspace (the directory
/// the policy's `${workspace}` stands for), and the surface the session's person came in on,
/// which can only narrow the profile.
#[derive(Debug, Clone)]
pub struct ExecOrigin {
    pub tool: String,
    pub session: SessionId,
    pub workspace: PathBuf,
    pub surface: Surface,
    /// The profile the tool declares as its default; the policy's `[tools]` table overrides
    /// it, and a tool with neither is refused.
    pub tool_profile: Option<String>,
}

/// A command to run to completion.
#[derive(Debug, Clone)]
pub struct CommandSpec {
    pub program: String,
    pub args: Vec<String>,
    /// The command as the model asked for it (for `terminal`, its `command` argument, not the
    /// wrapper around it): what approval rules are matched against.
    pub command_line: String,
    pub cwd: PathBuf,
    pub stdin: Option<Vec<u8>>,
    /// At most this long; the profile's wall time may be shorter.
    pub timeout: Duration,
    /// Bytes of stdout (and, separately, stderr) kept: the head and the tail, the middle
    /// dropped. The profile's output limit may be smaller.
    pub output_limit: usize,
    /// Run under this policy profile instead of the tool's (a skill script runs under the
    /// profile its skill declares); the executor still narrows it for the surface.
    pub profile: Option<String>,
    /// The owner chose or approved `profile` (at the CLI, or by approving the skill version
    /// that declares it). Without that, an explicit profile wider than the tool's own is
    /// refused: what the model wrote can never widen what the turn may do.
    pub profile_approved: bool,
}

impl CommandSpec {
    /// A command given as an argument vector, run in `cwd`: no stdin, no timeout or output
    /// limit but the profile's, the tool's profile, and approval rules matched against the
    /// arguments joined by spaces. An empty `argv` names the empty program (which the
    /// executor refuses to start).
    #[must_use]
    pub fn from_argv(argv: Vec<String>, cwd: PathBuf) -> Self {
        let command_line = argv.join(" ");
        let mut argv = argv.into_iter();
        Self {
            program: argv.next().unwrap_or_default(),
            args: argv.collect(),
            command_line,
            cwd,
            stdin: None,
            timeout: Duration::MAX,
            output_limit: usize::MAX,
            profile: None,
            profile_approved: false,
        }
    }

    /// `program` followed by `args`.
    #[must_use]
    pub fn argv(&self) -> Vec<String> {
        let mut argv = Vec::with_capacity(self.args.len() + 1);
        argv.push(self.program.clone());
        argv.extend(self.args.iter().cloned());
        argv
    }
}

/// What a finished command did, whoever ran it.
#[derive(Debug, Clone)]
pub struct CommandOutcome {
    pub stdout: String,
    pub stderr: String,
    pub exit: ExitKind,
    /// The executor killed the command for exceeding its time limit.
    pub timed_out: bool,
    /// Bytes dropped from the middle of stdout and stderr because of the output limit.
    pub dropped_bytes: u64,
    pub duration: Duration,
    /// The policy profile it ran under, after narrowing.
    pub profile: String,
    /// The backend that confined it (`landlock`, `oci`, …).
    pub backend: String,
    /// The command ran under a profile whose network is not `off` (or the executor cannot say
    /// it was off): its output may carry text from outside and counts as untrusted content.
    pub networked: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The policy or the sandbox refused: the message says why (forbidden command, approval
    /// needed, a profile this host cannot enforce, a write to a read-only path).
    #[error("{message}")]
    Refused { message: String },
    #[error("working directory {path} does not exist or is not a directory")]
    BadWorkdir { path: PathBuf },
    #[error("cannot run {program}: {message}")]
    Failed { program: String, message: String },
    /// The executor could not be reached, so the command never started: trying again is safe.
    #[error(
        "cannot run {program}: the executor is not reachable ({message}); the command did not start"
    )]
    Unavailable { program: String, message: String },
    /// The executor went away while the command ran: it may or may not have completed, so it
    /// must not be run again blindly.
    #[error(
        "{program} was interrupted and did not complete: the executor stopped while it ran ({message}); it may have partly run"
    )]
    Lost { program: String, message: String },
    #[error("interrupted")]
    Cancelled,
}

/// An operation on a background process of the calling session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessAction {
    List,
    Poll {
        id: String,
    },
    Log {
        id: String,
        offset: u64,
        limit: usize,
    },
    Wait {
        id: String,
        timeout: Duration,
    },
    Kill {
        id: String,
    },
    Write {
        id: String,
        data: String,
        close: bool,
    },
}

impl ProcessAction {
    /// The wire name of the action.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            ProcessAction::List => "list",
            ProcessAction::Poll { .. } => "poll",
            ProcessAction::Log { .. } => "log",
            ProcessAction::Wait { .. } => "wait",
            ProcessAction::Kill { .. } => "kill",
            ProcessAction::Write { .. } => "write",
        }
    }
}

/// Runs side-effecting tool work. Implementations must kill everything they started when
/// `cancel` fires and return [`ExecError::Cancelled`].
#[async_trait]
pub trait ToolExecutor: Send + Sync + std::fmt::Debug {
    /// Run a command to completion.
    ///
    /// # Errors
    /// [`ExecError`] when the command cannot be started, is refused or is cancelled. A command
    /// that runs and fails is not an error: its exit status is in the outcome.
    async fn run(
        &self,
        origin: &ExecOrigin,
        spec: CommandSpec,
        cancel: &CancellationToken,
    ) -> Result<CommandOutcome, ExecError>;

    /// Create or replace a file with `contents`, creating parent directories.
    ///
    /// # Errors
    /// [`ExecError`] naming the path and the reason.
    async fn write_file(
        &self,
        origin: &ExecOrigin,
        path: &Path,
        contents: &[u8],
        cancel: &CancellationToken,
    ) -> Result<(), ExecError>;

    /// Start a command in the background; returns its id.
    ///
    /// # Errors
    /// [`ExecError::Refused`] when this executor has no background processes.
    async fn start_background(
        &self,
        _origin: &ExecOrigin,
        spec: CommandSpec,
    ) -> Result<String, ExecError> {
        Err(ExecError::Refused {
            message: format!(
                "background processes are not available here; run {} in the foreground",
                spec.command_line
            ),
        })
    }

    /// Inspect or control a background process of the origin's session; returns a JSON report
    /// for the model.
    ///
    /// # Errors
    /// Unknown ids (including other sessions' processes) and unsupported executors.
    async fn process(
        &self,
        _origin: &ExecOrigin,
        _action: ProcessAction,
    ) -> Result<String, ExecError> {
        Err(ExecError::Refused {
            message: "background processes are not available here".into(),
        })
    }

    /// The session is over: release what was kept for it (background processes, scratch
    /// space). The default does nothing.
    fn end_session(&self, _session: &SessionId) {}
}
