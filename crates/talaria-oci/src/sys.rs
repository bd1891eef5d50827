//! Thin wrappers over the few system calls the helper makes itself (libcontainer makes the
//! rest): pipes, pidfds, `poll`, `waitpid`, `kill`, signal masks and `signalfd`, `setns`.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

pub(crate) fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A close-on-exec pipe: (read end, write end).
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = io::pipe()?;
    Ok((r.into(), w.into()))
}

pub(crate) fn dev_null() -> io::Result<OwnedFd> {
    Ok(File::options()
        .read(true)
        .write(true)
        .open("/dev/null")?
        .into())
}

pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: fcntl on a valid descriptor with integer arguments.
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    // SAFETY: as above.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) })?;
    Ok(())
}

/// A descriptor that becomes readable when process `pid` exits.
pub(crate) fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags; it returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = RawFd::try_from(fd).map_err(io::Error::other)?;
    // SAFETY: the kernel just returned this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// How a process ended, from a `waitpid` status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

impl ExitStatus {
    fn from_wait(status: libc::c_int) -> Self {
        if libc::WIFSIGNALED(status) {
            Self::Signal(libc::WTERMSIG(status))
        } else {
            Self::Code(libc::WEXITSTATUS(status))
        }
    }
}

/// Reap `pid` if it has exited (`block = false`) or once it does (`block = true`).
pub(crate) fn waitpid(pid: libc::pid_t, block: bool) -> io::Result<Option<ExitStatus>> {
    let mut status: libc::c_int = 0;
    let flags = if block { 0 } else { libc::WNOHANG };
    loop {
        // SAFETY: `status` is valid writable storage.
        let ret = unsafe { libc::waitpid(pid, &raw mut status, flags) };
        if ret < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        return Ok((ret == pid).then(|| ExitStatus::from_wait(status)));
    }
}

/// Reap the zombie children that libcontainer left: its intermediate processes (named
/// `youki:[…]`) are not always waited for when it fails, and an unreaped process of a container's
/// PID namespace keeps that namespace's init from dying. Other children are left alone: their
/// owners reap them and must know when their pid is free.
pub(crate) fn reap_zombie_children(keep: &[libc::pid_t]) {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for pid in entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<libc::pid_t>().ok()) {
        if keep.contains(&pid) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": the fields after the last ')'.
        let mut fields = stat
            .rfind(')')
            .map(|end| stat[end + 1..].split_whitespace())
            .into_iter()
            .flatten();
        let (Some(state), Some(ppid)) = (fields.next(), fields.next()) else {
            continue;
        };
        let libcontainers = stat
            .find('(')
            .is_some_and(|start| stat[start + 1..].starts_with("youki:"));
        if state == "Z" && libcontainers && ppid.parse::<u32>().ok() == Some(me) {
            let _ = waitpid(pid, false);
        }
    }
}

/// Kill `pid` (our child) and reap it, reaping other zombie children meanwhile; gives up after
/// `patience`.
pub(crate) fn kill_and_reap(pid: libc::pid_t, patience: std::time::Duration) -> bool {
    kill(pid, libc::SIGKILL);
    let started = std::time::Instant::now();
    loop {
        match waitpid(pid, false) {
            Ok(Some(_)) | Err(_) => return true,
            Ok(None) => {}
        }
        if started.elapsed() > patience {
            return false;
        }
        reap_zombie_children(&[pid]);
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// SIGKILL `pid` (negative: a process group). ESRCH, already gone, is fine.
pub(crate) fn kill(pid: libc::pid_t, signal: libc::c_int) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// The signals that end the helper. Blocked in the helper and read from a signalfd, so a
/// signal can end a running command's wait as well as the idle loop.
pub(crate) fn termination_signals() -> libc::sigset_t {
    // SAFETY: an all-zero sigset_t is valid storage; sigemptyset/sigaddset initialise it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut set);
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&raw mut set, sig);
        }
        set
    }
}

/// Block the termination signals and return a signalfd that reports them.
pub(crate) fn termination_signalfd() -> io::Result<OwnedFd> {
    let set = termination_signals();
    // SAFETY: `set` is initialised; the old mask is not needed.
    cvt(unsafe { libc::sigprocmask(libc::SIG_BLOCK, &raw const set, std::ptr::null_mut()) })?;
    // SAFETY: signalfd with -1 creates a new descriptor for the initialised `set`.
    let fd = cvt(unsafe { libc::signalfd(-1, &raw const set, libc::SFD_CLOEXEC) })?;
    // SAFETY: the kernel just returned this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Read one pending signal number from a signalfd.
pub(crate) fn read_signal(fd: BorrowedFd<'_>) -> io::Result<i32> {
    // SAFETY: an all-zero signalfd_siginfo is valid storage.
    let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::signalfd_siginfo>();
    // SAFETY: `info` is writable for `size` bytes.
    let n = unsafe { libc::read(fd.as_raw_fd(), (&raw mut info).cast(), size) };
    if usize::try_from(n).ok() != Some(size) {
        return Err(io::Error::last_os_error());
    }
    i32::try_from(info.ssi_signo).map_err(io::Error::other)
}

/// `poll(2)`, retried on EINTR. `timeout_ms < 0` waits forever.
pub(crate) fn poll(fds: &mut [libc::pollfd], timeout_ms: libc::c_int) -> io::Result<usize> {
    loop {
        let n = libc::nfds_t::try_from(fds.len()).map_err(io::Error::other)?;
        // SAFETY: `fds` is a valid slice of pollfd for its whole length.
        let ret = unsafe { libc::poll(fds.as_mut_ptr(), n, timeout_ms) };
        if ret < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        return usize::try_from(ret).map_err(io::Error::other);
    }
}

pub(crate) fn pollfd(fd: RawFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// `read(2)` into `buf`, retried on EINTR; 0 is end of file.
pub(crate) fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is writable for its length.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        return usize::try_from(n).map_err(io::Error::other);
    }
}

/// `write(2)` of as much of `buf` as fits now.
pub(crate) fn write(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is readable for its length.
        let n = unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        return usize::try_from(n).map_err(io::Error::other);
    }
}

/// Run `f` inside the network namespace of process `pid`, then return to our own. The helper is
/// single-threaded, so switching the calling thread switches the process.
pub(crate) fn in_network_namespace_of<T>(pid: libc::pid_t, f: impl FnOnce() -> T) -> io::Result<T> {
    let own = File::open("/proc/self/ns/net")?;
    let target = File::open(format!("/proc/{pid}/ns/net"))?;
    // SAFETY: setns on valid namespace descriptors.
    cvt(unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) })?;
    let result = f();
    // SAFETY: as above.
    if let Err(e) = cvt(unsafe { libc::setns(own.as_raw_fd(), libc::CLONE_NEWNET) }) {
        // Carrying on in the container's namespace would hand it to the next container.
        eprintln!("talaria-oci-helper: cannot return to the host network namespace: {e}");
        std::process::abort();
    }
    Ok(result)
}
