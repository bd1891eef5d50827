//! The `landlock` backend: the local sandbox helper (`talaria-sandbox`, or the `__sandbox` mode
//! of a Talaria binary) enforces the spec on itself — seccomp, Landlock, namespaces, a private
//! root, rlimits — and execs the command. The spec reaches it as JSON on fd 3, so nothing of it
//! is visible in the process's arguments or environment.
//!
//! The helper exits with [`EXIT_SANDBOX_REFUSED`] and a `talaria-sandbox:` line on stderr when
//! it cannot set the sandbox up; that is a refusal, not the command's status.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use async_trait::async_trait;
use talaria_bus::exec::CommandOutcome;
use talaria_policy::BackendSchema;
use tokio_util::sync::CancellationToken;

use super::{Backend, BackendError, HelperCommand, Host, Job, Registration};
use crate::background::{ProcessId, ProcessTable};
use crate::process::{ExitKind, run_to_completion};

/// Exit status of the helper when it could not set the sandbox up (its stderr says why).
pub const EXIT_SANDBOX_REFUSED: i32 = 125;

/// The file descriptor the helper reads its spec from.
const SPEC_FD: i32 = 3;

/// Its name and settings: it has none.
pub static SCHEMA: BackendSchema = BackendSchema {
    name: "landlock",
    settings: &[],
};

/// Always provided: the helper is a mode of the running binary.
pub const REGISTRATION: Registration = Registration {
    schema: &SCHEMA,
    standard,
};

fn standard(host: &Host<'_>) -> Option<Arc<dyn Backend>> {
    Some(Arc::new(LandlockBackend::new(
        crate::setup::sandbox_helper(host.this_binary),
    )))
}

/// The local sandbox helper as a backend.
#[derive(Debug)]
pub struct LandlockBackend {
    helper: HelperCommand,
}

impl LandlockBackend {
    pub fn new(helper: HelperCommand) -> Self {
        Self { helper }
    }

    /// The helper with `job`'s spec on fd 3, not yet started.
    fn command(&self, job: &Job) -> Result<tokio::process::Command, BackendError> {
        let pipe_failed = |e: std::io::Error| {
            BackendError::Refused(format!("cannot hand the sandbox spec to the helper: {e}"))
        };
        let spec =
            serde_json::to_vec(&job.spec).map_err(|e| pipe_failed(std::io::Error::other(e)))?;
        let reader = spec_pipe(&spec).map_err(pipe_failed)?;
        let mut command = tokio::process::Command::new(&self.helper.program);
        command
            .args(&self.helper.args)
            .arg("--spec-fd")
            .arg(SPEC_FD.to_string())
            .env_clear()
            .current_dir("/");
        let fd = reader.as_raw_fd();
        // SAFETY: the closure runs in the forked child before exec and only calls dup2(2) and
        // fcntl(2), which are async-signal-safe; `reader` stays open in the parent until the
        // command has been spawned (it is moved into the closure and dropped with it).
        unsafe {
            command.pre_exec(move || {
                let _keep_open = &reader;
                // dup2 onto itself is a no-op that would leave close-on-exec set.
                let ok = if fd == SPEC_FD {
                    libc::fcntl(fd, libc::F_SETFD, 0) >= 0
                } else {
                    libc::dup2(fd, SPEC_FD) >= 0
                };
                if !ok {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        // The helper (and with it the command: the helper's children get the same signal)
        // dies with this process, even when it is SIGKILLed and `kill_on_drop` never runs.
        // Spawned from the runtime's async tasks, never from `spawn_blocking`, whose threads
        // exit while the command may still run (see `talaria_daemon::lifecycle`).
        // SAFETY: the hook only calls prctl(2) and getppid(2), which are async-signal-safe.
        unsafe {
            command.pre_exec(talaria_daemon::lifecycle::die_with_parent(libc::SIGKILL));
        }
        Ok(command)
    }
}

#[async_trait]
impl Backend for LandlockBackend {
    fn schema(&self) -> &'static BackendSchema {
        &SCHEMA
    }

    async fn run(
        &self,
        job: Job,
        cancel: &CancellationToken,
    ) -> Result<CommandOutcome, BackendError> {
        let command = self.command(&job)?;
        let finished = run_to_completion(
            command,
            job.program(),
            job.stdin.clone(),
            job.timeout,
            job.output_limit,
            cancel,
        )
        .await?;
        if finished.exit == ExitKind::Code(EXIT_SANDBOX_REFUSED)
            && let Some(line) = finished
                .stderr
                .lines()
                .find(|l| l.starts_with("talaria-sandbox:"))
        {
            return Err(BackendError::Refused(
                line.trim_start_matches("talaria-sandbox:")
                    .trim()
                    .to_owned(),
            ));
        }
        Ok(job.outcome(SCHEMA.name, finished))
    }

    fn start_background(&self, job: Job, table: &ProcessTable) -> Result<ProcessId, BackendError> {
        let command = self.command(&job)?;
        Ok(table.start(job.session.as_str(), &job.command_line, command)?)
    }

    fn attached(&self, job: &Job) -> Result<tokio::process::Command, BackendError> {
        self.command(job)
    }
}

/// A pipe holding `spec`, returning its read end. The spec is small (a few KiB), well under the
/// pipe buffer, so writing it all before the helper starts cannot block.
fn spec_pipe(spec: &[u8]) -> std::io::Result<OwnedFd> {
    use std::io::Write;
    // Linux pipes hold at least 64 KiB; a larger spec would block this write forever.
    const MAX_SPEC_BYTES: usize = 60 * 1024;
    if spec.len() > MAX_SPEC_BYTES {
        return Err(std::io::Error::other(format!(
            "the sandbox spec is {} bytes, more than {MAX_SPEC_BYTES}; pass fewer environment variables or paths",
            spec.len()
        )));
    }
    let (reader, writer) = std::io::pipe()?;
    let mut writer = writer;
    writer.write_all(spec)?;
    drop(writer);
    Ok(reader.into())
}
