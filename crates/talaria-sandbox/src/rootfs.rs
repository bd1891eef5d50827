//! Step 4b: the sandbox's own root filesystem, holding nothing but the spec's roots.
//!
//! Before Landlock ABI 9 nothing mediates `connect(2)` on a pathname UNIX socket, and a root
//! command passes every socket file's permissions: the D-Bus system bus, `/run/docker.sock`, a
//! user's tmux server under `/tmp` are all one `connect` away, and most of them are a way out.
//! So whenever the sandbox has a private mount namespace, the helper builds a new root the way
//! bubblewrap does, in which everything that is not under a listed root simply does not exist.
//!
//! * [`RootfsPlan::prepare`] runs in the host's view, before any namespace. It resolves every
//!   read and write root one component at a time with `O_PATH | O_NOFOLLOW`, recording each
//!   symlink on the way, and ends at the root's canonical path. Missing roots are skipped (they
//!   grant nothing, as in Landlock). A root inside another root with at least its access is
//!   already visible through that one and gets no mount of its own; a write root inside a read
//!   root does. Roots under `/proc` are dropped when the sandbox gets a fresh `/proc` of its own
//!   PID namespace, which takes their place. The symlinks kept for the view are those met on
//!   the way to a root, the system aliases directly in `/` and `/dev` (`/lib64 -> usr/lib64`,
//!   `/dev/stdout`), and those on the way from the command's `PATH` entries, working directory
//!   and program into a root (NixOS's `/run/current-system/sw/bin -> /nix/store/…`).
//! * [`RootfsPlan::build`] runs inside the new mount namespace, after the protected paths are
//!   mounted, in the process that goes on to become (or fork) the command: PID 1 when there is a
//!   PID namespace, because a fresh `proc` can only be mounted while a complete one is still
//!   visible in the namespace, and the process mounting it must be inside the PID namespace.
//!   1. It clones every root with `open_tree(OPEN_TREE_CLONE | AT_RECURSIVE)` from a descriptor
//!      opened with `RESOLVE_NO_SYMLINKS` (a symlink swapped in since planning is refused, never
//!      followed) and sets the attributes of the whole cloned tree with `mount_setattr`: read
//!      roots `ro,nosuid,nodev`, write roots `nosuid,nodev`. Roots at or under `/dev` keep `dev`
//!      so the device nodes the spec lists still open. The protected-path mounts inside a write
//!      root come along, still read-only.
//!   2. It creates a tmpfs (`fsopen`/`fsmount`, `nosuid,nodev`, mode 0755) and recreates in it
//!      the directories leading to each root, an empty directory or empty file as the root's
//!      mount point, the symlinks kept (so a root listed as `/bin -> usr/bin` still works at
//!      `/bin`), and `/proc` for a fresh proc. Then the tmpfs is made read-only, so the
//!      command cannot create top-level entries.
//!   3. It attaches the tmpfs over `/` and the clones at their own absolute paths, ancestors
//!      first. Each mount point is opened beneath the new root with `RESOLVE_BENEATH |
//!      RESOLVE_NO_SYMLINKS`: the helper never follows a symlink while building, so nothing can
//!      redirect a mount out of the new root.
//!   4. `pivot_root(".", ".")` into the tmpfs and `umount2(MNT_DETACH)` of the old root: the
//!      host's tree is no longer reachable from the namespace at all.
//!
//! Landlock still applies on top of this view as the second layer. A root that is `/` itself
//! becomes the base of the view instead of the tmpfs (everything then exists, as asked). A
//! socket *under* a listed root stays reachable on kernels without Landlock ABI 9: listing `/run`
//! exposes the system bus. The shipped profiles list no such directory.
//!
//! This module must never follow a symlink while mounting, never mount a root with more access
//! than the spec gives it, and never leave the host's root reachable.

use std::collections::VecDeque;
use std::ffi::{CStr, CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use crate::spec::FilesystemRules;
use crate::sys::{self, open_path, read_link_at};

/// Symlinks followed while resolving one root, as the kernel's `MAXSYMLINKS`.
const MAX_SYMLINKS: usize = 40;

/// Why the sandbox's root filesystem could not be planned or built.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("cannot resolve root {path}: {}", sys::describe(.source))]
    Resolve {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("root {0}: too many levels of symbolic links")]
    Loop(PathBuf),
    #[error("{0} is a symlink on the way to one root and a directory on the way to another")]
    Conflict(PathBuf),
    #[error("{0} changed between planning and mounting (it moved, vanished or became a symlink)")]
    Changed(PathBuf),
    #[error("cannot clone root {path} for the sandbox's root filesystem: {}", sys::describe(.source))]
    Clone {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot create the tmpfs for the sandbox's root filesystem: {}", sys::describe(.0))]
    Tmpfs(#[source] io::Error),
    #[error("cannot mount a fresh /proc for the pid namespace: {}", sys::describe(.0))]
    Proc(#[source] io::Error),
    #[error("cannot create {path} in the sandbox's root filesystem: {}", sys::describe(.source))]
    Skeleton {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot mount {path} in the sandbox's root filesystem: {}", sys::describe(.source))]
    Attach {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot switch to the sandbox's root filesystem: {}", sys::describe(.0))]
    Pivot(#[source] io::Error),
    #[error("the sandbox's root filesystem is still writable at the top level")]
    StillWritable,
}

/// What a root grants, ordered so that the wider access compares greater.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Access {
    Read,
    Write,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NodeKind {
    Dir,
    /// A file, device node, socket or fifo: bound onto an empty file.
    NonDir,
}

/// One root mounted into the view at its canonical path.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RootMount {
    path: PathBuf,
    access: Access,
    kind: NodeKind,
    /// Keep device nodes usable (roots at or under `/dev`, or containing it).
    devices: bool,
    /// Inside another mount of the view, whose tree already holds its mount point.
    nested: bool,
}

/// A symlink met while resolving a root, recreated in the tmpfs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Symlink {
    path: PathBuf,
    target: OsString,
}

/// What the view is built on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Base {
    /// A fresh tmpfs holding only mount points and symlinks (the usual case).
    Tmpfs,
    /// The spec lists `/` itself, with this access.
    Host(Access),
}

/// The planned root filesystem of one sandbox (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootfsPlan {
    base: Base,
    /// Ancestors first.
    mounts: Vec<RootMount>,
    symlinks: Vec<Symlink>,
    fresh_proc: bool,
}

/// A read or write root after resolution in the host's view.
#[derive(Debug)]
struct ResolvedRoot {
    canonical: PathBuf,
    kind: NodeKind,
    symlinks: Vec<Symlink>,
}

impl RootfsPlan {
    /// Resolves the spec's read and write roots in the host's view (see the module docs).
    /// `fresh_proc`: the sandbox has a PID namespace and gets a `/proc` of its own.
    /// `entry_points`: paths the command will name (its `PATH` entries, working directory,
    /// program): the symlinks on their way are recreated when they end inside a root, so
    /// `/run/current-system/sw/bin -> /nix/store/…` still finds programs. They grant nothing:
    /// an entry point that cannot be resolved, or ends outside every root, is ignored.
    ///
    /// # Errors
    ///
    /// [`RootfsError`] when a root cannot be resolved for a reason other than not existing,
    /// has a symlink loop, or the roots disagree about what a path is.
    pub fn prepare(
        fs: &FilesystemRules,
        fresh_proc: bool,
        entry_points: &[PathBuf],
    ) -> Result<Self, RootfsError> {
        let mut roots = Vec::new();
        let mut symlinks = Vec::new();
        let mut canonical_roots = Vec::new();
        for (paths, access) in [(&fs.read, Access::Read), (&fs.write, Access::Write)] {
            for path in paths {
                let Some(resolved) = resolve(path)? else {
                    continue;
                };
                symlinks.extend(resolved.symlinks);
                canonical_roots.push(resolved.canonical.clone());
                if fresh_proc && resolved.canonical.starts_with("/proc") {
                    continue;
                }
                roots.push((resolved.canonical, access, resolved.kind));
            }
        }
        // An entry point under a listed root needs no walk: that root's own walk recorded the
        // symlinks leading to it, and the rest of the way lies inside its mount.
        let listed = |p: &Path| fs.read.iter().chain(&fs.write).any(|r| p.starts_with(r));
        for entry in entry_points.iter().filter(|e| !listed(e)) {
            if let Ok(Some(resolved)) = resolve(entry)
                && canonical_roots
                    .iter()
                    .any(|root| resolved.canonical.starts_with(root))
            {
                symlinks.extend(resolved.symlinks);
            }
        }
        symlinks.extend(aliases_in(Path::new("/")));
        // The aliases in /dev lead into /proc (`/dev/fd`, `/dev/stdout`) or to other device
        // nodes: only worth recreating when the view has either.
        if fresh_proc
            || canonical_roots
                .iter()
                .any(|r| r.starts_with("/proc") || r.starts_with("/dev"))
        {
            symlinks.extend(aliases_in(Path::new("/dev")));
        }
        Self::from_resolved(roots, symlinks, fresh_proc)
    }

    /// The pure part of planning: which roots get a mount, on what base, which symlinks the
    /// tmpfs must hold.
    fn from_resolved(
        mut roots: Vec<(PathBuf, Access, NodeKind)>,
        mut symlinks: Vec<Symlink>,
        fresh_proc: bool,
    ) -> Result<Self, RootfsError> {
        // Ancestors first; for one path the widest access first, and only that entry kept.
        roots.sort_by(|a, b| {
            (a.0.components().count(), &a.0, b.1).cmp(&(b.0.components().count(), &b.0, a.1))
        });
        roots.dedup_by(|later, kept| later.0 == kept.0);
        let covered = |path: &Path, access: Access| {
            roots
                .iter()
                .any(|(p, a, _)| p != path && path.starts_with(p) && *a >= access)
        };
        let kept: Vec<(PathBuf, Access, NodeKind)> = roots
            .iter()
            .filter(|(path, access, _)| !covered(path, *access))
            .cloned()
            .collect();
        let mut base = Base::Tmpfs;
        let mut mounts: Vec<RootMount> = Vec::with_capacity(kept.len());
        for (path, access, kind) in &kept {
            if path == Path::new("/") {
                base = Base::Host(*access);
                continue;
            }
            let nested = base != Base::Tmpfs
                || kept
                    .iter()
                    .any(|(p, _, _)| p != path && path.starts_with(p));
            mounts.push(RootMount {
                path: path.clone(),
                access: *access,
                kind: *kind,
                devices: keeps_devices(path),
                nested,
            });
        }

        let in_a_mount = |p: &Path| {
            base != Base::Tmpfs
                || mounts.iter().any(|m| p.starts_with(&m.path))
                || (fresh_proc && p.starts_with("/proc"))
        };
        symlinks.retain(|s| !in_a_mount(&s.path));
        symlinks.sort_by(|a, b| a.path.cmp(&b.path));
        for pair in symlinks.windows(2) {
            if let [a, b] = pair
                && a.path == b.path
                && a.target != b.target
            {
                return Err(RootfsError::Changed(a.path.clone()));
            }
        }
        symlinks.dedup_by(|later, kept| later.path == kept.path);
        // A symlink in the tmpfs cannot also be a directory leading to a mount point or to
        // another symlink. (A symlink at /proc was dropped above: the fresh proc goes there.)
        for link in &symlinks {
            let below = |p: &Path| p.starts_with(&link.path);
            if mounts.iter().any(|m| below(&m.path))
                || symlinks
                    .iter()
                    .any(|other| other.path != link.path && below(&other.path))
            {
                return Err(RootfsError::Conflict(link.path.clone()));
            }
        }
        Ok(Self {
            base,
            mounts,
            symlinks,
            fresh_proc,
        })
    }

    /// Builds the view and switches the calling process (and every process sharing its mount
    /// namespace) into it. Call it inside a private mount namespace, after
    /// [`crate::mounts::ProtectionPlan::apply`]; with a PID namespace, from its PID 1.
    ///
    /// # Errors
    ///
    /// [`RootfsError`] when a root changed since planning or a mount operation fails; the
    /// namespace is then unusable and the caller must not run the command.
    pub fn build(&self) -> Result<(), RootfsError> {
        // Clone every root first, while the host's tree is still where planning saw it.
        let clones = self
            .mounts
            .iter()
            .map(|m| clone_root(&m.path, m.kind, attributes(m.access, m.devices)))
            .collect::<Result<Vec<_>, _>>()?;
        // A fresh proc must be created while the host's /proc is still visible here.
        let proc = if self.fresh_proc {
            Some(new_proc().map_err(RootfsError::Proc)?)
        } else {
            None
        };
        let root = match self.base {
            Base::Tmpfs => {
                let tmpfs = new_tmpfs().map_err(RootfsError::Tmpfs)?;
                self.create_skeleton(tmpfs.as_fd())?;
                set_attributes(tmpfs.as_fd(), libc::MOUNT_ATTR_RDONLY, false)
                    .map_err(RootfsError::Tmpfs)?;
                tmpfs
            }
            Base::Host(access) => {
                let root = Path::new("/");
                clone_root(root, NodeKind::Dir, attributes(access, keeps_devices(root)))?
            }
        };
        move_mount(root.as_fd(), None, c"/").map_err(|source| RootfsError::Attach {
            path: PathBuf::from("/"),
            source,
        })?;
        for (mount, clone) in self.mounts.iter().zip(&clones) {
            let target = open_beneath(root.as_fd(), &mount.path, mount.kind)?;
            move_mount(clone.as_fd(), Some(target.as_fd()), c"").map_err(|source| {
                RootfsError::Attach {
                    path: mount.path.clone(),
                    source,
                }
            })?;
        }
        if let Some(proc) = proc {
            let target = open_beneath(root.as_fd(), Path::new("/proc"), NodeKind::Dir)?;
            move_mount(proc.as_fd(), Some(target.as_fd()), c"").map_err(RootfsError::Proc)?;
        }
        pivot_into(root.as_fd()).map_err(RootfsError::Pivot)?;
        if self.base == Base::Tmpfs
            && sys::fstatvfs_flags(root.as_fd()).map_err(RootfsError::Pivot)? & libc::ST_RDONLY == 0
        {
            return Err(RootfsError::StillWritable);
        }
        Ok(())
    }

    /// Creates in the (still detached) tmpfs the mount points, the directories leading to them,
    /// the recorded symlinks and `/proc`.
    fn create_skeleton(&self, tmpfs: BorrowedFd<'_>) -> Result<(), RootfsError> {
        for mount in self.mounts.iter().filter(|m| !m.nested) {
            let skeleton_err = |source| RootfsError::Skeleton {
                path: mount.path.clone(),
                source,
            };
            match mount.kind {
                NodeKind::Dir => drop(ensure_dir(tmpfs, &mount.path)?),
                NodeKind::NonDir => {
                    let (parent, name) = ensure_parent(tmpfs, &mount.path)?;
                    // SAFETY: `name` is NUL-terminated and `parent` live for the call.
                    let fd = unsafe {
                        libc::openat(
                            parent.as_raw_fd(),
                            name.as_ptr(),
                            libc::O_CREAT
                                | libc::O_EXCL
                                | libc::O_WRONLY
                                | libc::O_NOFOLLOW
                                | libc::O_CLOEXEC,
                            0o444,
                        )
                    };
                    drop(sys::owned_fd(libc::c_long::from(fd)).map_err(skeleton_err)?);
                }
            }
        }
        for link in &self.symlinks {
            let (parent, name) = ensure_parent(tmpfs, &link.path)?;
            let target = sys::c_string(&link.target)
                .ok_or_else(|| RootfsError::Changed(link.path.clone()))?;
            // SAFETY: both strings are NUL-terminated and `parent` is live for the call.
            let ret =
                unsafe { libc::symlinkat(target.as_ptr(), parent.as_raw_fd(), name.as_ptr()) };
            sys::cvt(ret).map_err(|source| RootfsError::Skeleton {
                path: link.path.clone(),
                source,
            })?;
        }
        if self.fresh_proc {
            drop(ensure_dir(tmpfs, Path::new("/proc"))?);
        }
        Ok(())
    }
}

/// The symlinks directly in `dir` on the host: system aliases, recreated in the view whatever
/// the roots (`/` holds the merged-`/usr` links `/bin -> usr/bin` and `/lib64 -> usr/lib64`
/// that ELF interpreters and shebangs name; `/dev` holds `/dev/stdout`, `/dev/fd` …). A symlink
/// in the read-only tmpfs grants nothing by itself: it can only lead to what the view holds
/// anyway, or nowhere. Unreadable directories and entries give nothing.
fn aliases_in(dir: &Path) -> Vec<Symlink> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            if !entry.file_type().ok()?.is_symlink() {
                return None;
            }
            let path = entry.path();
            let target = std::fs::read_link(&path).ok()?.into_os_string();
            Some(Symlink { path, target })
        })
        .collect()
}

/// Switches the calling process into an empty, read-only private root: what [`RootfsPlan::build`]
/// does, without any root. For `--probe`, in a throwaway child inside a private mount namespace.
///
/// # Errors
///
/// [`RootfsError::Tmpfs`], [`RootfsError::Attach`] or [`RootfsError::Pivot`].
pub fn try_empty_root() -> Result<(), RootfsError> {
    let tmpfs = new_tmpfs().map_err(RootfsError::Tmpfs)?;
    set_attributes(tmpfs.as_fd(), libc::MOUNT_ATTR_RDONLY, false).map_err(RootfsError::Tmpfs)?;
    move_mount(tmpfs.as_fd(), None, c"/").map_err(|source| RootfsError::Attach {
        path: PathBuf::from("/"),
        source,
    })?;
    pivot_into(tmpfs.as_fd()).map_err(RootfsError::Pivot)
}

/// Roots whose device nodes must keep working: the spec lists `/dev/null` and friends because
/// the command is meant to open them.
fn keeps_devices(path: &Path) -> bool {
    path.starts_with("/dev") || Path::new("/dev").starts_with(path)
}

fn attributes(access: Access, devices: bool) -> u64 {
    let mut attr = libc::MOUNT_ATTR_NOSUID;
    if !devices {
        attr |= libc::MOUNT_ATTR_NODEV;
    }
    match access {
        Access::Read => attr | libc::MOUNT_ATTR_RDONLY,
        Access::Write => attr,
    }
}

/// Walks `root` from `/` like the kernel would, recording every symlink; `None` when it does
/// not exist.
fn resolve(root: &Path) -> Result<Option<ResolvedRoot>, RootfsError> {
    let mut queue: VecDeque<OsString> = VecDeque::new();
    push_components(&mut queue, root, false);
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RootfsError::Resolve { path, source }
    };
    let root_fd = open_path(None, c"/").map_err(err(Path::new("/")))?;
    let mut stack: Vec<(PathBuf, OwnedFd)> = vec![(PathBuf::from("/"), root_fd)];
    let mut symlinks = Vec::new();
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
        let c_name = sys::c_string(&name).ok_or_else(|| RootfsError::Resolve {
            path: path.clone(),
            source: io::Error::from_raw_os_error(libc::EINVAL),
        })?;
        // Most components are directories: one call each. Anything else is looked at again.
        match sys::open_dir_path(parent_fd.as_fd(), &c_name) {
            Ok(fd) => {
                stack.push((path, fd));
                continue;
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {}
            Err(e) => return Err(err(&path)(e)),
        }
        let mode = match sys::lstat_at(parent_fd.as_fd(), &c_name) {
            Ok(st) => st.st_mode & libc::S_IFMT,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
            Err(e) => return Err(err(&path)(e)),
        };
        match mode {
            libc::S_IFLNK => {
                if symlinks.len() >= MAX_SYMLINKS {
                    return Err(RootfsError::Loop(root.to_path_buf()));
                }
                let target = read_link_at(parent_fd.as_fd(), &c_name).map_err(err(&path))?;
                if Path::new(&target).is_absolute() {
                    stack.truncate(1);
                }
                push_components(&mut queue, Path::new(&target), true);
                symlinks.push(Symlink { path, target });
            }
            // Replaced by a directory between the two calls: someone is changing the path.
            libc::S_IFDIR => return Err(RootfsError::Changed(path)),
            _ if queue.is_empty() => {
                return Ok(Some(ResolvedRoot {
                    canonical: path,
                    kind: NodeKind::NonDir,
                    symlinks,
                }));
            }
            _ => return Err(err(&path)(io::Error::from_raw_os_error(libc::ENOTDIR))),
        }
    }
    let canonical = stack
        .last()
        .map_or_else(|| PathBuf::from("/"), |(p, _)| p.clone());
    Ok(Some(ResolvedRoot {
        canonical,
        kind: NodeKind::Dir,
        symlinks,
    }))
}

/// Queues the components of `path` to be walked, at the front (a symlink's target, walked
/// next) or the back.
fn push_components(queue: &mut VecDeque<OsString>, path: &Path, front: bool) {
    let names: Vec<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect();
    if front {
        for name in names.into_iter().rev() {
            queue.push_front(name);
        }
    } else {
        queue.extend(names);
    }
}

/// `path` relative to `/`, as a C string for the `*at` calls on the new root.
fn relative_c_path(path: &Path) -> Result<CString, RootfsError> {
    let relative = path.strip_prefix("/").unwrap_or(path);
    let text = if relative.as_os_str().is_empty() {
        OsStr::new(".")
    } else {
        relative.as_os_str()
    };
    sys::c_string(text).ok_or_else(|| RootfsError::Changed(path.to_path_buf()))
}

fn openat2(
    dir: Option<BorrowedFd<'_>>,
    path: &CStr,
    flags: libc::c_int,
    resolve: u64,
) -> io::Result<OwnedFd> {
    // SAFETY: an all-zero open_how is valid (no flags, no mode, no resolve restrictions).
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = u64::try_from(flags | libc::O_CLOEXEC).unwrap_or_default();
    how.resolve = resolve;
    let dir_raw = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    // SAFETY: `path` is NUL-terminated, `how` is a valid open_how of the size passed, and
    // `dir_raw` is AT_FDCWD or a live descriptor.
    sys::owned_fd(unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir_raw,
            path.as_ptr(),
            &raw const how,
            std::mem::size_of::<libc::open_how>(),
        )
    })
}

fn kind_of(fd: BorrowedFd<'_>) -> io::Result<NodeKind> {
    let mode = sys::fstat(fd)?.st_mode & libc::S_IFMT;
    Ok(if mode == libc::S_IFDIR {
        NodeKind::Dir
    } else {
        NodeKind::NonDir
    })
}

/// A detached, recursive copy of the mount tree at the canonical `path`, with `attr` set on
/// every mount in it. No symlink is followed on the way to `path`.
fn clone_root(path: &Path, kind: NodeKind, attr: u64) -> Result<OwnedFd, RootfsError> {
    let err = |source| RootfsError::Clone {
        path: path.to_path_buf(),
        source,
    };
    let c_path =
        sys::c_string(path.as_os_str()).ok_or_else(|| RootfsError::Changed(path.into()))?;
    let source = openat2(
        None,
        &c_path,
        libc::O_PATH | libc::O_NOFOLLOW,
        libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS,
    )
    .map_err(|e| match e.raw_os_error() {
        Some(libc::ELOOP | libc::ENOENT | libc::ENOTDIR) => RootfsError::Changed(path.into()),
        _ => err(e),
    })?;
    if kind_of(source.as_fd()).map_err(err)? != kind {
        return Err(RootfsError::Changed(path.to_path_buf()));
    }
    let flags = libc::OPEN_TREE_CLONE
        | libc::OPEN_TREE_CLOEXEC
        | libc::c_uint::try_from(libc::AT_EMPTY_PATH | libc::AT_RECURSIVE).unwrap_or_default();
    // SAFETY: the empty path is NUL-terminated; with AT_EMPTY_PATH it names `source` itself.
    let tree = sys::owned_fd(unsafe {
        libc::syscall(libc::SYS_open_tree, source.as_raw_fd(), c"".as_ptr(), flags)
    })
    .map_err(err)?;
    set_attributes(tree.as_fd(), attr, true).map_err(err)?;
    Ok(tree)
}

/// `mount_setattr` on the mount `fd` is the root of (and, with `recursive`, every mount below
/// it). Only sets flags: a flag the host locked stays as it was.
fn set_attributes(fd: BorrowedFd<'_>, attr: u64, recursive: bool) -> io::Result<()> {
    // SAFETY: an all-zero mount_attr changes nothing; only attr_set is filled in.
    let mut mount_attr: libc::mount_attr = unsafe { std::mem::zeroed() };
    mount_attr.attr_set = attr;
    let mut flags = libc::AT_EMPTY_PATH;
    if recursive {
        flags |= libc::AT_RECURSIVE;
    }
    // SAFETY: the empty path is NUL-terminated, `mount_attr` is valid for the size passed and
    // `fd` is live.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &raw const mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    sys::cvt_long(ret).map(drop)
}

/// A new filesystem of `fstype` from `fsopen`/`fsmount`, detached, with mount attributes
/// `attr`; `options` are string options set before it is created.
fn new_filesystem(fstype: &CStr, options: &[(&CStr, &CStr)], attr: u64) -> io::Result<OwnedFd> {
    // SAFETY: `fstype` is NUL-terminated.
    let context = sys::owned_fd(unsafe {
        libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), libc::FSOPEN_CLOEXEC)
    })?;
    for (key, value) in options {
        // SAFETY: key and value are NUL-terminated; `context` is live.
        sys::cvt_long(unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                context.as_raw_fd(),
                libc::FSCONFIG_SET_STRING,
                key.as_ptr(),
                value.as_ptr(),
                0,
            )
        })?;
    }
    // SAFETY: FSCONFIG_CMD_CREATE takes no key or value; `context` is live.
    sys::cvt_long(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            context.as_raw_fd(),
            libc::FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    })?;
    // SAFETY: `context` holds a created superblock; fsmount only reads its arguments.
    sys::owned_fd(unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            context.as_raw_fd(),
            libc::FSMOUNT_CLOEXEC,
            attr,
        )
    })
}

fn new_tmpfs() -> io::Result<OwnedFd> {
    new_filesystem(
        c"tmpfs",
        &[(c"mode", c"0755")],
        libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV,
    )
}

fn new_proc() -> io::Result<OwnedFd> {
    new_filesystem(
        c"proc",
        &[],
        libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV | libc::MOUNT_ATTR_NOEXEC,
    )
}

/// Attaches the detached mount `mount` onto `target` (a descriptor, or `path` when `target` is
/// `None`).
fn move_mount(
    mount: BorrowedFd<'_>,
    target: Option<BorrowedFd<'_>>,
    path: &CStr,
) -> io::Result<()> {
    let mut flags = libc::MOVE_MOUNT_F_EMPTY_PATH;
    if target.is_some() {
        flags |= libc::MOVE_MOUNT_T_EMPTY_PATH;
    }
    let target_raw = target.map_or(libc::AT_FDCWD, |t| t.as_raw_fd());
    // SAFETY: both paths are NUL-terminated; the descriptors are live (or AT_FDCWD).
    sys::cvt_long(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mount.as_raw_fd(),
            c"".as_ptr(),
            target_raw,
            path.as_ptr(),
            flags,
        )
    })
    .map(drop)
}

/// Opens `path` of the new root strictly beneath `root`, following no symlink, and checks that
/// it is a `kind`.
fn open_beneath(root: BorrowedFd<'_>, path: &Path, kind: NodeKind) -> Result<OwnedFd, RootfsError> {
    let relative = relative_c_path(path)?;
    let fd = openat2(
        Some(root),
        &relative,
        libc::O_PATH | libc::O_NOFOLLOW,
        libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS,
    )
    .map_err(|e| match e.raw_os_error() {
        Some(libc::ELOOP | libc::ENOENT | libc::ENOTDIR | libc::EXDEV) => {
            RootfsError::Changed(path.to_path_buf())
        }
        _ => RootfsError::Attach {
            path: path.to_path_buf(),
            source: e,
        },
    })?;
    let actual = kind_of(fd.as_fd()).map_err(|source| RootfsError::Attach {
        path: path.to_path_buf(),
        source,
    })?;
    if actual != kind {
        return Err(RootfsError::Changed(path.to_path_buf()));
    }
    Ok(fd)
}

/// Creates (if needed) every directory of `path` inside the tmpfs and returns the last one.
fn ensure_dir(tmpfs: BorrowedFd<'_>, path: &Path) -> Result<OwnedFd, RootfsError> {
    let err = |source| RootfsError::Skeleton {
        path: path.to_path_buf(),
        source,
    };
    let mut dir = openat2(
        Some(tmpfs),
        c".",
        libc::O_PATH | libc::O_DIRECTORY,
        libc::RESOLVE_BENEATH,
    )
    .map_err(err)?;
    for component in path.components() {
        let Component::Normal(name) = component else {
            continue;
        };
        let c_name = sys::c_string(name).ok_or_else(|| RootfsError::Changed(path.into()))?;
        // SAFETY: `c_name` is NUL-terminated and `dir` live for the call.
        let made = sys::cvt(unsafe { libc::mkdirat(dir.as_raw_fd(), c_name.as_ptr(), 0o755) });
        match made {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => return Err(err(e)),
        }
        dir = openat2(
            Some(dir.as_fd()),
            &c_name,
            libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW,
            libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS,
        )
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP | libc::ENOTDIR) => RootfsError::Conflict(path.to_path_buf()),
            _ => err(e),
        })?;
    }
    Ok(dir)
}

/// The directory that will hold `path` (created as needed) and `path`'s last name.
fn ensure_parent(tmpfs: BorrowedFd<'_>, path: &Path) -> Result<(OwnedFd, CString), RootfsError> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(RootfsError::Changed(path.to_path_buf()));
    };
    let c_name = sys::c_string(name).ok_or_else(|| RootfsError::Changed(path.into()))?;
    Ok((ensure_dir(tmpfs, parent)?, c_name))
}

/// Makes the mount `root` (attached over `/`) the root of this mount namespace and detaches
/// the old root, which `pivot_root(".", ".")` stacks on top of the new one.
fn pivot_into(root: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: `root` is a live descriptor of a directory.
    sys::cvt(unsafe { libc::fchdir(root.as_raw_fd()) })?;
    // SAFETY: both arguments are NUL-terminated string literals.
    sys::cvt_long(unsafe { libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) })?;
    // SAFETY: the path is a NUL-terminated literal.
    sys::cvt(unsafe { libc::umount2(c".".as_ptr(), libc::MNT_DETACH) })?;
    // SAFETY: the path is a NUL-terminated literal.
    sys::cvt(unsafe { libc::chdir(c"/".as_ptr()) }).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(
        roots: &[(&str, Access, NodeKind)],
        symlinks: &[(&str, &str)],
        fresh_proc: bool,
    ) -> Result<RootfsPlan, RootfsError> {
        RootfsPlan::from_resolved(
            roots
                .iter()
                .map(|(p, a, k)| (PathBuf::from(p), *a, *k))
                .collect(),
            symlinks
                .iter()
                .map(|(p, t)| Symlink {
                    path: p.into(),
                    target: t.into(),
                })
                .collect(),
            fresh_proc,
        )
    }

    fn mounts(plan: &RootfsPlan) -> Vec<(String, Access, bool)> {
        plan.mounts
            .iter()
            .map(|m| (m.path.display().to_string(), m.access, m.nested))
            .collect()
    }

    use Access::{Read, Write};
    use NodeKind::{Dir, NonDir};

    #[test]
    fn covered_roots_get_no_mount_and_write_inside_read_is_nested() {
        let p = plan(
            &[
                ("/ws", Write, Dir),
                ("/usr", Read, Dir),
                ("/usr/lib", Read, Dir),
                ("/ws/docs", Read, Dir),
                ("/usr/local/cache", Write, Dir),
                ("/dev/null", Read, NonDir),
                ("/dev/null", Write, NonDir),
            ],
            &[],
            false,
        )
        .unwrap();
        assert_eq!(p.base, Base::Tmpfs);
        assert_eq!(
            mounts(&p),
            [
                ("/usr".into(), Read, false),
                ("/ws".into(), Write, false),
                ("/dev/null".into(), Write, false),
                ("/usr/local/cache".into(), Write, true),
            ]
        );
        assert!(
            p.mounts
                .iter()
                .find(|m| m.path == Path::new("/dev/null"))
                .unwrap()
                .devices
        );
        assert!(
            !p.mounts
                .iter()
                .find(|m| m.path == Path::new("/usr"))
                .unwrap()
                .devices
        );
    }

    #[test]
    fn symlinks_are_kept_only_outside_the_mounts() {
        let p = plan(
            &[("/usr", Read, Dir), ("/etc", Read, Dir)],
            &[
                ("/bin", "usr/bin"),
                ("/usr/lib/x", "/opt/x"),
                ("/bin", "usr/bin"),
                ("/etc/alternatives/sh", "/usr/bin/dash"),
            ],
            false,
        )
        .unwrap();
        assert_eq!(
            p.symlinks,
            [Symlink {
                path: "/bin".into(),
                target: "usr/bin".into()
            }]
        );
    }

    #[test]
    fn a_path_cannot_be_a_symlink_and_a_directory_at_once() {
        assert!(matches!(
            plan(&[("/a/b", Read, Dir)], &[("/a", "/x")], false),
            Err(RootfsError::Conflict(_))
        ));
        assert!(matches!(
            plan(
                &[("/usr", Read, Dir)],
                &[("/bin", "usr/bin"), ("/bin", "/elsewhere")],
                false
            ),
            Err(RootfsError::Changed(_))
        ));
        assert!(matches!(
            plan(&[("/a", Read, Dir)], &[("/b", "c"), ("/b/d", "e")], false),
            Err(RootfsError::Conflict(_))
        ));
        assert!(
            plan(&[], &[("/proc", "/x")], true)
                .unwrap()
                .symlinks
                .is_empty()
        );
    }

    #[test]
    fn listing_the_host_root_makes_it_the_base() {
        let p = plan(
            &[("/", Read, Dir), ("/ws", Write, Dir), ("/usr", Read, Dir)],
            &[("/bin", "usr/bin")],
            true,
        )
        .unwrap();
        assert_eq!(p.base, Base::Host(Read));
        assert_eq!(mounts(&p), [("/ws".into(), Write, true)]);
        assert!(p.symlinks.is_empty());
    }

    #[test]
    fn resolve_records_symlinks_and_ends_at_the_canonical_path() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(base.join("real/sub")).unwrap();
        std::fs::write(base.join("real/sub/file"), "x").unwrap();
        std::os::unix::fs::symlink("real", base.join("link")).unwrap();
        std::os::unix::fs::symlink(base.join("link/sub/file"), base.join("abs")).unwrap();

        let r = resolve(&base.join("link/sub")).unwrap().unwrap();
        assert_eq!(r.canonical, base.join("real/sub"));
        assert_eq!(r.kind, Dir);
        assert_eq!(
            r.symlinks,
            [Symlink {
                path: base.join("link"),
                target: "real".into()
            }]
        );

        let r = resolve(&base.join("abs")).unwrap().unwrap();
        assert_eq!(r.canonical, base.join("real/sub/file"));
        assert_eq!(r.kind, NonDir);
        assert_eq!(r.symlinks.len(), 2);

        assert!(resolve(&base.join("missing/x")).unwrap().is_none());
        std::os::unix::fs::symlink("loop", base.join("loop")).unwrap();
        assert!(matches!(
            resolve(&base.join("loop")),
            Err(RootfsError::Loop(_))
        ));
        assert!(matches!(
            resolve(&base.join("real/sub/file/deeper")),
            Err(RootfsError::Resolve { .. })
        ));
    }

    #[test]
    fn entry_points_contribute_symlinks_only_when_they_end_inside_a_root() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(base.join("store/sw/bin")).unwrap();
        std::fs::create_dir_all(base.join("elsewhere/bin")).unwrap();
        std::os::unix::fs::symlink(base.join("store/sw"), base.join("current")).unwrap();
        std::os::unix::fs::symlink(base.join("elsewhere"), base.join("other")).unwrap();
        let fs = FilesystemRules {
            read: vec![base.join("store")],
            write: vec![],
            protected: vec![],
        };
        let plan = RootfsPlan::prepare(
            &fs,
            false,
            &[
                base.join("current/bin"),
                base.join("other/bin"),
                base.join("missing/bin"),
            ],
        )
        .unwrap();
        let links: Vec<&Path> = plan.symlinks.iter().map(|s| s.path.as_path()).collect();
        assert!(links.contains(&base.join("current").as_path()), "{links:?}");
        assert!(!links.contains(&base.join("other").as_path()), "{links:?}");
    }

    #[test]
    fn prepare_drops_proc_roots_when_a_fresh_proc_replaces_them() {
        let fs = FilesystemRules {
            read: vec!["/proc".into(), "/usr".into()],
            write: vec![],
            protected: vec![],
        };
        let with = RootfsPlan::prepare(&fs, true, &[]).unwrap();
        assert!(with.mounts.iter().all(|m| !m.path.starts_with("/proc")));
        let without = RootfsPlan::prepare(&fs, false, &[]).unwrap();
        assert!(without.mounts.iter().any(|m| m.path == Path::new("/proc")));
    }
}
