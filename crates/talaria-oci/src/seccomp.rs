//! The container's seccomp filter: the same deny list as the Landlock backend's helper
//! (`talaria_sandbox::seccomp`, whose module docs give the reason for each rule), in two forms.
//!
//! * [`oci_profile`] writes it into `config.json` as an OCI `linux.seccomp` section, so the
//!   bundle states what the container is confined by, and libcontainer loads it (through
//!   libseccomp) into the container's init.
//! * [`command_filter`] is `talaria_sandbox::seccomp::build` itself: the workload installs it
//!   in every process it starts (see [`crate::workload`]), because libcontainer 0.7 drops
//!   `linux.seccomp` when it execs a process into a running container (the tenant path
//!   rebuilds the spec's `linux` section without it). Without this second form, every command
//!   after the first would run unfiltered.
//!
//! The OCI form cannot say everything the BPF form says: libcontainer ORs conditions on the same
//! argument. Where that matters the OCI profile is stricter, never looser: `personality` is
//! denied for every argument but 0 (the BPF filter also allows the 0xffffffff query), and the
//! allowed socket domains are written as a list of denied values and ranges.

use libcontainer::oci_spec;
use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder, LinuxSeccompBuilder,
    LinuxSeccompOperator, LinuxSyscall, LinuxSyscallBuilder,
};
use talaria_sandbox::seccomp::{SeccompError, SeccompProgram};
use talaria_sandbox::spec::NetworkRules;

/// Syscalls denied whatever their arguments; `talaria_sandbox::seccomp`'s `always_denied` list
/// by name (a unit test keeps the two equal).
pub const ALWAYS_DENIED: &[&str] = &[
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "mount",
    "umount2",
    "pivot_root",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "setns",
    "kexec_load",
    "kexec_file_load",
    "reboot",
    "init_module",
    "finit_module",
    "delete_module",
    "bpf",
    "keyctl",
    "add_key",
    "request_key",
    "userfaultfd",
    "perf_event_open",
    "acct",
    "swapon",
    "swapoff",
    "syslog",
    "quotactl",
    "quotactl_fd",
    "lookup_dcookie",
    "nfsservctl",
    "vhangup",
    "open_by_handle_at",
    "name_to_handle_at",
    #[cfg(target_arch = "x86_64")]
    "uselib",
    #[cfg(target_arch = "x86_64")]
    "iopl",
    #[cfg(target_arch = "x86_64")]
    "ioperm",
];

/// The namespace-creating flags of `clone` and `unshare` (`CLONE_NEWTIME` only for `unshare`:
/// in `clone` its bit is part of the exit signal).
const CLONE_NEW_FLAGS: [libc::c_int; 7] = [
    libc::CLONE_NEWNS,
    libc::CLONE_NEWCGROUP,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
];
const CLONE_NEWTIME: libc::c_int = 0x80;

/// The calls that set a file's mode, grouped by the index of their mode argument: a mode with
/// `S_ISUID` or `S_ISGID` is refused (`talaria_sandbox::seccomp` says why). Names the kernel or
/// libseccomp does not know (`fchmodat2` before 6.6) are skipped by libcontainer; the BPF form
/// has them by number.
const MODE_SETTING_CALLS: &[(&[&str], usize)] = &[
    (&["chmod", "fchmod", "creat", "mkdir", "mknod"], 1),
    (&["fchmodat", "fchmodat2", "open", "mkdirat", "mknodat"], 2),
    (&["openat"], 3),
];

/// Why the OCI profile could not be built (a bug in this module, not a host condition).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the OCI seccomp profile: {0}")]
pub struct ProfileError(#[from] oci_spec::OciSpecError);

/// The BPF filter every command gets, identical to the Landlock backend's.
///
/// # Errors
/// When seccompiler rejects a rule (a bug, not a host condition).
pub fn command_filter(network: &NetworkRules) -> Result<SeccompProgram, SeccompError> {
    talaria_sandbox::seccomp::build(network)
}

/// The OCI `linux.seccomp` section for `network`.
///
/// # Errors
/// [`ProfileError`] if oci-spec rejects a rule (a bug).
pub fn oci_profile(network: &NetworkRules) -> Result<LinuxSeccomp, ProfileError> {
    let eperm = |names: &[&str], args: Option<Vec<LinuxSeccompArg>>| {
        let mut b = LinuxSyscallBuilder::default()
            .names(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
            .action(LinuxSeccompAction::ScmpActErrno)
            .errno_ret(errno(libc::EPERM));
        if let Some(args) = args {
            b = b.args(args);
        }
        b.build()
    };
    let mut syscalls: Vec<LinuxSyscall> = vec![eperm(ALWAYS_DENIED, None)?];
    syscalls.push(eperm(
        &["personality"],
        Some(vec![arg(0, LinuxSeccompOperator::ScmpCmpNe, 0)?]),
    )?);
    for flag in CLONE_NEW_FLAGS {
        syscalls.push(eperm(&["clone", "unshare"], Some(vec![flag_set(flag)?]))?);
    }
    syscalls.push(eperm(&["unshare"], Some(vec![flag_set(CLONE_NEWTIME)?]))?);
    for request in [libc::TIOCSTI, libc::TIOCLINUX] {
        #[expect(
            clippy::useless_conversion,
            reason = "the request type differs between libcs"
        )]
        let request = u64::from(request);
        syscalls.push(eperm(
            &["ioctl"],
            Some(vec![arg(1, LinuxSeccompOperator::ScmpCmpEq, request)?]),
        )?);
    }
    for (names, mode_arg) in MODE_SETTING_CALLS {
        for bit in [libc::S_ISUID, libc::S_ISGID] {
            syscalls.push(eperm(names, Some(vec![bits_set(*mode_arg, bit)?]))?);
        }
    }
    match network {
        NetworkRules::Off => {
            syscalls.push(eperm(
                &["socket", "socketpair"],
                Some(vec![arg(
                    0,
                    LinuxSeccompOperator::ScmpCmpNe,
                    domain(libc::AF_UNIX),
                )?]),
            )?);
        }
        NetworkRules::Loopback | NetworkRules::AllowTcp { .. } => {
            // Allowed: AF_UNIX (1), AF_INET (2), AF_INET6 (10), AF_NETLINK (16). One condition
            // per rule, because libcontainer ORs conditions on the same argument.
            let allowed = [
                domain(libc::AF_UNIX),
                domain(libc::AF_INET),
                domain(libc::AF_INET6),
                domain(libc::AF_NETLINK),
            ];
            let highest = allowed.iter().copied().max().unwrap_or(0);
            for value in (0..highest).filter(|d| !allowed.contains(d)) {
                syscalls.push(eperm(
                    &["socket"],
                    Some(vec![arg(0, LinuxSeccompOperator::ScmpCmpEq, value)?]),
                )?);
            }
            syscalls.push(eperm(
                &["socket"],
                Some(vec![arg(0, LinuxSeccompOperator::ScmpCmpGt, highest)?]),
            )?);
        }
    }
    syscalls.push(
        LinuxSyscallBuilder::default()
            .names(vec!["clone3".to_owned(), "openat2".to_owned()])
            .action(LinuxSeccompAction::ScmpActErrno)
            .errno_ret(errno(libc::ENOSYS))
            .build()?,
    );
    Ok(LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActAllow)
        .syscalls(syscalls)
        .build()?)
}

fn errno(e: libc::c_int) -> u32 {
    e.unsigned_abs()
}

fn domain(d: libc::c_int) -> u64 {
    u64::from(d.unsigned_abs())
}

fn arg(
    index: usize,
    op: LinuxSeccompOperator,
    value: u64,
) -> Result<LinuxSeccompArg, oci_spec::OciSpecError> {
    LinuxSeccompArgBuilder::default()
        .index(index)
        .op(op)
        .value(value)
        .build()
}

/// Argument `index` has `bit` set (the same value for mask and result, as in [`flag_set`]).
fn bits_set(index: usize, bit: libc::mode_t) -> Result<LinuxSeccompArg, oci_spec::OciSpecError> {
    let bit = u64::from(bit);
    LinuxSeccompArgBuilder::default()
        .index(index)
        .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
        .value(bit)
        .value_two(bit)
        .build()
}

/// Argument 0 has `flag` set. libcontainer reads `value_two` as the mask and `value` as the
/// expected result (runc the other way round); with both equal to the flag the order is moot.
fn flag_set(flag: libc::c_int) -> Result<LinuxSeccompArg, oci_spec::OciSpecError> {
    let flag = u64::from(flag.unsigned_abs());
    LinuxSeccompArgBuilder::default()
        .index(0_usize)
        .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
        .value(flag)
        .value_two(flag)
        .build()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The names in `talaria_sandbox::seccomp::always_denied`, read from its source, so the two
    /// lists cannot drift apart.
    fn sandbox_list() -> BTreeSet<String> {
        let source = include_str!("../../talaria-sandbox/src/seccomp.rs");
        let start = source
            .find("fn always_denied()")
            .expect("talaria-sandbox has always_denied()");
        let body = &source[start..];
        let end = body.find("\n}\n").expect("always_denied() ends");
        body[..end]
            .split("libc::SYS_")
            .skip(1)
            .map(|rest| {
                rest.chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect()
            })
            .collect()
    }

    #[test]
    fn always_denied_matches_the_landlock_backend() {
        let ours: BTreeSet<String> = ALWAYS_DENIED.iter().map(|s| (*s).to_owned()).collect();
        let theirs = sandbox_list();
        assert!(theirs.len() > 30, "parsed too few names: {theirs:?}");
        assert_eq!(ours, theirs);
    }

    #[test]
    fn profile_denies_with_eperm_and_allows_by_default() {
        for network in [
            NetworkRules::Off,
            NetworkRules::Loopback,
            NetworkRules::AllowTcp { ports: vec![443] },
        ] {
            let profile = oci_profile(&network).unwrap();
            assert_eq!(profile.default_action(), LinuxSeccompAction::ScmpActAllow);
            let syscalls = profile.syscalls().as_ref().unwrap();
            let names: BTreeSet<&str> = syscalls
                .iter()
                .flat_map(|s| s.names().iter().map(String::as_str))
                .collect();
            for name in ALWAYS_DENIED.iter().chain(&[
                "clone",
                "unshare",
                "clone3",
                "openat2",
                "chmod",
                "fchmodat",
                "openat",
                "mknodat",
                "personality",
                "ioctl",
                "socket",
            ]) {
                assert!(names.contains(name), "{name} missing for {network:?}");
            }
            // No rule has two conditions on one argument (libcontainer would OR them).
            for s in syscalls {
                if let Some(args) = s.args() {
                    let indexes: BTreeSet<usize> = args.iter().map(|a| a.index()).collect();
                    assert_eq!(indexes.len(), args.len(), "{s:?}");
                }
            }
        }
    }

    #[test]
    fn loopback_socket_rules_leave_exactly_the_allowed_domains() {
        let profile = oci_profile(&NetworkRules::Loopback).unwrap();
        let denied = |d: u64| {
            profile.syscalls().as_ref().unwrap().iter().any(|s| {
                s.names().iter().any(|n| n == "socket")
                    && s.args().as_ref().is_some_and(|args| {
                        args.iter().all(|a| match a.op() {
                            LinuxSeccompOperator::ScmpCmpEq => d == a.value(),
                            LinuxSeccompOperator::ScmpCmpGt => d > a.value(),
                            _ => false,
                        })
                    })
            })
        };
        let allowed: Vec<u64> = (0..64).filter(|d| !denied(*d)).collect();
        assert_eq!(allowed, [1, 2, 10, 16]);
    }
}
