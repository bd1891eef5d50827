//! Step 5a: resource limits as rlimits, applied to the command's process just before
//! confinement (children inherit them).
//!
//! Each limit is set with soft = hard, so the command cannot raise it back. The helper cannot
//! raise a hard limit either (that needs `CAP_SYS_RESOURCE`), so a requested value above the
//! current hard limit is clamped to the hard limit, which is stricter than asked, never looser.
//! `RLIMIT_CORE` is always 0: a core dump of a tool could spill secrets it read into the
//! workspace.
//!
//! `RLIMIT_NPROC` is **not enforced for uid 0** (the kernel skips the check for root), so for a
//! root helper `tasks` is enforced with the pids cgroup instead ([`crate::cgroup`]); this module
//! then leaves `RLIMIT_NPROC` alone. For other uids, note that `RLIMIT_NPROC` counts every process
//! of the real uid in the user namespace: without a user namespace that includes the user's
//! other processes.

use std::io;

use crate::spec::ResourceLimits;
use crate::sys;

#[cfg(target_env = "gnu")]
type Resource = libc::__rlimit_resource_t;
#[cfg(not(target_env = "gnu"))]
type Resource = libc::c_int;

/// Why an rlimit could not be set.
#[derive(Debug, thiserror::Error)]
pub enum LimitsError {
    #[error("cannot set {name} to {value}: {}", sys::describe(.source))]
    Set {
        name: &'static str,
        value: u64,
        #[source]
        source: io::Error,
    },
}

/// The rlimits to apply, computed before forking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimits {
    limits: ResourceLimits,
    /// `RLIMIT_NPROC`, when it is the mechanism for `tasks` (non-root helper).
    nproc: Option<u64>,
}

impl Rlimits {
    /// `nproc` is `Some` only when `RLIMIT_NPROC` enforces `tasks` (see the module docs).
    #[must_use]
    pub fn new(limits: ResourceLimits, nproc: Option<u64>) -> Self {
        Self { limits, nproc }
    }

    /// Applies every limit to the calling process.
    ///
    /// # Errors
    ///
    /// [`LimitsError`] naming the first limit the kernel refused.
    pub fn apply(&self) -> Result<(), LimitsError> {
        let l = &self.limits;
        let table = [
            ("RLIMIT_CPU", libc::RLIMIT_CPU, l.cpu_seconds),
            ("RLIMIT_AS", libc::RLIMIT_AS, l.memory_bytes),
            ("RLIMIT_NPROC", libc::RLIMIT_NPROC, self.nproc),
            ("RLIMIT_FSIZE", libc::RLIMIT_FSIZE, l.file_size_bytes),
            ("RLIMIT_NOFILE", libc::RLIMIT_NOFILE, l.open_files),
            ("RLIMIT_CORE", libc::RLIMIT_CORE, Some(0)),
        ];
        for (name, resource, value) in table {
            if let Some(value) = value {
                set(name, resource, value)?;
            }
        }
        Ok(())
    }
}

fn set(name: &'static str, resource: Resource, value: u64) -> Result<(), LimitsError> {
    let err = |source| LimitsError::Set {
        name,
        value,
        source,
    };
    let mut current = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `current` is a valid, writable rlimit.
    sys::cvt(unsafe { libc::getrlimit(resource, &raw mut current) }).map_err(err)?;
    let value = value.min(current.rlim_max);
    let new = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: `new` is a valid rlimit that outlives the call.
    sys::cvt(unsafe { libc::setrlimit(resource, &raw const new) }).map_err(err)?;
    Ok(())
}
