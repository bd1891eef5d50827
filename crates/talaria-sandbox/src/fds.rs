//! Step 1a: close every descriptor the helper inherited above stderr.
//!
//! A descriptor the caller forgot to mark close-on-exec (a database, a socket to the daemon, a
//! pipe to another tool) would otherwise cross into the sandbox and bypass Landlock, which only
//! checks `open`, not already-open files. This module must never close 0, 1 or 2: those are the
//! command's standard streams.

use std::io;

use crate::sys;

/// Why the inherited descriptors could not be closed.
#[derive(Debug, thiserror::Error)]
pub enum FdsError {
    #[error("cannot list /proc/self/fd to close inherited descriptors: {0}")]
    List(#[source] io::Error),
    #[error("cannot close inherited descriptor {fd}: {source}")]
    Close {
        fd: i32,
        #[source]
        source: io::Error,
    },
}

/// Closes every descriptor from 3 up.
///
/// Uses `close_range(3, ~0, 0)` (Linux 5.9) and falls back to walking `/proc/self/fd` on
/// kernels without it.
///
/// # Errors
///
/// [`FdsError`] when neither method works; the caller must then refuse to run the command.
pub fn close_inherited() -> Result<(), FdsError> {
    // SAFETY: close_range only closes descriptors; none of the ones above 2 is owned by Rust
    // code at this point (the spec descriptor was read and closed before), so no `OwnedFd` is
    // left dangling.
    let ret = unsafe { libc::syscall(libc::SYS_close_range, 3_u32, u32::MAX, 0_u32) };
    match sys::cvt_long(ret) {
        Ok(_) => Ok(()),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EINVAL)) => {
            close_by_listing()
        }
        Err(e) => Err(FdsError::Close { fd: 3, source: e }),
    }
}

fn close_by_listing() -> Result<(), FdsError> {
    // Collect first: closing while iterating would close the directory's own descriptor.
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map_err(FdsError::List)?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: as above, no Rust object owns these descriptors.
        let ret = unsafe { libc::close(fd) };
        match sys::cvt(ret) {
            // The listing's own descriptor is already gone.
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EBADF) => {}
            Err(e) => return Err(FdsError::Close { fd, source: e }),
        }
    }
    Ok(())
}
