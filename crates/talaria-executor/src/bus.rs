//! `org.talaria.Executor1`: the executor unit's D-Bus face. Requests arrive as `a{sv}`
//! dictionaries, are checked against the caller's bus credentials (only the agent's uid), and
//! run through the same [`Executor`] the in-process tools use. Output travels back as memory
//! file descriptors, never in message bodies.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use talaria_bus::{Error, VariantDict};
use talaria_daemon::{Activity, Callers};
use talaria_policy::Surface;
use tokio_util::sync::CancellationToken;
use zbus::message::Header;
use zbus::{Connection, OwnedFd, fdo, interface};

use crate::process::{ExitKind, ProcessError};
use crate::report::{ProcessOp, process_report};
use crate::service::{Executor, ExecutorError, RunRequest};

/// The most stdin or file content a request may carry (it is read into memory).
const MAX_INPUT_BYTES: u64 = 64 << 20;

/// Serves `org.talaria.Executor1` over an [`Executor`].
#[derive(Debug)]
pub struct ExecutorService {
    executor: Arc<Executor>,
    callers: Callers,
    activity: Activity,
    runs: Mutex<HashMap<String, CancellationToken>>,
}

impl ExecutorService {
    /// `callers`: who may call — the agent unit's uid only (see [`Callers::only`]).
    pub fn new(executor: Arc<Executor>, callers: Callers, activity: Activity) -> Self {
        Self {
            executor,
            callers,
            activity,
            runs: Mutex::new(HashMap::new()),
        }
    }

    async fn authorize(&self, connection: &Connection, header: &Header<'_>) -> Result<(), Error> {
        self.callers
            .check(connection, header, "org.talaria.Executor1")
            .await?;
        Ok(())
    }
}

/// Removes a run's cancellation token when the run ends, however it ends.
struct RunEntry<'a> {
    runs: &'a Mutex<HashMap<String, CancellationToken>>,
    id: Option<String>,
}

impl Drop for RunEntry<'_> {
    fn drop(&mut self) {
        if let (Some(id), Ok(mut runs)) = (&self.id, self.runs.lock()) {
            runs.remove(id);
        }
    }
}

#[interface(name = "org.talaria.Executor1")]
impl ExecutorService {
    #[zbus(out_args(
        "exit_code",
        "signal",
        "timed_out",
        "stdout",
        "stderr",
        "profile",
        "backend",
        "dropped_bytes",
        "duration_ms",
        "networked"
    ))]
    #[allow(clippy::type_complexity)]
    async fn run(
        &self,
        request: VariantDict,
        stdin: OwnedFd,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<
        (
            i32,
            i32,
            bool,
            OwnedFd,
            OwnedFd,
            String,
            String,
            u64,
            u64,
            bool,
        ),
        Error,
    > {
        let _busy = self.activity.busy();
        self.authorize(connection, &header).await?;
        let mut run = run_request(&request)?;
        let argv = strv(&request, "argv")?.unwrap_or_default();
        let program = argv
            .first()
            .cloned()
            .ok_or_else(|| invalid("argv (as) must name a program"))?;
        run.argv = argv;
        run.command_line = string(&request, "command_line")?;
        run.timeout = uint(&request, "timeout_ms")?.map(Duration::from_millis);
        run.cwd = string(&request, "cwd")?.map_or_else(|| run.workspace.clone(), PathBuf::from);
        if !run.cwd.is_dir() {
            return Err(Error::BadWorkdir(format!(
                "working directory {} does not exist or is not a directory",
                run.cwd.display()
            )));
        }
        let input = read_fd(stdin)?;
        run.stdin = (!input.is_empty()).then_some(input);
        let cancel = CancellationToken::new();
        let run_id = string(&request, "run_id")?;
        let _entry = RunEntry {
            runs: &self.runs,
            id: run_id.clone(),
        };
        if let (Some(id), Ok(mut runs)) = (run_id, self.runs.lock()) {
            runs.insert(id, cancel.clone());
        }
        let outcome = self
            .executor
            .run(run, &cancel)
            .await
            .map_err(|e| bus_error(&program, e))?;
        let finished = outcome.finished;
        let (exit_code, signal) = match finished.exit {
            ExitKind::Code(code) => (code, 0),
            ExitKind::Signal(signal) => (-1, signal),
        };
        Ok((
            exit_code,
            signal,
            finished.timed_out,
            memory_file("stdout", finished.stdout.as_bytes())?,
            memory_file("stderr", finished.stderr.as_bytes())?,
            outcome.profile,
            outcome.backend.name().to_owned(),
            finished.dropped_bytes,
            u64::try_from(finished.duration.as_millis()).unwrap_or(u64::MAX),
            outcome.networked,
        ))
    }

    async fn cancel(
        &self,
        run_id: String,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<(), Error> {
        self.authorize(connection, &header).await?;
        self.activity.touch();
        if let Some(token) = self
            .runs
            .lock()
            .ok()
            .and_then(|runs| runs.get(&run_id).cloned())
        {
            tracing::info!(%run_id, "run cancelled by the agent");
            token.cancel();
        }
        Ok(())
    }

    async fn write_file(
        &self,
        request: VariantDict,
        contents: OwnedFd,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<(), Error> {
        let _busy = self.activity.busy();
        self.authorize(connection, &header).await?;
        let mut run = run_request(&request)?;
        run.cwd = run.workspace.clone();
        let path = string(&request, "path")?.ok_or_else(|| invalid("path (s) is required"))?;
        let contents = read_fd(contents)?;
        self.executor
            .write_file(
                run,
                std::path::Path::new(&path),
                contents,
                &CancellationToken::new(),
            )
            .await
            .map_err(|e| bus_error("write_file", e))
    }

    #[zbus(out_args("process_id"))]
    async fn start_background(
        &self,
        request: VariantDict,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<String, Error> {
        let _busy = self.activity.busy();
        self.authorize(connection, &header).await?;
        let mut run = run_request(&request)?;
        run.argv = strv(&request, "argv")?.unwrap_or_default();
        let program = run
            .argv
            .first()
            .cloned()
            .ok_or_else(|| invalid("argv (as) must name a program"))?;
        run.command_line = string(&request, "command_line")?;
        run.cwd = string(&request, "cwd")?.map_or_else(|| run.workspace.clone(), PathBuf::from);
        if !run.cwd.is_dir() {
            return Err(Error::BadWorkdir(format!(
                "working directory {} does not exist or is not a directory",
                run.cwd.display()
            )));
        }
        self.executor
            .start_background(&run)
            .map(|id| id.to_string())
            .map_err(|e| bus_error(&program, e))
    }

    #[zbus(out_args("report"))]
    async fn process(
        &self,
        session: String,
        action: String,
        args: VariantDict,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<String, Error> {
        let _busy = self.activity.busy();
        self.authorize(connection, &header).await?;
        let id = || -> Result<String, Error> {
            string(&args, "id")?.ok_or_else(|| invalid(format!("{action} needs id (s)")))
        };
        let op = match action.as_str() {
            "list" => ProcessOp::List,
            "poll" => ProcessOp::Poll { id: id()? },
            "log" => ProcessOp::Log {
                id: id()?,
                offset: uint(&args, "offset")?.unwrap_or(0),
                limit: usize::try_from(uint(&args, "limit")?.unwrap_or(4000)).unwrap_or(usize::MAX),
            },
            "wait" => ProcessOp::Wait {
                id: id()?,
                timeout: Duration::from_millis(uint(&args, "timeout_ms")?.unwrap_or(30_000)),
            },
            "kill" => ProcessOp::Kill { id: id()? },
            "write" => ProcessOp::Write {
                id: id()?,
                data: string(&args, "data")?.unwrap_or_default(),
                close: boolean(&args, "close")?.unwrap_or(false),
            },
            other => {
                return Err(invalid(format!(
                    "unknown action {other:?}; expected list, poll, log, wait, kill or write"
                )));
            }
        };
        process_report(self.executor.background(), &session, op)
            .await
            .map_err(|e| Error::Refused(e.to_string()))
    }

    async fn end_session(
        &self,
        session: String,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<(), Error> {
        self.authorize(connection, &header).await?;
        self.activity.touch();
        self.executor.end_session(&session);
        Ok(())
    }
}

fn invalid(message: impl Into<String>) -> Error {
    fdo::Error::InvalidArgs(message.into()).into()
}

fn bus_error(program: &str, error: ExecutorError) -> Error {
    match error {
        ExecutorError::Process(ProcessError::Cancelled) => Error::Cancelled("interrupted".into()),
        ExecutorError::Process(other) => Error::Failed(format!("cannot run {program}: {other}")),
        ExecutorError::Workspace { .. } => Error::BadWorkdir(error.to_string()),
        refused => Error::Refused(refused.to_string()),
    }
}

/// The fields every request shares: tool, session, workspace, surface, profile.
fn run_request(request: &VariantDict) -> Result<RunRequest, Error> {
    let required = |key: &str| -> Result<String, Error> {
        string(request, key)?
            .filter(|v| !v.is_empty())
            .ok_or_else(|| invalid(format!("{key} (s) is required")))
    };
    let surface = match string(request, "surface")?.as_deref() {
        None | Some("owner") => Surface::Owner,
        Some("allowlisted" | "allowlisted_user") => Surface::AllowlistedUser,
        Some("webhook") => Surface::Webhook,
        Some(other) => {
            return Err(invalid(format!(
                "surface {other:?} is not owner, allowlisted or webhook"
            )));
        }
    };
    let workspace = PathBuf::from(required("workspace")?);
    Ok(RunRequest {
        tool: required("tool")?,
        session: required("session")?,
        surface,
        profile: string(request, "profile")?,
        argv: Vec::new(),
        command_line: None,
        cwd: workspace.clone(),
        workspace,
        stdin: None,
        timeout: None,
        approved: false,
    })
}

fn typed<T>(dict: &VariantDict, key: &str, signature: &str) -> Result<Option<T>, Error>
where
    T: TryFrom<zbus::OwnedVariant>,
{
    let Some(value) = dict.get(key) else {
        return Ok(None);
    };
    let wrong = || invalid(format!("{key} must be of type {signature}"));
    let owned = value.try_clone().map_err(|_| wrong())?;
    T::try_from(owned).map(Some).map_err(|_| wrong())
}

fn string(dict: &VariantDict, key: &str) -> Result<Option<String>, Error> {
    typed(dict, key, "s")
}

fn strv(dict: &VariantDict, key: &str) -> Result<Option<Vec<String>>, Error> {
    typed(dict, key, "as")
}

fn uint(dict: &VariantDict, key: &str) -> Result<Option<u64>, Error> {
    typed(dict, key, "t")
}

fn boolean(dict: &VariantDict, key: &str) -> Result<Option<bool>, Error> {
    typed(dict, key, "b")
}

fn read_fd(fd: OwnedFd) -> Result<Vec<u8>, Error> {
    talaria_bus::fd::read_all(fd, MAX_INPUT_BYTES)
        .map_err(|e| invalid(format!("cannot read the request's input: {e}")))
}

fn memory_file(name: &str, bytes: &[u8]) -> Result<OwnedFd, Error> {
    talaria_bus::fd::memory_file(name, bytes)
        .map_err(|e| Error::Failed(format!("cannot pass {name} back: {e}")))
}
