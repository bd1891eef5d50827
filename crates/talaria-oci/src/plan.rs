//! What a session container looks like ([`ContainerPlan`]) and what one command in it asks for
//! ([`ContainerCommand`]), both derived from a resolved [`SandboxSpec`].
//!
//! The split follows what can change between two commands of one session. The plan fixes the
//! container: root filesystem, mounts, network, cgroup limits and the seccomp filter. Two commands
//! with equal plans share a container; a command with a different plan replaces it. The command
//! carries what is per process: argv, working directory, environment, rlimits, stdin, timeout and
//! output limit.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use talaria_sandbox::spec::{FilesystemRules, NetworkRules, SandboxSpec};

/// The session container, as the policy resolved it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerPlan {
    /// The profile this came from, for error messages.
    pub profile: String,
    /// A plain root filesystem directory or an OCI image layout (`oci.rootfs`).
    pub rootfs: PathBuf,
    /// `${workspace}`, canonical. Write roots are mounted only inside it or `scratch`.
    pub workspace: PathBuf,
    /// `${tmp}`, canonical.
    pub scratch: PathBuf,
    pub filesystem: FilesystemRules,
    pub network: NetworkRules,
    /// Memory cgroup limit of the whole container, bytes.
    pub memory_bytes: Option<u64>,
    /// Pids cgroup limit for the commands (the container's own init is added on top).
    pub tasks: Option<u64>,
}

/// Per-command rlimits (soft = hard, clamped to what the helper itself has).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandLimits {
    pub cpu_seconds: Option<u64>,
    pub file_size_bytes: Option<u64>,
    pub open_files: Option<u64>,
}

/// One command to run in the session container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerCommand {
    pub argv: Vec<String>,
    /// Absolute, as seen inside the container (the same path as on the host for mounted roots).
    pub cwd: PathBuf,
    /// The complete environment; nothing else is inherited.
    pub env: Vec<(String, String)>,
    pub limits: CommandLimits,
    /// `None`: stdin is `/dev/null`.
    pub stdin: Option<Vec<u8>>,
    pub timeout: Duration,
    /// Bytes kept of stdout and of stderr each (head and tail).
    pub output_limit: usize,
}

impl ContainerPlan {
    /// The container part of `spec`. `workspace` and `scratch` are the request's `${workspace}`
    /// and `${tmp}`; they are canonicalized here (the spec's roots already are).
    #[must_use]
    pub fn from_spec(spec: &SandboxSpec, rootfs: &Path, workspace: &Path, scratch: &Path) -> Self {
        let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
        Self {
            profile: spec.profile.clone(),
            rootfs: rootfs.to_owned(),
            workspace: canonical(workspace),
            scratch: canonical(scratch),
            filesystem: spec.filesystem.clone(),
            network: spec.network.clone(),
            memory_bytes: spec.limits.memory_bytes,
            tasks: spec.limits.tasks,
        }
    }
}

impl ContainerCommand {
    /// The per-command part of `spec`.
    #[must_use]
    pub fn from_spec(
        spec: &SandboxSpec,
        stdin: Option<Vec<u8>>,
        timeout: Duration,
        output_limit: usize,
    ) -> Self {
        Self {
            argv: spec.argv.clone(),
            cwd: spec.cwd.clone(),
            env: spec.env.clone(),
            limits: CommandLimits {
                cpu_seconds: spec.limits.cpu_seconds,
                file_size_bytes: spec.limits.file_size_bytes,
                open_files: spec.limits.open_files,
            },
            stdin,
            timeout,
            output_limit,
        }
    }
}
