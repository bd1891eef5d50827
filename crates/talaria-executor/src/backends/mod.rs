//! The Backend seam: where a command, once the executor has decided it may run and how, is
//! actually run — the local sandbox helper, a session's OCI container, and later Docker, SSH,
//! Slurm, Apptainer or a remote executor.
//!
//! # What a backend owns, and what it must never do
//! A backend receives a [`Job`]: an **already-resolved** command — the profile's
//! [`SandboxSpec`] (argv, cwd, environment, filesystem, network, namespaces, limits), its own
//! `[backend.NAME]` settings, the time and output limits — and runs it confined by all of it,
//! or refuses. Choosing the profile, narrowing it for the surface, matching approval rules and
//! asking a person are the executor's business and never a backend's: a backend cannot widen
//! anything because it never sees the policy, only its result. A backend that cannot enforce
//! part of the spec must refuse ([`BackendError::Refused`]), never run weaker. Whatever ran,
//! the caller gets the one outcome shape, [`CommandOutcome`] (built by [`Job::outcome`]).
//!
//! # Adding a backend
//! One new file here with a [`BackendSchema`] (its name and `[backend.NAME]` keys, which
//! policies are checked against at load) and an `impl Backend`, and one [`Registration`] line
//! in [`REGISTRY`]. Nothing else matches on backends: the executor picks the first backend of
//! a profile that it provides, by name.
//!
//! # The operations
//! - [`Backend::prepare`]: set up what the job's session needs on this backend (start its
//!   container, open a connection); idempotent, called before every run and background start.
//!   A failure here is an error, never a reason to try another backend.
//! - [`Backend::run`]: run to completion with captured, capped output; honour the timeout and
//!   kill everything on cancellation.
//! - [`Backend::start_background`]: start in the executor's [`ProcessTable`], when the backend
//!   can.
//! - [`Backend::attached`]: a local process with the caller's own stdio (`talaria sandbox
//!   run`), when the backend can give one.
//! - [`Backend::end_session`]: release everything kept for a session.

pub mod landlock;
pub mod oci;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use talaria_bus::exec::CommandOutcome;
use talaria_core::SessionId;
use talaria_policy::{BackendSchema, BackendSettings};
use talaria_sandbox::spec::{NetworkRules, SandboxSpec};
use tokio_util::sync::CancellationToken;

use crate::background::{BackgroundError, ProcessId, ProcessTable};
use crate::process::{Finished, ProcessError};

pub use landlock::LandlockBackend;
pub use oci::OciBackend;

/// Every backend this build has. Policies are loaded against their schemas, and
/// [`crate::setup::standard`] asks each one whether it is provided on this host.
pub static REGISTRY: &[Registration] = &[landlock::REGISTRATION, oci::REGISTRATION];

/// One backend of this build.
#[derive(Debug, Clone, Copy)]
pub struct Registration {
    /// Its name and settings, as policies may use them.
    pub schema: &'static BackendSchema,
    /// The backend as `talaria-executord` and `talaria chat` set it up on this host; `None`
    /// when it is not provided here (profiles listing it then use their next backend).
    pub standard: fn(&Host<'_>) -> Option<Arc<dyn Backend>>,
}

/// What a backend may use to set itself up in a standard executor.
#[derive(Debug, Clone, Copy)]
pub struct Host<'a> {
    /// The running binary, which carries the helper modes (`__sandbox`, `__oci-helper`).
    pub this_binary: &'a Path,
    /// The Talaria home: never reachable from a sandbox, so backend state may live there.
    pub talaria_home: &'a Path,
}

/// The schemas of every registered backend, for [`talaria_policy::PolicySet::load`].
pub fn schemas() -> Vec<&'static BackendSchema> {
    REGISTRY.iter().map(|r| r.schema).collect()
}

/// How to start a helper process: a standalone binary (`talaria-sandbox`), or a multi-call
/// binary with the leading arguments that select its helper mode (`talaria __sandbox`).
#[derive(Debug, Clone)]
pub struct HelperCommand {
    pub program: PathBuf,
    pub args: Vec<OsString>,
}

/// One command ready for a backend: the policy has been applied, the command approved and
/// resolved. Owned, so a backend can move it into a task or send it elsewhere.
#[derive(Debug, Clone)]
pub struct Job {
    pub session: SessionId,
    /// The profile it runs under, after narrowing (reported back in the outcome).
    pub profile: String,
    /// What confines it: argv, cwd, environment, filesystem, network, namespaces, limits.
    pub spec: SandboxSpec,
    /// This backend's `[backend.NAME]` settings from the profile, resolved.
    pub settings: BackendSettings,
    /// The session's workspace (`${workspace}`).
    pub workspace: PathBuf,
    /// The session's scratch directory (`${tmp}`), created private to the executor's user.
    pub scratch: PathBuf,
    pub stdin: Option<Vec<u8>>,
    /// Wall time: the shorter of the profile's and the request's.
    pub timeout: Duration,
    /// Bytes of stdout (and, separately, stderr) to keep: the smaller of the profile's and the
    /// request's.
    pub output_limit: usize,
    /// The command as the model wrote it (what background listings show).
    pub command_line: String,
}

impl Job {
    /// The program, for error messages.
    pub fn program(&self) -> &str {
        self.spec.argv.first().map_or("", String::as_str)
    }

    /// Whether the command may reach a network under its spec. A backend that knows better
    /// (it adds or removes network itself) says so in its outcome instead.
    pub fn networked(&self) -> bool {
        !matches!(self.spec.network, NetworkRules::Off)
    }

    /// The outcome of this job, run by `backend`.
    pub fn outcome(&self, backend: &str, finished: Finished) -> CommandOutcome {
        let mut stderr = explain_denials(finished.stderr);
        let threshold = talaria_sandbox::spec::output_flood_threshold(self.output_limit);
        if finished.dropped_bytes > threshold {
            if !stderr.is_empty() && !stderr.ends_with('\n') {
                stderr.push('\n');
            }
            stderr.push_str(&format!(
                "talaria: output limit exceeded: the command wrote more than {threshold} bytes beyond the {} kept (limits.output); stopped reading and killed it\n",
                self.output_limit
            ));
        }
        CommandOutcome {
            stdout: finished.stdout,
            stderr,
            exit: finished.exit,
            timed_out: finished.timed_out,
            dropped_bytes: finished.dropped_bytes,
            duration: finished.duration,
            profile: self.profile.clone(),
            backend: backend.to_owned(),
            networked: self.networked(),
        }
    }
}

/// What the sandbox's `EPERM` rules are, told once after a command's own complaint. A seccomp
/// filter can only answer with an errno, so the program says "Operation not permitted" and the
/// person needs the rule's name to tell the sandbox from a real permission problem.
pub const EPERM_RULES_NOTE: &str = "talaria: \"Operation not permitted\" may be the sandbox: \
setuid bits are not allowed in the sandbox (chmod or creating files with mode 4000 or 2000), \
nor are mount, ptrace, new namespaces or the kernel keyring";

/// `stderr` with [`EPERM_RULES_NOTE`] appended when the command met `EPERM` (by the message
/// every libc prints for it).
fn explain_denials(mut stderr: String) -> String {
    if stderr.contains("Operation not permitted") && !stderr.contains(EPERM_RULES_NOTE) {
        if !stderr.is_empty() && !stderr.ends_with('\n') {
            stderr.push('\n');
        }
        stderr.push_str(EPERM_RULES_NOTE);
        stderr.push('\n');
    }
    stderr
}

/// Why a backend did not run a job.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// It could not set the confinement up, or the job asks for something it cannot enforce:
    /// nothing ran. Never a reason to try a weaker backend.
    #[error("{0}")]
    Refused(String),
    /// It does not offer this operation at all.
    #[error("this backend cannot run {what}")]
    Unsupported { what: &'static str },
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error(transparent)]
    Background(#[from] BackgroundError),
}

/// Where commands run. See the module documentation for the contract.
#[async_trait]
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// Its name and settings; the name is what profiles list and outcomes report.
    fn schema(&self) -> &'static BackendSchema;

    /// The name profiles use.
    fn name(&self) -> &'static str {
        self.schema().name
    }

    /// Set up what `job`'s session needs here. Idempotent; the default has nothing to do.
    ///
    /// # Errors
    /// [`BackendError::Refused`] when the backend cannot be set up for it.
    async fn prepare(&self, _job: &Job) -> Result<(), BackendError> {
        Ok(())
    }

    /// Run `job` to completion. A command that runs and fails is not an error.
    ///
    /// # Errors
    /// [`BackendError::Refused`] when the confinement could not be set up (nothing ran),
    /// [`BackendError::Process`] when it could not start or `cancel` fired (everything it
    /// started has been killed by then).
    async fn run(
        &self,
        job: Job,
        cancel: &CancellationToken,
    ) -> Result<CommandOutcome, BackendError>;

    /// Start `job` in the background in `table`.
    ///
    /// # Errors
    /// [`BackendError::Unsupported`] by default.
    fn start_background(
        &self,
        _job: Job,
        _table: &ProcessTable,
    ) -> Result<ProcessId, BackendError> {
        Err(BackendError::Unsupported {
            what: "background processes",
        })
    }

    /// A local process running `job` that the caller starts with its own stdin, stdout and
    /// stderr (an interactive `talaria sandbox run`); the caller enforces the timeout.
    ///
    /// # Errors
    /// [`BackendError::Unsupported`] by default: the caller runs the job captured instead.
    fn attached(&self, _job: &Job) -> Result<tokio::process::Command, BackendError> {
        Err(BackendError::Unsupported {
            what: "a command with the terminal's stdio",
        })
    }

    /// The session is over: release what this backend kept for it. The default keeps nothing.
    fn end_session(&self, _session: &str) {}
}

/// A session id as a file name: anything but `[A-Za-z0-9_-]` becomes `_`.
pub(crate) fn file_name_of(session: &str) -> String {
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
