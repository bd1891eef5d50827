//! Kernel interfaces a tool never needs and an escape often does: new namespaces, chroot,
//! device nodes, file handles, the keyring, userfaultfd, personality flags, and the host's
//! knobs under `/proc/sys`, `/sys`, cgroups and `/dev`; next to the ones that stay open.
//!
//! The right reasons: seccomp refuses the calls (`EPERM`); the knobs are not in the view
//! (`ENOENT`), Landlock refuses them (`EACCES`), or the container mounts them read-only
//! (`EROFS`) or masks them.

use super::{args, assert_absent};
use crate::suite::case::{Case, Errnos, Expect, both};
use crate::suite::world::Profile;

const SECCOMP: Errnos = both(&["EPERM"]);
/// A host knob: absent from the view, refused by Landlock, mounted read-only, or not
/// openable without privileges.
const HOST_KNOB: Errnos = both(&["ENOENT", "EACCES", "EROFS", "EPERM"]);

pub fn unshare_user_namespace() -> Case {
    Case::new(Expect::Denied(SECCOMP), |_| args(&["unshare", "user"])).control(&[])
}

pub fn unshare_mount_namespace() -> Case {
    Case::new(Expect::Denied(SECCOMP), |_| args(&["unshare", "mount"])).control(&[])
}

pub fn chroot_breakout() -> Case {
    Case::new(Expect::Denied(SECCOMP), |w| {
        args(&["chroot-breakout", &w.out("chroot-escape")])
    })
    .check(|w, _| assert_absent(&w.outside.join("chroot-escape")))
}

pub fn mknod_block_device() -> Case {
    Case::new(Expect::Denied(SECCOMP), |_| args(&["mknod-block", "disk"]))
        .control(&[])
        .check(|w, _| assert_absent(&w.ws.join("disk")))
}

pub fn open_by_handle() -> Case {
    Case::new(Expect::Denied(SECCOMP), |_| args(&["open-by-handle"])).control(&["EOPNOTSUPP"])
}

pub fn kernel_keyring() -> Case {
    Case::new(Expect::Denied(SECCOMP), |_| args(&["keyring"])).control(&[])
}

pub fn userfaultfd() -> Case {
    Case::new(Expect::Denied(SECCOMP), |_| args(&["userfaultfd"])).control(&[])
}

pub fn personality_no_randomize() -> Case {
    Case::new(Expect::Denied(SECCOMP), |_| {
        args(&["personality", "no-randomize"])
    })
    .control(&[])
}

pub fn personality_query() -> Case {
    Case::new(Expect::Succeeds, |_| args(&["personality", "query"]))
}

pub fn sysctl_core_pattern() -> Case {
    // Opened for writing only (nothing is written): core_pattern runs a program as root on
    // the host.
    Case::new(Expect::Denied(HOST_KNOB), |_| {
        args(&["open-write", "/proc/sys/kernel/core_pattern"])
    })
    .profile(Profile::ProcVisible)
    .control(&[])
}

pub fn sysfs_uevent_helper() -> Case {
    Case::new(Expect::Denied(HOST_KNOB), |_| {
        args(&["open-write", "/sys/kernel/uevent_helper"])
    })
    // Without CONFIG_UEVENT_HELPER the file does not exist on the host either.
    .control(&["ENOENT"])
}

pub fn cgroup_escape() -> Case {
    // The root cgroup's process list: writing a pid there leaves every limit behind.
    Case::new(Expect::Denied(HOST_KNOB), |_| {
        let procs = [
            "/sys/fs/cgroup/pids/cgroup.procs",
            "/sys/fs/cgroup/cgroup.procs",
        ]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("/sys/fs/cgroup/cgroup.procs");
        args(&["open-write", procs])
    })
    .control(&[])
}

pub fn sysrq_trigger() -> Case {
    // Opened for writing only: one byte there could crash or reboot the host.
    Case::new(Expect::Denied(HOST_KNOB), |_| {
        args(&["open-write", "/proc/sysrq-trigger"])
    })
    .profile(Profile::ProcVisible)
    // Without CONFIG_MAGIC_SYSRQ the file does not exist on the host either.
    .control(&["ENOENT"])
}

pub fn kmsg_inject() -> Case {
    Case::new(Expect::Denied(HOST_KNOB), |_| {
        args(&["open-write", "/dev/kmsg"])
    })
    .control(&[])
}

pub fn dev_null_write() -> Case {
    Case::new(Expect::Succeeds, |_| args(&["open-write", "/dev/null"]))
}
