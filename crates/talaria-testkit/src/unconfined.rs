//! An executor that runs tool commands as plain child processes, for tests of the agent loop
//! that are not about sandboxing. Never wire this into anything a user runs: the real executor
//! confines every call by policy and refuses rather than run unconfined.

use std::path::Path;

use async_trait::async_trait;
use talaria_agent::exec::{CommandOutcome, CommandSpec, ExecError, ExecOrigin, ToolExecutor};
use talaria_executor::{ProcessError, run_to_completion};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Default)]
pub struct UnconfinedExecutor;

#[async_trait]
impl ToolExecutor for UnconfinedExecutor {
    async fn run(
        &self,
        _origin: &ExecOrigin,
        spec: CommandSpec,
        cancel: &CancellationToken,
    ) -> Result<CommandOutcome, ExecError> {
        if !spec.cwd.is_dir() {
            return Err(ExecError::BadWorkdir { path: spec.cwd });
        }
        let mut command = tokio::process::Command::new(&spec.program);
        command.args(&spec.args).current_dir(&spec.cwd);
        let finished = run_to_completion(
            command,
            &spec.program,
            spec.stdin,
            spec.timeout,
            spec.output_limit,
            cancel,
        )
        .await
        .map_err(|e| match e {
            ProcessError::Cancelled => ExecError::Cancelled,
            other => ExecError::Failed {
                program: spec.program.clone(),
                message: other.to_string(),
            },
        })?;
        Ok(CommandOutcome {
            stdout: finished.stdout,
            stderr: finished.stderr,
            exit: finished.exit,
            timed_out: finished.timed_out,
            dropped_bytes: finished.dropped_bytes,
            duration: finished.duration,
            profile: "unconfined".into(),
            backend: "none".into(),
            networked: false,
        })
    }

    async fn write_file(
        &self,
        _origin: &ExecOrigin,
        path: &Path,
        contents: &[u8],
        _cancel: &CancellationToken,
    ) -> Result<(), ExecError> {
        let failed = |e: std::io::Error| ExecError::Failed {
            program: "write_file".into(),
            message: format!("{}: {e}", path.display()),
        };
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(failed)?;
        }
        tokio::fs::write(path, contents).await.map_err(failed)
    }
}
