//! Finding and killing a container's processes through `/proc`, by PID namespace.
//!
//! The session container's PID 1 is the helper's reaper ([`crate::workload`]), which never
//! forks, so every other process in that PID namespace belongs to a command. Killing them all
//! after each command (and on timeout) is what keeps `sleep 100 &` from outliving its tool call,
//! and it also catches processes that left the command's process group or session. A process
//! cannot leave a PID namespace, so nothing escapes this. It works the same on cgroup v1, v2 and
//! without cgroups (rootless).

use std::io;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use crate::sys;

/// The inode of `pid`'s PID namespace.
///
/// # Errors
/// When `/proc/PID/ns/pid` cannot be read (the process is gone).
pub fn pid_namespace(pid: libc::pid_t) -> io::Result<u64> {
    Ok(std::fs::metadata(format!("/proc/{pid}/ns/pid"))?.ino())
}

/// Live (not zombie) processes in PID namespace `ns`, other than `keep`, as host PIDs.
#[must_use]
pub fn members(ns: u64, keep: libc::pid_t) -> Vec<libc::pid_t> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter(|pid| *pid != keep)
        .filter(|pid| pid_namespace(*pid).is_ok_and(|n| n == ns))
        .filter(|pid| !is_zombie(*pid))
        .collect()
}

fn is_zombie(pid: libc::pid_t) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    // The state follows the command name, which is in parentheses and may contain anything.
    stat.rfind(')')
        .and_then(|end| stat[end + 1..].split_whitespace().next())
        .is_none_or(|state| state == "Z" || state == "X")
}

/// SIGKILL every process in PID namespace `ns` but `keep`, until none is left or `patience`
/// runs out (a fork bomb is bounded by the pids cgroup, so this converges). Returns how many
/// are still alive (0 on success).
pub fn kill_all_but(ns: u64, keep: libc::pid_t, patience: Duration) -> usize {
    let started = Instant::now();
    loop {
        let live = members(ns, keep);
        if live.is_empty() {
            return 0;
        }
        if started.elapsed() > patience {
            return live.len();
        }
        for pid in &live {
            sys::kill(*pid, libc::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
