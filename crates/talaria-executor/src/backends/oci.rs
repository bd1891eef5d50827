//! The `oci` backend: one OCI container per session, from `backend.oci.rootfs`, kept by a
//! single-threaded `talaria-oci-helper` process (libcontainer forks, so it never runs inside
//! this async process) that execs each command of the session in it. The helper speaks JSON
//! lines on its stdin/stdout; ending the session stops it, and it deletes the container.
//!
//! Commands of one session run one at a time (the helper is sequential). Background processes
//! and the terminal's stdio are not offered: the helper captures output.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use talaria_bus::exec::CommandOutcome;
use talaria_oci::client::{ClientError, HelperConnection};
use talaria_oci::protocol::Exit;
use talaria_oci::{ContainerCommand, ContainerPlan};
use talaria_policy::{BackendSchema, SettingKind, SettingSpec};
use tokio_util::sync::CancellationToken;

use talaria_sandbox::fileops::{self, FileOp, FileOpError};

use super::{Backend, BackendError, HelperCommand, Host, Job, Registration, file_name_of};
use crate::process::{ExitKind, Finished, ProcessError};

/// Its name and settings.
pub static SCHEMA: BackendSchema = BackendSchema {
    name: "oci",
    settings: &[SettingSpec {
        key: "rootfs",
        kind: SettingKind::Path,
        required: true,
    }],
};

/// Provided by every standard executor: the helper is a mode of the running binary, and
/// container state lives in the Talaria home, which no sandbox can reach.
pub const REGISTRATION: Registration = Registration {
    schema: &SCHEMA,
    standard,
};

fn standard(host: &Host<'_>) -> Option<Arc<dyn Backend>> {
    Some(Arc::new(OciBackend::new(
        HelperCommand {
            program: host.this_binary.to_owned(),
            args: vec![crate::setup::OCI_HELPER_ARG.into()],
        },
        host.talaria_home.join("oci"),
    )))
}

/// How long a helper gets, beyond the command's own timeout, to report before it is presumed
/// stuck and terminated.
const GRACE: Duration = Duration::from_secs(30);

/// Session containers through `talaria-oci-helper`.
#[derive(Debug)]
pub struct OciBackend {
    /// The `talaria-oci-helper` binary (it gets `--state DIR --images DIR` appended).
    helper: HelperCommand,
    /// Parent of the per-session helper state directories (`<state_root>/<session>`) and of
    /// the unpacked-image cache (`<state_root>/.images`). Must not be inside any sandbox's
    /// roots.
    state_root: PathBuf,
    /// Each session's helper, started by its first command.
    sessions: Mutex<HashMap<String, Arc<Session>>>,
}

/// A session's helper. `pid` is kept outside the lock so `end_session` can stop a busy helper.
#[derive(Debug)]
struct Session {
    pid: Option<u32>,
    connection: tokio::sync::Mutex<HelperConnection>,
}

impl OciBackend {
    pub fn new(helper: HelperCommand, state_root: PathBuf) -> Self {
        Self {
            helper,
            state_root,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Session>>> {
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The session's helper, started on first use.
    fn session(&self, session: &str) -> Result<Arc<Session>, ClientError> {
        let mut sessions = self.sessions();
        if let Some(existing) = sessions.get(session) {
            return Ok(Arc::clone(existing));
        }
        let mut command = tokio::process::Command::new(&self.helper.program);
        command
            .args(&self.helper.args)
            .arg("--state")
            .arg(self.state_root.join(file_name_of(session)))
            .arg("--images")
            .arg(self.state_root.join(".images"))
            .env_clear()
            .current_dir("/");
        if let Some(filter) = std::env::var_os("TALARIA_OCI_LOG") {
            command.env("TALARIA_OCI_LOG", filter);
        }
        let connection = HelperConnection::spawn(command)?;
        let entry = Arc::new(Session {
            pid: connection.pid(),
            connection: tokio::sync::Mutex::new(connection),
        });
        sessions.insert(session.to_owned(), Arc::clone(&entry));
        Ok(entry)
    }

    /// Forget a session's helper and ask it to stop (it kills its command, deletes its
    /// container and exits); no-op if it was replaced meanwhile.
    fn stop(&self, session: &str, helper: &Arc<Session>) {
        let mut sessions = self.sessions();
        if sessions
            .get(session)
            .is_some_and(|current| Arc::ptr_eq(current, helper))
        {
            sessions.remove(session);
        }
        drop(sessions);
        if let Some(pid) = helper.pid {
            talaria_oci::client::terminate(pid);
        }
    }
}

#[async_trait]
impl Backend for OciBackend {
    fn schema(&self) -> &'static BackendSchema {
        &SCHEMA
    }

    /// Starts the session's helper (and so its container) if it is not running yet.
    async fn prepare(&self, job: &Job) -> Result<(), BackendError> {
        self.session(job.session.as_str())
            .map(drop)
            .map_err(|e| BackendError::Refused(e.to_string()))
    }

    async fn run(
        &self,
        job: Job,
        cancel: &CancellationToken,
    ) -> Result<CommandOutcome, BackendError> {
        let refused = BackendError::Refused;
        let Some(rootfs) = job.settings.path("rootfs") else {
            return Err(refused("the profile sets no backend.oci.rootfs".to_owned()));
        };
        let read = match &job.spec.builtin {
            None => None,
            Some(FileOp::Read { path, max_bytes }) => Some((
                fileops::normalize(path).map_err(|e| refused(e.to_string()))?,
                *max_bytes,
            )),
            // A walk needs the helper's own code, which the container does not hold, and
            // walking from the host would bypass the container: refused, never run elsewhere.
            Some(FileOp::Search(_)) => {
                return Err(BackendError::Unsupported {
                    what: "search_files (map it to a landlock profile in tools.toml, or search with the terminal: grep -rn)",
                });
            }
        };
        let session_id = job.session.as_str();
        let plan = ContainerPlan::from_spec(&job.spec, rootfs, &job.workspace, &job.scratch);
        let mut command = ContainerCommand::from_spec(
            &job.spec,
            job.stdin.clone(),
            job.timeout,
            job.output_limit,
        );
        if let Some((path, max_bytes)) = &read {
            command.argv = read_in_container(path, *max_bytes, &job.profile);
        }
        let session = self
            .session(session_id)
            .map_err(|e| refused(e.to_string()))?;
        let report = {
            let mut connection = session.connection.lock().await;
            tokio::select! {
                report = connection.run(&plan, &command, false) => report,
                () = cancel.cancelled() => {
                    self.stop(session_id, &session);
                    return Err(ProcessError::Cancelled.into());
                }
                () = tokio::time::sleep(job.timeout + GRACE) => {
                    self.stop(session_id, &session);
                    return Err(refused(format!(
                        "the container helper did not report within {}s; it was stopped",
                        (job.timeout + GRACE).as_secs()
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
                self.stop(session_id, &session);
                return Err(refused(e.to_string()));
            }
        };
        let text = |bytes: Result<Vec<u8>, _>| {
            bytes
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .map_err(|e| refused(format!("the container helper sent invalid output: {e}")))
        };
        let mut exit = match report.exit {
            Exit::Code(code) => ExitKind::Code(code),
            Exit::Signal(signal) => ExitKind::Signal(signal),
        };
        let mut stderr = text(report.stderr())?;
        let stdout = match &read {
            Some((path, max_bytes)) if exit == ExitKind::Code(0) => {
                let bytes = report.stdout().map_err(|e| {
                    refused(format!("the container helper sent invalid output: {e}"))
                })?;
                match read_answer(bytes, path, *max_bytes) {
                    Ok(json) => json,
                    Err(refusal) => {
                        // Refused like the local helper refuses: its exit status and line.
                        exit = ExitKind::Code(fileops::EXIT_FILE_REFUSED);
                        stderr = format!("{} {refusal}\n", fileops::REFUSAL_PREFIX);
                        String::new()
                    }
                }
            }
            _ => text(report.stdout())?,
        };
        let finished = Finished {
            stdout,
            stderr,
            exit,
            timed_out: report.timed_out,
            dropped_bytes: report.dropped,
            duration: Duration::from_millis(report.duration_ms),
        };
        tracing::debug!(container = ?report.container, "containerized command finished");
        Ok(job.outcome(SCHEMA.name, finished))
    }

    /// Stops the session's helper, which deletes the session's container.
    fn end_session(&self, session: &str) {
        let helper = self.sessions().remove(session);
        if let Some(pid) = helper.and_then(|h| h.pid) {
            talaria_oci::client::terminate(pid);
        }
    }
}

/// What `read_file` runs inside the container, where the Talaria helper does not exist: the
/// same refusals by name (`/proc`, `/sys`, `/dev`, missing, a directory, anything but a regular
/// file), then the size on the first line and at most `max_bytes` of the file. The container's
/// mounts are the profile's roots, so what it can open is what the profile lists; a file swapped
/// for a FIFO between the check and the read blocks until the command's timeout, never longer.
fn read_in_container(path: &std::path::Path, max_bytes: u64, profile: &str) -> Vec<String> {
    const SCRIPT: &str = r#"p=$1 max=$2 profile=$3
fail() { echo "talaria-file: \`$p\` $1" >&2; exit 2; }
case "$p" in
/proc|/proc/*) fail "is under /proc, which read tools never open or walk" ;;
/sys|/sys/*) fail "is under /sys, which read tools never open or walk" ;;
/dev|/dev/*) fail "is under /dev, which read tools never open or walk" ;;
esac
[ -e "$p" ] || fail "does not exist"
[ -d "$p" ] && fail "is a directory; use search_files or \`ls\` to list it"
[ -f "$p" ] || fail "is not a regular file: read tools read regular files only"
[ -r "$p" ] || fail "is not readable under profile $profile: permission denied"
size=$(wc -c < "$p") || fail "cannot be read under profile $profile"
echo $size
exec head -c "$max" -- "$p""#;
    vec![
        "/bin/sh".into(),
        "-c".into(),
        SCRIPT.into(),
        "talaria-read".into(),
        path.to_string_lossy().into_owned(),
        max_bytes.to_string(),
        profile.to_owned(),
    ]
}

/// The [`fileops::FileText`] JSON for what [`read_in_container`] printed, or why it is not an
/// answer (binary, not UTF-8, no size line).
fn read_answer(stdout: Vec<u8>, path: &std::path::Path, max_bytes: u64) -> Result<String, String> {
    let no_size = || {
        format!(
            "cannot read `{}`: the container's answer has no size",
            path.display()
        )
    };
    let newline = stdout
        .iter()
        .position(|b| *b == b'\n')
        .ok_or_else(no_size)?;
    let size = std::str::from_utf8(&stdout[..newline])
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .ok_or_else(no_size)?;
    let text = fileops::text_of(stdout[newline + 1..].to_vec(), size, path, max_bytes)
        .map_err(|e: FileOpError| e.to_string())?;
    serde_json::to_string(&text).map_err(|e| e.to_string())
}
