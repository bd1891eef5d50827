//! `talaria-oci-helper`: one per agent session, a long-lived, single-threaded child of the
//! executor that owns the session's container and runs commands in it (protocol:
//! [`crate::protocol`]).
//!
//! It must stay single-threaded: libcontainer forks and runs Rust code in the children, and the
//! helper switches network namespaces with `setns`. It must never leave a container running:
//! on `shutdown`, end of file on stdin (the executor died), `SIGTERM`/`SIGINT`/`SIGHUP`, and a
//! broken stdout it kills and deletes the container and removes its state directory; after a
//! `SIGKILL` the container's init dies with it (`PR_SET_PDEATHSIG`) and the next helper on the
//! same state root removes what is left (see [`crate::state`]).

use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::PathBuf;

use crate::capture::{Interruption, Outcome, Watch};
use crate::container::{self, ContainerError, SessionContainer};
use crate::protocol::{ContainerUse, Request, Response, RunFailure, RunReport, RunRequest};
use crate::state::{StateDir, StateError};
use crate::sys;

/// A request line longer than this is refused (stdin payloads are base64 in the line).
const MAX_LINE: usize = 256 << 20;

/// Command-line arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelperArgs {
    /// This helper's own state directory.
    pub state: PathBuf,
    /// Where unpacked images are cached; default `<state>/images` (gone with the state).
    pub images: Option<PathBuf>,
}

impl HelperArgs {
    /// Parse `--state DIR [--images DIR]`.
    ///
    /// # Errors
    /// A usage message.
    pub fn parse(args: impl IntoIterator<Item = std::ffi::OsString>) -> Result<Self, String> {
        let mut state = None;
        let mut images = None;
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let slot = match arg.to_str() {
                Some("--state") => &mut state,
                Some("--images") => &mut images,
                _ => return Err(format!("unexpected argument {}", arg.to_string_lossy())),
            };
            let value = args
                .next()
                .ok_or_else(|| format!("{} needs a directory", arg.to_string_lossy()))?;
            *slot = Some(PathBuf::from(value));
        }
        let state = state.ok_or("usage: talaria-oci-helper --state DIR [--images DIR]")?;
        if !state.is_absolute() || images.as_ref().is_some_and(|i| !i.is_absolute()) {
            return Err("--state and --images take absolute paths".to_owned());
        }
        Ok(Self { state, images })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cannot set up signal handling: {0}")]
    Signals(#[source] std::io::Error),
}

/// Why the serve loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Shutdown,
    EndOfInput,
    Signal(i32),
    OutputClosed,
}

/// The helper's whole command line, for `talaria-oci-helper` and for multi-call binaries
/// (`talaria __oci-helper …`): parse `args` (without the program name), serve, and return the
/// exit status (2 for usage errors, 125 when the helper cannot serve). Call it before any thread
/// or async runtime exists: containers are created by forking.
pub fn main_with_args(args: impl IntoIterator<Item = std::ffi::OsString>) -> u8 {
    // stdout is the protocol; logs go to stderr only. libcgroups warns about every cgroup v1
    // controller the host lacks, on every container.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TALARIA_OCI_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,libcgroups=error")),
        )
        .try_init();
    let args = match HelperArgs::parse(args) {
        Ok(args) => args,
        Err(usage) => {
            eprintln!("talaria-oci-helper: {usage}");
            return 2;
        }
    };
    match serve(&args) {
        Ok(_) => 0,
        Err(e) => {
            eprintln!("talaria-oci-helper: {e}");
            125
        }
    }
}

/// Serve requests on stdin until told to stop, then clean up. Returns the exit code.
///
/// # Errors
/// When the state directory cannot be taken or signals cannot be set up (nothing was started).
pub fn serve(args: &HelperArgs) -> Result<i32, HelperError> {
    let signals = sys::termination_signalfd().map_err(HelperError::Signals)?;
    let images = args
        .images
        .clone()
        .unwrap_or_else(|| args.state.join("images"));
    let store = StateDir::open(&args.state, &images)?;
    let stdin = std::io::stdin();
    let mut server = Server {
        store: &store,
        session: None,
        watch: Watch {
            control: Some(stdin.as_fd()),
            signals: Some(signals.as_fd()),
        },
    };
    let stop = server.serve_lines(stdin.as_fd(), signals.as_fd());
    tracing::debug!(?stop, "helper stopping");
    if let Some(session) = server.session.take() {
        session.destroy();
    }
    store.remove();
    Ok(0)
}

struct Server<'a> {
    store: &'a StateDir,
    session: Option<SessionContainer>,
    watch: Watch<'a>,
}

impl Server<'_> {
    fn serve_lines(&mut self, input: BorrowedFd<'_>, signals: BorrowedFd<'_>) -> Stop {
        let mut pending: Vec<u8> = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let mut fds = [
                sys::pollfd(std::os::fd::AsRawFd::as_raw_fd(&input), libc::POLLIN),
                sys::pollfd(std::os::fd::AsRawFd::as_raw_fd(&signals), libc::POLLIN),
            ];
            if sys::poll(&mut fds, -1).is_err() {
                return Stop::EndOfInput;
            }
            if fds[1].revents != 0 {
                return Stop::Signal(sys::read_signal(signals).unwrap_or(libc::SIGTERM));
            }
            if fds[0].revents == 0 {
                continue;
            }
            let n = match sys::read(input, &mut buf) {
                Ok(0) | Err(_) => return Stop::EndOfInput,
                Ok(n) => n,
            };
            pending.extend_from_slice(&buf[..n]);
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                // With more requests queued, the caller is alive or closed its end after
                // writing them (a script): either way the queued requests are served, so the
                // hang-up must not abandon this one.
                let queued = !pending.is_empty();
                if let Some(stop) = self.handle_line(&line, queued) {
                    return stop;
                }
            }
            if pending.len() > MAX_LINE {
                pending.clear();
                let failure = Response::Failure(RunFailure {
                    id: None,
                    error: format!("request longer than {MAX_LINE} bytes"),
                });
                if respond(&failure).is_err() {
                    return Stop::OutputClosed;
                }
            }
        }
    }

    fn handle_line(&mut self, line: &[u8], queued: bool) -> Option<Stop> {
        let text = line.trim_ascii();
        if text.is_empty() {
            return None;
        }
        let (response, stop) = match serde_json::from_slice::<Request>(text) {
            Ok(Request::Shutdown) => return Some(Stop::Shutdown),
            Ok(Request::Run(run)) => match self.run(&run, queued) {
                Ok(Ok(report)) => (Response::Report(report), None),
                Ok(Err(interruption)) => {
                    let stop = match interruption {
                        Interruption::Hangup => Stop::EndOfInput,
                        Interruption::Signal(s) => Stop::Signal(s),
                    };
                    (
                        Response::Failure(RunFailure {
                            id: Some(run.id),
                            error: "the helper is shutting down; the command was killed".to_owned(),
                        }),
                        Some(stop),
                    )
                }
                Err(error) => (
                    Response::Failure(RunFailure {
                        id: Some(run.id),
                        error,
                    }),
                    None,
                ),
            },
            Err(e) => (
                Response::Failure(RunFailure {
                    id: None,
                    error: format!("not a valid request: {e}"),
                }),
                None,
            ),
        };
        if respond(&response).is_err() {
            return Some(Stop::OutputClosed);
        }
        stop
    }

    /// Run one request. `Ok(Err(_))`: the run was interrupted and the helper must stop.
    fn run(
        &mut self,
        run: &RunRequest,
        queued: bool,
    ) -> Result<Result<RunReport, Interruption>, String> {
        let command = run.command().map_err(|e| e.to_string())?;
        let watch = Watch {
            control: if queued { None } else { self.watch.control },
            signals: self.watch.signals,
        };
        if run.fresh {
            return match container::run_fresh(self.store, &run.container, &command, watch) {
                Ok(Outcome::Finished(f)) => Ok(Ok(RunReport::new(run.id, &f, ContainerUse::Fresh))),
                Ok(Outcome::Interrupted(i)) => Ok(Err(i)),
                Err(e) => Err(e.to_string()),
            };
        }
        let reusable = self
            .session
            .as_mut()
            .is_some_and(|s| s.plan() == &run.container && s.is_alive());
        let mut used = ContainerUse::Reused;
        if !reusable {
            if let Some(old) = self.session.take() {
                old.destroy();
            }
            self.session = Some(
                SessionContainer::create(self.store, &run.container).map_err(|e| describe(&e))?,
            );
            used = ContainerUse::Created;
        }
        let Some(session) = self.session.as_mut() else {
            return Err("the session container is gone".to_owned());
        };
        match session.run(self.store, &command, watch) {
            Ok(Outcome::Finished(f)) => Ok(Ok(RunReport::new(run.id, &f, used))),
            Ok(Outcome::Interrupted(i)) => Ok(Err(i)),
            Err(e) => {
                // A container that cannot take commands any more is replaced next time.
                if !session.is_alive()
                    && let Some(dead) = self.session.take()
                {
                    dead.destroy();
                }
                Err(describe(&e))
            }
        }
    }
}

/// The error with its sources, which libcontainer keeps the useful part in.
fn describe(error: &ContainerError) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

fn respond(response: &Response) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(response).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let mut out = std::io::stdout().lock();
    out.write_all(&line)?;
    out.flush()
}
