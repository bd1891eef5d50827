//! Step 4a: the private mount namespace and protected paths.
//!
//! A protected path stays read-only although it lies inside a writable root (`.git/hooks` in a
//! workspace: a hook written by the sandbox would run later, unconfined, on the host). Landlock
//! cannot express "writable tree minus this subtree", so protection uses read-only bind mounts in
//! the sandbox's private mount namespace, set up before Landlock and seccomp, which then forbid
//! every mount operation to the command.
//!
//! Resolution happens in two phases:
//!
//! * [`ProtectionPlan::prepare`] runs in the helper before any namespace exists. It resolves
//!   each protected path itself, one component at a time with `openat(O_PATH | O_NOFOLLOW)`
//!   from `/`, exactly as the kernel would, but deciding at every step:
//!   - a directory component whose parent is inside a writable root could be *renamed* by the
//!     command (`mv .git .git-old; mkdir -p .git/hooks`), and the bind mount below it would move
//!     along. It is **pinned**: bind-mounted onto itself, still writable, so renaming or
//!     removing it fails with `EBUSY`;
//!   - a **symlink** component inside a writable root is pinned the same way (a symlink can be
//!     a mount point), so it cannot be replaced by a real directory; resolution then continues
//!     at the link's target. The target is protected only where it lies inside a writable root;
//!     outside every writable root Landlock already denies writes, and nothing outside the
//!     writable roots is ever mounted on, so a symlink pointing out of the workspace can never
//!     turn into write access there;
//!   - the path itself (or a non-directory standing where a directory would have to be, such
//!     as a `.git` *file*) is bound **read-only** (`MS_BIND`, then
//!     `MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV`, keeping the locked flags of
//!     the underlying mount);
//!   - at the first **missing** component inside a writable root, an empty directory
//!     placeholder (mode 0555) is created and bound read-only, so the command cannot create the
//!     protected path. The supervising helper removes the placeholder after the command exits
//!     if it is still an empty directory.
//!
//!   Paths that resolve entirely outside the writable roots get nothing: Landlock makes them
//!   read-only at most.
//! * [`ProtectionPlan::apply`] runs inside the new mount namespace. It reopens every planned
//!   path strictly (no symlink may appear on the way except a planned symlink pin as the last
//!   component), binds it onto itself through `/proc/self/fd/N`, reopens it to get the new mount
//!   (verified by its mount id) and remounts that read-only, then checks `ST_RDONLY`.
//!
//! This module must never mount anything outside the writable roots, and never bind a writable
//! mount over a protected path.

use std::collections::VecDeque;
use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use crate::sys::{self, fstatvfs_flags, open_path, read_link_at};

/// Symlinks followed while resolving one protected path, as the kernel's `MAXSYMLINKS`.
const MAX_SYMLINKS: usize = 40;

/// Why a mount could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("protected path {0} is not absolute")]
    Relative(PathBuf),
    #[error("protected path {0} contains '..'")]
    DotDot(PathBuf),
    #[error("protected path {0} resolves to / which cannot be protected")]
    Root(PathBuf),
    #[error("cannot resolve protected path {path}: {}", sys::describe(.source))]
    Walk {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("protected path {0}: too many levels of symbolic links")]
    Loop(PathBuf),
    #[error("cannot create placeholder {path} for a missing protected path: {}", sys::describe(.source))]
    Placeholder {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0} changed between planning and mounting (a symlink appeared on the way)")]
    Changed(PathBuf),
    #[error("cannot bind-mount {path} onto itself: {}", sys::describe(.source))]
    Bind {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot remount {path} read-only: {}", sys::describe(.source))]
    Remount {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0} is still writable after the read-only remount")]
    StillWritable(PathBuf),
    #[error("cannot make the mount tree private: {}", sys::describe(.0))]
    Private(#[source] io::Error),
}

/// Makes every mount in the new namespace private, so nothing mounted here propagates to the
/// host (and nothing the host mounts later appears under the sandbox's protections).
///
/// # Errors
///
/// [`MountError::Private`] when `mount(2)` fails.
pub fn make_private() -> Result<(), MountError> {
    // SAFETY: the string literal is NUL-terminated; null source/type/data are allowed for a
    // propagation change.
    let ret = unsafe {
        libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    };
    sys::cvt(ret).map(drop).map_err(MountError::Private)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum BindKind {
    /// Bind onto itself, writable: only so it cannot be renamed, removed or replaced.
    Pin,
    /// Bind onto itself and remount read-only.
    ReadOnly,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct BindItem {
    path: PathBuf,
    kind: BindKind,
    symlink: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Placeholder {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

/// The bind mounts that protect the spec's protected paths, and the placeholders created for
/// the missing ones.
#[derive(Debug, Default)]
pub struct ProtectionPlan {
    binds: Vec<BindItem>,
    placeholders: Vec<Placeholder>,
}

impl ProtectionPlan {
    /// Resolves every protected path against the writable roots and creates the placeholders
    /// for missing ones (see the module docs).
    ///
    /// # Errors
    ///
    /// [`MountError`] for a relative path or one with `..`, a symlink loop, an unexpected I/O
    /// error or a placeholder that cannot be created. Placeholders made before the error are
    /// removed again.
    pub fn prepare(protected: &[PathBuf], write_roots: &[PathBuf]) -> Result<Self, MountError> {
        // Resolution below works on canonical paths, so compare against canonical roots. A
        // missing root grants nothing, so there is nothing to protect under it.
        let roots: Vec<PathBuf> = write_roots
            .iter()
            .filter_map(|r| std::fs::canonicalize(r).ok())
            .collect();
        let mut plan = Self::default();
        for path in protected {
            if let Err(e) = plan.resolve(path, &roots) {
                plan.cleanup();
                return Err(e);
            }
        }
        // Ancestors first, so a later bind lands on top of an earlier pin; one entry per path,
        // read-only winning over pin.
        plan.binds.sort_by(|a, b| {
            (a.path.components().count(), &a.path, b.kind).cmp(&(
                b.path.components().count(),
                &b.path,
                a.kind,
            ))
        });
        plan.binds.dedup_by(|later, kept| later.path == kept.path);
        if plan.binds.iter().any(|b| b.path == Path::new("/")) {
            plan.cleanup();
            return Err(MountError::Root(PathBuf::from("/")));
        }
        Ok(plan)
    }

    /// Whether there is nothing to mount.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.binds.is_empty()
    }

    /// Whether placeholders were created (and so someone must remove them afterwards).
    #[must_use]
    pub fn has_placeholders(&self) -> bool {
        !self.placeholders.is_empty()
    }

    fn resolve(&mut self, protected: &Path, roots: &[PathBuf]) -> Result<(), MountError> {
        if !protected.is_absolute() {
            return Err(MountError::Relative(protected.to_path_buf()));
        }
        let mut queue = VecDeque::new();
        for component in protected.components() {
            match component {
                Component::Normal(name) => queue.push_back(name.to_os_string()),
                Component::ParentDir => return Err(MountError::DotDot(protected.to_path_buf())),
                Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            }
        }
        let walk_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| MountError::Walk { path, source }
        };
        let root_fd = open_path(None, c"/").map_err(walk_err(Path::new("/")))?;
        let mut stack: Vec<(PathBuf, OwnedFd)> = vec![(PathBuf::from("/"), root_fd)];
        let mut symlinks = 0;
        let mut races = 0;
        while let Some(name) = queue.pop_front() {
            if name == ".." {
                if stack.len() > 1 {
                    stack.pop();
                }
                continue;
            }
            let Some((parent_path, parent_fd)) = stack.last() else {
                break;
            };
            let path = parent_path.join(&name);
            let parent_writable = inside(parent_path, roots);
            let c_name = name_c_string(&name, &path)?;
            let fd = match open_path(Some(parent_fd.as_fd()), &c_name) {
                Ok(fd) => fd,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    // Under a placeholder of this plan nothing is needed: the placeholder is
                    // bound read-only, so nothing can be created in it (and a non-root caller
                    // could not make a directory in its 0555 anyway).
                    let under_placeholder =
                        self.placeholders.iter().any(|p| p.path == *parent_path);
                    if parent_writable && !under_placeholder {
                        match self.create_placeholder(parent_fd.as_fd(), &c_name, path) {
                            // Another command in the same workspace created it (its own
                            // placeholder, or the real thing) between our look and our mkdir:
                            // walk it again as found. Bounded, like symlinks.
                            Err(MountError::Placeholder { source, .. })
                                if source.raw_os_error() == Some(libc::EEXIST)
                                    && races < MAX_SYMLINKS =>
                            {
                                races += 1;
                                queue.push_front(name);
                                continue;
                            }
                            other => other?,
                        }
                    }
                    return Ok(());
                }
                Err(e) => return Err(walk_err(&path)(e)),
            };
            let st = sys::fstat(fd.as_fd()).map_err(walk_err(&path))?;
            match st.st_mode & libc::S_IFMT {
                libc::S_IFLNK => {
                    symlinks += 1;
                    if symlinks > MAX_SYMLINKS {
                        return Err(MountError::Loop(protected.to_path_buf()));
                    }
                    if parent_writable {
                        self.binds.push(BindItem {
                            path: path.clone(),
                            kind: BindKind::Pin,
                            symlink: true,
                        });
                    }
                    let target =
                        read_link_at(parent_fd.as_fd(), &c_name).map_err(walk_err(&path))?;
                    let target = Path::new(&target);
                    if target.is_absolute() {
                        stack.truncate(1);
                    }
                    for component in target.components().rev() {
                        match component {
                            Component::Normal(n) => queue.push_front(n.to_os_string()),
                            Component::ParentDir => queue.push_front(OsString::from("..")),
                            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
                        }
                    }
                }
                libc::S_IFDIR if !queue.is_empty() => {
                    if parent_writable {
                        self.binds.push(BindItem {
                            path: path.clone(),
                            kind: BindKind::Pin,
                            symlink: false,
                        });
                    }
                    stack.push((path, fd));
                }
                // The protected path itself, or a non-directory where the rest of the path would
                // have to be (a `.git` file): protecting it keeps it from being replaced.
                _ => {
                    if parent_writable || inside(&path, roots) {
                        self.binds.push(BindItem {
                            path,
                            kind: BindKind::ReadOnly,
                            symlink: false,
                        });
                    }
                    return Ok(());
                }
            }
        }
        // The path ended in `..` (through a symlink): the target is the directory we are in.
        if let Some((path, _)) = stack.last()
            && inside(path, roots)
        {
            self.binds.push(BindItem {
                path: path.clone(),
                kind: BindKind::ReadOnly,
                symlink: false,
            });
        }
        Ok(())
    }

    fn create_placeholder(
        &mut self,
        parent: BorrowedFd<'_>,
        name: &CString,
        path: PathBuf,
    ) -> Result<(), MountError> {
        let err = |source| MountError::Placeholder {
            path: path.clone(),
            source,
        };
        // SAFETY: `name` is NUL-terminated and `parent` is live for the call.
        sys::cvt(unsafe { libc::mkdirat(parent.as_raw_fd(), name.as_ptr(), 0o555) })
            .map_err(err)?;
        let fd = open_path(Some(parent), name).map_err(err)?;
        let st = sys::fstat(fd.as_fd()).map_err(err)?;
        self.placeholders.push(Placeholder {
            path: path.clone(),
            dev: st.st_dev,
            ino: st.st_ino,
        });
        self.binds.push(BindItem {
            path,
            kind: BindKind::ReadOnly,
            symlink: false,
        });
        Ok(())
    }

    /// Performs the planned bind mounts; call it inside the new mount namespace, after
    /// [`make_private`].
    ///
    /// # Errors
    ///
    /// [`MountError`] when a path changed since planning, a bind or remount fails, or a
    /// protected mount is still writable afterwards.
    pub fn apply(&self) -> Result<(), MountError> {
        for item in &self.binds {
            let (parent, name, target) = open_strict(&item.path, item.symlink)?;
            let recursive = item.kind == BindKind::Pin && !item.symlink;
            bind_onto_itself(target.as_fd(), recursive).map_err(|source| MountError::Bind {
                path: item.path.clone(),
                source,
            })?;
            match item.kind {
                BindKind::Pin => {}
                BindKind::ReadOnly => {
                    remount_read_only(&item.path, parent.as_fd(), &name, target.as_fd())?
                }
            }
        }
        Ok(())
    }

    /// Removes the placeholders that are still empty directories (the ones this plan created).
    /// Best effort: a placeholder someone filled on the host, or that is gone, is left alone.
    pub fn cleanup(&self) {
        for placeholder in self.placeholders.iter().rev() {
            let (Some(parent), Some(name)) =
                (placeholder.path.parent(), placeholder.path.file_name())
            else {
                continue;
            };
            let Ok((_, _, parent_fd)) = open_strict(parent, false) else {
                continue;
            };
            let Some(c_name) = sys::c_string(name) else {
                continue;
            };
            let Ok(fd) = open_path(Some(parent_fd.as_fd()), &c_name) else {
                continue;
            };
            let same = sys::fstat(fd.as_fd()).is_ok_and(|st| {
                st.st_mode & libc::S_IFMT == libc::S_IFDIR
                    && st.st_dev == placeholder.dev
                    && st.st_ino == placeholder.ino
            });
            if same {
                // SAFETY: `c_name` is NUL-terminated and `parent_fd` live; rmdir only removes an
                // empty directory, so a filled placeholder survives.
                unsafe {
                    libc::unlinkat(parent_fd.as_raw_fd(), c_name.as_ptr(), libc::AT_REMOVEDIR);
                }
            }
        }
    }
}

fn inside(path: &Path, roots: &[PathBuf]) -> bool {
    roots.iter().any(|root| path.starts_with(root))
}

fn name_c_string(name: &OsStr, path: &Path) -> Result<CString, MountError> {
    sys::c_string(name).ok_or_else(|| MountError::Walk {
        path: path.to_path_buf(),
        source: io::Error::from_raw_os_error(libc::EINVAL),
    })
}

/// Opens `path` component by component refusing every symlink, except the last component when
/// `final_symlink` is set. Returns the parent, the last name and the target.
fn open_strict(
    path: &Path,
    final_symlink: bool,
) -> Result<(OwnedFd, CString, OwnedFd), MountError> {
    let err = |source| MountError::Walk {
        path: path.to_path_buf(),
        source,
    };
    let names: Vec<&OsStr> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    let mut parent = open_path(None, c"/").map_err(err)?;
    let mut current = open_path(None, c"/").map_err(err)?;
    let mut last = CString::from(c"/");
    for (i, name) in names.iter().enumerate() {
        let c_name = name_c_string(name, path)?;
        let next = open_path(Some(current.as_fd()), &c_name).map_err(err)?;
        let kind = sys::fstat(next.as_fd()).map_err(err)?.st_mode & libc::S_IFMT;
        let is_last = i + 1 == names.len();
        let allowed =
            kind == libc::S_IFDIR || (is_last && (kind != libc::S_IFLNK || final_symlink));
        if !allowed {
            return Err(MountError::Changed(path.to_path_buf()));
        }
        parent = std::mem::replace(&mut current, next);
        last = c_name;
    }
    Ok((parent, last, current))
}

fn bind_onto_itself(target: BorrowedFd<'_>, recursive: bool) -> io::Result<()> {
    let path = sys::proc_fd_path(target);
    let flags = libc::MS_BIND | if recursive { libc::MS_REC } else { 0 };
    // SAFETY: `path` is NUL-terminated; null type and data are allowed for a bind mount.
    let ret = unsafe {
        libc::mount(
            path.as_ptr(),
            path.as_ptr(),
            std::ptr::null(),
            flags,
            std::ptr::null(),
        )
    };
    sys::cvt(ret).map(drop)
}

fn mount_id(fd: BorrowedFd<'_>) -> io::Result<u64> {
    // SAFETY: an all-zero statx is a valid value of this plain-data struct.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: empty path with AT_EMPTY_PATH names `fd` itself; `stx` is writable.
    let ret = unsafe {
        libc::statx(
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
            libc::STATX_MNT_ID,
            &raw mut stx,
        )
    };
    sys::cvt(ret)?;
    Ok(stx.stx_mnt_id)
}

/// Remounts the bind mount now covering `parent/name` read-only. `underlying` is the
/// descriptor opened before the bind; the one opened now must be on a different mount, or the
/// remount would hit the writable root's own mount.
fn remount_read_only(
    path: &Path,
    parent: BorrowedFd<'_>,
    name: &CString,
    underlying: BorrowedFd<'_>,
) -> Result<(), MountError> {
    let remount_err = |source| MountError::Remount {
        path: path.to_path_buf(),
        source,
    };
    // Path walk crosses onto the mount on top; O_NOFOLLOW keeps a symlink pin a symlink.
    let top = open_path(Some(parent), name).map_err(remount_err)?;
    if mount_id(top.as_fd()).map_err(remount_err)? == mount_id(underlying).map_err(remount_err)? {
        return Err(MountError::Changed(path.to_path_buf()));
    }
    // In a user namespace the flags the host locked on the underlying mount must be kept.
    let current = fstatvfs_flags(top.as_fd()).map_err(remount_err)?;
    let mut flags =
        libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV;
    for (st, ms) in [
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
    ] {
        if current & st != 0 {
            flags |= ms;
        }
    }
    let proc_path = sys::proc_fd_path(top.as_fd());
    // SAFETY: `proc_path` is NUL-terminated; a remount takes null source, type and data.
    let ret = unsafe {
        libc::mount(
            std::ptr::null(),
            proc_path.as_ptr(),
            std::ptr::null(),
            flags,
            std::ptr::null(),
        )
    };
    sys::cvt(ret).map_err(remount_err)?;
    if fstatvfs_flags(top.as_fd()).map_err(remount_err)? & libc::ST_RDONLY == 0 {
        return Err(MountError::StillWritable(path.to_path_buf()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(plan: &ProtectionPlan) -> Vec<(String, BindKind, bool)> {
        plan.binds
            .iter()
            .map(|b| (b.path.display().to_string(), b.kind, b.symlink))
            .collect()
    }

    #[test]
    fn pins_ancestors_and_protects_existing_target() {
        let ws = tempfile::tempdir().unwrap();
        let root = ws.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join(".git/hooks")).unwrap();
        let plan = ProtectionPlan::prepare(&[root.join(".git/hooks")], std::slice::from_ref(&root))
            .unwrap();
        let r = root.display();
        assert_eq!(
            kinds(&plan),
            [
                (format!("{r}/.git"), BindKind::Pin, false),
                (format!("{r}/.git/hooks"), BindKind::ReadOnly, false)
            ]
        );
        assert!(!plan.has_placeholders());
    }

    #[test]
    fn missing_path_gets_a_placeholder_at_first_missing_component_and_cleanup_removes_it() {
        let ws = tempfile::tempdir().unwrap();
        let root = ws.path().canonicalize().unwrap();
        let plan = ProtectionPlan::prepare(&[root.join(".git/hooks")], std::slice::from_ref(&root))
            .unwrap();
        assert_eq!(
            kinds(&plan),
            [(
                format!("{}/.git", root.display()),
                BindKind::ReadOnly,
                false
            )]
        );
        assert!(root.join(".git").is_dir());
        assert!(!root.join(".git/hooks").exists());
        plan.cleanup();
        assert!(!root.join(".git").exists());
    }

    #[test]
    fn symlink_is_pinned_and_followed_only_inside_writable_roots() {
        let ws = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root = ws.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("real/hooks")).unwrap();
        std::os::unix::fs::symlink("real", root.join(".git")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("out")).unwrap();
        let plan = ProtectionPlan::prepare(
            &[root.join(".git/hooks"), root.join("out/x")],
            std::slice::from_ref(&root),
        )
        .unwrap();
        let r = root.display();
        assert_eq!(
            kinds(&plan),
            [
                (format!("{r}/.git"), BindKind::Pin, true),
                (format!("{r}/out"), BindKind::Pin, true),
                (format!("{r}/real"), BindKind::Pin, false),
                (format!("{r}/real/hooks"), BindKind::ReadOnly, false),
            ]
        );
        // Nothing was created outside the writable root.
        assert!(!outside.path().join("x").exists());
    }

    #[test]
    fn paths_outside_writable_roots_need_nothing() {
        let ws = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let plan = ProtectionPlan::prepare(&[other.path().join("a/b")], &[ws.path().to_path_buf()])
            .unwrap();
        assert!(plan.is_empty());
        assert!(!other.path().join("a").exists());
    }

    #[test]
    fn rejects_relative_and_dotdot_paths_and_symlink_loops() {
        let ws = tempfile::tempdir().unwrap();
        let root = ws.path().canonicalize().unwrap();
        assert!(matches!(
            ProtectionPlan::prepare(&[PathBuf::from("rel")], std::slice::from_ref(&root)),
            Err(MountError::Relative(_))
        ));
        assert!(matches!(
            ProtectionPlan::prepare(&[root.join("a/../b")], std::slice::from_ref(&root)),
            Err(MountError::DotDot(_))
        ));
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        assert!(matches!(
            ProtectionPlan::prepare(&[root.join("loop/x")], std::slice::from_ref(&root)),
            Err(MountError::Loop(_))
        ));
    }
}
