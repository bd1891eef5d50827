//! Step 2: can this host enforce everything the spec asks? If not, refuse.
//!
//! Pure logic over the spec and a [`HostFeatures`] snapshot, so every refusal rule is unit
//! tested without a special kernel. Nothing is ever downgraded: a requirement the host cannot
//! meet makes the helper exit 125 before anything runs.
//!
//! Requirements, and why:
//!
//! * seccomp filters, always (the syscall deny list and the `Off` socket rule);
//! * Landlock ABI 3 or later, always: ABI 1–2 cannot stop `truncate` on a read-only file;
//! * Landlock ABI 4 for `AllowTcp` (port rules);
//! * the command must not signal processes outside the sandbox, nor connect to abstract UNIX
//!   sockets of the host (a root command could kill any root process, or talk to a session bus
//!   or an X server). Landlock ABI 6 scopes provide both and are always used when present; on an
//!   older kernel the profile must have a PID namespace (signals) and a network namespace
//!   (abstract sockets, which are per network namespace), or it is refused;
//! * the command must not reach the host's pathname UNIX sockets (`/run/docker.sock`, the D-Bus
//!   system bus): Landlock ABI 9 denies `connect` on them outside the write roots; on an older
//!   kernel the sandbox gets a private mount namespace whose root holds only the listed roots
//!   ([`crate::rootfs`]), which needs user namespaces. Without either it is refused. This holds
//!   for every network mode: a pathname socket is a file, not a network address, and an
//!   `AllowTcp` spec reaching `/run/docker.sock` is as much an escape as an `Off` one;
//! * user namespaces whenever a namespace is needed: tried for real when entering them.
//!
//! Namespace implications: any namespace implies a user namespace (so no capability over the
//! host survives); protected paths imply user + mount; `Loopback` implies user + network; a PID
//! namespace implies a mount namespace (so `/proc` can show only the sandbox); a kernel below
//! Landlock ABI 9 implies user + mount for every spec (the private root hides the host's
//! sockets); `Off` adds a network namespace when the spec asks for a user namespace itself (with
//! no user namespace asked for, `Off` is enforced by seccomp and Landlock alone, which keeps the
//! implied namespaces cheap: a network namespace would add about as much again as the user and
//! mount namespaces with the private root).

use std::path::{Component, Path, PathBuf};

use crate::landlock::{MIN_ABI, NET_ABI, SCOPE_ABI, UNIX_SOCKET_ABI};
use crate::namespaces::NamespaceSet;
use crate::spec::{NetworkRules, SandboxSpec};

/// Why the spec is invalid or cannot be enforced on this host.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CheckError {
    #[error("argv is empty")]
    EmptyArgv,
    #[error("argv[{0}] contains a NUL byte")]
    ArgvNul(usize),
    #[error("{what} path {path} is not absolute")]
    Relative { what: &'static str, path: PathBuf },
    #[error("{what} path {path} contains '..'")]
    DotDot { what: &'static str, path: PathBuf },
    #[error("working directory {0} is outside every read and write root")]
    CwdOutsideRoots(PathBuf),
    #[error("seccomp filters are not available (kernel lacks CONFIG_SECCOMP_FILTER)")]
    SeccompMissing,
    #[error("Landlock is not available (kernel lacks it or it is disabled)")]
    LandlockMissing,
    #[error("Landlock ABI {abi} cannot stop truncation of read-only files (needs ABI {MIN_ABI})")]
    LandlockTooOld { abi: i32 },
    #[error(
        "network allow_tcp needs Landlock ABI {NET_ABI} for TCP port rules (kernel has ABI {abi})"
    )]
    TcpRulesMissing { abi: i32 },
    #[error(
        "signal scoping needs Landlock ABI {SCOPE_ABI} (kernel has ABI {abi}) or a pid namespace in the profile"
    )]
    SignalScope { abi: i32 },
    #[error(
        "abstract unix socket scoping needs Landlock ABI {SCOPE_ABI} (kernel has ABI {abi}) or a network namespace in the profile"
    )]
    AbstractSocketScope { abi: i32 },
}

/// What the helper knows about the host before it starts changing anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostFeatures {
    /// 0 when Landlock is missing or disabled.
    pub landlock_abi: i32,
    pub seccomp_filter: bool,
    pub euid: u32,
}

impl HostFeatures {
    /// Asks the kernel (two cheap system calls, no fork).
    #[must_use]
    pub fn detect() -> Self {
        Self {
            landlock_abi: crate::landlock::kernel_abi(),
            seccomp_filter: crate::seccomp::filter_mode_available(),
            // SAFETY: geteuid cannot fail and has no preconditions.
            euid: unsafe { libc::geteuid() },
        }
    }
}

/// How `tasks` is enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TasksEnforcement {
    Unlimited,
    /// `RLIMIT_NPROC` (non-root helper).
    Rlimit(u64),
    /// `pids.max` of a pids cgroup (root helper: the kernel ignores `RLIMIT_NPROC` for uid 0).
    Cgroup(u64),
}

impl TasksEnforcement {
    /// The `RLIMIT_NPROC` value, when that is the mechanism.
    #[must_use]
    pub fn rlimit(self) -> Option<u64> {
        match self {
            Self::Rlimit(n) => Some(n),
            Self::Unlimited | Self::Cgroup(_) => None,
        }
    }
}

/// What keeps the host's pathname UNIX sockets out of the command's reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnixSocketIsolation {
    /// Landlock ABI 9 handles `LANDLOCK_ACCESS_FS_RESOLVE_UNIX` (and so does a private root,
    /// when the spec has a mount namespace anyway).
    Landlock,
    /// Only the private root filesystem: the mount namespace was added for it.
    PrivateRoot {
        /// No other part of the spec needs a namespace; a failure to create them is reported
        /// as this requirement.
        only_reason_for_namespaces: bool,
    },
}

/// How the helper will enforce one spec on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub namespaces: NamespaceSet,
    pub landlock_abi: i32,
    pub tasks: TasksEnforcement,
    /// Bring `lo` up in the new network namespace.
    pub loopback: bool,
    pub unix_sockets: UnixSocketIsolation,
}

/// Validates `spec` and decides how to enforce it on `host`.
///
/// # Errors
///
/// [`CheckError`] naming the invalid field or the missing host feature.
pub fn plan(spec: &SandboxSpec, host: &HostFeatures) -> Result<Plan, CheckError> {
    validate(spec)?;
    if !host.seccomp_filter {
        return Err(CheckError::SeccompMissing);
    }
    let abi = host.landlock_abi;
    if abi <= 0 {
        return Err(CheckError::LandlockMissing);
    }
    if abi < MIN_ABI {
        return Err(CheckError::LandlockTooOld { abi });
    }
    if matches!(spec.network, NetworkRules::AllowTcp { .. }) && abi < NET_ABI {
        return Err(CheckError::TcpRulesMissing { abi });
    }

    let asked = spec.namespaces;
    let protected = !spec.filesystem.protected.is_empty();
    let loopback = spec.network == NetworkRules::Loopback;
    let pid = asked.pid;
    let needed = asked.user || asked.mount || asked.net || pid || protected || loopback;
    let unix_sockets = if abi >= UNIX_SOCKET_ABI {
        UnixSocketIsolation::Landlock
    } else {
        UnixSocketIsolation::PrivateRoot {
            only_reason_for_namespaces: !needed,
        }
    };
    let private_root = matches!(unix_sockets, UnixSocketIsolation::PrivateRoot { .. });
    let mount = asked.mount || pid || protected || private_root;
    let net = asked.net || loopback || (spec.network == NetworkRules::Off && asked.user);
    let user = asked.user || mount || net || pid;
    let namespaces = NamespaceSet {
        user,
        mount,
        net,
        pid,
    };

    if abi < SCOPE_ABI && !pid {
        return Err(CheckError::SignalScope { abi });
    }
    if abi < SCOPE_ABI && !net {
        return Err(CheckError::AbstractSocketScope { abi });
    }

    // Helper processes inside the sandbox's accounting: with a PID namespace, the process that
    // created it and PID 1 (see `supervise`), both in the cgroup and in the new user namespace
    // whose uid count RLIMIT_NPROC checks; without, none (the top process execs the command).
    let overhead = if pid { 2 } else { 0 };
    let tasks = match spec.limits.tasks {
        None => TasksEnforcement::Unlimited,
        Some(n) if host.euid == 0 => TasksEnforcement::Cgroup(n.saturating_add(overhead)),
        Some(n) => TasksEnforcement::Rlimit(n.saturating_add(overhead)),
    };
    Ok(Plan {
        namespaces,
        landlock_abi: abi,
        tasks,
        loopback,
        unix_sockets,
    })
}

fn validate(spec: &SandboxSpec) -> Result<(), CheckError> {
    if spec.argv.is_empty() {
        return Err(CheckError::EmptyArgv);
    }
    if let Some(i) = spec.argv.iter().position(|a| a.contains('\0')) {
        return Err(CheckError::ArgvNul(i));
    }
    let fs = &spec.filesystem;
    let groups: [(&'static str, &[PathBuf]); 4] = [
        ("read", &fs.read),
        ("write", &fs.write),
        ("protected", &fs.protected),
        ("cwd", std::slice::from_ref(&spec.cwd)),
    ];
    for (what, paths) in groups {
        for path in paths {
            check_path(what, path)?;
        }
    }
    if !fs
        .read
        .iter()
        .chain(&fs.write)
        .any(|root| spec.cwd.starts_with(root))
    {
        return Err(CheckError::CwdOutsideRoots(spec.cwd.clone()));
    }
    Ok(())
}

fn check_path(what: &'static str, path: &Path) -> Result<(), CheckError> {
    if !path.is_absolute() {
        return Err(CheckError::Relative {
            what,
            path: path.to_path_buf(),
        });
    }
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(CheckError::DotDot {
            what,
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{FilesystemRules, NamespaceRules, ResourceLimits};

    fn spec() -> SandboxSpec {
        SandboxSpec {
            profile: "test".into(),
            argv: vec!["true".into()],
            cwd: "/ws".into(),
            env: vec![],
            filesystem: FilesystemRules {
                read: vec!["/usr".into()],
                write: vec!["/ws".into()],
                protected: vec![],
            },
            network: NetworkRules::Off,
            namespaces: NamespaceRules::default(),
            limits: ResourceLimits::default(),
            builtin: None,
        }
    }

    const HOST: HostFeatures = HostFeatures {
        landlock_abi: 7,
        seccomp_filter: true,
        euid: 1000,
    };

    const HOST_ABI9: HostFeatures = HostFeatures {
        landlock_abi: 9,
        ..HOST
    };

    #[test]
    fn plain_spec_needs_no_namespace_when_landlock_hides_unix_sockets() {
        let plan = plan(&spec(), &HOST_ABI9).unwrap();
        assert!(!plan.namespaces.any());
        assert_eq!(plan.tasks, TasksEnforcement::Unlimited);
        assert_eq!(plan.unix_sockets, UnixSocketIsolation::Landlock);
    }

    #[test]
    fn below_abi_9_every_spec_gets_a_private_root() {
        let p = plan(&spec(), &HOST).unwrap();
        assert_eq!(
            p.namespaces,
            NamespaceSet {
                user: true,
                mount: true,
                net: false,
                pid: false
            }
        );
        assert_eq!(
            p.unix_sockets,
            UnixSocketIsolation::PrivateRoot {
                only_reason_for_namespaces: true
            }
        );
        for network in [
            NetworkRules::Loopback,
            NetworkRules::AllowTcp { ports: vec![443] },
        ] {
            let mut s = spec();
            s.network = network;
            assert!(plan(&s, &HOST).unwrap().namespaces.mount);
        }
        let mut s = spec();
        s.namespaces.pid = true;
        assert_eq!(
            plan(&s, &HOST).unwrap().unix_sockets,
            UnixSocketIsolation::PrivateRoot {
                only_reason_for_namespaces: false
            }
        );
        // With ABI 9 a spec that asks for a mount namespace still gets the private root.
        s.namespaces.pid = false;
        s.namespaces.mount = true;
        assert!(plan(&s, &HOST_ABI9).unwrap().namespaces.mount);
    }

    #[test]
    fn implications() {
        let mut s = spec();
        s.filesystem.protected = vec!["/ws/.git".into()];
        let ns = plan(&s, &HOST).unwrap().namespaces;
        assert_eq!(
            ns,
            NamespaceSet {
                user: true,
                mount: true,
                net: false,
                pid: false
            }
        );

        let mut s = spec();
        s.network = NetworkRules::Loopback;
        let p = plan(&s, &HOST_ABI9).unwrap();
        assert_eq!(
            p.namespaces,
            NamespaceSet {
                user: true,
                mount: false,
                net: true,
                pid: false
            }
        );
        assert!(p.loopback);

        let mut s = spec();
        s.namespaces.user = true;
        assert!(
            plan(&s, &HOST).unwrap().namespaces.net,
            "Off adds a network namespace when user ns is asked"
        );
        s.network = NetworkRules::AllowTcp { ports: vec![443] };
        assert!(!plan(&s, &HOST).unwrap().namespaces.net);
        // The namespaces implied for the private root do not add a network namespace.
        assert!(!plan(&spec(), &HOST).unwrap().namespaces.net);

        let mut s = spec();
        s.namespaces.pid = true;
        assert_eq!(
            plan(&s, &HOST).unwrap().namespaces,
            NamespaceSet {
                user: true,
                mount: true,
                net: false,
                pid: true
            }
        );
    }

    #[test]
    fn refuses_missing_host_features() {
        let s = spec();
        let host = |abi, seccomp| HostFeatures {
            landlock_abi: abi,
            seccomp_filter: seccomp,
            euid: 0,
        };
        assert_eq!(plan(&s, &host(7, false)), Err(CheckError::SeccompMissing));
        assert_eq!(plan(&s, &host(0, true)), Err(CheckError::LandlockMissing));
        assert_eq!(
            plan(&s, &host(2, true)),
            Err(CheckError::LandlockTooOld { abi: 2 })
        );
        assert_eq!(
            plan(&s, &host(5, true)),
            Err(CheckError::SignalScope { abi: 5 })
        );
        let mut tcp = spec();
        tcp.network = NetworkRules::AllowTcp { ports: vec![443] };
        assert_eq!(
            plan(&tcp, &host(3, true)),
            Err(CheckError::TcpRulesMissing { abi: 3 })
        );
        // Namespaces stand in for the missing scopes.
        let mut s = spec();
        s.namespaces = NamespaceRules {
            user: true,
            mount: false,
            pid: true,
            net: true,
        };
        assert!(plan(&s, &host(5, true)).is_ok());
        s.namespaces.net = false;
        s.network = NetworkRules::AllowTcp { ports: vec![443] };
        assert_eq!(
            plan(&s, &host(5, true)),
            Err(CheckError::AbstractSocketScope { abi: 5 })
        );
    }

    #[test]
    fn tasks_use_cgroup_for_root_and_rlimit_otherwise() {
        let mut s = spec();
        s.limits.tasks = Some(10);
        assert_eq!(plan(&s, &HOST).unwrap().tasks, TasksEnforcement::Rlimit(10));
        let root = HostFeatures { euid: 0, ..HOST };
        assert_eq!(plan(&s, &root).unwrap().tasks, TasksEnforcement::Cgroup(10));
        s.namespaces.pid = true;
        assert_eq!(plan(&s, &root).unwrap().tasks, TasksEnforcement::Cgroup(12));
        assert_eq!(plan(&s, &HOST).unwrap().tasks, TasksEnforcement::Rlimit(12));
    }

    #[test]
    fn rejects_invalid_specs() {
        let mut s = spec();
        s.argv.clear();
        assert_eq!(plan(&s, &HOST), Err(CheckError::EmptyArgv));
        let mut s = spec();
        s.cwd = "/elsewhere".into();
        assert_eq!(
            plan(&s, &HOST),
            Err(CheckError::CwdOutsideRoots("/elsewhere".into()))
        );
        let mut s = spec();
        s.filesystem.write = vec!["ws".into()];
        assert!(matches!(
            plan(&s, &HOST),
            Err(CheckError::Relative { what: "write", .. })
        ));
        let mut s = spec();
        s.filesystem.read.push("/usr/../etc".into());
        assert!(matches!(
            plan(&s, &HOST),
            Err(CheckError::DotDot { what: "read", .. })
        ));
        let mut s = spec();
        s.argv.push("a\0b".into());
        assert_eq!(plan(&s, &HOST), Err(CheckError::ArgvNul(1)));
    }
}
