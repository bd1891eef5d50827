//! The executor service: policy → sandboxed run.
//!
//! A request names the tool it serves (which picks the policy profile), the session, the surface
//! it came from (which can only narrow the profile) and the command. The service resolves the
//! profile against the session's workspace and scratch directory, checks the approval rules, and
//! runs the command on the first backend of the profile that this executor provides: the
//! Landlock sandbox helper (always), or the session's OCI container through its
//! `talaria-oci-helper` (when configured with [`Executor::with_oci`]). It never runs anything
//! unconfined: a profile the host cannot enforce comes back as [`ExecutorError::SandboxRefused`]
//! or [`ExecutorError::NoBackend`]. A backend that is not provided is skipped (and logged) in
//! favour of the profile's next one; a backend that is provided but fails to set up is an
//! error, never a reason to try another backend.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use talaria_bus::exec::{CommandOutcome, CommandSpec, ExecOrigin};
use talaria_oci::client::{ClientError, HelperConnection};
use talaria_oci::protocol::Exit;
use talaria_oci::{ContainerCommand, ContainerPlan};
use talaria_policy::{Backend, Decision, PolicyError, PolicySet, ResolveContext, Resolved};
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

/// The OCI backend: how to start a session's `talaria-oci-helper` and where helpers keep state.
#[derive(Debug, Clone)]
pub struct OciBackend {
    /// The `talaria-oci-helper` binary (it gets `--state DIR --images DIR` appended).
    pub helper: HelperCommand,
    /// Parent of the per-session helper state directories (`<state_root>/<session>`) and of the
    /// unpacked-image cache (`<state_root>/.images`). Must not be inside any sandbox's roots.
    pub state_root: PathBuf,
}

/// How long a helper gets, beyond the command's own timeout, to report before it is presumed
/// stuck and terminated.
const OCI_GRACE: Duration = Duration::from_secs(30);

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

/// One command to run for a tool call: who asks ([`ExecOrigin`]: tool, session, workspace,
/// surface) and what ([`CommandSpec`]).
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub origin: ExecOrigin,
    pub command: CommandSpec,
    /// A person approved this exact command after a `prompt` rule asked: it may run.
    /// `forbidden` rules still refuse it.
    pub approved: bool,
}

impl RunRequest {
    /// The session's id as the executor's directories and tables name it.
    fn session(&self) -> &str {
        self.origin.session.as_str()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("refused by policy {profile}: {reason}")]
    Forbidden { profile: String, reason: String },
    #[error(
        "profile {profile} is wider than {tool}'s own profile {own} ({why}); it runs only once the owner approves it"
    )]
    Widens {
        profile: String,
        tool: String,
        own: String,
        why: String,
    },
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
    #[error("policy {profile} runs on the {backend} backend, which cannot run {what}")]
    Unsupported {
        profile: String,
        backend: &'static str,
        what: &'static str,
    },
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
    oci: Option<OciBackend>,
    /// Each session's OCI helper, started on its first OCI command.
    oci_sessions: Mutex<HashMap<String, Arc<OciSession>>>,
}

/// A session's OCI helper. Commands of one session run one at a time (the helper is
/// sequential); `pid` is kept outside the lock so `end_session` can stop a busy helper.
#[derive(Debug)]
struct OciSession {
    pid: Option<u32>,
    connection: tokio::sync::Mutex<HelperConnection>,
}

/// A resolved, approved command, ready to hand to the helper.
#[derive(Debug)]
pub struct Prepared {
    pub profile: String,
    pub resolved: Resolved,
    /// The backend it runs on: the first of the profile's backends that this executor provides.
    pub backend: Backend,
}

impl Executor {
    pub fn new(config: ExecutorConfig) -> Self {
        Self {
            config,
            background: ProcessTable::default(),
            oci: None,
            oci_sessions: Mutex::new(HashMap::new()),
        }
    }

    /// Provide the OCI backend. Without it, profiles whose only backend is `oci` are refused
    /// ([`ExecutorError::NoBackend`]).
    #[must_use]
    pub fn with_oci(mut self, oci: OciBackend) -> Self {
        self.oci = Some(oci);
        self
    }

    /// Whether this executor provides `backend`.
    pub fn provides(&self, backend: Backend) -> bool {
        match backend {
            Backend::Landlock => true,
            Backend::Oci => self.oci.is_some(),
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
        let origin = &request.origin;
        let own = || policies.profile_for_tool(&origin.tool, origin.tool_profile.as_deref());
        let base = match &request.command.profile {
            Some(name) => {
                let explicit = policies.profile(name)?;
                // A profile someone other than the owner picked (a skill's declaration, written
                // by the model) may narrow the tool's own, never widen it.
                if !request.command.profile_approved {
                    let own = own()?;
                    if let Some(why) = explicit.widening_over(own) {
                        return Err(ExecutorError::Widens {
                            profile: name.clone(),
                            tool: origin.tool.clone(),
                            own: own.name().to_owned(),
                            why,
                        });
                    }
                }
                explicit
            }
            None => own()?,
        };
        let profile = base.narrow(origin.surface);
        let name = profile.name().to_owned();
        match profile.decide(&request.command.command_line) {
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
        if !origin.workspace.is_dir() {
            return Err(ExecutorError::Workspace {
                path: origin.workspace.clone(),
            });
        }
        let tmp = self.scratch_dir(request.session());
        create_private_dir(&tmp).map_err(|source| ExecutorError::Scratch {
            path: tmp.clone(),
            source,
        })?;
        let resolved = profile.resolve(&ResolveContext {
            workspace: origin.workspace.clone(),
            home: std::env::var_os("HOME").map_or_else(|| PathBuf::from("/"), PathBuf::from),
            tmp,
            talaria_home: self.config.talaria_home.clone(),
            caller_env: self.config.caller_env.clone(),
            argv: request.command.argv(),
            cwd: request.command.cwd.clone(),
        })?;
        let Some(backend) = resolved
            .backends
            .iter()
            .copied()
            .find(|b| self.provides(*b))
        else {
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
        };
        if let Some(preferred) = resolved.backends.first()
            && *preferred != backend
        {
            tracing::info!(profile = %name, preferred = preferred.name(), used = backend.name(), "the profile's preferred backend is not available here; using the next one");
        }
        Ok(Prepared {
            profile: name,
            resolved,
            backend,
        })
    }

    /// The Landlock helper command for a prepared request, with the spec on fd 3.
    ///
    /// # Errors
    /// When the spec pipe cannot be set up, or the request runs on another backend.
    pub fn helper_command(
        &self,
        prepared: &Prepared,
    ) -> Result<tokio::process::Command, ExecutorError> {
        match prepared.backend {
            Backend::Landlock => {}
            Backend::Oci => {
                return Err(ExecutorError::Unsupported {
                    profile: prepared.profile.clone(),
                    backend: Backend::Oci.name(),
                    what: "a command with the terminal's stdio or in the background",
                });
            }
        }
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
    ) -> Result<CommandOutcome, ExecutorError> {
        let prepared = self.prepare(&request)?;
        let timeout = request.command.timeout.min(prepared.resolved.wall_time);
        let limit = usize::try_from(prepared.resolved.output_bytes)
            .unwrap_or(usize::MAX)
            .min(request.command.output_limit);
        let networked = !matches!(
            prepared.resolved.spec.network,
            talaria_sandbox::spec::NetworkRules::Off
        );
        let profile = prepared.profile.clone();
        let backend = prepared.backend;
        let finished = match backend {
            Backend::Landlock => {
                let command = self.helper_command(&prepared)?;
                let finished = run_to_completion(
                    command,
                    &request.command.program,
                    request.command.stdin.clone(),
                    timeout,
                    limit,
                    cancel,
                )
                .await?;
                if finished.exit == ExitKind::Code(EXIT_SANDBOX_REFUSED)
                    && let Some(line) = finished
                        .stderr
                        .lines()
                        .find(|l| l.starts_with("talaria-sandbox:"))
                {
                    return Err(ExecutorError::SandboxRefused {
                        profile,
                        message: line
                            .trim_start_matches("talaria-sandbox:")
                            .trim()
                            .to_owned(),
                    });
                }
                finished
            }
            Backend::Oci => {
                self.run_oci(&request, prepared, timeout, limit, cancel)
                    .await?
            }
        };
        tracing::debug!(tool = %request.origin.tool, session = %request.origin.session, %profile, backend = backend.name(), exit = %finished.exit, "sandboxed command finished");
        Ok(CommandOutcome {
            stdout: finished.stdout,
            stderr: finished.stderr,
            exit: finished.exit,
            timed_out: finished.timed_out,
            dropped_bytes: finished.dropped_bytes,
            duration: finished.duration,
            profile,
            backend: backend.name().to_owned(),
            networked,
        })
    }

    /// Run a prepared OCI request in the session's container, starting its helper if needed.
    async fn run_oci(
        &self,
        request: &RunRequest,
        prepared: Prepared,
        timeout: Duration,
        limit: usize,
        cancel: &CancellationToken,
    ) -> Result<Finished, ExecutorError> {
        let profile = prepared.profile;
        let refused = |message: String| ExecutorError::SandboxRefused {
            profile: profile.clone(),
            message,
        };
        let Some(settings) = &prepared.resolved.oci else {
            return Err(refused("the profile names no oci.rootfs".to_owned()));
        };
        let spec = &prepared.resolved.spec;
        let plan = ContainerPlan::from_spec(
            spec,
            &settings.rootfs,
            &request.origin.workspace,
            &self.scratch_dir(request.session()),
        );
        let command =
            ContainerCommand::from_spec(spec, request.command.stdin.clone(), timeout, limit);
        let session = self
            .oci_session(request.session())
            .map_err(|e| refused(e.to_string()))?;
        let report = {
            let mut connection = session.connection.lock().await;
            tokio::select! {
                report = connection.run(&plan, &command, false) => report,
                () = cancel.cancelled() => {
                    self.stop_oci_session(request.session(), &session);
                    return Err(ProcessError::Cancelled.into());
                }
                () = tokio::time::sleep(timeout + OCI_GRACE) => {
                    self.stop_oci_session(request.session(), &session);
                    return Err(refused(format!(
                        "the container helper did not report within {}s; it was stopped",
                        (timeout + OCI_GRACE).as_secs()
                    )));
                }
            }
        };
        let report = match report {
            Ok(report) => report,
            Err(ClientError::Refused(message)) => return Err(refused(message)),
            Err(
                e @ (ClientError::Gone { .. } | ClientError::Protocol(_) | ClientError::Spawn(_)),
            ) => {
                // The next command of the session starts a new helper.
                self.stop_oci_session(request.session(), &session);
                return Err(refused(e.to_string()));
            }
        };
        let text = |bytes: Result<Vec<u8>, _>| {
            bytes
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .map_err(|e| refused(format!("the container helper sent invalid output: {e}")))
        };
        let finished = Finished {
            stdout: text(report.stdout())?,
            stderr: text(report.stderr())?,
            exit: match report.exit {
                Exit::Code(code) => ExitKind::Code(code),
                Exit::Signal(signal) => ExitKind::Signal(signal),
            },
            timed_out: report.timed_out,
            dropped_bytes: report.dropped,
            duration: Duration::from_millis(report.duration_ms),
        };
        tracing::debug!(container = ?report.container, "containerized command finished");
        Ok(finished)
    }

    /// The session's OCI helper, started on first use.
    fn oci_session(&self, session: &str) -> Result<Arc<OciSession>, ClientError> {
        let mut sessions = self
            .oci_sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(existing) = sessions.get(session) {
            return Ok(Arc::clone(existing));
        }
        let Some(oci) = &self.oci else {
            return Err(ClientError::Spawn(std::io::Error::other(
                "the oci backend is not configured",
            )));
        };
        let mut command = tokio::process::Command::new(&oci.helper.program);
        command
            .args(&oci.helper.args)
            .arg("--state")
            .arg(oci.state_root.join(sanitize(session)))
            .arg("--images")
            .arg(oci.state_root.join(".images"))
            .env_clear()
            .current_dir("/");
        if let Some(filter) = std::env::var_os("TALARIA_OCI_LOG") {
            command.env("TALARIA_OCI_LOG", filter);
        }
        let connection = HelperConnection::spawn(command)?;
        let entry = Arc::new(OciSession {
            pid: connection.pid(),
            connection: tokio::sync::Mutex::new(connection),
        });
        sessions.insert(session.to_owned(), Arc::clone(&entry));
        Ok(entry)
    }

    /// Forget a session's helper and ask it to stop (it kills its command, deletes its
    /// container and exits); no-op if it was replaced meanwhile.
    fn stop_oci_session(&self, session: &str, helper: &Arc<OciSession>) {
        let mut sessions = self
            .oci_sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if sessions
            .get(session)
            .is_some_and(|current| Arc::ptr_eq(current, helper))
        {
            sessions.remove(session);
        }
        if let Some(pid) = helper.pid {
            talaria_oci::client::terminate(pid);
        }
    }

    /// Create or replace a file from inside the tool's sandbox (or under `profile`: a name and
    /// whether the owner approved it, checked and narrowed as for a command), so the write is
    /// confined by the same rules as a command would be.
    ///
    /// # Errors
    /// [`ExecutorError`], or `SandboxRefused` carrying the reason the write failed (e.g. a
    /// read-only or protected path).
    pub async fn write_file(
        &self,
        origin: ExecOrigin,
        profile: Option<(String, bool)>,
        path: &Path,
        contents: Vec<u8>,
        cancel: &CancellationToken,
    ) -> Result<(), ExecutorError> {
        let args = vec![
            "-c".into(),
            r#"mkdir -p -- "$(dirname -- "$1")" && cat > "$1""#.into(),
            "talaria-write".into(),
            path.to_string_lossy().into_owned(),
        ];
        let command = CommandSpec {
            command_line: format!("/bin/sh {}", args.join(" ")),
            program: "/bin/sh".into(),
            args,
            cwd: origin.workspace.clone(),
            stdin: Some(contents),
            timeout: Duration::MAX,
            output_limit: usize::MAX,
            profile_approved: profile.as_ref().is_some_and(|(_, approved)| *approved),
            profile: profile.map(|(name, _)| name),
        };
        let request = RunRequest {
            origin,
            command,
            approved: false,
        };
        let outcome = self.run(request, cancel).await?;
        match outcome.exit {
            ExitKind::Code(0) => Ok(()),
            _ => Err(ExecutorError::SandboxRefused {
                profile: outcome.profile,
                message: format!(
                    "cannot write {}: {}",
                    path.display(),
                    outcome
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
        match prepared.backend {
            Backend::Landlock => {}
            Backend::Oci => {
                return Err(ExecutorError::Unsupported {
                    profile: prepared.profile,
                    backend: Backend::Oci.name(),
                    what: "background processes",
                });
            }
        }
        let command = self.helper_command(&prepared)?;
        Ok(self
            .background
            .start(request.session(), &request.command.command_line, command)?)
    }

    /// A session is over: kill its background processes, stop its OCI helper (which deletes
    /// the session's container) and remove its scratch directory.
    pub fn end_session(&self, session: &str) {
        self.background.kill_session(session);
        let helper = self
            .oci_sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(session);
        if let Some(pid) = helper.and_then(|h| h.pid) {
            talaria_oci::client::terminate(pid);
        }
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
