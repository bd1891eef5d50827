//! What runs in a container process once libcontainer has set it up (namespaces, mounts,
//! cgroups, rlimits, capabilities dropped, `no_new_privs`): libcontainer's `Executor` hook, the
//! last code before the workload.
//!
//! Two workloads:
//!
//! * [`Workload::Init`], the session container's PID 1. It never `exec`s: it stays a copy of the
//!   helper that blocks every signal and reaps whatever is reparented to it (orphans of the
//!   commands), and exits on `SIGTERM`. It does not depend on anything in the image (a
//!   distroless rootfs works), never forks, so "everything in the container but PID 1" is exactly
//!   the commands' processes, and it dies with the helper (`PR_SET_PDEATHSIG`), which takes the
//!   whole PID namespace with it. It is not dumpable, so no command can read its memory (a copy of
//!   the helper's) through `/proc/1/mem`.
//! * [`Workload::Command`]: resets the signal state the helper left (blocked signals, ignored
//!   `SIGPIPE`), installs the Landlock backend's seccomp filter (libcontainer 0.7 does not apply
//!   `linux.seccomp` to processes exec'd into a running container, see [`crate::seccomp`]), and
//!   `execvp`s the command. When that fails it prints one line and exits 127 (not found) or 126,
//!   as a shell would.
//!
//! Both run after `fork` in a single-threaded process, so allocation is fine; nothing here may
//! return `Ok` (libcontainer treats a returning executor as a bug).

use std::ffi::CString;

use libcontainer::oci_spec::runtime::Spec;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use talaria_sandbox::seccomp::SeccompProgram;

/// Exit status of a command that does not exist.
pub const EXIT_NOT_FOUND: i32 = 127;
/// Exit status of a command that exists but cannot be executed.
pub const EXIT_CANNOT_EXECUTE: i32 = 126;

#[derive(Debug, Clone)]
pub enum Workload {
    Init,
    Command { seccomp: SeccompProgram },
}

impl Executor for Workload {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        match self {
            Workload::Init => reap_forever(),
            Workload::Command { seccomp } => exec_command(spec, seccomp),
        }
    }

    fn validate(&self, _spec: &Spec) -> Result<(), ExecutorValidationError> {
        // A missing program is the command's failure (exit 127), not the container's.
        Ok(())
    }
}

fn reap_forever() -> ! {
    // libcontainer only marks inherited descriptors close-on-exec, and this process never
    // execs: close them, or it would hold the helper's state lock and signalfd. 0-2 are
    // /dev/null.
    // SAFETY: close_range and prctl take integer arguments only.
    unsafe {
        libc::syscall(libc::SYS_close_range, 3_u32, u32::MAX, 0_u32);
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
        libc::prctl(libc::PR_SET_NAME, c"talaria-init".as_ptr(), 0, 0, 0);
    }
    // SAFETY: an all-zero sigset_t is valid storage; sigfillset initialises it, and it is only
    // read afterwards. sigwaitinfo and waitpid take valid pointers or null.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&raw mut all);
        libc::sigprocmask(libc::SIG_SETMASK, &raw const all, std::ptr::null_mut());
        loop {
            let signal = libc::sigwaitinfo(&raw const all, std::ptr::null_mut());
            if signal == libc::SIGTERM || signal == libc::SIGINT || signal == libc::SIGHUP {
                libc::_exit(0);
            }
            while libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) > 0 {}
        }
    }
}

fn exec_command(spec: &Spec, seccomp: &SeccompProgram) -> Result<(), ExecutorError> {
    let args: Vec<CString> = spec
        .process()
        .as_ref()
        .and_then(|p| p.args().as_ref())
        .ok_or(ExecutorError::InvalidArg)?
        .iter()
        .map(|a| CString::new(a.as_bytes()).map_err(|_| ExecutorError::InvalidArg))
        .collect::<Result<_, _>>()?;
    let program = args.first().ok_or(ExecutorError::InvalidArg)?;
    talaria_sandbox::supervise::reset_signals_for_exec()
        .map_err(|e| ExecutorError::Other(format!("cannot reset the signal state: {e}")))?;
    seccomp
        .install()
        .map_err(|e| ExecutorError::Other(e.to_string()))?;
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    // SAFETY: `program` and every `argv` entry are NUL-terminated strings that outlive the call;
    // `argv` ends with a null pointer. execvp only returns on failure.
    unsafe {
        libc::execvp(program.as_ptr(), argv.as_ptr());
    }
    let error = std::io::Error::last_os_error();
    let code = match error.raw_os_error() {
        Some(libc::ENOENT | libc::ENOTDIR) => EXIT_NOT_FOUND,
        _ => EXIT_CANNOT_EXECUTE,
    };
    eprintln!(
        "talaria-oci: cannot run {}: {}",
        program.to_string_lossy(),
        talaria_sandbox::describe(&error)
    );
    // SAFETY: _exit(2) ends the process without running the helper's destructors, which belong
    // to the parent's copy of its state.
    unsafe { libc::_exit(code) }
}
