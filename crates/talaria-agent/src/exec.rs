//! The single seam through which every side-effecting tool call leaves the agent.
//!
//! Tools never spawn processes or write files themselves: they describe what they need as a
//! [`CommandSpec`] or a file write and hand it to a [`ToolExecutor`]. Today the only
//! implementation is [`LocalExecutor`], which runs plain child processes; the executor unit
//! (sandboxed, policy-driven) implements the same trait, so the agent loop does not change when
//! tools move behind it.
//!
//! `LocalExecutor` runs each command in its own process group and kills the whole group on
//! timeout, on cancellation and after the command exits, so nothing a tool started outlives the
//! call. It scrubs secrets (API keys, tokens) from the child's environment.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use talaria_core::SessionId;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// Who asks: the tool and the session, so an executor can choose and log a policy.
#[derive(Debug, Clone)]
pub struct ExecOrigin {
    pub tool: String,
    pub session: SessionId,
}

/// A command to run to completion.
#[derive(Debug, Clone)]
pub struct CommandSpec {
    pub program: String,
    pub args: Vec<String>,
    pub cwd: PathBuf,
    pub stdin: Option<Vec<u8>>,
    pub timeout: Duration,
    /// Bytes of stdout (and, separately, stderr) kept: the head and the tail, the middle dropped.
    pub output_limit: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    Code(i32),
    Signal(i32),
}

/// What a finished command did.
#[derive(Debug, Clone)]
pub struct CommandOutcome {
    pub stdout: String,
    pub stderr: String,
    pub exit: ExitKind,
    pub timed_out: bool,
    /// Bytes dropped from the middle of stdout and stderr because of `output_limit`.
    pub dropped_bytes: u64,
    pub duration: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("command not found: {program}")]
    NotFound { program: String },
    #[error("working directory {path} does not exist or is not a directory")]
    BadWorkdir { path: PathBuf },
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("i/o error while running {program}: {source}")]
    Io {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("interrupted")]
    Cancelled,
}

/// Runs side-effecting tool work. Implementations must kill everything they started when
/// `cancel` fires and return [`ExecError::Cancelled`].
#[async_trait]
pub trait ToolExecutor: Send + Sync + std::fmt::Debug {
    /// Run a command to completion.
    ///
    /// # Errors
    /// [`ExecError`] when the command cannot be started or is cancelled. A command that runs and
    /// fails is not an error: its exit status is in the outcome.
    async fn run(
        &self,
        origin: &ExecOrigin,
        spec: CommandSpec,
        cancel: &CancellationToken,
    ) -> Result<CommandOutcome, ExecError>;

    /// Create or replace a file with `contents`, creating parent directories.
    ///
    /// # Errors
    /// [`ExecError::Write`] naming the path.
    async fn write_file(
        &self,
        origin: &ExecOrigin,
        path: &Path,
        contents: &[u8],
    ) -> Result<(), ExecError>;
}

/// Plain child processes on the host, unconfined. Replaced by the sandboxing executor.
#[derive(Debug, Default)]
pub struct LocalExecutor;

/// Environment variables whose names look like credentials are never passed to tools.
fn is_secret_var(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    upper.starts_with("TALARIA_")
        || [
            "KEY",
            "TOKEN",
            "SECRET",
            "PASSWORD",
            "PASSWD",
            "CREDENTIAL",
            "COOKIE",
            "AUTH",
        ]
        .iter()
        .any(|needle| upper.contains(needle))
}

#[async_trait]
impl ToolExecutor for LocalExecutor {
    async fn run(
        &self,
        origin: &ExecOrigin,
        spec: CommandSpec,
        cancel: &CancellationToken,
    ) -> Result<CommandOutcome, ExecError> {
        if !spec.cwd.is_dir() {
            return Err(ExecError::BadWorkdir { path: spec.cwd });
        }
        let mut command = tokio::process::Command::new(&spec.program);
        command
            .args(&spec.args)
            .current_dir(&spec.cwd)
            .env_clear()
            .envs(std::env::vars().filter(|(k, _)| !is_secret_var(k)))
            .stdin(if spec.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let started = Instant::now();
        let mut child = command.spawn().map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => ExecError::NotFound {
                program: spec.program.clone(),
            },
            _ => ExecError::Spawn {
                program: spec.program.clone(),
                source,
            },
        })?;
        let pgid = child.id().and_then(|id| i32::try_from(id).ok());
        tracing::debug!(tool = %origin.tool, session = %origin.session, program = %spec.program, ?pgid, "tool process started");
        let io_err = |source| ExecError::Io {
            program: spec.program.clone(),
            source,
        };

        if let (Some(input), Some(mut stdin)) = (spec.stdin.clone(), child.stdin.take()) {
            tokio::spawn(async move {
                // A command that does not read its input closes the pipe early; that is its
                // business, not an error of ours.
                let _ = stdin.write_all(&input).await;
            });
        }
        let stdout = child
            .stdout
            .take()
            .map(|s| tokio::spawn(read_capped(s, spec.output_limit)));
        let stderr = child
            .stderr
            .take()
            .map(|s| tokio::spawn(read_capped(s, spec.output_limit)));

        let mut timed_out = false;
        let status = tokio::select! {
            status = child.wait() => status.map_err(io_err)?,
            () = tokio::time::sleep(spec.timeout) => {
                timed_out = true;
                kill_group(pgid);
                child.wait().await.map_err(io_err)?
            }
            () = cancel.cancelled() => {
                kill_group(pgid);
                let _ = child.wait().await;
                return Err(ExecError::Cancelled);
            }
        };
        // Whatever the command left running in its group (`sleep 100 &`) would hold the output
        // pipes open and outlive the call.
        kill_group(pgid);

        let collect = |handle: Option<tokio::task::JoinHandle<std::io::Result<Capped>>>| async {
            match handle {
                Some(h) => h.await.unwrap_or_else(|e| Err(std::io::Error::other(e))),
                None => Ok(Capped::default()),
            }
        };
        let out = collect(stdout).await.map_err(io_err)?;
        let err = collect(stderr).await.map_err(io_err)?;

        use std::os::unix::process::ExitStatusExt;
        let exit = match (status.code(), status.signal()) {
            (Some(code), _) => ExitKind::Code(code),
            (None, Some(sig)) => ExitKind::Signal(sig),
            (None, None) => ExitKind::Code(-1),
        };
        Ok(CommandOutcome {
            dropped_bytes: out.dropped + err.dropped,
            stdout: out.into_string(),
            stderr: err.into_string(),
            exit,
            timed_out,
            duration: started.elapsed(),
        })
    }

    async fn write_file(
        &self,
        _origin: &ExecOrigin,
        path: &Path,
        contents: &[u8],
    ) -> Result<(), ExecError> {
        let write_err = |source| ExecError::Write {
            path: path.to_owned(),
            source,
        };
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(write_err)?;
        }
        tokio::fs::write(path, contents).await.map_err(write_err)
    }
}

fn kill_group(pgid: Option<i32>) {
    if let Some(pgid) = pgid.filter(|p| *p > 1) {
        // SAFETY: kill(2) with a negative pid signals the process group we created with
        // process_group(0); it has no memory-safety preconditions. ESRCH (already gone) is fine.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

/// Output kept within a byte budget: the first half and the most recent half.
#[derive(Debug, Default)]
struct Capped {
    head: Vec<u8>,
    tail: std::collections::VecDeque<u8>,
    dropped: u64,
}

impl Capped {
    fn into_string(self) -> String {
        let mut bytes = self.head;
        if self.dropped > 0 {
            bytes.extend_from_slice(
                format!("\n[... {} bytes of output omitted ...]\n", self.dropped).as_bytes(),
            );
        }
        bytes.extend(self.tail);
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

async fn read_capped(mut reader: impl AsyncRead + Unpin, limit: usize) -> std::io::Result<Capped> {
    let head_limit = limit / 2;
    let tail_limit = limit - head_limit;
    let mut capped = Capped::default();
    let mut buf = [0u8; 8192];
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            return Ok(capped);
        }
        let mut chunk = &buf[..n];
        let room = head_limit.saturating_sub(capped.head.len());
        let take = room.min(chunk.len());
        capped.head.extend_from_slice(&chunk[..take]);
        chunk = &chunk[take..];
        for &b in chunk {
            if tail_limit == 0 {
                capped.dropped += 1;
                continue;
            }
            if capped.tail.len() == tail_limit {
                capped.tail.pop_front();
                capped.dropped += 1;
            }
            capped.tail.push_back(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> ExecOrigin {
        ExecOrigin {
            tool: "terminal".into(),
            session: SessionId::parse("t").unwrap(),
        }
    }

    fn sh(script: &str, timeout: Duration, limit: usize) -> CommandSpec {
        CommandSpec {
            program: "sh".into(),
            args: vec!["-c".into(), script.into()],
            cwd: std::env::temp_dir(),
            stdin: None,
            timeout,
            output_limit: limit,
        }
    }

    #[tokio::test]
    async fn runs_and_reports_status() {
        let out = LocalExecutor
            .run(
                &origin(),
                sh(
                    "echo hi; echo err >&2; exit 3",
                    Duration::from_secs(5),
                    1000,
                ),
                &CancellationToken::new(),
            )
            .await
            .unwrap();
        assert_eq!(
            (out.stdout.as_str(), out.stderr.as_str(), out.exit),
            ("hi\n", "err\n", ExitKind::Code(3))
        );
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_group() {
        let marker = tempfile::NamedTempFile::new().unwrap();
        let script = format!(
            "(sleep 1; echo leaked > {}) & sleep 30",
            marker.path().display()
        );
        let out = LocalExecutor
            .run(
                &origin(),
                sh(&script, Duration::from_millis(200), 1000),
                &CancellationToken::new(),
            )
            .await
            .unwrap();
        assert!(out.timed_out);
        tokio::time::sleep(Duration::from_millis(1300)).await;
        assert_eq!(
            std::fs::read_to_string(marker.path()).unwrap(),
            "",
            "background child survived"
        );
    }

    #[tokio::test]
    async fn output_is_capped_head_and_tail() {
        let out = LocalExecutor
            .run(
                &origin(),
                sh(
                    "printf 'A%.0s' $(seq 1000); printf 'Z%.0s' $(seq 1000)",
                    Duration::from_secs(5),
                    100,
                ),
                &CancellationToken::new(),
            )
            .await
            .unwrap();
        assert!(out.stdout.starts_with(&"A".repeat(50)) && out.stdout.ends_with(&"Z".repeat(50)));
        assert_eq!(out.dropped_bytes, 1900);
    }

    #[tokio::test]
    async fn cancel_kills_and_reports() {
        let cancel = CancellationToken::new();
        let c2 = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            c2.cancel();
        });
        let err = LocalExecutor
            .run(
                &origin(),
                sh("sleep 30", Duration::from_secs(60), 100),
                &cancel,
            )
            .await
            .unwrap_err();
        assert!(matches!(err, ExecError::Cancelled));
    }

    #[test]
    fn secrets_are_recognised() {
        for v in [
            "OPENAI_API_KEY",
            "TALARIA_BASE_URL",
            "GITHUB_TOKEN",
            "AWS_SECRET_ACCESS_KEY",
        ] {
            assert!(is_secret_var(v), "{v}");
        }
        for v in ["PATH", "HOME", "LANG", "TERM"] {
            assert!(!is_secret_var(v), "{v}");
        }
    }
}
