//! Forking, waiting and signal relay between the helper's processes.
//!
//! Up to three helper processes can stand above the command: the supervising helper (which
//! cleans up after the command), the process that created the PID namespace, and PID 1 inside
//! it. Each waits for its one child with the same loop: `SIGCHLD` and the forwarded signals
//! (`SIGTERM`, `SIGINT`, `SIGHUP`, `SIGQUIT`) are blocked before `fork` and taken with
//! `sigwaitinfo`, so no signal is lost between fork and wait; a forwarded signal goes to the
//! child; PID 1 also reaps every orphan. Exit status passes up unchanged; death by signal N
//! becomes exit status 128 + N. Every child gets `PR_SET_PDEATHSIG(SIGKILL)`, so killing the
//! outermost helper kills the sandbox (and PID 1's death takes the whole PID namespace along).
//! The command itself starts with an empty signal mask and every disposition at default
//! (Rust ignores `SIGPIPE`, and an ignored disposition would survive `execve`).

use std::io;

use crate::sys;

const FORWARDED: [libc::c_int; 4] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT];

/// Exit code reported when waiting itself fails (never expected).
const EXIT_WAIT_FAILED: i32 = 125;

fn supervised_set() -> libc::sigset_t {
    // SAFETY: an all-zero sigset_t is valid storage; sigemptyset/sigaddset initialise it.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is valid, writable storage; the signal numbers are valid.
    unsafe {
        libc::sigemptyset(&raw mut set);
        libc::sigaddset(&raw mut set, libc::SIGCHLD);
        for sig in FORWARDED {
            libc::sigaddset(&raw mut set, sig);
        }
    }
    set
}

/// Blocks `SIGCHLD` and the forwarded signals; call before the `fork` whose child is then
/// passed to [`wait_for`].
///
/// # Errors
///
/// The `sigprocmask` error.
pub fn block_signals() -> io::Result<()> {
    let set = supervised_set();
    // SAFETY: `set` is initialised; the old mask is not needed.
    let ret = unsafe { libc::sigprocmask(libc::SIG_BLOCK, &raw const set, std::ptr::null_mut()) };
    sys::cvt(ret).map(drop)
}

/// Gives the command a clean signal state: nothing blocked, every disposition default.
///
/// # Errors
///
/// The `sigprocmask` error.
pub fn reset_signals_for_exec() -> io::Result<()> {
    for sig in 1..libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: SIG_DFL is always a valid disposition; signals glibc reserves fail with
        // EINVAL, which is ignored.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
        }
    }
    // SAFETY: an all-zero sigset_t is valid storage; sigemptyset initialises it.
    let mut empty: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `empty` is valid and writable, then only read.
    let ret = unsafe {
        libc::sigemptyset(&raw mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &raw const empty, std::ptr::null_mut())
    };
    sys::cvt(ret).map(drop)
}

/// Which side of a `fork` the caller is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    Parent { child: libc::pid_t },
    Child,
}

/// Forks; the child gets `SIGKILL` when its parent dies.
///
/// # Errors
///
/// The `fork` error (in the parent; there is no child then).
pub fn fork() -> io::Result<Forked> {
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the helper is single-threaded, so the child gets a consistent copy of the whole
    // process (no lock can be held by another thread) and may keep running Rust code.
    let pid = sys::cvt(unsafe { libc::fork() })?;
    if pid > 0 {
        return Ok(Forked::Parent { child: pid });
    }
    // SAFETY: PR_SET_PDEATHSIG takes an integer signal number.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0_u64,
            0_u64,
            0_u64,
        );
    }
    // The parent may have died before the prctl took effect. In a new PID namespace the parent
    // is outside it and reads as 0.
    // SAFETY: getppid has no preconditions.
    let now = unsafe { libc::getppid() };
    if now != parent && now != 0 {
        sys::exit_child(EXIT_WAIT_FAILED);
    }
    Ok(Forked::Child)
}

/// The exit code a shell would report for a `waitpid` status.
#[must_use]
pub fn exit_code(status: libc::c_int) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        EXIT_WAIT_FAILED
    }
}

/// Waits for `child`, forwarding signals to it, and returns its exit code. With `reap_all`
/// (PID 1), every other child that exits is reaped too. Signals must have been blocked with
/// [`block_signals`] before the fork.
#[must_use]
pub fn wait_for(child: libc::pid_t, reap_all: bool) -> i32 {
    let set = supervised_set();
    let target = if reap_all { -1 } else { child };
    loop {
        loop {
            let mut status = 0;
            // SAFETY: `status` is valid, writable storage.
            let pid = unsafe { libc::waitpid(target, &raw mut status, libc::WNOHANG) };
            if pid == child {
                return exit_code(status);
            }
            if pid == 0 {
                break;
            }
            if pid < 0 {
                let err = io::Error::last_os_error();
                if err.raw_os_error() != Some(libc::EINTR) {
                    return EXIT_WAIT_FAILED;
                }
            }
        }
        // SAFETY: `set` is initialised; the siginfo is not needed.
        let sig = unsafe { libc::sigwaitinfo(&raw const set, std::ptr::null_mut()) };
        if FORWARDED.contains(&sig) {
            // SAFETY: kill has no memory-safety preconditions; `child` is our own unreaped
            // child, so its pid cannot have been reused.
            unsafe {
                libc::kill(child, sig);
            }
        }
    }
}
