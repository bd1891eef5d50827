//! Step 5b: `tasks` for a root helper, enforced with the pids cgroup.
//!
//! The kernel does not apply `RLIMIT_NPROC` to uid 0, so a root helper (the usual case for a
//! system service, and for these tests) gets a child cgroup `talaria-sandbox-<pid>` of its own
//! pids cgroup, with `pids.max` set, on cgroup v1 (`…/pids`) or on cgroup v2 when the `pids`
//! controller is enabled for children there. The helper creates it and opens its
//! `cgroup.procs`; the process at the top of the sandbox writes itself in before it forks or
//! execs, so every task of the sandbox is counted; the supervising helper, outside the cgroup,
//! removes it after the command exited. If no pids cgroup is usable, a root helper refuses a
//! spec that sets `tasks`.
//!
//! This module must never write to a cgroup it did not create, except the `cgroup.procs` of
//! its own child cgroup.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Why the pids cgroup could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error(
        "no pids cgroup controller is available (neither a cgroup v1 pids hierarchy nor cgroup v2 with pids enabled for children)"
    )]
    Unavailable,
    #[error("cannot create pids cgroup {path}: {source}")]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot move the sandbox into pids cgroup {path}: {source}")]
    Join {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Which cgroup hierarchy provides the pids controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CgroupVersion {
    V1,
    V2,
}

/// The pids cgroup the helper itself is in, under which it creates the sandbox's cgroup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PidsHierarchy {
    pub version: CgroupVersion,
    pub parent: PathBuf,
}

impl PidsHierarchy {
    /// Finds the helper's own pids cgroup from `/proc/self/mountinfo` and `/proc/self/cgroup`.
    ///
    /// # Errors
    ///
    /// [`CgroupError::Unavailable`] when there is none, or it is not writable.
    pub fn locate() -> Result<Self, CgroupError> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|_| CgroupError::Unavailable)?;
        let membership =
            std::fs::read_to_string("/proc/self/cgroup").map_err(|_| CgroupError::Unavailable)?;
        let found = locate_in(&mountinfo, &membership, |dir| {
            // SAFETY: the path is NUL-terminated and only read.
            crate::sys::c_string(dir.as_os_str())
                .is_some_and(|c| unsafe { libc::access(c.as_ptr(), libc::W_OK) } == 0)
        });
        found.ok_or(CgroupError::Unavailable)
    }
}

/// The pure part of [`PidsHierarchy::locate`]: `writable` says whether a directory can be
/// written; for v2 the `cgroup.subtree_control` of the parent must list `pids`.
fn locate_in(
    mountinfo: &str,
    membership: &str,
    writable: impl Fn(&Path) -> bool,
) -> Option<PidsHierarchy> {
    let mut v1_mount = None;
    let mut v2_mount = None;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(dash) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        let (Some(mount_point), Some(fstype), Some(options)) =
            (fields.get(4), fields.get(dash + 1), fields.get(dash + 3))
        else {
            continue;
        };
        match *fstype {
            "cgroup" if options.split(',').any(|o| o == "pids") => {
                v1_mount = Some(PathBuf::from(mount_point))
            }
            "cgroup2" => v2_mount = Some(PathBuf::from(mount_point)),
            _ => {}
        }
    }
    let mut v1_path = None;
    let mut v2_path = None;
    for line in membership.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(hierarchy), Some(controllers), Some(path)) =
            (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if hierarchy == "0" && controllers.is_empty() {
            v2_path = Some(path);
        } else if controllers.split(',').any(|c| c == "pids") {
            v1_path = Some(path);
        }
    }
    if let (Some(mount), Some(path)) = (v1_mount, v1_path) {
        let parent = join_cgroup_path(&mount, path);
        if writable(&parent) {
            return Some(PidsHierarchy {
                version: CgroupVersion::V1,
                parent,
            });
        }
    }
    if let (Some(mount), Some(path)) = (v2_mount, v2_path) {
        let parent = join_cgroup_path(&mount, path);
        let delegated = std::fs::read_to_string(parent.join("cgroup.subtree_control"))
            .is_ok_and(|s| s.split_whitespace().any(|c| c == "pids"));
        if delegated && writable(&parent) {
            return Some(PidsHierarchy {
                version: CgroupVersion::V2,
                parent,
            });
        }
    }
    None
}

fn join_cgroup_path(mount: &Path, path: &str) -> PathBuf {
    match path.trim_start_matches('/') {
        "" => mount.to_path_buf(),
        relative => mount.join(relative),
    }
}

/// The sandbox's own pids cgroup, removed by [`PidsCgroup::remove`].
#[derive(Debug)]
pub struct PidsCgroup {
    path: PathBuf,
    procs: File,
}

impl PidsCgroup {
    /// Creates `talaria-sandbox-<pid>` under `hierarchy` with `pids.max = max` and opens its
    /// `cgroup.procs` for [`PidsCgroup::join`].
    ///
    /// # Errors
    ///
    /// [`CgroupError::Create`] when any step fails; the directory is removed again.
    pub fn create(hierarchy: &PidsHierarchy, max: u64) -> Result<Self, CgroupError> {
        let path = hierarchy
            .parent
            .join(format!("talaria-sandbox-{}", std::process::id()));
        let err = |source| CgroupError::Create {
            path: path.clone(),
            source,
        };
        // A directory left by a crashed helper that had the same pid is empty by now.
        let _ = std::fs::remove_dir(&path);
        sweep_stale(&hierarchy.parent);
        std::fs::create_dir(&path).map_err(err)?;
        let setup = || -> io::Result<File> {
            std::fs::write(path.join("pids.max"), max.to_string())?;
            std::fs::OpenOptions::new()
                .write(true)
                .open(path.join("cgroup.procs"))
        };
        match setup() {
            Ok(procs) => Ok(Self { path, procs }),
            Err(source) => {
                let _ = std::fs::remove_dir(&path);
                Err(err(source))
            }
        }
    }

    /// Moves the calling process into the cgroup (its future children follow).
    ///
    /// # Errors
    ///
    /// [`CgroupError::Join`] when the kernel refuses.
    pub fn join(&self) -> Result<(), CgroupError> {
        // "0" means the writing process. The descriptor was opened by the helper before any
        // namespace change, and the kernel checks the opener's credentials.
        (&self.procs)
            .write_all(b"0")
            .map_err(|source| CgroupError::Join {
                path: self.path.clone(),
                source,
            })
    }

    /// Removes the cgroup once its tasks are gone (retrying briefly: the last exit may still be
    /// settling). Best effort.
    pub fn remove(self) {
        for _ in 0..50 {
            match std::fs::remove_dir(&self.path) {
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                _ => return,
            }
        }
    }
}

/// Removes the cgroups of helpers that are gone: a helper killed with its whole process group
/// (a wall-clock timeout) cannot remove its own. `rmdir` only succeeds on an empty cgroup, so a
/// live sandbox's cgroup is never touched even if its pid were misread.
fn sweep_stale(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("talaria-sandbox-"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_cgroups_of_dead_helpers_are_swept() {
        let parent = tempfile::tempdir().unwrap();
        let dead = parent.path().join("talaria-sandbox-4000000000");
        let alive = parent.path().join("talaria-sandbox-1");
        let other = parent.path().join("something-else-4000000000");
        for dir in [&dead, &alive, &other] {
            std::fs::create_dir(dir).unwrap();
        }
        sweep_stale(parent.path());
        assert!(!dead.exists(), "a dead helper's empty cgroup is removed");
        assert!(alive.exists(), "pid 1 is alive: kept");
        assert!(other.exists(), "not ours: kept");
    }

    const MOUNTINFO: &str = "\
35 25 0:30 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
40 35 0:35 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 35 0:36 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn prefers_the_v1_pids_hierarchy() {
        let membership = "8:pids:/user.slice\n0::/\n";
        let found = locate_in(MOUNTINFO, membership, |_| true).unwrap();
        assert_eq!(found.version, CgroupVersion::V1);
        assert_eq!(found.parent, Path::new("/sys/fs/cgroup/pids/user.slice"));
    }

    #[test]
    fn none_when_not_writable_or_missing() {
        assert_eq!(locate_in(MOUNTINFO, "8:pids:/\n0::/\n", |_| false), None);
        assert_eq!(locate_in("", "0::/\n", |_| true), None);
    }
}
