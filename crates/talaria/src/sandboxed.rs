//! The executor as the agent sees it: every tool command and file write runs in the sandbox
//! its policy names, on behalf of the owner at this terminal.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;
use talaria_agent::TalariaHome;
use talaria_agent::exec::{
    CommandOutcome, CommandSpec, ExecError, ExecOrigin, ProcessAction, ToolExecutor,
};
use talaria_core::SessionId;
use talaria_executor::{Executor, ExecutorError, ProcessError, RunRequest, process_report};
use talaria_policy::PolicySet;
use tokio_util::sync::CancellationToken;

pub use talaria_executor::setup::HELPER_ARG;

/// Load the policies (shipped, `/etc/talaria/policies`, `$TALARIA_HOME/policies`).
///
/// # Errors
/// Every problem in every policy file, each with file, line and key.
pub fn load_policies(home: &TalariaHome) -> anyhow::Result<PolicySet> {
    talaria_executor::setup::load_policies(home.root()).map_err(anyhow::Error::msg)
}

/// The executor, with this binary as the sandbox helper.
///
/// # Errors
/// Policies that do not load, or an unknown path to this binary.
pub fn executor(home: &TalariaHome) -> anyhow::Result<Executor> {
    let program = std::env::current_exe()
        .context("cannot find the talaria binary to use as the sandbox helper")?;
    talaria_executor::setup::standard(home.root(), &program).map_err(anyhow::Error::msg)
}

/// Asks a person whether a command that a `prompt` approval rule caught may run.
#[async_trait]
pub trait Approver: Send + Sync + std::fmt::Debug {
    async fn approve(&self, command: &str, reason: &str) -> bool;
}

/// Asks at the terminal (the interactive chat: the line editor is idle while a turn runs).
/// Anything but "y" or "yes" is a no. The command is the model's: it is shown quoted with every
/// hidden character escaped, so what is read is what runs.
#[derive(Debug)]
pub struct TerminalApprover;

#[async_trait]
impl Approver for TerminalApprover {
    async fn approve(&self, command: &str, reason: &str) -> bool {
        let question = format!(
            "\n  ⚠ {} needs your approval: {}. Run it? [y/N] ",
            crate::terminal::quoted(command),
            crate::terminal::safe(reason)
        );
        tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(question.as_bytes());
            let _ = out.flush();
            let mut answer = String::new();
            std::io::stdin().read_line(&mut answer).is_ok()
                && matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
        })
        .await
        .unwrap_or(false)
    }
}

/// [`ToolExecutor`] over the sandboxing executor. The surface comes with every call (its
/// origin); with an approver, commands caught by a `prompt` rule are put to a person instead
/// of refused.
#[derive(Debug)]
pub struct SandboxedTools {
    executor: Arc<Executor>,
    approver: Option<Arc<dyn Approver>>,
}

impl SandboxedTools {
    pub fn new(executor: Arc<Executor>, approver: Option<Arc<dyn Approver>>) -> Self {
        Self { executor, approver }
    }

    /// Whether a refusal can be turned into a run by asking the approver (who said yes).
    async fn approved_after(&self, error: &ExecutorError, request: &RunRequest) -> bool {
        let (ExecutorError::NeedsApproval { reason, .. }, Some(approver)) = (error, &self.approver)
        else {
            return false;
        };
        let command = &request.command.command_line;
        let yes = approver.approve(command, reason).await;
        tracing::info!(%command, approved = yes, "approval asked");
        yes
    }
}

fn exec_error(program: &str, error: ExecutorError) -> ExecError {
    match error {
        ExecutorError::Process(ProcessError::Cancelled) => ExecError::Cancelled,
        ExecutorError::Process(other) => ExecError::Failed {
            program: program.to_owned(),
            message: other.to_string(),
        },
        refused => ExecError::Refused {
            message: refused.to_string(),
        },
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
        let program = spec.program.clone();
        let mut request = RunRequest {
            origin: origin.clone(),
            command: spec,
            approved: false,
        };
        match self.executor.run(request.clone(), cancel).await {
            Err(e) if self.approved_after(&e, &request).await => {
                request.approved = true;
                self.executor.run(request, cancel).await
            }
            other => other,
        }
        .map_err(|e| exec_error(&program, e))
    }

    async fn write_file(
        &self,
        origin: &ExecOrigin,
        path: &Path,
        contents: &[u8],
        cancel: &CancellationToken,
    ) -> Result<(), ExecError> {
        self.executor
            .write_file(origin.clone(), None, path, contents.to_vec(), cancel)
            .await
            .map_err(|e| exec_error("write_file", e))
    }

    async fn start_background(
        &self,
        origin: &ExecOrigin,
        spec: CommandSpec,
    ) -> Result<String, ExecError> {
        if !spec.cwd.is_dir() {
            return Err(ExecError::BadWorkdir { path: spec.cwd });
        }
        let program = spec.program.clone();
        let mut request = RunRequest {
            origin: origin.clone(),
            command: spec,
            approved: false,
        };
        let id = match self.executor.start_background(&request) {
            Err(e) if self.approved_after(&e, &request).await => {
                request.approved = true;
                self.executor.start_background(&request)
            }
            other => other,
        }
        .map_err(|e| exec_error(&program, e))?;
        Ok(id.to_string())
    }

    async fn process(
        &self,
        origin: &ExecOrigin,
        action: ProcessAction,
    ) -> Result<String, ExecError> {
        process_report(self.executor.background(), origin.session.as_str(), action)
            .await
            .map_err(|e| ExecError::Refused {
                message: e.to_string(),
            })
    }

    fn end_session(&self, session: &SessionId) {
        self.executor.end_session(session.as_str());
    }
}
