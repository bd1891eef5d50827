//! The contract between whoever decides a policy and the helper that enforces it.
//!
//! A [`SandboxSpec`] is fully resolved: absolute paths, no variables, no inheritance, numbers
//! instead of units. The policy layer (`talaria-policy`) produces it; the helper binary reads
//! it and either enforces every part of it or refuses to run the command. Nothing here has a
//! "best effort" mode: a field that is set is a requirement.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Everything the helper needs to run one command confined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxSpec {
    /// The profile this came from, for error messages and logs.
    pub profile: String,
    /// Program and arguments. A program without a `/` is looked up in the `PATH` of `env`.
    pub argv: Vec<String>,
    /// Working directory; must be inside a readable root.
    pub cwd: PathBuf,
    /// The complete environment of the command. Nothing else is inherited.
    pub env: Vec<(String, String)>,
    pub filesystem: FilesystemRules,
    pub network: NetworkRules,
    pub namespaces: NamespaceRules,
    pub limits: ResourceLimits,
    /// Instead of exec'ing `argv`, run this built-in file operation in the helper itself once
    /// it is confined exactly as the command would have been (see [`crate::fileops`]); `argv`
    /// then only names it in messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builtin: Option<crate::fileops::FileOp>,
}

/// Filesystem access. Everything not listed is denied by Landlock, and in the private root
/// filesystem (every sandbox with a mount namespace, which is every sandbox on kernels below
/// Landlock ABI 9) it does not exist at all: the roots are mounted at their canonical paths,
/// the symlinks leading to them and the system aliases in `/` and `/dev` are recreated, and
/// nothing else is there.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesystemRules {
    /// Readable (and executable) trees.
    pub read: Vec<PathBuf>,
    /// Readable, writable and executable trees.
    pub write: Vec<PathBuf>,
    /// Paths that stay read-only even inside a writable tree. Enforced with read-only bind
    /// mounts in a private mount namespace (so they need user namespaces); a protected path that
    /// does not exist yet gets an empty read-only placeholder at its first missing component for
    /// the duration of the command. Symlinks are never followed out of the writable trees.
    pub protected: Vec<PathBuf>,
}

/// Network access.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "mode", deny_unknown_fields)]
pub enum NetworkRules {
    /// No sockets but AF_UNIX (seccomp), no TCP bind/connect (Landlock), and when namespaces are
    /// available a private network namespace.
    Off,
    /// Only the loopback interface: a private network namespace whose `lo` is up. Needs user
    /// namespaces.
    Loopback,
    /// TCP connections to these ports only (Landlock ABI 4+). Landlock rules are port-based, so
    /// host names are checked by the policy layer, not here.
    AllowTcp { ports: Vec<u16> },
}

/// Namespaces to create. Creating a user namespace is what makes the others possible without
/// privileges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceRules {
    pub user: bool,
    pub mount: bool,
    pub pid: bool,
    pub net: bool,
}

/// Resource limits, applied as rlimits (and a wall-clock timeout enforced by the caller).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceLimits {
    pub cpu_seconds: Option<u64>,
    /// Address space (RLIMIT_AS), bytes.
    pub memory_bytes: Option<u64>,
    /// Processes/threads of the user (RLIMIT_NPROC); inside a fresh user namespace this counts
    /// only the sandbox's own tasks.
    pub tasks: Option<u64>,
    pub file_size_bytes: Option<u64>,
    pub open_files: Option<u64>,
}

/// How much output beyond what is kept makes a command a flood: once one stream has dropped
/// more than this many bytes (eight times the per-stream limit, at least 1 MiB), the caller stops
/// reading, kills the command and reports "output limit exceeded". Below it the middle of the
/// output is dropped and the command runs on, so a verbose build still finishes.
#[must_use]
pub fn output_flood_threshold(limit: usize) -> u64 {
    u64::try_from(limit)
        .unwrap_or(u64::MAX)
        .saturating_mul(8)
        .max(1 << 20)
}
