//! Supervising one started command: feed its stdin, keep its output within a budget, enforce the
//! timeout, notice when the helper itself must stop, and report how it ended.
//!
//! A single `poll` loop, since the helper is single-threaded (it forks through libcontainer).
//! The command's own exit is seen through a pidfd. Whatever ends the wait (exit, timeout, an
//! interruption) the caller's `kill_rest` runs before output is drained, so a background child
//! holding the pipes open cannot stall the report.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::sys::{self, ExitStatus};

/// How long output is still read after everything of the command was killed.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// A command's pipes, helper side.
#[derive(Debug)]
pub struct CommandPipes {
    /// Write end of its stdin and what to write; `None` when stdin is `/dev/null`.
    pub stdin: Option<(OwnedFd, Vec<u8>)>,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// Descriptors that abandon the run when they fire: the helper's control channel (hang-up:
/// the executor is gone) and its termination signalfd.
#[derive(Debug, Clone, Copy, Default)]
pub struct Watch<'a> {
    pub control: Option<BorrowedFd<'a>>,
    pub signals: Option<BorrowedFd<'a>>,
}

/// Why a run was abandoned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interruption {
    /// The control channel hung up.
    Hangup,
    /// The helper received this signal.
    Signal(i32),
}

/// A command that ran to the end (or was killed at its timeout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub exit: ExitStatus,
    /// Head and tail of stdout, with a marker where bytes were dropped.
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub timed_out: bool,
    /// Bytes dropped from stdout and stderr together.
    pub dropped: u64,
    pub duration: Duration,
}

#[derive(Debug)]
pub enum Outcome {
    Finished(Finished),
    /// The command has been killed and reaped; the helper must shut down.
    Interrupted(Interruption),
}

/// Output within a byte budget: the first half and the most recent half.
#[derive(Debug)]
struct Capped {
    head: Vec<u8>,
    tail: VecDeque<u8>,
    head_limit: usize,
    tail_limit: usize,
    dropped: u64,
}

impl Capped {
    fn new(limit: usize) -> Self {
        let head_limit = limit / 2;
        Self {
            head: Vec::new(),
            tail: VecDeque::new(),
            head_limit,
            tail_limit: limit - head_limit,
            dropped: 0,
        }
    }

    fn push(&mut self, mut chunk: &[u8]) {
        let room = self.head_limit.saturating_sub(self.head.len());
        let take = room.min(chunk.len());
        self.head.extend_from_slice(&chunk[..take]);
        chunk = &chunk[take..];
        if self.tail_limit == 0 {
            self.dropped += chunk.len() as u64;
            return;
        }
        for &b in chunk {
            if self.tail.len() == self.tail_limit {
                self.tail.pop_front();
                self.dropped += 1;
            }
            self.tail.push_back(b);
        }
    }

    fn into_bytes(self) -> Vec<u8> {
        let mut bytes = self.head;
        if self.dropped > 0 {
            bytes.extend_from_slice(
                format!("\n[... {} bytes of output omitted ...]\n", self.dropped).as_bytes(),
            );
        }
        bytes.extend(self.tail);
        bytes
    }
}

/// Supervise `pid` (a child of this process) until it exits or `watch` fires.
///
/// `kill_rest` must SIGKILL the command and everything it started; it runs on timeout, on
/// interruption, and after the command exits (leftover background processes).
///
/// # Errors
/// A failing `poll`, `read` or `waitpid` (the command has been killed by then).
pub fn supervise(
    pid: libc::pid_t,
    pipes: CommandPipes,
    timeout: Duration,
    output_limit: usize,
    watch: Watch<'_>,
    kill_rest: &mut dyn FnMut(),
) -> io::Result<Outcome> {
    let started = Instant::now();
    let result = supervise_inner(pid, pipes, timeout, output_limit, watch, kill_rest, started);
    if result.is_err() {
        kill_rest();
        let _ = sys::waitpid(pid, true);
    }
    result
}

#[expect(
    clippy::too_many_lines,
    reason = "one poll loop reads best in one piece"
)]
fn supervise_inner(
    pid: libc::pid_t,
    pipes: CommandPipes,
    timeout: Duration,
    output_limit: usize,
    watch: Watch<'_>,
    kill_rest: &mut dyn FnMut(),
    started: Instant,
) -> io::Result<Outcome> {
    let pidfd = sys::pidfd_open(pid)?;
    let mut stdin = pipes.stdin;
    if let Some((fd, _)) = &stdin {
        sys::set_nonblocking(fd.as_fd())?;
    }
    let mut stdin_offset = 0usize;
    let mut stdout = Some(pipes.stdout);
    let mut stderr = Some(pipes.stderr);
    let mut out = Capped::new(output_limit);
    let mut err = Capped::new(output_limit);
    let deadline = started + timeout;
    let mut timed_out = false;
    let mut exit: Option<ExitStatus> = None;
    let mut drain_deadline: Option<Instant> = None;
    let mut buf = vec![0u8; 64 * 1024];
    let flood_threshold = talaria_sandbox::spec::output_flood_threshold(output_limit);
    let mut flooded = false;
    // A pipelined next request makes the control channel readable; from then on it is not
    // watched (its end of file is seen when that request has been read).
    let mut control = watch.control;

    loop {
        if exit.is_some() && stdout.is_none() && stderr.is_none() {
            break;
        }
        let now = Instant::now();
        let wait_until = match drain_deadline {
            Some(d) => d,
            None if timed_out => now + Duration::from_secs(3600),
            None => deadline,
        };
        if now >= wait_until {
            if drain_deadline.is_some() {
                // Something outside the container holds the pipes; stop reading.
                break;
            }
            timed_out = true;
            kill_rest();
            continue;
        }
        let timeout_ms = libc::c_int::try_from((wait_until - now).as_millis().saturating_add(1))
            .unwrap_or(libc::c_int::MAX);

        // Slots: 0 stdout, 1 stderr, 2 stdin, 3 pidfd, 4 control, 5 signals.
        let mut fds = [
            sys::pollfd(stdout.as_ref().map_or(-1, AsRawFd::as_raw_fd), libc::POLLIN),
            sys::pollfd(stderr.as_ref().map_or(-1, AsRawFd::as_raw_fd), libc::POLLIN),
            sys::pollfd(
                stdin.as_ref().map_or(-1, |(fd, _)| fd.as_raw_fd()),
                libc::POLLOUT,
            ),
            sys::pollfd(
                if exit.is_none() {
                    pidfd.as_raw_fd()
                } else {
                    -1
                },
                libc::POLLIN,
            ),
            sys::pollfd(control.map_or(-1, |fd| fd.as_raw_fd()), libc::POLLIN),
            sys::pollfd(watch.signals.map_or(-1, |fd| fd.as_raw_fd()), libc::POLLIN),
        ];
        sys::poll(&mut fds, timeout_ms)?;
        let ready = |i: usize| fds[i].revents != 0;

        if ready(5)
            && let Some(fd) = watch.signals
        {
            let signal = sys::read_signal(fd)?;
            kill_rest();
            let _ = sys::waitpid(pid, true);
            return Ok(Outcome::Interrupted(Interruption::Signal(signal)));
        }
        if ready(4) {
            if fds[4].revents & libc::POLLIN != 0 {
                control = None;
            } else {
                kill_rest();
                let _ = sys::waitpid(pid, true);
                return Ok(Outcome::Interrupted(Interruption::Hangup));
            }
        }
        for (slot, pipe, capped) in [(0, &mut stdout, &mut out), (1, &mut stderr, &mut err)] {
            if !ready(slot) {
                continue;
            }
            let Some(fd) = pipe.as_ref() else { continue };
            match sys::read(fd.as_fd(), &mut buf) {
                Ok(0) | Err(_) => *pipe = None,
                Ok(n) => capped.push(&buf[..n]),
            }
            if capped.dropped > flood_threshold {
                flooded = true;
            }
        }
        if flooded && (stdout.is_some() || stderr.is_some()) {
            // A flood: stop reading (it would go on until the timeout) and kill the command;
            // the caller reports "output limit exceeded" from the dropped count. Killed before
            // the pipes close: closed first, the command could see EPIPE and exit by itself
            // (status 0 under load) before the kill lands, and the flood would look finished.
            kill_rest();
            stdout = None;
            stderr = None;
            if exit.is_none() {
                exit = sys::waitpid(pid, true)?;
            }
        }
        if ready(2)
            && let Some((fd, data)) = &stdin
        {
            if fds[2].revents & libc::POLLOUT != 0 && stdin_offset < data.len() {
                let end = data.len().min(stdin_offset + 64 * 1024);
                match sys::write(fd.as_fd(), &data[stdin_offset..end]) {
                    Ok(n) => stdin_offset += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    // EPIPE: the command closed its stdin; that is its business.
                    Err(_) => stdin_offset = data.len(),
                }
            } else {
                stdin_offset = data.len();
            }
        }
        if stdin
            .as_ref()
            .is_some_and(|(_, data)| stdin_offset >= data.len())
        {
            stdin = None;
        }
        if ready(3) && exit.is_none() {
            // The command has exited but is not reaped yet, so its pid (and process group)
            // cannot have been reused: its leftovers go now, and the pipes reach end of file.
            kill_rest();
            exit = sys::waitpid(pid, false)?;
            stdin = None;
            drain_deadline = Some(Instant::now() + DRAIN_GRACE);
        }
    }
    let exit = match exit {
        Some(exit) => exit,
        None => sys::waitpid(pid, true)?.unwrap_or(ExitStatus::Signal(libc::SIGKILL)),
    };
    let dropped = out.dropped + err.dropped;
    Ok(Outcome::Finished(Finished {
        exit,
        stdout: out.into_bytes(),
        stderr: err.into_bytes(),
        timed_out,
        dropped,
        duration: started.elapsed(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capped_keeps_head_and_tail() {
        let mut c = Capped::new(10);
        c.push(b"0123456789");
        c.push(b"abcdefghij");
        assert_eq!(c.dropped, 10);
        assert_eq!(
            String::from_utf8(c.into_bytes()).unwrap(),
            "01234\n[... 10 bytes of output omitted ...]\nfghij"
        );
    }

    #[test]
    fn capped_zero_keeps_nothing() {
        let mut c = Capped::new(0);
        c.push(b"abc");
        assert_eq!(c.dropped, 3);
    }
}
