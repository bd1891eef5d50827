//! `talaria-sandbox --probe`: what this host can enforce, as JSON, for the executor and
//! `talaria doctor`.
//!
//! Every answer comes from trying or asking the kernel, not from version numbers: the Landlock
//! ABI from `landlock_create_ruleset(LANDLOCK_CREATE_RULESET_VERSION)`, seccomp from
//! `SECCOMP_GET_ACTION_AVAIL`, user namespaces by forking a child that creates user and mount
//! namespaces, writes its id maps, changes mount propagation and pivots into an empty tmpfs
//! root (what a sandbox needs), and the pids cgroup by locating a writable one. The probe
//! changes nothing on the host.

use serde::{Deserialize, Serialize};

use crate::cgroup::PidsHierarchy;
use crate::check::HostFeatures;
use crate::landlock::{NET_ABI, SCOPE_ABI, UNIX_SOCKET_ABI};
use crate::namespaces::{self, HostIds, NamespaceSet};
use crate::supervise::{self, Forked};
use crate::sys;

/// The `--probe` report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeReport {
    /// Version of the helper that wrote the report.
    pub helper_version: String,
    /// `x86_64` or `aarch64`.
    pub arch: String,
    /// Effective uid of the helper.
    pub euid: u32,
    /// Landlock ABI of the kernel, 0 when Landlock is missing or disabled.
    pub landlock_abi: i32,
    /// TCP port rules (ABI 4+): needed for `allow_tcp`.
    pub landlock_tcp: bool,
    /// Abstract-socket and signal scoping (ABI 6+).
    pub landlock_scopes: bool,
    /// `connect` on pathname UNIX sockets mediated by Landlock (ABI 9+). Without it every
    /// sandbox gets a private root filesystem, which needs `user_namespaces`.
    pub landlock_unix_sockets: bool,
    /// seccomp filters returning an errno.
    pub seccomp_filter: bool,
    /// Whether a child could create user + mount namespaces, map its ids and switch into a
    /// private root filesystem.
    pub user_namespaces: bool,
    /// Why not, when `user_namespaces` is false.
    pub user_namespaces_error: Option<String>,
    /// The pids cgroup the helper would use for `tasks` as root; `null` if none.
    pub pids_cgroup: Option<PidsHierarchy>,
    /// Whether `tasks` can be enforced at all: `RLIMIT_NPROC` for non-root, the pids cgroup for
    /// root.
    pub tasks_enforceable: bool,
}

/// Runs every probe.
#[must_use]
pub fn probe() -> ProbeReport {
    let host = HostFeatures::detect();
    let user_namespaces_error = try_user_namespace().err();
    let pids_cgroup = PidsHierarchy::locate().ok();
    ProbeReport {
        helper_version: env!("CARGO_PKG_VERSION").to_owned(),
        arch: std::env::consts::ARCH.to_owned(),
        euid: host.euid,
        landlock_abi: host.landlock_abi,
        landlock_tcp: host.landlock_abi >= NET_ABI,
        landlock_scopes: host.landlock_abi >= SCOPE_ABI,
        landlock_unix_sockets: host.landlock_abi >= UNIX_SOCKET_ABI,
        seccomp_filter: host.seccomp_filter,
        user_namespaces: user_namespaces_error.is_none(),
        user_namespaces_error,
        tasks_enforceable: host.euid != 0 || pids_cgroup.is_some(),
        pids_cgroup,
    }
}

/// Forks a child that enters user + mount namespaces as a sandbox would, down to switching into
/// a private root; the child's exit code carries the errno of the first failure.
fn try_user_namespace() -> Result<(), String> {
    let ids = HostIds::current();
    match supervise::fork() {
        Err(e) => Err(format!("cannot fork to probe: {}", sys::describe(&e))),
        Ok(Forked::Child) => {
            let set = NamespaceSet {
                user: true,
                mount: true,
                net: false,
                pid: false,
            };
            let code = match namespaces::enter(set, ids) {
                Ok(()) => match crate::mounts::make_private() {
                    Ok(()) => match crate::rootfs::try_empty_root() {
                        Ok(()) => 0,
                        Err(_) => 202,
                    },
                    Err(_) => 200,
                },
                Err(namespaces::NamespaceError::Unshare(e)) => {
                    e.raw_os_error().unwrap_or(1).clamp(1, 199)
                }
                Err(_) => 201,
            };
            sys::exit_child(code)
        }
        Ok(Forked::Parent { child }) => {
            let mut status = 0;
            // SAFETY: `status` is valid, writable storage; `child` is our child.
            let ret = unsafe { libc::waitpid(child, &raw mut status, 0) };
            if ret != child {
                return Err("cannot wait for the probe child".to_owned());
            }
            match supervise::exit_code(status) {
                0 => Ok(()),
                200 => Err("cannot change mount propagation in a new mount namespace".to_owned()),
                201 => Err("cannot write the id maps of a new user namespace".to_owned()),
                202 => Err(
                    "cannot switch into a private root filesystem in a new mount namespace"
                        .to_owned(),
                ),
                errno => Err(format!(
                    "unshare(CLONE_NEWUSER): {}",
                    sys::describe(&std::io::Error::from_raw_os_error(errno))
                )),
            }
        }
    }
}
