//! [`ExecutorClient`]: a [`ToolExecutor`] over `org.talaria.Executor1`, which is how the agent
//! unit runs every tool — it never runs one itself.
//!
//! A bus failure is sorted by what it says about the command: the bus could not deliver the
//! call (the executor is not there and could not be activated) → [`ExecError::Unavailable`],
//! the command never started and may be tried again; the executor went away after taking the
//! call (it crashed or was restarted mid-command) → [`ExecError::Lost`], the command may have
//! partly run and must not be repeated blindly.
//!
//! So every call here is sent again, with a growing pause, while the executor is unavailable
//! (for at most [`UNAVAILABLE_PATIENCE`]: it is being restarted or activated), and never after
//! it took the call: a lost command reaches the model as "interrupted, did not complete".

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use talaria_core::{ExitKind, SessionId};
use tokio_util::sync::CancellationToken;

use super::wire::{self, keys};
use super::{CommandOutcome, CommandSpec, ExecError, ExecOrigin, ProcessAction, ToolExecutor};
use crate::dict::{TextError, put_bool, put_str, put_u64};
use crate::{ExecutorProxy, VariantDict};

/// Output bytes read back from the executor per stream, at most.
const MAX_OUTPUT_BYTES: u64 = 64 << 20;

/// How long a call keeps being sent to an executor that is not there.
pub const UNAVAILABLE_PATIENCE: Duration = Duration::from_secs(30);

/// Pauses between attempts to reach an unavailable executor.
struct Patience {
    deadline: tokio::time::Instant,
    pause: Duration,
}

impl Patience {
    fn new() -> Self {
        Self {
            deadline: tokio::time::Instant::now() + UNAVAILABLE_PATIENCE,
            pause: Duration::from_millis(100),
        }
    }

    /// Whether to try `result`'s call again: only when the executor was unavailable (the call
    /// was never delivered) and patience lasts; waits the pause first. A cancellation while
    /// waiting ends the wait with [`ExecError::Cancelled`].
    async fn again<T>(
        &mut self,
        result: &Result<T, ExecError>,
        cancel: Option<&CancellationToken>,
    ) -> Result<bool, ExecError> {
        let Err(ExecError::Unavailable { program, message }) = result else {
            return Ok(false);
        };
        if tokio::time::Instant::now() + self.pause > self.deadline {
            return Ok(false);
        }
        tracing::warn!(%program, %message, pause_ms = self.pause.as_millis() as u64, "the executor is not reachable; the call did not start and is sent again");
        let sleep = tokio::time::sleep(self.pause);
        self.pause = (self.pause * 2).min(Duration::from_secs(2));
        match cancel {
            Some(cancel) => tokio::select! {
                () = sleep => Ok(true),
                () = cancel.cancelled() => Err(ExecError::Cancelled),
            },
            None => {
                sleep.await;
                Ok(true)
            }
        }
    }
}

/// [`ToolExecutor`] over `org.talaria.Executor1`.
#[derive(Debug, Clone)]
pub struct ExecutorClient {
    executor: ExecutorProxy<'static>,
}

impl ExecutorClient {
    /// The executor reachable on `connection` under its well-known name.
    ///
    /// # Errors
    /// A proxy that cannot be set up.
    pub async fn new(connection: &zbus::Connection) -> zbus::Result<Self> {
        Ok(Self {
            executor: ExecutorProxy::new(connection).await?,
        })
    }
}

/// A request that cannot be sent as it is: the model's text holds what the bus cannot carry.
fn unsendable(error: &TextError) -> ExecError {
    ExecError::Refused {
        message: error.to_string(),
    }
}

/// A bus error from the executor as the tool sees it.
fn exec_error(program: &str, cwd: &Path, error: &zbus::Error) -> ExecError {
    let Some((name, message)) = crate::error_parts(error) else {
        // Our own connection failed (or the reply could not be read) after the call may
        // have gone out.
        return ExecError::Lost {
            program: program.to_owned(),
            message: error.to_string(),
        };
    };
    match name.as_str() {
        "org.talaria.Error.Refused"
        | "org.talaria.Error.AccessDenied"
        | "org.freedesktop.DBus.Error.AccessDenied" => ExecError::Refused { message },
        "org.talaria.Error.BadWorkdir" => ExecError::BadWorkdir {
            path: cwd.to_owned(),
        },
        "org.talaria.Error.Cancelled" => ExecError::Cancelled,
        "org.freedesktop.DBus.Error.ServiceUnknown"
        | "org.freedesktop.DBus.Error.NameHasNoOwner"
        | "org.freedesktop.DBus.Error.Spawn.ChildExited"
        | "org.freedesktop.DBus.Error.Spawn.ChildSignaled"
        | "org.freedesktop.DBus.Error.Spawn.Failed"
        | "org.freedesktop.DBus.Error.Spawn.ExecFailed"
        | "org.freedesktop.DBus.Error.Spawn.ServiceNotFound" => ExecError::Unavailable {
            program: program.to_owned(),
            message: format!("{name}: {message}"),
        },
        "org.freedesktop.DBus.Error.NoReply"
        | "org.freedesktop.DBus.Error.Disconnected"
        | "org.freedesktop.DBus.Error.Timeout"
        | "org.freedesktop.DBus.Error.TimedOut" => ExecError::Lost {
            program: program.to_owned(),
            message: format!("{name}: {message}"),
        },
        _ => ExecError::Failed {
            program: program.to_owned(),
            message: format!("{name}: {message}"),
        },
    }
}

#[async_trait]
impl ToolExecutor for ExecutorClient {
    async fn run(
        &self,
        origin: &ExecOrigin,
        spec: CommandSpec,
        cancel: &CancellationToken,
    ) -> Result<CommandOutcome, ExecError> {
        let run_id = format!("{}-{:016x}", origin.session, fastrand::u64(..));
        let mut request = wire::encode_command(origin, &spec).map_err(|e| unsendable(&e))?;
        put_str(&mut request, keys::RUN_ID, &run_id).map_err(|e| unsendable(&e))?;
        let failed = |message: String| ExecError::Failed {
            program: spec.program.clone(),
            message,
        };
        let stdin = crate::fd::memory_file("stdin", spec.stdin.as_deref().unwrap_or(&[]))
            .map_err(|e| failed(format!("cannot pass stdin to the executor: {e}")))?;
        let mut patience = Patience::new();
        let outcome = loop {
            let call = self.executor.run(&request, (&stdin).into());
            let outcome = tokio::select! {
                outcome = call => outcome,
                () = cancel.cancelled() => {
                    if let Err(e) = self.executor.cancel(&run_id).await {
                        tracing::warn!(error = %e, %run_id, "could not cancel the command in the executor");
                    }
                    return Err(ExecError::Cancelled);
                }
            }
            .map_err(|e| exec_error(&spec.program, &spec.cwd, &e));
            if !patience.again(&outcome, Some(cancel)).await? {
                break outcome?;
            }
        };
        let text = |fd| -> Result<String, ExecError> {
            let bytes = crate::fd::read_all(fd, MAX_OUTPUT_BYTES)
                .map_err(|e| failed(format!("cannot read the command's output: {e}")))?;
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        };
        Ok(CommandOutcome {
            stdout: text(outcome.stdout)?,
            stderr: text(outcome.stderr)?,
            exit: if outcome.signal != 0 {
                ExitKind::Signal(outcome.signal)
            } else {
                ExitKind::Code(outcome.exit_code)
            },
            timed_out: outcome.timed_out,
            dropped_bytes: outcome.dropped_bytes,
            duration: Duration::from_millis(outcome.duration_ms),
            profile: outcome.profile,
            backend: outcome.backend,
            networked: outcome.networked,
        })
    }

    async fn write_file(
        &self,
        origin: &ExecOrigin,
        path: &Path,
        contents: &[u8],
        cancel: &CancellationToken,
    ) -> Result<(), ExecError> {
        let mut request = wire::encode_origin(origin).map_err(|e| unsendable(&e))?;
        put_str(&mut request, keys::PATH, &path.to_string_lossy()).map_err(|e| unsendable(&e))?;
        let fd = crate::fd::memory_file("contents", contents).map_err(|e| ExecError::Failed {
            program: "write_file".into(),
            message: format!("cannot pass the file to the executor: {e}"),
        })?;
        let mut patience = Patience::new();
        loop {
            let result = tokio::select! {
                result = self.executor.write_file(&request, (&fd).into()) => {
                    result.map_err(|e| exec_error("write_file", &origin.workspace, &e))
                }
                () = cancel.cancelled() => Err(ExecError::Cancelled),
            };
            if !patience.again(&result, Some(cancel)).await? {
                return result;
            }
        }
    }

    async fn start_background(
        &self,
        origin: &ExecOrigin,
        spec: CommandSpec,
    ) -> Result<String, ExecError> {
        let request = wire::encode_command(origin, &spec).map_err(|e| unsendable(&e))?;
        let mut patience = Patience::new();
        loop {
            let result = self
                .executor
                .start_background(&request)
                .await
                .map_err(|e| exec_error(&spec.program, &spec.cwd, &e));
            if !patience.again(&result, None).await? {
                return result;
            }
        }
    }

    async fn process(
        &self,
        origin: &ExecOrigin,
        action: ProcessAction,
    ) -> Result<String, ExecError> {
        let name = action.name();
        let mut args = VariantDict::new();
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let put = match action {
            ProcessAction::List => Ok(()),
            ProcessAction::Poll { id } | ProcessAction::Kill { id } => {
                put_str(&mut args, "id", &id)
            }
            ProcessAction::Log { id, offset, limit } => {
                put_u64(&mut args, "offset", offset);
                put_u64(&mut args, "limit", limit as u64);
                put_str(&mut args, "id", &id)
            }
            ProcessAction::Wait { id, timeout } => {
                put_u64(&mut args, "timeout_ms", ms(timeout));
                put_str(&mut args, "id", &id)
            }
            ProcessAction::Write { id, data, close } => {
                put_bool(&mut args, "close", close);
                put_str(&mut args, "id", &id).and_then(|()| put_str(&mut args, "data", &data))
            }
        };
        put.map_err(|e| unsendable(&e))?;
        let mut patience = Patience::new();
        loop {
            let result = self
                .executor
                .process(origin.session.as_str(), name, &args)
                .await
                .map_err(|e| exec_error("process", &origin.workspace, &e));
            if !patience.again(&result, None).await? {
                return result;
            }
        }
    }

    fn end_session(&self, session: &SessionId) {
        let executor = self.executor.clone();
        let session = session.to_string();
        tokio::spawn(async move {
            if let Err(e) = executor.end_session(&session).await {
                tracing::debug!(error = %e, %session, "executor did not release the session");
            }
        });
    }
}
