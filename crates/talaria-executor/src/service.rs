//! The executor service: policy → backend.
//!
//! A request names the tool it serves (which picks the policy profile), the session, the surface
//! it came from (which can only narrow the profile) and the command. The service resolves the
//! profile against the session's workspace and scratch directory, checks the approval rules,
//! and hands the resolved [`Job`] to the first backend of the profile that this executor
//! provides ([`Executor::with_backend`]; see [`crate::backends`]). Policy and approval are
//! decided here and never by a backend. It never runs anything unconfined: a profile the host
//! cannot enforce comes back as [`ExecutorError::SandboxRefused`] or
//! [`ExecutorError::NoBackend`]. A backend that is not provided is skipped (and logged) in
//! favour of the profile's next one; a backend that is provided but fails is an error, never a
//! reason to try another backend.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use talaria_bus::exec::files::FILE_OP_PROGRAM;
use talaria_bus::exec::{CommandOutcome, CommandSpec, ExecOrigin};
use talaria_policy::{Decision, PolicyError, PolicySet, ResolveContext};
use talaria_sandbox::fileops::FileOp;
use tokio_util::sync::CancellationToken;

use crate::backends::{Backend, BackendError, Job, file_name_of};
use crate::background::{BackgroundError, ProcessId, ProcessTable};
use crate::git_guard;
use crate::process::{ExitKind, ProcessError};
use crate::scratch::{Scratch, ScratchError};

/// What the executor is configured with.
#[derive(Debug)]
pub struct ExecutorConfig {
    pub policies: PolicySet,
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
    #[error(transparent)]
    Scratch(#[from] ScratchError),
    #[error("policy {profile} runs on the {backend} backend, which cannot run {what}")]
    Unsupported {
        profile: String,
        backend: &'static str,
        what: &'static str,
    },
    #[error("bad file request: {0}")]
    FileRequest(String),
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error(transparent)]
    Background(#[from] BackgroundError),
}

/// The most a file request's answer may be, whatever it asks for.
const MAX_FILE_OP_OUTPUT: usize = 256 << 20;

/// The built-in file operation a command stands for: a [`FILE_OP_PROGRAM`] command carries
/// one as JSON in its only argument (`talaria_bus::exec::files`), which the sandbox helper runs
/// once confined instead of exec'ing anything. Any other command is `None`.
///
/// # Errors
/// [`ExecutorError::FileRequest`] when the argument is not one request.
fn file_op(command: &CommandSpec) -> Result<Option<FileOp>, ExecutorError> {
    if command.program != FILE_OP_PROGRAM {
        return Ok(None);
    }
    let [json] = command.args.as_slice() else {
        return Err(ExecutorError::FileRequest(format!(
            "{FILE_OP_PROGRAM} takes one argument, got {}",
            command.args.len()
        )));
    };
    serde_json::from_str(json)
        .map(Some)
        .map_err(|e| ExecutorError::FileRequest(e.to_string()))
}

/// The executor. One per process; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Executor {
    config: ExecutorConfig,
    scratch: Scratch,
    background: ProcessTable,
    /// The backends it provides, by name.
    backends: Vec<Arc<dyn Backend>>,
}

/// A resolved, approved command and the backend that will run it.
#[derive(Debug)]
pub struct Prepared {
    /// The first of the profile's backends that this executor provides.
    pub backend: Arc<dyn Backend>,
    pub job: Job,
}

impl Prepared {
    /// A backend failure as the executor reports it.
    fn error(&self, error: BackendError) -> ExecutorError {
        backend_error(&self.job.profile, self.backend.name(), error)
    }
}

fn backend_error(profile: &str, backend: &'static str, error: BackendError) -> ExecutorError {
    match error {
        BackendError::Refused(message) => ExecutorError::SandboxRefused {
            profile: profile.to_owned(),
            message,
        },
        BackendError::Unsupported { what } => ExecutorError::Unsupported {
            profile: profile.to_owned(),
            backend,
            what,
        },
        BackendError::Process(e) => ExecutorError::Process(e),
        BackendError::Background(e) => ExecutorError::Background(e),
    }
}

impl Executor {
    /// An executor with no backends yet: add them with [`Executor::with_backend`]
    /// ([`crate::setup::standard`] adds every registered one this host provides).
    pub fn new(config: ExecutorConfig) -> Self {
        Self {
            scratch: Scratch::new(config.scratch_root.clone()),
            config,
            background: ProcessTable::default(),
            backends: Vec::new(),
        }
    }

    /// Provide `backend` (replacing one of the same name). Profiles listing a backend that is
    /// not provided use their next one, or are refused ([`ExecutorError::NoBackend`]).
    #[must_use]
    pub fn with_backend(mut self, backend: Arc<dyn Backend>) -> Self {
        self.backends.retain(|b| b.name() != backend.name());
        self.backends.push(backend);
        self
    }

    /// The provided backend called `name`.
    pub fn backend(&self, name: &str) -> Option<&Arc<dyn Backend>> {
        self.backends.iter().find(|b| b.name() == name)
    }

    /// Whether this executor provides the backend called `name`.
    pub fn provides(&self, name: &str) -> bool {
        self.backend(name).is_some()
    }

    pub fn policies(&self) -> &PolicySet {
        &self.config.policies
    }

    pub fn background(&self) -> &ProcessTable {
        &self.background
    }

    /// The scratch directory (`${tmp}`) of a session.
    /// (Before its first command, the path it would have without its random suffix.)
    pub fn scratch_dir(&self, session: &str) -> PathBuf {
        self.scratch.dir_of(&file_name_of(session))
    }

    /// The session's scratch directory (`${tmp}`), made now if it does not exist yet.
    ///
    /// # Errors
    /// [`ExecutorError::Scratch`] when the scratch root is not ours or cannot be made.
    pub fn session_scratch(&self, session: &str) -> Result<PathBuf, ExecutorError> {
        Ok(self.scratch.session_dir(&file_name_of(session))?)
    }

    /// Pick, narrow, check and resolve the profile for a request, and pick its backend.
    ///
    /// # Errors
    /// Unknown profile or tool, a forbidden or unapproved command, a bad workspace, a profile
    /// that cannot be resolved, or one none of whose backends is provided here.
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
        let tmp = self.scratch.session_dir(&file_name_of(request.session()))?;
        let resolved = profile.resolve(&ResolveContext {
            workspace: origin.workspace.clone(),
            home: std::env::var_os("HOME").map_or_else(|| PathBuf::from("/"), PathBuf::from),
            tmp: tmp.clone(),
            talaria_home: self.config.talaria_home.clone(),
            caller_env: self.config.caller_env.clone(),
            argv: request.command.argv(),
            cwd: request.command.cwd.clone(),
        })?;
        let Some(backend) = resolved
            .backends
            .iter()
            .find_map(|name| self.backend(name))
            .cloned()
        else {
            return Err(ExecutorError::NoBackend {
                profile: name,
                backends: resolved.backends.join(", "),
            });
        };
        if let Some(preferred) = resolved.backends.first()
            && preferred != backend.name()
        {
            tracing::info!(profile = %name, %preferred, used = backend.name(), "the profile's preferred backend is not provided here; using the next one");
        }
        let builtin = file_op(&request.command)?;
        // A file request bounds its own answer (the read's `max_bytes`, the search's page), so
        // the profile's output limit, which is there to stop a flooding command, does not cut
        // it; the request's own limit and a hard ceiling still hold.
        let output_limit = if builtin.is_some() {
            request.command.output_limit.min(MAX_FILE_OP_OUTPUT)
        } else {
            usize::try_from(resolved.output_bytes)
                .unwrap_or(usize::MAX)
                .min(request.command.output_limit)
        };
        let settings = resolved.settings_of(backend.name());
        let mut spec = resolved.spec;
        spec.builtin = builtin;
        let job = Job {
            session: origin.session.clone(),
            profile: name,
            settings,
            workspace: origin.workspace.clone(),
            scratch: tmp,
            stdin: request.command.stdin.clone(),
            timeout: request.command.timeout.min(resolved.wall_time),
            output_limit,
            command_line: request.command.command_line.clone(),
            spec,
        };
        Ok(Prepared { backend, job })
    }

    /// A local process for a prepared request that the caller starts with its own stdio
    /// (`talaria sandbox run`); the caller enforces `prepared.job.timeout`.
    ///
    /// # Errors
    /// [`ExecutorError::Unsupported`] when the backend cannot give one (run the request
    /// captured instead), or the backend's refusal.
    pub fn attached_command(
        &self,
        prepared: &Prepared,
    ) -> Result<tokio::process::Command, ExecutorError> {
        prepared
            .backend
            .attached(&prepared.job)
            .map_err(|e| prepared.error(e))
    }

    /// Run a command to completion on its backend.
    ///
    /// # Errors
    /// See [`ExecutorError`]; a command that runs and fails is not an error.
    pub async fn run(
        &self,
        request: RunRequest,
        cancel: &CancellationToken,
    ) -> Result<CommandOutcome, ExecutorError> {
        let prepared = self.prepare(&request)?;
        prepared
            .backend
            .prepare(&prepared.job)
            .await
            .map_err(|e| prepared.error(e))?;
        let Prepared { backend, job } = prepared;
        let profile = job.profile.clone();
        // A file operation opens read-only and writes nothing: no git metadata to guard.
        let write_roots = if job.spec.builtin.is_some() {
            Vec::new()
        } else {
            job.spec.filesystem.write.clone()
        };
        let before = snapshot_git_metadata(write_roots.clone()).await;
        let ran = backend.run(job, cancel).await;
        // Whatever became of the command, nothing it planted may run on the host later.
        let after = snapshot_git_metadata(write_roots).await;
        let guard_report =
            git_guard::report(&before.quarantine_changes(&after), after.incomplete());
        let mut outcome = ran.map_err(|e| backend_error(&profile, backend.name(), e))?;
        if !guard_report.is_empty() {
            tracing::warn!(session = %request.origin.session, report = %guard_report.trim_end(), "git metadata written in the sandbox was quarantined");
            if !outcome.stderr.is_empty() && !outcome.stderr.ends_with('\n') {
                outcome.stderr.push('\n');
            }
            outcome.stderr.push_str(&guard_report);
        }
        tracing::debug!(tool = %request.origin.tool, session = %request.origin.session, profile = %outcome.profile, backend = %outcome.backend, exit = %outcome.exit, "sandboxed command finished");
        Ok(outcome)
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

    /// Start a command in the background on its backend.
    ///
    /// # Errors
    /// As for [`Executor::run`], before the command starts; [`ExecutorError::Unsupported`]
    /// on a backend without background processes (never run on another one instead).
    pub async fn start_background(&self, request: &RunRequest) -> Result<ProcessId, ExecutorError> {
        if request.command.program == FILE_OP_PROGRAM {
            return Err(ExecutorError::FileRequest(
                "a file request runs to completion, never in the background".into(),
            ));
        }
        let prepared = self.prepare(request)?;
        prepared
            .backend
            .prepare(&prepared.job)
            .await
            .map_err(|e| prepared.error(e))?;
        let Prepared { backend, job } = prepared;
        let profile = job.profile.clone();
        backend
            .start_background(job, &self.background)
            .map_err(|e| backend_error(&profile, backend.name(), e))
    }

    /// A session is over: kill its background processes, let every backend release what it
    /// kept for it (the OCI helper deletes the session's container) and remove its scratch
    /// directory.
    pub fn end_session(&self, session: &str) {
        self.background.kill_session(session);
        for backend in &self.backends {
            backend.end_session(session);
        }
        self.scratch.remove(&file_name_of(session));
    }
}

/// [`git_guard::Snapshot::take`] off the async runtime (it walks directories).
async fn snapshot_git_metadata(roots: Vec<PathBuf>) -> git_guard::Snapshot {
    tokio::task::spawn_blocking(move || git_guard::Snapshot::take(&roots))
        .await
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use talaria_bus::exec::files::{self, FileRequest, OutputMode, SearchRequest, SearchTarget};
    use talaria_sandbox::fileops::{self, FileOp};

    use super::*;

    fn command_of(request: &FileRequest) -> CommandSpec {
        request.command("read_file x".into(), PathBuf::from("/w"), 1 << 20)
    }

    /// The agent's requests (talaria-bus) and the helper's operations (talaria-sandbox) are
    /// two definitions of one JSON: they must read each other.
    #[test]
    fn file_requests_reach_the_helper_unchanged() {
        let read = FileRequest::Read {
            path: "/w/a.txt".into(),
            max_bytes: 42,
        };
        assert_eq!(
            file_op(&command_of(&read)).unwrap(),
            Some(FileOp::Read {
                path: "/w/a.txt".into(),
                max_bytes: 42
            })
        );
        for (target, output_mode) in [
            (SearchTarget::Content, OutputMode::Content),
            (SearchTarget::Files, OutputMode::FilesOnly),
            (SearchTarget::Content, OutputMode::Count),
        ] {
            let search = FileRequest::Search(SearchRequest {
                root: "/w".into(),
                base: "/w/sub".into(),
                pattern: "a.*b".into(),
                target,
                file_glob: Some("*.rs".into()),
                limit: 7,
                offset: 3,
                output_mode,
                context: 2,
            });
            let Some(FileOp::Search(op)) = file_op(&command_of(&search)).unwrap() else {
                panic!("not a search");
            };
            let back: FileRequest =
                serde_json::from_str(&serde_json::to_string(&FileOp::Search(op)).unwrap()).unwrap();
            assert_eq!(back, search);
        }
        let text = fileops::FileText {
            size: 9,
            truncated: true,
            text: "é\u{1}\n".into(),
        };
        let answer: files::FileText =
            serde_json::from_str(&serde_json::to_string(&text).unwrap()).unwrap();
        assert_eq!(
            (answer.size, answer.truncated, answer.text),
            (9, true, text.text)
        );
    }

    #[test]
    fn other_commands_are_not_file_requests_and_bad_ones_are_refused() {
        let mut command = CommandSpec::from_argv(vec!["cat".into(), "x".into()], "/w".into());
        assert_eq!(file_op(&command).unwrap(), None);
        command.program = files::FILE_OP_PROGRAM.into();
        command.args = vec!["{\"op\":\"delete\"}".into()];
        assert!(matches!(
            file_op(&command),
            Err(ExecutorError::FileRequest(_))
        ));
        command.args.clear();
        assert!(
            file_op(&command)
                .unwrap_err()
                .to_string()
                .contains("takes one argument")
        );
    }
}
