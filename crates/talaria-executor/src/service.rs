//! The executor service: policy → sandboxed run.
//!
//! A request names the tool it serves (which picks the policy profile), the session, the surface
//! it came from (which can only narrow the profile) and the command. The service resolves the
//! profile against the session's workspace and scratch directory, checks the approval rules, and
//! runs the command through the sandbox helper. It never runs anything unconfined: a profile the
//! host cannot enforce comes back as [`ExecutorError::SandboxRefused`].

use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use talaria_policy::{
    Backend, Decision, PolicyError, PolicySet, ResolveContext, Resolved, Surface,
};
use tokio_util::sync::CancellationToken;

use crate::background::{BackgroundError, ProcessId, ProcessTable};
use crate::process::{ExitKind, Finished, ProcessError, run_to_completion};

/// Exit status of the helper when it could not set the sandbox up (its stderr says why).
pub const EXIT_SANDBOX_REFUSED: i32 = 125;

/// The file descriptor the helper reads its spec from.
const SPEC_FD: i32 = 3;

/// How to start the sandbox helper: a `talaria-sandbox` binary, or a multi-call binary with
/// leading arguments that select its helper mode.
#[derive(Debug, Clone)]
pub struct HelperCommand {
    pub program: PathBuf,
    pub args: Vec<OsString>,
}

/// What the executor is configured with.
#[derive(Debug)]
pub struct ExecutorConfig {
    pub policies: PolicySet,
    pub helper: HelperCommand,
    /// The Talaria home: never reachable from a sandbox (except `skills/` read-only).
    pub talaria_home: PathBuf,
    /// Parent of the per-session scratch directories (`${tmp}`); must be outside the home.
    pub scratch_root: PathBuf,
    /// The environment a profile's `env.pass` names are taken from.
    pub caller_env: Vec<(String, String)>,
}

/// One command to run for a tool call.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub tool: String,
    pub session: String,
    pub surface: Surface,
    /// Use this profile instead of the tool's (`talaria sandbox run --policy`); still narrowed
    /// by the surface.
    pub profile: Option<String>,
    pub argv: Vec<String>,
    /// What approval rules are matched against when `argv` is a wrapper around the real
    /// command (the terminal tool's shell script); `None` matches `argv` joined by spaces.
    pub command_line: Option<String>,
    pub workspace: PathBuf,
    pub cwd: PathBuf,
    pub stdin: Option<Vec<u8>>,
    /// Shorter than the profile's wall time, never longer.
    pub timeout: Option<Duration>,
    /// A person approved this exact command after a `prompt` rule asked: it may run.
    /// `forbidden` rules still refuse it.
    pub approved: bool,
}

/// A finished sandboxed command.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub finished: Finished,
    pub profile: String,
    pub backend: Backend,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("refused by policy {profile}: {reason}")]
    Forbidden { profile: String, reason: String },
    #[error("needs the user's approval under policy {profile}: {reason}")]
    NeedsApproval { profile: String, reason: String },
    #[error(
        "policy {profile} can only run on the {backends} backend, which this executor does not provide"
    )]
    NoBackend { profile: String, backends: String },
    #[error("the sandbox refused to run the command: {message}")]
    SandboxRefused { profile: String, message: String },
    #[error("workspace {path} does not exist or is not a directory")]
    Workspace { path: PathBuf },
    #[error("cannot prepare the scratch directory {path}: {source}")]
    Scratch {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot hand the sandbox spec to the helper: {0}")]
    SpecPipe(#[source] std::io::Error),
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error(transparent)]
    Background(#[from] BackgroundError),
}

/// The executor. One per process; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Executor {
    config: ExecutorConfig,
    background: ProcessTable,
}

/// A resolved, approved command, ready to hand to the helper.
#[derive(Debug)]
pub struct Prepared {
    pub profile: String,
    pub resolved: Resolved,
}

impl Executor {
    pub fn new(config: ExecutorConfig) -> Self {
        Self {
            config,
            background: ProcessTable::default(),
        }
    }

    pub fn policies(&self) -> &PolicySet {
        &self.config.policies
    }

    pub fn background(&self) -> &ProcessTable {
        &self.background
    }

    /// The scratch directory (`${tmp}`) of a session.
    pub fn scratch_dir(&self, session: &str) -> PathBuf {
        self.config.scratch_root.join(sanitize(session))
    }

    /// Pick, narrow, check and resolve the profile for a request.
    ///
    /// # Errors
    /// Unknown profile or tool, a forbidden or unapproved command, a bad workspace, or a
    /// profile that cannot be resolved.
    pub fn prepare(&self, request: &RunRequest) -> Result<Prepared, ExecutorError> {
        let policies = &self.config.policies;
        let base = match &request.profile {
            Some(name) => policies.profile(name)?,
            None => policies.profile_for_tool(&request.tool)?,
        };
        let profile = base.narrow(request.surface);
        let name = profile.name().to_owned();
        let command_line = request
            .command_line
            .clone()
            .unwrap_or_else(|| request.argv.join(" "));
        match profile.decide(&command_line) {
            Decision::Allow => {}
            Decision::Prompt { .. } if request.approved => {}
            Decision::Prompt { reason } => {
                return Err(ExecutorError::NeedsApproval {
                    profile: name,
                    reason,
                });
            }
            Decision::Forbidden { reason } => {
                return Err(ExecutorError::Forbidden {
                    profile: name,
                    reason,
                });
            }
        }
        if !request.workspace.is_dir() {
            return Err(ExecutorError::Workspace {
                path: request.workspace.clone(),
            });
        }
        let tmp = self.scratch_dir(&request.session);
        create_private_dir(&tmp).map_err(|source| ExecutorError::Scratch {
            path: tmp.clone(),
            source,
        })?;
        let resolved = profile.resolve(&ResolveContext {
            workspace: request.workspace.clone(),
            home: std::env::var_os("HOME").map_or_else(|| PathBuf::from("/"), PathBuf::from),
            tmp,
            talaria_home: self.config.talaria_home.clone(),
            caller_env: self.config.caller_env.clone(),
            argv: request.argv.clone(),
            cwd: request.cwd.clone(),
        })?;
        if !resolved.backends.contains(&Backend::Landlock) {
            let backends = resolved
                .backends
                .iter()
                .map(|b| b.name())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(ExecutorError::NoBackend {
                profile: name,
                backends,
            });
        }
        Ok(Prepared {
            profile: name,
            resolved,
        })
    }

    /// The helper command for a prepared request, with the spec on fd 3.
    ///
    /// # Errors
    /// When the spec pipe cannot be set up.
    pub fn helper_command(
        &self,
        prepared: &Prepared,
    ) -> Result<tokio::process::Command, ExecutorError> {
        let spec = serde_json::to_vec(&prepared.resolved.spec)
            .map_err(|e| ExecutorError::SpecPipe(std::io::Error::other(e)))?;
        let reader = spec_pipe(&spec).map_err(ExecutorError::SpecPipe)?;
        let mut command = tokio::process::Command::new(&self.config.helper.program);
        command
            .args(&self.config.helper.args)
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
        Ok(command)
    }

    /// Run a command to completion in its sandbox.
    ///
    /// # Errors
    /// See [`ExecutorError`]; a command that runs and fails is not an error.
    pub async fn run(
        &self,
        request: RunRequest,
        cancel: &CancellationToken,
    ) -> Result<RunOutcome, ExecutorError> {
        let prepared = self.prepare(&request)?;
        let timeout = request.timeout.map_or(prepared.resolved.wall_time, |t| {
            t.min(prepared.resolved.wall_time)
        });
        let limit = usize::try_from(prepared.resolved.output_bytes).unwrap_or(usize::MAX);
        let command = self.helper_command(&prepared)?;
        let program = request.argv.first().cloned().unwrap_or_default();
        let finished =
            run_to_completion(command, &program, request.stdin, timeout, limit, cancel).await?;
        if finished.exit == ExitKind::Code(EXIT_SANDBOX_REFUSED)
            && let Some(line) = finished
                .stderr
                .lines()
                .find(|l| l.starts_with("talaria-sandbox:"))
        {
            return Err(ExecutorError::SandboxRefused {
                profile: prepared.profile,
                message: line
                    .trim_start_matches("talaria-sandbox:")
                    .trim()
                    .to_owned(),
            });
        }
        tracing::debug!(tool = %request.tool, session = %request.session, profile = %prepared.profile, ?finished.exit, "sandboxed command finished");
        Ok(RunOutcome {
            finished,
            profile: prepared.profile,
            backend: Backend::Landlock,
        })
    }

    /// Create or replace a file from inside the tool's sandbox, so the write is confined by the
    /// same rules as a command would be.
    ///
    /// # Errors
    /// [`ExecutorError`], or `SandboxRefused` carrying the reason the write failed (e.g. a
    /// read-only or protected path).
    pub async fn write_file(
        &self,
        mut request: RunRequest,
        path: &Path,
        contents: Vec<u8>,
        cancel: &CancellationToken,
    ) -> Result<(), ExecutorError> {
        request.argv = vec![
            "/bin/sh".into(),
            "-c".into(),
            r#"mkdir -p -- "$(dirname -- "$1")" && cat > "$1""#.into(),
            "talaria-write".into(),
            path.to_string_lossy().into_owned(),
        ];
        request.stdin = Some(contents);
        let outcome = self.run(request, cancel).await?;
        match outcome.finished.exit {
            ExitKind::Code(0) => Ok(()),
            _ => Err(ExecutorError::SandboxRefused {
                profile: outcome.profile,
                message: format!(
                    "cannot write {}: {}",
                    path.display(),
                    outcome
                        .finished
                        .stderr
                        .trim()
                        .lines()
                        .last()
                        .unwrap_or("the write failed")
                ),
            }),
        }
    }

    /// Start a sandboxed command in the background.
    ///
    /// # Errors
    /// As for [`Executor::run`], before the command starts.
    pub fn start_background(&self, request: &RunRequest) -> Result<ProcessId, ExecutorError> {
        let prepared = self.prepare(request)?;
        let command = self.helper_command(&prepared)?;
        Ok(self
            .background
            .start(&request.session, &request.argv.join(" "), command)?)
    }

    /// A session is over: kill its background processes and remove its scratch directory.
    pub fn end_session(&self, session: &str) {
        self.background.kill_session(session);
        let _ = std::fs::remove_dir_all(self.scratch_dir(session));
    }
}

fn sanitize(session: &str) -> String {
    session
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn create_private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
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
