//! Running one process to completion: bounded output, a timeout and cancellation that kill the
//! whole process group, and nothing left running afterwards.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

pub use talaria_core::ExitKind;

/// How a process ended, from its wait status.
pub(crate) fn exit_of(status: std::process::ExitStatus) -> ExitKind {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitKind::Code(code),
        (None, Some(sig)) => ExitKind::Signal(sig),
        (None, None) => ExitKind::Code(-1),
    }
}

/// What a finished process did.
#[derive(Debug, Clone)]
pub struct Finished {
    pub stdout: String,
    pub stderr: String,
    pub exit: ExitKind,
    pub timed_out: bool,
    /// Bytes dropped from the middle of stdout and stderr to stay within the output limit.
    pub dropped_bytes: u64,
    pub duration: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
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

/// Run `command` (already configured with program, arguments, environment and working
/// directory) in its own process group. stdout and stderr are kept up to `output_limit` bytes
/// each (head and tail); a stream that floods past
/// [`output_flood_threshold`](talaria_sandbox::spec::output_flood_threshold) is no longer read
/// and the group is killed. On timeout, on cancellation and after the command exits, the whole
/// group is killed, so a `sleep 100 &` cannot outlive the call.
///
/// # Errors
/// [`ProcessError::Spawn`] when it cannot start, [`ProcessError::Cancelled`] when `cancel`
/// fired (the group has been killed by then).
pub async fn run_to_completion(
    mut command: tokio::process::Command,
    program: &str,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
    output_limit: usize,
    cancel: &CancellationToken,
) -> Result<Finished, ProcessError> {
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let started = Instant::now();
    let mut child = command.spawn().map_err(|source| ProcessError::Spawn {
        program: program.to_owned(),
        source,
    })?;
    let pgid = child.id().and_then(|id| i32::try_from(id).ok());
    let io_err = |source| ProcessError::Io {
        program: program.to_owned(),
        source,
    };
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        tokio::spawn(async move {
            // A command that does not read its input closes the pipe early; that is its
            // business, not an error of ours.
            let _ = pipe.write_all(&input).await;
        });
    }
    let flood = CancellationToken::new();
    let stdout = child
        .stdout
        .take()
        .map(|s| tokio::spawn(read_capped(s, output_limit, flood.clone())));
    let stderr = child
        .stderr
        .take()
        .map(|s| tokio::spawn(read_capped(s, output_limit, flood.clone())));

    let mut timed_out = false;
    let status = tokio::select! {
        status = child.wait() => status.map_err(io_err)?,
        () = tokio::time::sleep(timeout) => {
            timed_out = true;
            kill_group(pgid);
            child.wait().await.map_err(io_err)?
        }
        () = cancel.cancelled() => {
            kill_group(pgid);
            let _ = child.wait().await;
            return Err(ProcessError::Cancelled);
        }
        () = flood.cancelled() => {
            // Nobody reads its output any more: it would block on a full pipe until the timeout.
            kill_group(pgid);
            child.wait().await.map_err(io_err)?
        }
    };
    kill_group(pgid);
    let out = collect(stdout).await.map_err(io_err)?;
    let err = collect(stderr).await.map_err(io_err)?;
    Ok(Finished {
        dropped_bytes: out.dropped + err.dropped,
        stdout: out.into_string(),
        stderr: err.into_string(),
        exit: exit_of(status),
        timed_out,
        duration: started.elapsed(),
    })
}

/// The output a reader kept; its pipe closes here, after the group was killed.
async fn collect<R>(
    handle: Option<tokio::task::JoinHandle<std::io::Result<(Capped, R)>>>,
) -> std::io::Result<Capped> {
    match handle {
        Some(h) => h
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
            .map(|(capped, _pipe)| capped),
        None => Ok(Capped::default()),
    }
}

/// SIGKILL a process group. ESRCH (already gone) is fine.
pub(crate) fn kill_group(pgid: Option<i32>) {
    if let Some(pgid) = pgid.filter(|p| *p > 1) {
        // SAFETY: kill(2) with a negative pid signals a process group we created with
        // process_group(0); it has no memory-safety preconditions.
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

/// Reads `reader` to its end, keeping head and tail within `limit`; past the flood threshold it
/// stops reading and cancels `flood`.
/// The reader comes back with the output, so a pipe nobody reads any more stays open until the
/// group has been killed: closing it early would let the command carry on past `SIGPIPE`.
async fn read_capped<R: AsyncRead + Unpin>(
    mut reader: R,
    limit: usize,
    flood: CancellationToken,
) -> std::io::Result<(Capped, R)> {
    let threshold = talaria_sandbox::spec::output_flood_threshold(limit);
    let head_limit = limit / 2;
    let tail_limit = limit - head_limit;
    let mut capped = Capped::default();
    let mut buf = [0u8; 8192];
    loop {
        if capped.dropped > threshold {
            flood.cancel();
            return Ok((capped, reader));
        }
        let n = tokio::select! {
            n = reader.read(&mut buf) => n?,
            // The other stream flooded: the group is being killed; what is read so far is kept.
            () = flood.cancelled() => return Ok((capped, reader)),
        };
        if n == 0 {
            return Ok((capped, reader));
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

    fn sh(script: &str) -> tokio::process::Command {
        let mut c = tokio::process::Command::new("sh");
        c.arg("-c").arg(script);
        c
    }

    #[tokio::test]
    async fn runs_and_reports_status() {
        let out = run_to_completion(
            sh("echo hi; echo err >&2; exit 3"),
            "sh",
            None,
            Duration::from_secs(5),
            1000,
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
    async fn stdin_is_delivered() {
        let out = run_to_completion(
            sh("cat"),
            "sh",
            Some(b"fed".to_vec()),
            Duration::from_secs(5),
            1000,
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        assert_eq!(out.stdout, "fed");
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_group() {
        let marker = tempfile::NamedTempFile::new().unwrap();
        let script = format!(
            "(sleep 1; echo leaked > {}) & sleep 30",
            marker.path().display()
        );
        let out = run_to_completion(
            sh(&script),
            "sh",
            None,
            Duration::from_millis(200),
            1000,
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
        let out = run_to_completion(
            sh("printf 'A%.0s' $(seq 1000); printf 'Z%.0s' $(seq 1000)"),
            "sh",
            None,
            Duration::from_secs(5),
            100,
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
        let trigger = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            trigger.cancel();
        });
        let started = Instant::now();
        let err = run_to_completion(
            sh("sleep 30"),
            "sh",
            None,
            Duration::from_secs(60),
            100,
            &cancel,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, ProcessError::Cancelled));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_flood_is_stopped_and_killed_not_read_to_its_end() {
        let started = Instant::now();
        let out = run_to_completion(
            sh("head -c 4000000000 /dev/zero; echo finished >&2"),
            "sh",
            None,
            Duration::from_secs(60),
            1000,
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        let threshold = talaria_sandbox::spec::output_flood_threshold(1000);
        assert!(out.dropped_bytes > threshold && out.dropped_bytes < 64 * threshold);
        assert_eq!(out.exit, ExitKind::Signal(libc::SIGKILL));
        assert!(!out.stderr.contains("finished"));
        assert!(started.elapsed() < Duration::from_secs(30));
    }
}
