//! The single seam through which every side-effecting tool call leaves the agent.
//!
//! Tools never spawn processes or write files themselves: they describe what they need as a
//! [`CommandSpec`] or a file write and hand it to a [`ToolExecutor`]. The implementation the
//! `talaria` command wires in runs everything through the policy-driven sandbox
//! (`talaria-executor`); the agent neither knows nor cares which backend confined the call.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use talaria_core::SessionId;
use tokio_util::sync::CancellationToken;

/// Who asks: the tool (which selects the policy), the session and its workspace (the directory
/// the policy's `${workspace}` stands for).
#[derive(Debug, Clone)]
pub struct ExecOrigin {
    pub tool: String,
    pub session: SessionId,
    pub workspace: PathBuf,
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
    pub timeout: Duration,
    /// Bytes of stdout (and, separately, stderr) kept: the head and the tail, the middle dropped.
    pub output_limit: usize,
    /// Run under this policy profile instead of the tool's (a skill script runs under the
    /// profile its skill declares); the executor still narrows it for the surface.
    pub profile: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    Code(i32),
    Signal(i32),
}

/// What a finished command did.
#[derive(Debug, Clone)]
pub struct CommandOutcome {
    pub stdout: String,
    pub stderr: String,
    pub exit: ExitKind,
    pub timed_out: bool,
    /// Bytes dropped from the middle of stdout and stderr because of `output_limit`.
    pub dropped_bytes: u64,
    pub duration: Duration,
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
