//! Children that die with their parent: `PR_SET_PDEATHSIG`, set in the child between fork and
//! exec, and the check that closes its race.
//!
//! The caveat this module exists for: Linux sends the death signal when the *thread* that
//! forked the child exits, not when the process does. A child spawned from a tokio
//! blocking-pool thread (which exits after 10 s idle) would be killed while its parent is
//! alive and well. So a child that must live as long as the process is spawned from a thread
//! that lives as long as the child ([`PrivateBus`](crate::PrivateBus) keeps one per bus), or
//! from the runtime's worker threads or main thread, which live until the process ends;
//! never from `spawn_blocking`.
//!
//! It must never do anything in the forked child but async-signal-safe system calls.

use std::io;

/// The `pre_exec` hook that makes a child receive `signal` when the thread that spawns it
/// dies, and refuses to exec (ESRCH) if the parent already died before the `prctl`, when the
/// child would have been reparented and never get the signal.
///
/// Use it as `unsafe { command.pre_exec(die_with_parent(libc::SIGTERM)) }` (see the module
/// docs for which thread may spawn).
pub fn die_with_parent(signal: libc::c_int) -> impl FnMut() -> io::Result<()> + Send + Sync {
    // SAFETY: getpid(2) has no preconditions.
    let parent = unsafe { libc::getpid() };
    move || {
        // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number and changes only this process's
        // own flag; getppid(2) has no preconditions. Both are async-signal-safe, as a hook that
        // runs between fork and exec must be.
        unsafe {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
        }
        Ok(())
    }
}
