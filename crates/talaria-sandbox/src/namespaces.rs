//! Step 3: user, mount, network and PID namespaces.
//!
//! A user namespace comes first and always when any other namespace is wanted: it is what lets
//! an unprivileged helper create the others, and for a root helper it is what takes away every
//! capability over the host (capabilities inside a child user namespace mean nothing outside
//! it). The current uid and gid are mapped to themselves, so file ownership on disk is
//! unchanged, and `setgroups` is denied first (the kernel requires it for an unprivileged
//! `gid_map`, and it stops the command from dropping a group to get around a group-deny mode).
//! This module must never map any id other than the helper's own.

use std::io;

use crate::sys;

/// Why a namespace could not be created or configured.
#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    #[error("user namespaces are not usable ({}); the profile needs them", sys::describe(.0))]
    Unshare(#[source] io::Error),
    #[error("cannot write {file} in the new user namespace: {}", sys::describe(.source))]
    IdMap {
        file: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("cannot bring up the loopback interface in the new network namespace: {}", sys::describe(.0))]
    Loopback(#[source] io::Error),
}

/// The namespaces one sandbox gets, after the implications in [`crate::check`] were applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NamespaceSet {
    pub user: bool,
    pub mount: bool,
    pub net: bool,
    pub pid: bool,
}

impl NamespaceSet {
    /// Whether any namespace is created at all.
    #[must_use]
    pub fn any(self) -> bool {
        self.user || self.mount || self.net || self.pid
    }

    pub(crate) fn clone_flags(self) -> libc::c_int {
        let mut flags = 0;
        if self.user {
            flags |= libc::CLONE_NEWUSER;
        }
        if self.mount {
            flags |= libc::CLONE_NEWNS;
        }
        if self.net {
            flags |= libc::CLONE_NEWNET;
        }
        if self.pid {
            flags |= libc::CLONE_NEWPID;
        }
        flags
    }
}

/// The ids to map, read before `unshare` (afterwards they read as the overflow id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostIds {
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
}

impl HostIds {
    /// The calling process's real uid and gid.
    #[must_use]
    pub fn current() -> Self {
        // SAFETY: getuid and getgid cannot fail and have no preconditions.
        unsafe {
            Self {
                uid: libc::getuid(),
                gid: libc::getgid(),
            }
        }
    }
}

/// Unshares the namespaces in `set` with one `unshare(2)` call (the user namespace is created
/// first by the kernel and owns the others) and maps `ids` to themselves.
///
/// With `set.pid`, only the *next child* of the caller lands in the new PID namespace; the
/// caller has to fork.
///
/// # Errors
///
/// [`NamespaceError`] when the kernel refuses (user namespaces disabled, limit reached) or the
/// id maps cannot be written.
pub fn enter(set: NamespaceSet, ids: HostIds) -> Result<(), NamespaceError> {
    let flags = set.clone_flags();
    if flags == 0 {
        return Ok(());
    }
    // SAFETY: unshare has no memory-safety preconditions; the helper is single-threaded, which
    // CLONE_NEWUSER requires.
    sys::cvt(unsafe { libc::unshare(flags) }).map_err(NamespaceError::Unshare)?;
    if set.user {
        write_proc_self("setgroups", "deny")?;
        write_proc_self("uid_map", &format!("{0} {0} 1\n", ids.uid))?;
        write_proc_self("gid_map", &format!("{0} {0} 1\n", ids.gid))?;
    }
    Ok(())
}

fn write_proc_self(file: &'static str, content: &str) -> Result<(), NamespaceError> {
    std::fs::write(format!("/proc/self/{file}"), content)
        .map_err(|source| NamespaceError::IdMap { file, source })
}

/// Sets `IFF_UP` on `lo` in the current network namespace (a fresh one starts with `lo` down).
///
/// # Errors
///
/// [`NamespaceError::Loopback`] when the ioctl fails.
pub fn loopback_up() -> Result<(), NamespaceError> {
    // SAFETY: socket has no memory-safety preconditions.
    let raw =
        sys::cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })
            .map_err(NamespaceError::Loopback)?;
    // SAFETY: socket just returned this descriptor; the OwnedFd closes it on every path.
    let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
    let fd = std::os::fd::AsRawFd::as_raw_fd(&sock);
    // SAFETY: an all-zero ifreq is a valid value of this plain-data union struct.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: `req` is a valid ifreq naming "lo"; SIOCGIFFLAGS writes only ifru_flags.
    sys::cvt(unsafe { libc::ioctl(fd, libc::SIOCGIFFLAGS, &raw mut req) })
        .map_err(NamespaceError::Loopback)?;
    // SAFETY: SIOCGIFFLAGS initialised the flags member of the union, so reading it is defined.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    req.ifr_ifru.ifru_flags =
        flags | libc::IFF_UP as libc::c_short | libc::IFF_RUNNING as libc::c_short;
    // SAFETY: as above; SIOCSIFFLAGS only reads `req`.
    sys::cvt(unsafe { libc::ioctl(fd, libc::SIOCSIFFLAGS, &raw const req) })
        .map_err(NamespaceError::Loopback)?;
    Ok(())
}
