//! `org.talaria.Executor1`: the executor unit's D-Bus face. Requests arrive as `a{sv}`
//! dictionaries, are checked against the caller's bus credentials (only the agent's uid),
//! decoded, and handed to the same [`SandboxedTools`] that `talaria chat` uses in-process — this
//! file only translates. Nobody can be asked for approval here, so a `prompt` rule is refused
//! with the way to get it approved. Output travels back as memory file descriptors, never in
//! message bodies.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use talaria_bus::dict::{DictError, get_bool, get_str, get_u64};
use talaria_bus::exec::wire::{self, WireError, keys};
use talaria_bus::exec::{ExecError, ExitKind, ProcessAction, ToolExecutor};
use talaria_bus::{Error, VariantDict};
use talaria_daemon::{Activity, Callers};
use tokio_util::sync::CancellationToken;
use zbus::message::Header;
use zbus::{Connection, OwnedFd, fdo, interface};

use crate::tools::SandboxedTools;

/// The most stdin or file content a request may carry (it is read into memory).
const MAX_INPUT_BYTES: u64 = 64 << 20;

/// Serves `org.talaria.Executor1` over [`SandboxedTools`].
#[derive(Debug)]
pub struct ExecutorService {
    tools: Arc<SandboxedTools>,
    callers: Callers,
    activity: Activity,
    runs: Mutex<HashMap<String, CancellationToken>>,
}

impl ExecutorService {
    /// `callers`: who may call — the agent unit's uid only (see [`Callers::only`]).
    pub fn new(tools: Arc<SandboxedTools>, callers: Callers, activity: Activity) -> Self {
        Self {
            tools,
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

/// Cancels a run when the connection that asked for it leaves the bus (the agent crashed or
/// was restarted): nobody is waiting for its result, so it is killed now instead of running on
/// to its time limit. Stops watching when dropped (the run ended).
fn watch_caller(
    connection: &Connection,
    caller: zbus::names::OwnedUniqueName,
    cancel: CancellationToken,
) -> AbortOnDrop {
    let connection = connection.clone();
    AbortOnDrop(tokio::spawn(async move {
        use futures_util::StreamExt;
        let gone = async {
            let bus = fdo::DBusProxy::new(&connection).await?;
            let mut changes = bus
                .receive_name_owner_changed_with_args(&[(0, caller.as_str())])
                .await?;
            // Subscribed first, then asked: a caller that left in between is not missed.
            let name = zbus::names::BusName::from(caller.as_ref());
            if bus.name_has_owner(name).await? {
                while let Some(change) = changes.next().await {
                    if change.args().is_ok_and(|a| a.new_owner().is_none()) {
                        break;
                    }
                }
            }
            Ok::<(), zbus::Error>(())
        };
        match gone.await {
            Ok(()) => {
                tracing::warn!(caller = %caller, "the caller left the bus mid-command; killing its run");
                cancel.cancel();
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot watch the caller; the run keeps its time limit")
            }
        }
    }))
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
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
        let (origin, mut command) = wire::decode_command(&request).map_err(wire_error)?;
        let input = read_fd(stdin)?;
        command.stdin = (!input.is_empty()).then_some(input);
        let cancel = CancellationToken::new();
        let run_id = get_str(&request, keys::RUN_ID).map_err(dict_error)?;
        let _entry = RunEntry {
            runs: &self.runs,
            id: run_id.clone(),
        };
        if let (Some(id), Ok(mut runs)) = (run_id, self.runs.lock()) {
            runs.insert(id, cancel.clone());
        }
        let _watch = header
            .sender()
            .map(|caller| watch_caller(connection, caller.to_owned().into(), cancel.clone()));
        let outcome = self
            .tools
            .run(&origin, command, &cancel)
            .await
            .map_err(bus_error)?;
        let (exit_code, signal) = match outcome.exit {
            ExitKind::Code(code) => (code, 0),
            ExitKind::Signal(signal) => (-1, signal),
        };
        Ok((
            exit_code,
            signal,
            outcome.timed_out,
            memory_file("stdout", outcome.stdout.as_bytes())?,
            memory_file("stderr", outcome.stderr.as_bytes())?,
            outcome.profile,
            outcome.backend,
            outcome.dropped_bytes,
            u64::try_from(outcome.duration.as_millis()).unwrap_or(u64::MAX),
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
        let origin = wire::decode_origin(&request).map_err(wire_error)?;
        let path = talaria_bus::dict::require_str(&request, keys::PATH).map_err(dict_error)?;
        let contents = read_fd(contents)?;
        let approved = get_bool(&request, keys::PROFILE_APPROVED)
            .map_err(dict_error)?
            .unwrap_or(false);
        let profile = get_str(&request, keys::PROFILE)
            .map_err(dict_error)?
            .filter(|p| !p.is_empty())
            .map(|name| (name, approved));
        self.tools
            .write_file_as(
                &origin,
                profile,
                std::path::Path::new(&path),
                &contents,
                &CancellationToken::new(),
            )
            .await
            .map_err(bus_error)
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
        let (origin, command) = wire::decode_command(&request).map_err(wire_error)?;
        self.tools
            .start_background(&origin, command)
            .await
            .map_err(bus_error)
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
            get_str(&args, "id")
                .map_err(dict_error)?
                .ok_or_else(|| invalid(format!("{action} needs id (s)")))
        };
        let uint = |key: &str| get_u64(&args, key).map_err(dict_error);
        let op = match action.as_str() {
            "list" => ProcessAction::List,
            "poll" => ProcessAction::Poll { id: id()? },
            "log" => ProcessAction::Log {
                id: id()?,
                offset: uint("offset")?.unwrap_or(0),
                limit: usize::try_from(uint("limit")?.unwrap_or(4000)).unwrap_or(usize::MAX),
            },
            "wait" => ProcessAction::Wait {
                id: id()?,
                timeout: Duration::from_millis(uint("timeout_ms")?.unwrap_or(30_000)),
            },
            "kill" => ProcessAction::Kill { id: id()? },
            "write" => ProcessAction::Write {
                id: id()?,
                data: get_str(&args, "data")
                    .map_err(dict_error)?
                    .unwrap_or_default(),
                close: get_bool(&args, "close")
                    .map_err(dict_error)?
                    .unwrap_or(false),
            },
            other => {
                return Err(invalid(format!(
                    "unknown action {other:?}; expected list, poll, log, wait, kill or write"
                )));
            }
        };
        self.tools.process_of(&session, op).await.map_err(bus_error)
    }

    async fn end_session(
        &self,
        session: String,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<(), Error> {
        self.authorize(connection, &header).await?;
        self.activity.touch();
        self.tools.end_session_of(&session);
        Ok(())
    }
}

fn invalid(message: impl Into<String>) -> Error {
    fdo::Error::InvalidArgs(message.into()).into()
}

/// A tool-executor failure as a D-Bus error; the agent's [`talaria_bus::exec::ExecutorClient`]
/// turns it back into the same [`ExecError`].
fn bus_error(error: ExecError) -> Error {
    match error {
        ExecError::Cancelled => Error::Cancelled("interrupted".into()),
        ExecError::Refused { message } => Error::Refused(message),
        bad @ ExecError::BadWorkdir { .. } => Error::BadWorkdir(bad.to_string()),
        failed @ (ExecError::Failed { .. }
        | ExecError::Unavailable { .. }
        | ExecError::Lost { .. }) => Error::Failed(failed.to_string()),
    }
}

fn dict_error(error: DictError) -> Error {
    invalid(error.to_string())
}

fn wire_error(error: WireError) -> Error {
    invalid(error.to_string())
}

fn read_fd(fd: OwnedFd) -> Result<Vec<u8>, Error> {
    talaria_bus::fd::read_all(fd, MAX_INPUT_BYTES)
        .map_err(|e| invalid(format!("cannot read the request's input: {e}")))
}

fn memory_file(name: &str, bytes: &[u8]) -> Result<OwnedFd, Error> {
    talaria_bus::fd::memory_file(name, bytes)
        .map_err(|e| Error::Failed(format!("cannot pass {name} back: {e}")))
}
