//! Talaria's sandbox helper: run one command confined exactly as a [`SandboxSpec`] says, or
//! refuse to run it.
//!
//! # Threat model
//!
//! The command is hostile: a model-written shell line, a package's build script, a tool fed
//! prompt-injected input. It runs with the helper's uid (often root, for a system service) and
//! tries to read secrets outside its roots (the daemon's database, other users' files, the
//! helper's environment), talk to host services through their UNIX sockets (the D-Bus system
//! bus, the Docker daemon, a user's tmux server), write outside its writable roots (shell
//! profiles, `.git/hooks` executed later by the host, other workspaces), reach the network,
//! attack the kernel through rarely used system calls, tamper with other processes (signals,
//! ptrace, the terminal), or exhaust the host. The kernel is trusted; the caller (the executor)
//! and the spec are trusted. Bugs in the kernel's own confinement, timing side channels, and
//! resources the spec does not limit (disk space, wall-clock time, enforced by the caller) are
//! out of scope.
//!
//! # Order, and why
//!
//! 1. **Sanitize** ([`fds`], [`env`](mod@env)): close every inherited descriptor above 2 (Landlock does
//!    not check files that are already open), start a new session (no controlling terminal,
//!    one process group to signal), and build the command's environment from `spec.env` alone.
//! 2. **Check** ([`check`]): validate the spec and verify that this host can enforce all of it
//!    (Landlock ABI, seccomp, scoping). Anything missing: exit 125 with one line naming the
//!    profile and the feature, before anything is changed or run. Nothing is ever downgraded.
//!    Preparation that must happen in the host's view follows: the pids cgroup ([`cgroup`]),
//!    resolving protected paths, which creates placeholders ([`mounts`]), and resolving the
//!    roots of the private root filesystem ([`rootfs`]).
//! 3. **Namespaces** ([`namespaces`]; as root, [`identity`]): user first (it makes the rest possible unprivileged and
//!    strips every host capability), then mount, network (`lo` up for `Loopback`), PID (forked:
//!    PID 1 is a small init that reaps and relays the command's status). On kernels below
//!    Landlock ABI 9 every spec gets user and mount namespaces for step 4b, asked for or not;
//!    when they cannot be created the spec is refused, naming both ways out (see [`check`]).
//! 4. **Filesystem view**, in the private mount namespace, before Landlock and seccomp (which
//!    then forbid the command every mount operation):
//!    - 4a, **protected paths** ([`mounts`]): read-only bind mounts over `.git/hooks` and the
//!      like inside the writable roots, made while the host's tree is still the namespace's root;
//!    - 4b, **the private root** ([`rootfs`]): a read-only tmpfs holding nothing but the listed
//!      roots, bound at their own absolute paths (read roots `ro,nosuid,nodev`, write roots
//!      `nosuid,nodev`, the protected-path mounts carried along), the symlinks that lead to
//!      them, and a fresh `/proc` with a PID namespace; then `pivot_root` and the old root
//!      detached. Host paths outside the roots, pathname UNIX sockets above all (the D-Bus
//!      system bus, `/run/docker.sock`, a tmux server), do not exist for the command. With a
//!      PID namespace PID 1 builds it, since a fresh `/proc` must be mounted from inside the
//!      PID namespace while the host's `/proc` is still visible.
//! 5. **Working directory**, then **`no_new_privs`** ([`capabilities`]): required by the next two
//!    steps when unprivileged, and keeps setuid programs from regaining privileges.
//! 6. **Landlock** ([`landlock`]): filesystem roots, TCP ports, scoping; the second wall behind
//!    the private root (and from ABI 9 itself a wall in front of pathname UNIX sockets).
//! 7. **Capabilities** dropped for good ([`capabilities`]), after Landlock (whose ruleset opens
//!    the roots) and before seccomp.
//! 8. **seccomp** ([`seccomp`]): last of the confinement, so the helper's own setup calls (mount,
//!    unshare, Landlock) were not filtered.
//! 9. **rlimits** ([`limits`]): right before `execve`, so a tiny `RLIMIT_AS` constrains the
//!    command and not the helper's own setup (the pids cgroup of step 2 is joined at the start
//!    of step 3, before any fork).
//! 10. **exec** ([`exec`]): `PATH` lookup by trying `execve` under confinement — or, for a
//!     spec with a `builtin` ([`fileops`]: the read tools), that file operation run by the
//!     confined helper itself.
//!
//! # Never host root
//!
//! When the helper runs as root, the command does not: it runs as host uid/gid 65534
//! (`nobody`), so root-only files under a read root (`/etc/shadow`, host keys, `/root`) stay
//! unreadable and nothing it leaves is root's to run. The writable directories are idmapped
//! mounts in which on-disk root appears as `nobody`, so a root-owned workspace stays writable
//! and what the command writes is stored as root's. A writable directory on a filesystem that
//! cannot be idmapped is refused, naming it. See [`identity`].
//!
//! # Processes
//!
//! Without a PID namespace, placeholders or a cgroup, the helper confines itself and `execve`s
//! the command: no fork at all, which keeps spawning `/bin/true` lean (the implied user and
//! mount namespaces of step 3 need no fork either, and no network namespace is added for them,
//! which would cost as much again). Otherwise the helper forks and stays outside as the
//! supervisor: it forwards `SIGTERM`/`SIGINT`/`SIGHUP`/`SIGQUIT`, relays the exit status, and
//! afterwards removes placeholders and the cgroup. Children die with their parent
//! (`PR_SET_PDEATHSIG`). See [`supervise`].
//!
//! # Exit codes
//!
//! The command's own status (128 + N when it was killed by signal N); 125 when the sandbox
//! could not be set up (one line on stderr says why; the command did not run); 126 when the
//! command exists but cannot be executed; 127 when it does not exist.
//!
//! # Resource limits
//!
//! rlimits are set with soft = hard (clamped to the current hard limit, which the helper cannot
//! raise). `RLIMIT_NPROC` is **not enforced for uid 0**, so a root helper enforces `tasks` with a
//! pids cgroup of its own (`talaria-sandbox-<pid>`, cgroup v1 `pids` or cgroup v2 with `pids`
//! delegated) and refuses the spec when there is none; see [`cgroup`] and [`limits`].
//!
//! # What is not enforced
//!
//! * **Pathname UNIX sockets under a listed root**: outside the roots they do not exist in the
//!   private root, and from Landlock ABI 9 (`LANDLOCK_ACCESS_FS_RESOLVE_UNIX`) Landlock allows
//!   `connect` only under write roots. Below ABI 9 a socket inside a listed *read* root stays
//!   reachable, subject only to its file permissions, which root passes: listing `/run` or
//!   `/var/run` as a read root exposes the system bus. The shipped profiles list no such
//!   directory.
//! * **UDP under `AllowTcp`**: Landlock has port rules for TCP only, so UDP (DNS) stays open.
//! * **Hard links that already exist** inside a writable root to a file outside it: Landlock
//!   judges the path used, so writing through such a link works. The command cannot create one
//!   (linking from outside the roots is denied), but a link left by someone else is not found.
//! * **Descendants of a command without a PID namespace** that leave the process group outlive
//!   a kill of the helper; ask for a PID namespace to contain them.
//! * **Cleanup after a SIGKILL of the helper**: the sandbox dies with it, but an empty 0555
//!   placeholder directory and an empty `talaria-sandbox-<pid>` cgroup can stay behind.
//! * `memory_bytes` is address space (`RLIMIT_AS`), not resident memory.
//!
//! The helper is single-threaded; that is what makes `fork` without `exec`, `unshare` with
//! `CLONE_NEWUSER`, and `clearenv` sound here.

pub mod capabilities;
pub mod cgroup;
pub mod check;
pub mod cli;
pub mod env;
pub mod exec;
pub mod fds;
pub mod fileops;
pub mod identity;
pub mod landlock;
pub mod limits;
pub mod mounts;
pub mod namespaces;
pub mod probe;
pub mod rootfs;
pub mod seccomp;
pub mod spec;
pub mod supervise;
mod sys;

use std::io;
use std::path::PathBuf;

pub use cli::main_with_args;
pub use spec::SandboxSpec;
pub use sys::{describe, errno_name};

use crate::cgroup::{CgroupError, PidsCgroup, PidsHierarchy};
use crate::check::{CheckError, HostFeatures, Plan, TasksEnforcement, UnixSocketIsolation};
use crate::env::{CommandEnv, EnvError};
use crate::exec::Program;
use crate::fds::FdsError;
use crate::identity::{IdentityError, RootDrop};
use crate::landlock::LandlockError;
use crate::limits::{LimitsError, Rlimits};
use crate::mounts::{MountError, ProtectionPlan};
use crate::namespaces::{HostIds, NamespaceError};
use crate::rootfs::{RootfsError, RootfsPlan};
use crate::seccomp::{SeccompError, SeccompProgram};
use crate::supervise::Forked;

/// Exit code when the sandbox could not be set up.
pub const EXIT_SETUP_FAILED: i32 = 125;

/// Everything that can stop the helper before the command runs.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(transparent)]
    Check(#[from] CheckError),
    #[error(transparent)]
    Env(#[from] EnvError),
    #[error(transparent)]
    Fds(#[from] FdsError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Namespace(#[from] NamespaceError),
    #[error(transparent)]
    Mount(#[from] MountError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(
        "the sandbox never runs as host root, and without user and mount namespaces it cannot move the command off root"
    )]
    RootWithoutNamespaces,
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    #[error(
        "hiding the host's pathname unix sockets needs Landlock ABI {} (kernel has ABI {abi}) or a private mount namespace, and user namespaces are not usable ({})",
        crate::landlock::UNIX_SOCKET_ABI,
        describe(.source)
    )]
    UnixSocketIsolation {
        abi: i32,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Landlock(#[from] LandlockError),
    #[error(transparent)]
    Capabilities(#[from] capabilities::CapsError),
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    #[error(transparent)]
    Limits(#[from] LimitsError),
    #[error("cannot set no_new_privs: {}", describe(.0))]
    NoNewPrivs(#[source] io::Error),
    #[error("cannot change to working directory {path}: {}", describe(.source))]
    Cwd {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot fork: {}", describe(.0))]
    Fork(#[source] io::Error),
    #[error("cannot set the signal mask: {}", describe(.0))]
    Signals(#[source] io::Error),
}

/// The one line printed on refusal: names the profile and the reason.
#[derive(Debug, thiserror::Error)]
#[error("cannot enforce profile {profile:?}: {error}; refusing to run unconfined")]
pub struct Refusal {
    pub profile: String,
    #[source]
    pub error: SandboxError,
}

/// Runs `spec`: on success the process becomes the command (or, when supervising, returns the
/// command's exit code); on failure prints one line and returns [`EXIT_SETUP_FAILED`] (or 126 /
/// 127 for exec failures).
#[must_use]
pub fn run(spec: SandboxSpec) -> i32 {
    let profile = spec.profile.clone();
    match Launch::prepare(spec) {
        Ok(launch) => launch.start(),
        Err(error) => refuse(&profile, error),
    }
}

/// The paths the command will name first: its `PATH` entries, working directory and program.
/// The private root recreates the symlinks on their way into the roots.
fn entry_points(spec: &SandboxSpec) -> Vec<PathBuf> {
    let path_entries = spec
        .env
        .iter()
        .filter(|(name, _)| name == "PATH")
        .flat_map(|(_, value)| value.split(':'))
        .map(PathBuf::from);
    let program = spec.argv.first().map(PathBuf::from);
    path_entries
        .chain(program)
        .chain(std::iter::once(spec.cwd.clone()))
        .filter(|p| p.is_absolute())
        .collect()
}

fn refuse(profile: &str, error: SandboxError) -> i32 {
    let refusal = Refusal {
        profile: profile.to_owned(),
        error,
    };
    eprintln!("talaria-sandbox: {refusal}");
    EXIT_SETUP_FAILED
}

/// One sandbox, fully planned before the first namespace or fork.
#[derive(Debug)]
struct Launch {
    spec: SandboxSpec,
    plan: Plan,
    ids: HostIds,
    program: Program,
    rlimits: Rlimits,
    seccomp: SeccompProgram,
    cgroup: Option<PidsCgroup>,
    protection: ProtectionPlan,
    /// The private root filesystem, whenever there is a mount namespace.
    rootfs: Option<RootfsPlan>,
    /// When the helper is root: the idmapped writable roots for the command's `nobody`.
    root_drop: Option<RootDrop>,
}

impl Launch {
    /// Steps 1 and 2: sanitize, check, prepare the host-side pieces.
    fn prepare(spec: SandboxSpec) -> Result<Self, SandboxError> {
        fds::close_inherited()?;
        env::new_session()?;
        env::clear_own_environment();
        let plan = check::plan(&spec, &HostFeatures::detect())?;
        let command_env = CommandEnv::from_spec(&spec.env)?;
        let argv = env::argv_c_strings(&spec.argv).map_err(CheckError::ArgvNul)?;
        let name = spec.argv.first().ok_or(CheckError::EmptyArgv)?;
        let program = Program::new(name, argv, &command_env);
        let seccomp = seccomp::build(&spec.network)?;
        let rlimits = Rlimits::new(spec.limits, plan.tasks.rlimit());
        let protection = if plan.namespaces.mount {
            ProtectionPlan::prepare(&spec.filesystem.protected, &spec.filesystem.write)?
        } else {
            ProtectionPlan::default()
        };
        let rootfs = if plan.namespaces.mount {
            match RootfsPlan::prepare(&spec.filesystem, plan.namespaces.pid, &entry_points(&spec)) {
                Ok(rootfs) => Some(rootfs),
                Err(e) => {
                    protection.cleanup();
                    return Err(e.into());
                }
            }
        } else {
            None
        };
        let ids = HostIds::current();
        let root_drop = if RootDrop::needed(ids.uid) {
            if !(plan.namespaces.user && plan.namespaces.mount) {
                protection.cleanup();
                return Err(SandboxError::RootWithoutNamespaces);
            }
            match RootDrop::prepare(&spec.filesystem.write) {
                Ok(drop) => Some(drop),
                Err(e) => {
                    protection.cleanup();
                    // No user namespace at all: the same refusal as when entering one fails.
                    return Err(match (e, plan.unix_sockets) {
                        (
                            IdentityError::MappingNamespace(source),
                            UnixSocketIsolation::PrivateRoot {
                                only_reason_for_namespaces: true,
                            },
                        ) => SandboxError::UnixSocketIsolation {
                            abi: plan.landlock_abi,
                            source,
                        },
                        (IdentityError::MappingNamespace(source), _) => {
                            NamespaceError::Unshare(source).into()
                        }
                        (e, _) => e.into(),
                    });
                }
            }
        } else {
            None
        };
        let cgroup = match plan.tasks {
            TasksEnforcement::Cgroup(max) => {
                match PidsHierarchy::locate().and_then(|h| PidsCgroup::create(&h, max)) {
                    Ok(cgroup) => Some(cgroup),
                    Err(e) => {
                        protection.cleanup();
                        return Err(e.into());
                    }
                }
            }
            TasksEnforcement::Unlimited | TasksEnforcement::Rlimit(_) => None,
        };
        Ok(Self {
            spec,
            plan,
            ids,
            program,
            rlimits,
            seccomp,
            cgroup,
            protection,
            rootfs,
            root_drop,
        })
    }

    /// Runs the command, supervised when something must happen after it exits.
    fn start(self) -> i32 {
        let supervised =
            self.cgroup.is_some() || self.protection.has_placeholders() || self.plan.namespaces.pid;
        if !supervised {
            return self.sandbox();
        }
        let forked = supervise::block_signals()
            .map_err(SandboxError::Signals)
            .and_then(|()| supervise::fork().map_err(SandboxError::Fork));
        match forked {
            Ok(Forked::Child) => sys::exit_child(self.sandbox()),
            Ok(Forked::Parent { child }) => {
                let code = supervise::wait_for(child, false);
                self.cleanup();
                code
            }
            Err(error) => {
                let code = refuse(&self.spec.profile, error);
                self.cleanup();
                code
            }
        }
    }

    fn cleanup(self) {
        self.protection.cleanup();
        if let Some(cgroup) = self.cgroup {
            cgroup.remove();
        }
    }

    /// Steps 3–10 in the process at the top of the sandbox; returns only on failure (or, with a
    /// PID namespace, with the command's status).
    fn sandbox(&self) -> i32 {
        match self.enter() {
            Ok(code) => code,
            Err(error) => refuse(&self.spec.profile, error),
        }
    }

    fn enter(&self) -> Result<i32, SandboxError> {
        if let Some(cgroup) = &self.cgroup {
            cgroup.join()?;
        }
        let ns = self.plan.namespaces;
        let entered = if self.root_drop.is_some() {
            match identity::unshare_mapped(ns.clone_flags()) {
                Ok(()) => Ok(()),
                Err(Ok(unshare)) => Err(NamespaceError::Unshare(unshare)),
                Err(Err(identity)) => return Err(identity.into()),
            }
        } else {
            namespaces::enter(ns, self.ids)
        };
        entered.map_err(|e| match (e, self.plan.unix_sockets) {
            (
                NamespaceError::Unshare(source),
                UnixSocketIsolation::PrivateRoot {
                    only_reason_for_namespaces: true,
                },
            ) => SandboxError::UnixSocketIsolation {
                abi: self.plan.landlock_abi,
                source,
            },
            (e, _) => e.into(),
        })?;
        if ns.mount {
            mounts::make_private()?;
            if let Some(root_drop) = &self.root_drop {
                root_drop.attach()?;
            }
            self.protection.apply()?;
        }
        if self.plan.loopback {
            namespaces::loopback_up()?;
        }
        if !ns.pid {
            if let Some(rootfs) = &self.rootfs {
                rootfs.build()?;
            }
            return self.confine_and_exec();
        }
        // The next child is PID 1 of the new namespace.
        supervise::block_signals().map_err(SandboxError::Signals)?;
        match supervise::fork().map_err(SandboxError::Fork)? {
            Forked::Parent { child } => Ok(supervise::wait_for(child, false)),
            Forked::Child => sys::exit_child(self.init()),
        }
    }

    /// PID 1: build the private root (with a fresh `/proc`), fork the command, reap
    /// everything, return the command's status.
    fn init(&self) -> i32 {
        if let Some(rootfs) = &self.rootfs
            && let Err(e) = rootfs.build()
        {
            return refuse(&self.spec.profile, e.into());
        }
        match supervise::fork() {
            Ok(Forked::Parent { child }) => supervise::wait_for(child, true),
            Ok(Forked::Child) => sys::exit_child(match self.confine_and_exec() {
                Ok(code) => code,
                Err(error) => refuse(&self.spec.profile, error),
            }),
            Err(e) => refuse(&self.spec.profile, SandboxError::Fork(e)),
        }
    }

    /// Steps 5–10 in the command's own process. Returns only when `execve` failed.
    fn confine_and_exec(&self) -> Result<i32, SandboxError> {
        supervise::reset_signals_for_exec().map_err(SandboxError::Signals)?;
        std::env::set_current_dir(&self.spec.cwd).map_err(|source| SandboxError::Cwd {
            path: self.spec.cwd.clone(),
            source,
        })?;
        capabilities::set_no_new_privs().map_err(SandboxError::NoNewPrivs)?;
        landlock::restrict_self(
            &self.spec.filesystem,
            &self.spec.network,
            self.plan.landlock_abi,
        )?;
        capabilities::drop_all(self.root_drop.is_some())?;
        // A file operation opens its file beneath its root with openat2 before seccomp, which
        // answers openat2 with ENOSYS; what it does with the contents happens after, under it.
        let opened = self
            .spec
            .builtin
            .as_ref()
            .map(|op| fileops::Opened::open(op, &self.spec));
        self.seccomp.install()?;
        self.rlimits.apply()?;
        if let Some(opened) = opened {
            return Ok(opened.finish());
        }
        let failure = self.program.exec();
        eprintln!("{}", failure.message);
        Ok(failure.code)
    }
}
