//! Never host root: when the helper runs as root, the command runs as the unprivileged host uid
//! and gid [`SANDBOX_UID`]/[`SANDBOX_GID`] (`nobody`), so root-only files under a read root
//! (`/etc/shadow`, `/etc/ssh/ssh_host_*_key`, `/root`, credentials) stay unreadable, and
//! anything the command leaves behind belongs to nobody's privileges.
//!
//! The writable roots must stay writable although they usually belong to root: each writable
//! directory is given to the command through an **idmapped mount** (`mount_setattr`
//! `MOUNT_ATTR_IDMAP`) in which on-disk uid/gid 0 appear as `nobody` and every other id as
//! itself; what the command creates is stored as root's, as before. Only the host's root may
//! idmap a mount, so the clones are made in [`RootDrop::prepare`], before any namespace, with a
//! throwaway user namespace holding the mapping; they are attached over their paths in the
//! private mount namespace ([`RootDrop::attach`]), before the protected paths and the private
//! root, which carry them along.
//!
//! The sandbox's own user namespace then maps `0 → 0` (for the setup, which still needs root's
//! view of the host tree) and `nobody → nobody`; a privileged child writes that map, since a
//! process cannot map more than itself from inside. The command switches to `nobody` in
//! [`crate::capabilities::drop_all`], after the bounding set is emptied and before the last
//! capabilities go.
//!
//! A writable directory on a filesystem that cannot be idmapped is refused, naming it: running
//! the command as root instead is exactly what this module exists to prevent.
//!
//! This module must never let the command's process keep kuid 0 when the helper was root.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::supervise::{self, Forked};
use crate::sys;

/// The host uid a root helper's command runs as (`nobody`).
pub const SANDBOX_UID: libc::uid_t = 65534;
/// The host gid a root helper's command runs as (`nogroup`).
pub const SANDBOX_GID: libc::gid_t = 65534;

/// Why the command could not be moved off root.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot create the user namespace for idmapped mounts: {}", sys::describe(.0))]
    MappingNamespace(#[source] io::Error),
    #[error("cannot write {file} of process {pid}: {}", sys::describe(.source))]
    IdMap {
        file: &'static str,
        pid: libc::pid_t,
        #[source]
        source: io::Error,
    },
    #[error(
        "cannot make writable root {} writable for the sandbox's unprivileged uid {SANDBOX_UID}: an idmapped mount of it failed ({}); the sandbox never runs as host root, so a writable root must be on a filesystem that supports idmapped mounts (ext4, xfs, btrfs, tmpfs …)",
        path.display(),
        sys::describe(.source)
    )]
    Idmap {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot attach the idmapped mount of {}: {}", path.display(), sys::describe(.source))]
    Attach {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot drop the supplementary groups: {}", sys::describe(.0))]
    Groups(#[source] io::Error),
    #[error("cannot switch to uid {SANDBOX_UID} and gid {SANDBOX_GID}: {}", sys::describe(.0))]
    Switch(#[source] io::Error),
}

/// The id map of the idmapped writable roots: on-disk 0 is `nobody`, every other id itself
/// (`nobody`'s own on-disk id has no room left and shows as the overflow id).
fn idmap_of_roots(nobody: u32) -> String {
    format!("0 {nobody} 1\n1 1 {}\n", nobody - 1)
}

/// The sandbox's own id map: root for the setup, `nobody` for the command.
fn sandbox_map(nobody: u32) -> String {
    format!("0 0 1\n{nobody} {nobody} 1\n")
}

/// The idmapped clones of the writable directories, ready to attach.
#[derive(Debug, Default)]
pub struct RootDrop {
    clones: Vec<(PathBuf, OwnedFd)>,
}

impl RootDrop {
    /// Whether the helper runs as root, so the command must be moved off it.
    #[must_use]
    pub fn needed(uid: libc::uid_t) -> bool {
        uid == 0
    }

    /// Clones every writable directory of `write` with on-disk root mapped to `nobody`. Call as
    /// root, before any namespace. Files among `write` (`/dev/null`) are not cloned: their
    /// permissions do not depend on who owns them.
    ///
    /// # Errors
    ///
    /// [`IdentityError::Idmap`] naming the root whose filesystem refused.
    pub fn prepare(write: &[PathBuf]) -> Result<Self, IdentityError> {
        let mut dirs: Vec<PathBuf> = write
            .iter()
            .filter_map(|p| std::fs::canonicalize(p).ok())
            .filter(|p| p.is_dir())
            .collect();
        // Parents before children: a nested root is attached on top of its parent's clone.
        dirs.sort_by_key(|p| p.components().count());
        dirs.dedup();
        give_stdio_pipes();
        if dirs.is_empty() {
            return Ok(Self::default());
        }
        let userns = mapping_namespace()?;
        let clones = dirs
            .into_iter()
            .map(|path| {
                let clone = idmapped_clone(&path, userns.as_fd_borrowed()).map_err(|source| {
                    IdentityError::Idmap {
                        path: path.clone(),
                        source,
                    }
                })?;
                Ok((path, clone))
            })
            .collect::<Result<Vec<_>, IdentityError>>()?;
        Ok(Self { clones })
    }

    /// Attaches every clone over its path. Call inside the private mount namespace, before the
    /// protected paths and the private root are built.
    ///
    /// # Errors
    ///
    /// [`IdentityError::Attach`] naming the root.
    pub fn attach(&self) -> Result<(), IdentityError> {
        for (path, clone) in &self.clones {
            let c_path = sys::c_string(path.as_os_str()).ok_or_else(|| IdentityError::Attach {
                path: path.clone(),
                source: io::Error::from_raw_os_error(libc::EINVAL),
            })?;
            // SAFETY: both paths are NUL-terminated; `clone` is a live detached mount.
            let ret = unsafe {
                libc::syscall(
                    libc::SYS_move_mount,
                    clone.as_raw_fd(),
                    c"".as_ptr(),
                    libc::AT_FDCWD,
                    c_path.as_ptr(),
                    libc::MOVE_MOUNT_F_EMPTY_PATH,
                )
            };
            sys::cvt_long(ret).map_err(|source| IdentityError::Attach {
                path: path.clone(),
                source,
            })?;
        }
        Ok(())
    }
}

/// A user namespace fd, closed on drop.
struct UserNs(OwnedFd);

impl UserNs {
    fn as_fd_borrowed(&self) -> BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.0)
    }
}

/// A pipe, both ends close-on-exec.
fn pipe() -> io::Result<(std::fs::File, std::fs::File)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is valid storage for two descriptors.
    sys::cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 returned two fresh descriptors that nothing else owns.
    Ok(unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    })
}

fn write_map(pid: libc::pid_t, file: &'static str, map: &str) -> Result<(), IdentityError> {
    std::fs::write(format!("/proc/{pid}/{file}"), map).map_err(|source| IdentityError::IdMap {
        file,
        pid,
        source,
    })
}

/// A user namespace mapping on-disk root to `nobody`: a child creates it and waits while its
/// parent (root in the host's namespace, which may map any id) writes the map and keeps a
/// descriptor; then the child exits.
fn mapping_namespace() -> Result<UserNs, IdentityError> {
    let (ready_r, ready_w) = pipe().map_err(IdentityError::MappingNamespace)?;
    let (done_r, done_w) = pipe().map_err(IdentityError::MappingNamespace)?;
    match supervise::fork().map_err(IdentityError::MappingNamespace)? {
        Forked::Child => {
            drop((ready_r, done_w));
            // SAFETY: the child is single-threaded (a fork of the single-threaded helper).
            let ok = unsafe { libc::unshare(libc::CLONE_NEWUSER) } == 0;
            let mut ready_w = ready_w;
            let _ = ready_w.write_all(if ok { b"1" } else { b"0" });
            let mut byte = [0_u8; 1];
            let mut done_r = done_r;
            let _ = done_r.read(&mut byte);
            sys::exit_child(0);
        }
        Forked::Parent { child } => {
            drop((ready_w, done_r));
            let result = (|| {
                let mut answer = [0_u8; 1];
                let mut ready_r = ready_r;
                ready_r
                    .read_exact(&mut answer)
                    .map_err(IdentityError::MappingNamespace)?;
                if answer != *b"1" {
                    return Err(IdentityError::MappingNamespace(
                        io::Error::from_raw_os_error(libc::EPERM),
                    ));
                }
                let map = idmap_of_roots(SANDBOX_UID);
                write_map(child, "uid_map", &map)?;
                write_map(child, "gid_map", &idmap_of_roots(SANDBOX_GID))?;
                let ns = std::fs::File::open(format!("/proc/{child}/ns/user"))
                    .map_err(IdentityError::MappingNamespace)?;
                Ok(UserNs(OwnedFd::from(ns)))
            })();
            drop(done_w);
            reap(child);
            result
        }
    }
}

fn reap(child: libc::pid_t) {
    let mut status = 0;
    // SAFETY: `status` is valid storage; `child` is our own child.
    while unsafe { libc::waitpid(child, &raw mut status, 0) } < 0
        && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
    {}
}

/// A detached clone of the mount at `path` (not its submounts), idmapped through `userns`.
fn idmapped_clone(path: &Path, userns: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let c_path = sys::c_string(path.as_os_str())
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `c_path` is NUL-terminated and outlives the call.
    let clone = sys::owned_fd(unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c_path.as_ptr(),
            libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC,
        )
    })?;
    // SAFETY: an all-zero mount_attr changes nothing; attr_set and userns_fd are filled in.
    let mut attr: libc::mount_attr = unsafe { std::mem::zeroed() };
    attr.attr_set = libc::MOUNT_ATTR_IDMAP;
    attr.userns_fd = u64::try_from(userns.as_raw_fd()).unwrap_or_default();
    // SAFETY: the empty path is NUL-terminated, `attr` is valid for the size passed and
    // `clone` is live.
    sys::cvt_long(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            clone.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &raw const attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    })?;
    Ok(clone)
}

/// Unshares `flags` (which include `CLONE_NEWUSER`) with the sandbox's id map written by a
/// privileged child: root stays root for the setup, and `nobody` exists for the command.
/// Supplementary groups are dropped first.
///
/// # Errors
///
/// [`IdentityError`] when the groups, the namespaces or the map cannot be set;
/// `unshare`'s own error is returned as `Err(Ok(e))` so the caller can word it.
pub fn unshare_mapped(flags: libc::c_int) -> Result<(), Result<io::Error, IdentityError>> {
    // SAFETY: an empty group list; setgroups reads nothing.
    sys::cvt(unsafe { libc::setgroups(0, std::ptr::null()) })
        .map_err(|e| Err(IdentityError::Groups(e)))?;
    let io_err = |e| Err(IdentityError::MappingNamespace(e));
    let (go_r, go_w) = pipe().map_err(io_err)?;
    let (done_r, done_w) = pipe().map_err(io_err)?;
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    match supervise::fork().map_err(io_err)? {
        Forked::Child => {
            drop((go_w, done_r));
            let mut byte = [0_u8; 1];
            let mut go_r = go_r;
            let go = matches!(go_r.read(&mut byte), Ok(1));
            let ok = go
                && write_map(me, "uid_map", &sandbox_map(SANDBOX_UID)).is_ok()
                && write_map(me, "gid_map", &sandbox_map(SANDBOX_GID)).is_ok();
            let mut done_w = done_w;
            let _ = done_w.write_all(if ok { b"1" } else { b"0" });
            sys::exit_child(0);
        }
        Forked::Parent { child } => {
            drop((go_r, done_w));
            // SAFETY: unshare has no memory-safety preconditions; the helper is
            // single-threaded, which CLONE_NEWUSER requires.
            let unshared = sys::cvt(unsafe { libc::unshare(flags) });
            let mut go_w = go_w;
            if unshared.is_ok() {
                let _ = go_w.write_all(b"1");
            }
            drop(go_w);
            let mut answer = [0_u8; 1];
            let mut done_r = done_r;
            let mapped = done_r.read_exact(&mut answer).is_ok() && answer == *b"1";
            reap(child);
            unshared.map_err(Ok)?;
            if !mapped {
                return Err(Err(IdentityError::IdMap {
                    file: "uid_map",
                    pid: me,
                    source: io::Error::from_raw_os_error(libc::EPERM),
                }));
            }
            Ok(())
        }
    }
}

/// Gives the command's standard pipes to `nobody`, so reopening them (`> /dev/stdout`, which
/// opens `/proc/self/fd/1`) works as it did for root. Only pipes and sockets, which the caller
/// made for this command alone; a terminal keeps its owner. Best effort: a pipe that cannot be
/// given stays usable through the inherited descriptor.
pub fn give_stdio_pipes() {
    for fd in 0..=2 {
        // SAFETY: an all-zero stat is valid storage; fstat fails harmlessly on a closed fd.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `st` is valid, writable storage.
        if unsafe { libc::fstat(fd, &raw mut st) } != 0 {
            continue;
        }
        let kind = st.st_mode & libc::S_IFMT;
        if (kind == libc::S_IFIFO || kind == libc::S_IFSOCK) && st.st_uid == 0 {
            // SAFETY: fchown on a descriptor the helper holds; integer arguments only.
            unsafe { libc::fchown(fd, SANDBOX_UID, SANDBOX_GID) };
        }
    }
}

/// Switches every uid and gid of the calling process to `nobody`. Needs `CAP_SETUID` and
/// `CAP_SETGID` in its user namespace, where `nobody` is mapped ([`unshare_mapped`]).
///
/// # Errors
///
/// [`IdentityError::Switch`].
pub fn become_nobody() -> Result<(), IdentityError> {
    // SAFETY: plain system calls with integer arguments.
    unsafe {
        sys::cvt(libc::setresgid(SANDBOX_GID, SANDBOX_GID, SANDBOX_GID))
            .map_err(IdentityError::Switch)?;
        sys::cvt(libc::setresuid(SANDBOX_UID, SANDBOX_UID, SANDBOX_UID))
            .map_err(IdentityError::Switch)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_put_root_on_nobody_and_keep_the_rest() {
        assert_eq!(idmap_of_roots(65534), "0 65534 1\n1 1 65533\n");
        assert_eq!(sandbox_map(65534), "0 0 1\n65534 65534 1\n");
    }
}
