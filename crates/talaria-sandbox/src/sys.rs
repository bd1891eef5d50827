//! Thin, safe wrappers over the few raw system calls the other modules share.
//!
//! Owns nothing but conversions (return codes to `io::Result`, paths to C strings, errno
//! numbers to their names). It must never decide policy.

use std::ffi::{CStr, CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

/// Turns a libc-style return value (`-1` and `errno` on failure) into an `io::Result`.
pub(crate) fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Like [`cvt`] for the `long` that `syscall(2)` returns.
pub(crate) fn cvt_long(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A C string from an OS string; `None` when it contains a NUL byte.
pub(crate) fn c_string(s: &OsStr) -> Option<CString> {
    CString::new(s.as_bytes()).ok()
}

/// `fstat(2)` on any descriptor, including `O_PATH` ones.
pub(crate) fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    // SAFETY: an all-zero `stat` is a valid value of this plain-data struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid, writable `stat` and `fd` is live for the call.
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), &raw mut st) })?;
    Ok(st)
}

/// Turns a descriptor returned by a raw system call (`-1` and `errno` on failure) into an owned
/// descriptor.
pub(crate) fn owned_fd(ret: libc::c_long) -> io::Result<OwnedFd> {
    let fd = libc::c_int::try_from(cvt_long(ret)?)
        .map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `openat(dir, name, O_PATH | O_NOFOLLOW | O_CLOEXEC)`: a handle on `name` itself, never on
/// what a final symlink points to. `dir` `None` means the working directory.
pub(crate) fn open_path(dir: Option<BorrowedFd<'_>>, name: &CStr) -> io::Result<OwnedFd> {
    let dir_raw = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    // SAFETY: `name` is NUL-terminated and `dir_raw` is either AT_FDCWD or a live descriptor.
    let fd = cvt(unsafe {
        libc::openat(
            dir_raw,
            name.as_ptr(),
            libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: openat just returned this descriptor, nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `openat(dir, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)`: `name` when it is a
/// directory; `ENOTDIR` when it is a symlink or anything else.
pub(crate) fn open_dir_path(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: `name` is NUL-terminated and `dir` is live for the call.
    let fd = cvt(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: openat just returned this descriptor, nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`.
pub(crate) fn lstat_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<libc::stat> {
    // SAFETY: an all-zero `stat` is a valid value of this plain-data struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is writable, `name` NUL-terminated and `dir` live for the call.
    cvt(unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &raw mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(st)
}

/// The target of the symlink `name` in `dir`.
pub(crate) fn read_link_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<OsString> {
    let mut buf = vec![0_u8; libc::PATH_MAX as usize + 1];
    // SAFETY: `buf` is writable for `buf.len()` bytes, `name` NUL-terminated, `dir` live.
    let len = unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    let len = usize::try_from(len).map_err(|_| io::Error::last_os_error())?;
    buf.truncate(len);
    Ok(OsString::from(OsStr::from_bytes(&buf)))
}

/// The mount flags (`ST_RDONLY`, `ST_NOSUID` …) of the mount `fd` is on.
pub(crate) fn fstatvfs_flags(fd: BorrowedFd<'_>) -> io::Result<libc::c_ulong> {
    // SAFETY: an all-zero statvfs is a valid value of this plain-data struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is writable and `fd` live.
    cvt(unsafe { libc::fstatvfs(fd.as_raw_fd(), &raw mut st) })?;
    Ok(st.f_flag)
}

/// The `/proc/self/fd/N` path naming `fd`, the safe way to hand a descriptor to calls that only
/// take paths (`mount(2)`).
pub(crate) fn proc_fd_path(fd: BorrowedFd<'_>) -> CString {
    let text = format!("/proc/self/fd/{}", fd.as_raw_fd());
    // A decimal number and ASCII letters never contain NUL.
    CString::new(text).unwrap_or_default()
}

/// The symbolic name and description of an errno value, for one-line error reports
/// (`EACCES (permission denied)`).
#[must_use]
pub fn errno_name(errno: i32) -> &'static str {
    match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::E2BIG => "E2BIG",
        libc::ENOEXEC => "ENOEXEC",
        libc::EBADF => "EBADF",
        libc::ECHILD => "ECHILD",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::EXDEV => "EXDEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::ENFILE => "ENFILE",
        libc::EMFILE => "EMFILE",
        libc::ETXTBSY => "ETXTBSY",
        libc::EFBIG => "EFBIG",
        libc::ENOSPC => "ENOSPC",
        libc::EROFS => "EROFS",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ENOSYS => "ENOSYS",
        libc::ELOOP => "ELOOP",
        libc::ELIBBAD => "ELIBBAD",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        _ => "E?",
    }
}

/// `io::Error` rendered as `ENAME (description)` for one-line reports.
#[must_use]
pub fn describe(err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(errno) => {
            let text = io::Error::from_raw_os_error(errno).to_string();
            // std renders "Permission denied (os error 13)"; keep the words, lowercase them.
            let words = text
                .split(" (os error")
                .next()
                .unwrap_or(&text)
                .to_lowercase();
            format!("{} ({words})", errno_name(errno))
        }
        None => err.to_string(),
    }
}

/// Ends a forked child immediately: no `atexit` handlers, no stdio flushing of buffers the
/// parent also holds.
pub(crate) fn exit_child(code: i32) -> ! {
    // SAFETY: `_exit` is async-signal-safe and always sound to call; it never returns.
    unsafe { libc::_exit(code) }
}
