//! The caller's side of the helper protocol ([`crate::protocol`]), for async programs (the
//! executor): spawn a `talaria-oci-helper`, send runs, read reports. The helper is spawned, not
//! forked in-process, so this is safe to use inside a multi-threaded tokio runtime.

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

use crate::plan::{ContainerCommand, ContainerPlan};
use crate::protocol::{Request, Response, RunReport, RunRequest};

/// Lines of the helper's stderr kept to explain an unexpected exit.
const STDERR_LINES: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot start the OCI helper: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("the OCI helper stopped unexpectedly{}", tail(.stderr))]
    Gone { stderr: Vec<String> },
    #[error("the OCI helper sent an invalid response: {0}")]
    Protocol(String),
    /// The helper could not run the command (it did not run).
    #[error("{0}")]
    Refused(String),
}

fn tail(lines: &[String]) -> String {
    if lines.is_empty() {
        String::new()
    } else {
        format!("; its last words: {}", lines.join(" | "))
    }
}

/// A running helper and its pipes.
#[derive(Debug)]
pub struct HelperConnection {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: Arc<Mutex<VecDeque<String>>>,
    next_id: u64,
}

impl HelperConnection {
    /// Spawn the helper from `command` (program and arguments, including `--state`).
    ///
    /// # Errors
    /// [`ClientError::Spawn`].
    pub fn spawn(mut command: tokio::process::Command) -> Result<Self, ClientError> {
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Dropping the connection closes the helper's stdin, and that cleans up; a SIGKILL
            // would leave its container's state behind.
            .kill_on_drop(false);
        let mut child = command.spawn().map_err(ClientError::Spawn)?;
        let missing = || ClientError::Spawn(std::io::Error::other("helper pipes missing"));
        let stdin = child.stdin.take().ok_or_else(missing)?;
        let stdout = child.stdout.take().ok_or_else(missing)?;
        let stderr = child.stderr.take().ok_or_else(missing)?;
        let kept = Arc::new(Mutex::new(VecDeque::new()));
        let sink = Arc::clone(&kept);
        let pid = child.id();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::debug!(helper = ?pid, "{line}");
                if let Ok(mut kept) = sink.lock() {
                    if kept.len() == STDERR_LINES {
                        kept.pop_front();
                    }
                    kept.push_back(line);
                }
            }
        });
        Ok(Self {
            child,
            stdin: Some(stdin),
            stdout: BufReader::new(stdout).lines(),
            stderr: kept,
            next_id: 1,
        })
    }

    /// The helper's pid, while it runs.
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    fn gone(&self) -> ClientError {
        let stderr = self
            .stderr
            .lock()
            .map(|k| k.iter().cloned().collect())
            .unwrap_or_default();
        ClientError::Gone { stderr }
    }

    /// Run `command` in the session container described by `plan` (`fresh`: in a container of
    /// its own).
    ///
    /// # Errors
    /// [`ClientError::Refused`] when the helper could not run it; [`ClientError::Gone`] when the
    /// helper died; [`ClientError::Protocol`] on a malformed answer.
    pub async fn run(
        &mut self,
        plan: &ContainerPlan,
        command: &ContainerCommand,
        fresh: bool,
    ) -> Result<RunReport, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let request = Request::Run(Box::new(RunRequest::new(id, plan, command, fresh)));
        let mut line =
            serde_json::to_vec(&request).map_err(|e| ClientError::Protocol(e.to_string()))?;
        line.push(b'\n');
        let Some(stdin) = self.stdin.as_mut() else {
            return Err(self.gone());
        };
        if stdin.write_all(&line).await.is_err() || stdin.flush().await.is_err() {
            return Err(self.gone());
        }
        loop {
            let line = match self.stdout.next_line().await {
                Ok(Some(line)) => line,
                Ok(None) | Err(_) => return Err(self.gone()),
            };
            match serde_json::from_str::<Response>(&line) {
                Ok(Response::Report(report)) if report.id == id => return Ok(report),
                Ok(Response::Failure(failure)) if failure.id == Some(id) => {
                    return Err(ClientError::Refused(failure.error));
                }
                Ok(other) => tracing::debug!(?other, "skipping a response to another request"),
                Err(e) => return Err(ClientError::Protocol(format!("{e}: {line}"))),
            }
        }
    }

    /// Ask the helper to delete its container and exit, and wait for it (SIGKILL after
    /// `patience`).
    pub async fn shutdown(mut self, patience: std::time::Duration) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"{\"op\":\"shutdown\"}\n").await;
            let _ = stdin.flush().await;
        }
        if tokio::time::timeout(patience, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.start_kill();
            let _ = self.child.wait().await;
        }
    }
}

/// Send SIGTERM to a helper by pid (it kills its command, deletes its container and exits).
pub fn terminate(pid: u32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
}
