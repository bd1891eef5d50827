//! [`SandboxedTools`]: the one local [`ToolExecutor`] — every tool command and file write runs
//! through the [`Executor`] in the sandbox its policy names. `talaria chat` uses it in-process
//! and the executor unit serves it as `org.talaria.Executor1` (`crate::bus` only decodes and
//! encodes), so the request → approval → run → report path exists once.
//!
//! Approval goes through [`Approval`]: a command a `prompt` rule catches is put to the person
//! where one can be asked, and refused with a way out everywhere else.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use talaria_bus::exec::{
    CommandOutcome, CommandSpec, ExecError, ExecOrigin, ProcessAction, ToolExecutor,
};
use talaria_core::SessionId;
use tokio_util::sync::CancellationToken;

use crate::approval::Approval;
use crate::process::ProcessError;
use crate::report::process_report;
use crate::service::{Executor, ExecutorError, RunRequest};

/// [`ToolExecutor`] over the sandboxing [`Executor`]. The surface comes with every call (its
/// origin); `approval` says whether a `prompt` rule can be put to a person here.
#[derive(Debug)]
pub struct SandboxedTools {
    executor: Arc<Executor>,
    approval: Approval,
}

impl SandboxedTools {
    pub fn new(executor: Arc<Executor>, approval: Approval) -> Self {
        Self { executor, approval }
    }

    pub fn executor(&self) -> &Arc<Executor> {
        &self.executor
    }

    /// Run `attempt` for `request`; when a `prompt` rule stops it, ask (where someone can be
    /// asked) and run it again approved, or refuse saying how approval can be had.
    async fn with_approval<T, F, Fut>(
        &self,
        mut request: RunRequest,
        attempt: F,
    ) -> Result<T, ExecError>
    where
        F: Fn(RunRequest) -> Fut,
        Fut: Future<Output = Result<T, ExecutorError>>,
    {
        let program = request.command.program.clone();
        // The policy refuses before anything runs, so the first attempt has no side effect
        // when it asks for approval.
        let (profile, reason) = match attempt(request.clone()).await {
            Err(ExecutorError::NeedsApproval { profile, reason }) => (profile, reason),
            other => return other.map_err(|e| self.exec_error(&program, e)),
        };
        let approver = match &self.approval {
            Approval::Ask(approver) => approver,
            Approval::Unavailable { place } => {
                tracing::info!(command = %request.command.command_line, %profile, "approval needed but nobody can be asked here; refused");
                return Err(ExecError::Refused {
                    message: Approval::unavailable_message(place, &profile, &reason),
                });
            }
        };
        let command = request.command.command_line.clone();
        let yes = approver.approve(&command, &reason).await;
        tracing::info!(%command, %profile, approved = yes, "approval asked");
        if !yes {
            return Err(ExecError::Refused {
                message: format!(
                    "needs the user's approval under policy {profile} ({reason}), and the user said no: not run"
                ),
            });
        }
        request.approved = true;
        attempt(request)
            .await
            .map_err(|e| self.exec_error(&program, e))
    }

    /// An executor failure as the tool sees it.
    fn exec_error(&self, program: &str, error: ExecutorError) -> ExecError {
        match error {
            ExecutorError::Process(ProcessError::Cancelled) => ExecError::Cancelled,
            ExecutorError::Process(other) => ExecError::Failed {
                program: program.to_owned(),
                message: other.to_string(),
            },
            ExecutorError::Workspace { path } => ExecError::BadWorkdir { path },
            ExecutorError::NeedsApproval { profile, reason } => ExecError::Refused {
                message: match &self.approval {
                    Approval::Unavailable { place } => {
                        Approval::unavailable_message(place, &profile, &reason)
                    }
                    // Only a write can get here: it is not put to the person.
                    Approval::Ask(_) => {
                        ExecutorError::NeedsApproval { profile, reason }.to_string()
                    }
                },
            },
            refused @ (ExecutorError::Policy(_)
            | ExecutorError::Forbidden { .. }
            | ExecutorError::Widens { .. }
            | ExecutorError::NoBackend { .. }
            | ExecutorError::SandboxRefused { .. }
            | ExecutorError::Scratch(_)
            | ExecutorError::Unsupported { .. }
            | ExecutorError::FileRequest(_)
            | ExecutorError::Background(_)) => ExecError::Refused {
                message: refused.to_string(),
            },
        }
    }

    /// An operation on a background process of `session` (another session's is unknown).
    ///
    /// # Errors
    /// Unknown ids and failed operations, with a message for the model.
    pub async fn process_of(
        &self,
        session: &str,
        action: ProcessAction,
    ) -> Result<String, ExecError> {
        process_report(self.executor.background(), session, action)
            .await
            .map_err(|e| ExecError::Refused {
                message: e.to_string(),
            })
    }

    /// The session is over: its background processes, backend state and scratch space go.
    pub fn end_session_of(&self, session: &str) {
        self.executor.end_session(session);
    }

    /// Create or replace a file in the sandbox of the origin's tool, or of `profile` (a name and
    /// whether the owner approved it; checked and narrowed as for a command) —
    /// `org.talaria.Executor1`'s `WriteFile` may name one.
    ///
    /// # Errors
    /// [`ExecError`] naming the path and the reason.
    pub async fn write_file_as(
        &self,
        origin: &ExecOrigin,
        profile: Option<(String, bool)>,
        path: &Path,
        contents: &[u8],
        cancel: &CancellationToken,
    ) -> Result<(), ExecError> {
        self.executor
            .write_file(origin.clone(), profile, path, contents.to_vec(), cancel)
            .await
            .map_err(|e| self.exec_error("write_file", e))
    }
}

#[async_trait]
impl ToolExecutor for SandboxedTools {
    async fn run(
        &self,
        origin: &ExecOrigin,
        spec: CommandSpec,
        cancel: &CancellationToken,
    ) -> Result<CommandOutcome, ExecError> {
        if !spec.cwd.is_dir() {
            return Err(ExecError::BadWorkdir { path: spec.cwd });
        }
        let request = RunRequest {
            origin: origin.clone(),
            command: spec,
            approved: false,
        };
        self.with_approval(request, |request| self.executor.run(request, cancel))
            .await
    }

    async fn write_file(
        &self,
        origin: &ExecOrigin,
        path: &Path,
        contents: &[u8],
        cancel: &CancellationToken,
    ) -> Result<(), ExecError> {
        self.write_file_as(origin, None, path, contents, cancel)
            .await
    }

    async fn start_background(
        &self,
        origin: &ExecOrigin,
        spec: CommandSpec,
    ) -> Result<String, ExecError> {
        if !spec.cwd.is_dir() {
            return Err(ExecError::BadWorkdir { path: spec.cwd });
        }
        let request = RunRequest {
            origin: origin.clone(),
            command: spec,
            approved: false,
        };
        let id = self
            .with_approval(request, |request| async move {
                self.executor.start_background(&request).await
            })
            .await?;
        Ok(id.to_string())
    }

    async fn process(
        &self,
        origin: &ExecOrigin,
        action: ProcessAction,
    ) -> Result<String, ExecError> {
        self.process_of(origin.session.as_str(), action).await
    }

    fn end_session(&self, session: &SessionId) {
        self.end_session_of(session.as_str());
    }
}
