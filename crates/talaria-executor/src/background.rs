//! Background processes: started, then polled, read, fed and killed by id.
//!
//! Each process runs in its own process group; its stdout and stderr go, interleaved as they
//! arrive, into a bounded log (the oldest bytes are dropped first, and readers are told how
//! many). Ending a session or dropping the table kills everything it started.

use std::collections::{HashMap, VecDeque};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::process::{ExitKind, exit_of, kill_group};

/// Default bytes of output kept per background process.
pub const DEFAULT_LOG_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcessId(pub u64);

impl std::fmt::Display for ProcessId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "proc_{}", self.0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BackgroundError {
    #[error("no background process {0}")]
    NotFound(String),
    #[error("cannot start {label}: {source}")]
    Spawn {
        label: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{id} has exited; its stdin is closed")]
    StdinClosed { id: ProcessId },
    #[error("cannot write to the stdin of {id}: {source}")]
    Stdin {
        id: ProcessId,
        #[source]
        source: std::io::Error,
    },
}

/// A bounded log addressed by absolute byte offsets since the process started.
#[derive(Debug)]
struct OutputLog {
    bytes: VecDeque<u8>,
    capacity: usize,
    /// Absolute offset of `bytes[0]`.
    start: u64,
}

impl OutputLog {
    fn push(&mut self, chunk: &[u8]) {
        for &b in chunk {
            if self.bytes.len() == self.capacity {
                self.bytes.pop_front();
                self.start += 1;
            }
            self.bytes.push_back(b);
        }
    }

    fn end(&self) -> u64 {
        self.start + self.bytes.len() as u64
    }
}

/// A slice of a background process's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogChunk {
    pub text: String,
    /// Offset to pass next time to continue where this chunk ended.
    pub next_offset: u64,
    /// Bytes between the requested offset and the oldest byte still kept.
    pub dropped: u64,
}

/// A snapshot of a background process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    pub id: ProcessId,
    pub session: String,
    pub label: String,
    /// `None` while it runs.
    pub exit: Option<ExitKind>,
    pub running_for: Duration,
    pub output_bytes: u64,
}

#[derive(Debug)]
struct Entry {
    session: String,
    label: String,
    started: Instant,
    pgid: Option<i32>,
    stdin: tokio::sync::Mutex<Option<tokio::process::ChildStdin>>,
    log: Mutex<OutputLog>,
    exit: watch::Receiver<Option<ExitKind>>,
}

impl Entry {
    fn info(&self, id: ProcessId) -> ProcessInfo {
        ProcessInfo {
            id,
            session: self.session.clone(),
            label: self.label.clone(),
            exit: *self.exit.borrow(),
            running_for: self.started.elapsed(),
            output_bytes: self.log.lock().unwrap_or_else(|e| e.into_inner()).end(),
        }
    }
}

/// The background processes of one executor.
#[derive(Debug)]
pub struct ProcessTable {
    entries: Mutex<HashMap<ProcessId, Arc<Entry>>>,
    next: std::sync::atomic::AtomicU64,
    log_bytes: usize,
}

impl Default for ProcessTable {
    fn default() -> Self {
        Self::new(DEFAULT_LOG_BYTES)
    }
}

impl ProcessTable {
    pub fn new(log_bytes: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            next: std::sync::atomic::AtomicU64::new(1),
            log_bytes: log_bytes.max(1),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<ProcessId, Arc<Entry>>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, id: ProcessId) -> Result<Arc<Entry>, BackgroundError> {
        self.entries()
            .get(&id)
            .cloned()
            .ok_or_else(|| BackgroundError::NotFound(id.to_string()))
    }

    /// Start `command` (program, arguments, environment and directory already set) in the
    /// background for `session`.
    ///
    /// # Errors
    /// [`BackgroundError::Spawn`] when it cannot start.
    pub fn start(
        &self,
        session: &str,
        label: &str,
        mut command: tokio::process::Command,
    ) -> Result<ProcessId, BackgroundError> {
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|source| BackgroundError::Spawn {
            label: label.to_owned(),
            source,
        })?;
        let id = ProcessId(self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let (exit_tx, exit_rx) = watch::channel(None);
        let entry = Arc::new(Entry {
            session: session.to_owned(),
            label: label.to_owned(),
            started: Instant::now(),
            pgid: child.id().and_then(|p| i32::try_from(p).ok()),
            stdin: tokio::sync::Mutex::new(child.stdin.take()),
            log: Mutex::new(OutputLog {
                bytes: VecDeque::new(),
                capacity: self.log_bytes,
                start: 0,
            }),
            exit: exit_rx,
        });
        let readers: Vec<_> = [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn AsyncRead + Unpin + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn AsyncRead + Unpin + Send>),
        ]
        .into_iter()
        .flatten()
        .map(|reader| tokio::spawn(pump(reader, Arc::clone(&entry))))
        .collect();
        let pgid = entry.pgid;
        tokio::spawn(async move {
            let status = child.wait().await;
            // Whatever it left behind in its group would hold the pipes open.
            kill_group(pgid);
            for reader in readers {
                let _ = reader.await;
            }
            let exit = status.map_or(ExitKind::Code(-1), exit_of);
            let _ = exit_tx.send(Some(exit));
        });
        self.entries().insert(id, entry);
        tracing::debug!(%id, session, label, "background process started");
        Ok(id)
    }

    /// # Errors
    /// [`BackgroundError::NotFound`] for an unknown id.
    pub fn poll(&self, id: ProcessId) -> Result<ProcessInfo, BackgroundError> {
        Ok(self.get(id)?.info(id))
    }

    /// Processes of one session, or of all sessions when `session` is `None`.
    pub fn list(&self, session: Option<&str>) -> Vec<ProcessInfo> {
        let mut all: Vec<ProcessInfo> = self
            .entries()
            .iter()
            .filter(|(_, e)| session.is_none_or(|s| e.session == s))
            .map(|(id, e)| e.info(*id))
            .collect();
        all.sort_by_key(|p| p.id);
        all
    }

    /// Up to `limit` bytes of output starting at `offset` (0 = the beginning).
    ///
    /// # Errors
    /// [`BackgroundError::NotFound`] for an unknown id.
    pub fn read_log(
        &self,
        id: ProcessId,
        offset: u64,
        limit: usize,
    ) -> Result<LogChunk, BackgroundError> {
        let entry = self.get(id)?;
        let log = entry.log.lock().unwrap_or_else(|e| e.into_inner());
        let from = offset.max(log.start);
        let skip = usize::try_from(from - log.start).unwrap_or(usize::MAX);
        let bytes: Vec<u8> = log.bytes.iter().skip(skip).take(limit).copied().collect();
        Ok(LogChunk {
            next_offset: from + bytes.len() as u64,
            dropped: from - offset.min(from),
            text: String::from_utf8_lossy(&bytes).into_owned(),
        })
    }

    /// Write to the process's stdin; `close` closes it afterwards (EOF).
    ///
    /// # Errors
    /// Unknown id, an exited process, or a write error.
    pub async fn write_stdin(
        &self,
        id: ProcessId,
        data: &[u8],
        close: bool,
    ) -> Result<(), BackgroundError> {
        let entry = self.get(id)?;
        let mut stdin = entry.stdin.lock().await;
        let Some(pipe) = stdin.as_mut() else {
            return Err(BackgroundError::StdinClosed { id });
        };
        if entry.exit.borrow().is_some() {
            return Err(BackgroundError::StdinClosed { id });
        }
        pipe.write_all(data)
            .await
            .map_err(|source| BackgroundError::Stdin { id, source })?;
        pipe.flush()
            .await
            .map_err(|source| BackgroundError::Stdin { id, source })?;
        if close {
            *stdin = None;
        }
        Ok(())
    }

    /// Wait until the process exits or `timeout` passes; returns its state either way.
    ///
    /// # Errors
    /// [`BackgroundError::NotFound`] for an unknown id.
    pub async fn wait(
        &self,
        id: ProcessId,
        timeout: Duration,
    ) -> Result<ProcessInfo, BackgroundError> {
        let entry = self.get(id)?;
        let mut exit = entry.exit.clone();
        let _ = tokio::time::timeout(timeout, exit.wait_for(Option::is_some)).await;
        Ok(entry.info(id))
    }

    /// Kill the process and everything in its group; returns its final state.
    ///
    /// # Errors
    /// [`BackgroundError::NotFound`] for an unknown id.
    pub async fn kill(&self, id: ProcessId) -> Result<ProcessInfo, BackgroundError> {
        let entry = self.get(id)?;
        kill_group(entry.pgid);
        let mut exit = entry.exit.clone();
        let _ = tokio::time::timeout(Duration::from_secs(5), exit.wait_for(Option::is_some)).await;
        Ok(entry.info(id))
    }

    /// Kill every process of a session (the session ended or its turn was cancelled) and forget
    /// them. Returns how many were running.
    pub fn kill_session(&self, session: &str) -> usize {
        let mut entries = self.entries();
        let ids: Vec<ProcessId> = entries
            .iter()
            .filter(|(_, e)| e.session == session)
            .map(|(id, _)| *id)
            .collect();
        let mut running = 0;
        for id in ids {
            if let Some(entry) = entries.remove(&id) {
                if entry.exit.borrow().is_none() {
                    running += 1;
                }
                kill_group(entry.pgid);
            }
        }
        running
    }
}

impl Drop for ProcessTable {
    fn drop(&mut self) {
        for entry in self.entries().values() {
            kill_group(entry.pgid);
        }
    }
}

async fn pump(mut reader: Box<dyn AsyncRead + Unpin + Send>, entry: Arc<Entry>) {
    let mut buf = [0u8; 8192];
    while let Ok(n) = reader.read(&mut buf).await {
        if n == 0 {
            break;
        }
        entry
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(&buf[..n]);
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
    async fn start_poll_log_and_exit() {
        let table = ProcessTable::default();
        let id = table
            .start("s1", "echo", sh("echo one; echo two >&2; exit 4"))
            .unwrap();
        let info = table.wait(id, Duration::from_secs(5)).await.unwrap();
        assert_eq!(info.exit, Some(ExitKind::Code(4)));
        let log = table.read_log(id, 0, 100).unwrap();
        assert!(
            log.text.contains("one\n") && log.text.contains("two\n"),
            "{log:?}"
        );
        assert_eq!(log.next_offset, 8);
        assert_eq!(table.read_log(id, 8, 100).unwrap().text, "");
    }

    #[tokio::test]
    async fn stdin_feeds_an_interactive_process() {
        let table = ProcessTable::default();
        let id = table.start("s1", "cat", sh("cat")).unwrap();
        table.write_stdin(id, b"hello\n", false).await.unwrap();
        table.write_stdin(id, b"bye\n", true).await.unwrap();
        let info = table.wait(id, Duration::from_secs(5)).await.unwrap();
        assert_eq!(info.exit, Some(ExitKind::Code(0)));
        assert_eq!(table.read_log(id, 0, 100).unwrap().text, "hello\nbye\n");
        assert!(matches!(
            table.write_stdin(id, b"late", false).await,
            Err(BackgroundError::StdinClosed { .. })
        ));
    }

    #[tokio::test]
    async fn log_is_bounded_and_reports_drops() {
        let table = ProcessTable::new(100);
        let id = table.start("s1", "seq", sh("seq 1 1000")).unwrap();
        table.wait(id, Duration::from_secs(5)).await.unwrap();
        let chunk = table.read_log(id, 0, 1000).unwrap();
        assert_eq!(chunk.text.len(), 100);
        assert!(chunk.text.ends_with("1000\n"));
        assert_eq!(chunk.dropped, chunk.next_offset - 100);
    }

    #[tokio::test]
    async fn kill_stops_the_group_and_kill_session_forgets() {
        let table = ProcessTable::default();
        let id = table
            .start("s1", "sleeper", sh("sleep 30 & sleep 30"))
            .unwrap();
        let other = table.start("s2", "sleeper", sh("sleep 30")).unwrap();
        assert_eq!(table.poll(id).unwrap().exit, None);
        let info = table.kill(id).await.unwrap();
        assert_eq!(info.exit, Some(ExitKind::Signal(libc::SIGKILL)));
        assert_eq!(table.list(Some("s2")).len(), 1);
        assert_eq!(table.kill_session("s2"), 1);
        assert!(matches!(
            table.poll(other),
            Err(BackgroundError::NotFound(_))
        ));
    }
}
