//! Step 8: the seccomp filter, installed last before `execve` so the helper's own setup calls
//! (mounts, namespaces, Landlock) are not filtered.
//!
//! The filter is a deny list on top of default-allow: the command may run any normal program,
//! but not the system calls that reach kernel attack surface a tool never needs, or that would
//! undo the other layers. Denied calls fail with `EPERM` (programs handle that) except `clone3`
//! and `openat2`, which fail with `ENOSYS` so libc and programs fall back to `clone` and
//! `openat`, whose flags and mode a classic BPF filter can inspect (`clone3` and `openat2` pass
//! them in memory, out of reach). Only the native architecture is
//! allowed: a syscall made through another ABI (i386 `int 0x80` on x86_64) kills the process,
//! and on x86_64 the x32 syscall range is refused, because either would bypass a filter written
//! against native syscall numbers.
//!
//! Each rule and why:
//!
//! | syscall | reason |
//! |---|---|
//! | `ptrace`, `process_vm_readv`, `process_vm_writev` | reading or writing another process's memory (the daemon's secrets) |
//! | `io_uring_setup`, `io_uring_enter`, `io_uring_register` | io_uring performs I/O without the syscalls seccomp sees; a history of kernel bugs |
//! | `mount`, `umount2`, `pivot_root`, `move_mount`, `open_tree`, `fsopen`, `fsconfig`, `fsmount`, `fspick`, `mount_setattr` | would undo the read-only protected-path mounts or the private root filesystem (the user namespace grants `CAP_SYS_ADMIN` over its own mount namespace) |
//! | `unshare`, `clone` with any `CLONE_NEW*` flag; `setns` | new namespaces give capabilities over new kernel objects (more attack surface) and a way around the network namespace |
//! | `clone3` (`ENOSYS`) | its flags cannot be inspected; libc falls back to `clone` |
//! | `kexec_load`, `kexec_file_load`, `reboot` | replacing or stopping the kernel |
//! | `init_module`, `finit_module`, `delete_module` | loading kernel code |
//! | `bpf` | eBPF programs: kernel attack surface, tracing of other processes |
//! | `keyctl`, `add_key`, `request_key` | the kernel keyring is not namespaced; it holds other processes' keys |
//! | `personality` unless the argument is 0 (`PER_LINUX`) or `0xffffffff` (query) | `READ_IMPLIES_EXEC`, `ADDR_NO_RANDOMIZE` weaken exploit mitigations |
//! | `userfaultfd` | stalls kernel page faults at will, a standard exploit primitive |
//! | `perf_event_open` | side channels and a history of kernel bugs |
//! | `ioctl(TIOCSTI)`, `ioctl(TIOCLINUX)` | typing characters into the caller's terminal |
//! | `acct`, `swapon`, `swapoff`, `syslog`, `quotactl`, `quotactl_fd`, `lookup_dcookie`, `nfsservctl`, `uselib`, `iopl`, `ioperm`, `vhangup` | host administration or legacy interfaces no tool needs |
//! | `open_by_handle_at`, `name_to_handle_at` | opening files by handle bypasses path-based checks (the "shocker" container escape) |
//! | `chmod`, `fchmod`, `fchmodat`, `fchmodat2` with `S_ISUID` or `S_ISGID` in the mode | a setuid/setgid file made in a writable root outlives the sandbox: on the host, another user runs it with the sandbox's uid (root's, when the caller is root). "setuid bits are not allowed in the sandbox" |
//! | `open`, `openat`, `creat`, `mkdir`, `mkdirat`, `mknod`, `mknodat` with `S_ISUID` or `S_ISGID` in the mode | the same bits set at creation. The mode is checked whatever the flags: without `O_CREAT`/`O_TMPFILE` libc passes 0, so only a hand-made call is refused, and nothing is lost (`mkdir` drops both bits anyway; a setgid directory inherits the bit from its parent, which no mode asks for) |
//! | `openat2` (`ENOSYS`) | its mode is inside `struct open_how`, out of a BPF filter's reach; `ENOSYS` is what kernels before 5.6 answer, so every caller has an `openat` fallback, whose mode the filter sees |
//! | network `Off`: `socket`/`socketpair` with a domain other than `AF_UNIX` | no IP, netlink, packet or other sockets; local IPC keeps working |
//! | network `Loopback`/`AllowTcp`: `socket` with a domain other than `AF_UNIX`, `AF_INET`, `AF_INET6`, `AF_NETLINK` | no packet, vsock, Bluetooth, `AF_ALG` … sockets |
//!
//! This module must never allow a syscall that the table denies, and never install the filter
//! before `no_new_privs` is set.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch, sock_filter,
};

use crate::spec::NetworkRules;

/// Why the filter could not be built or installed.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("cannot build the seccomp filter: {0}")]
    Build(#[from] seccompiler::BackendError),
    #[error("cannot install the seccomp filter: {0}")]
    Install(#[from] seccompiler::Error),
}

#[cfg(target_arch = "x86_64")]
const ARCH: TargetArch = TargetArch::x86_64;
#[cfg(target_arch = "aarch64")]
const ARCH: TargetArch = TargetArch::aarch64;
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("talaria-sandbox supports x86_64 and aarch64 only");

/// The namespace-creating `clone` flags. `CLONE_NEWTIME` shares its bit with the exit signal
/// in `clone`'s flags, so it is checked for `unshare` only.
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

/// The setuid and setgid mode bits: never set by a sandboxed command (see the table).
const SETID_BITS: [libc::mode_t; 2] = [libc::S_ISUID, libc::S_ISGID];

/// The calls that set a file's mode, with the index of their mode argument.
fn mode_setting_calls() -> Vec<(libc::c_long, u8)> {
    let mut calls = vec![
        (libc::SYS_fchmod, 1),
        (libc::SYS_fchmodat, 2),
        (libc::SYS_fchmodat2, 2),
        (libc::SYS_openat, 3),
        (libc::SYS_mkdirat, 2),
        (libc::SYS_mknodat, 2),
    ];
    #[cfg(target_arch = "x86_64")]
    calls.extend([
        (libc::SYS_chmod, 1),
        (libc::SYS_open, 2),
        (libc::SYS_creat, 1),
        (libc::SYS_mkdir, 1),
        (libc::SYS_mknod, 1),
    ]);
    calls
}

/// One rule per bit: the call matches if its mode argument has `S_ISUID` or `S_ISGID`.
fn setid_mode_rules(mode_arg: u8) -> Result<Vec<SeccompRule>, SeccompError> {
    SETID_BITS
        .iter()
        .map(|bit| {
            let bit = u64::from(*bit);
            Ok(SeccompRule::new(vec![cond(
                mode_arg,
                SeccompCmpArgLen::Dword,
                SeccompCmpOp::MaskedEq(bit),
                bit,
            )?])?)
        })
        .collect()
}

/// The compiled filters, ready to install after `fork` without allocating.
#[derive(Debug, Clone)]
pub struct SeccompProgram {
    filters: Vec<BpfProgram>,
}

/// Syscalls denied whatever their arguments.
fn always_denied() -> Vec<libc::c_long> {
    let mut calls = vec![
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_move_mount,
        libc::SYS_open_tree,
        libc::SYS_fsopen,
        libc::SYS_fsconfig,
        libc::SYS_fsmount,
        libc::SYS_fspick,
        libc::SYS_mount_setattr,
        libc::SYS_setns,
        libc::SYS_kexec_load,
        libc::SYS_kexec_file_load,
        libc::SYS_reboot,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_bpf,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_userfaultfd,
        libc::SYS_perf_event_open,
        libc::SYS_acct,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_syslog,
        libc::SYS_quotactl,
        libc::SYS_quotactl_fd,
        libc::SYS_lookup_dcookie,
        libc::SYS_nfsservctl,
        libc::SYS_vhangup,
        libc::SYS_open_by_handle_at,
        libc::SYS_name_to_handle_at,
    ];
    #[cfg(target_arch = "x86_64")]
    calls.extend([libc::SYS_uselib, libc::SYS_iopl, libc::SYS_ioperm]);
    calls
}

fn cond(
    arg: u8,
    len: SeccompCmpArgLen,
    op: SeccompCmpOp,
    value: u64,
) -> Result<SeccompCondition, SeccompError> {
    Ok(SeccompCondition::new(arg, len, op, value)?)
}

/// One rule per flag: the call matches if any namespace flag is set in argument 0.
fn any_flag_rules(flags: &[libc::c_int]) -> Result<Vec<SeccompRule>, SeccompError> {
    flags
        .iter()
        .map(|flag| {
            let flag = u64::from(flag.unsigned_abs());
            Ok(SeccompRule::new(vec![cond(
                0,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(flag),
                flag,
            )?])?)
        })
        .collect()
}

/// A rule matching when argument 0 (a socket domain) is none of `allowed`.
fn domain_not_in(allowed: &[libc::c_int]) -> Result<SeccompRule, SeccompError> {
    let conditions = allowed
        .iter()
        .map(|domain| {
            cond(
                0,
                SeccompCmpArgLen::Dword,
                SeccompCmpOp::Ne,
                u64::from(domain.unsigned_abs()),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SeccompRule::new(conditions)?)
}

/// Builds the filters for `network`.
///
/// # Errors
///
/// [`SeccompError::Build`] if seccompiler rejects a rule (a bug, not a host condition).
pub fn build(network: &NetworkRules) -> Result<SeccompProgram, SeccompError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for call in always_denied() {
        rules.insert(call, vec![]);
    }
    rules.insert(
        libc::SYS_personality,
        vec![SeccompRule::new(vec![
            cond(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, 0)?,
            cond(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, 0xffff_ffff)?,
        ])?],
    );
    rules.insert(libc::SYS_clone, any_flag_rules(&CLONE_NEW_FLAGS)?);
    let mut unshare_flags = CLONE_NEW_FLAGS.to_vec();
    unshare_flags.push(CLONE_NEWTIME);
    rules.insert(libc::SYS_unshare, any_flag_rules(&unshare_flags)?);
    rules.insert(
        libc::SYS_ioctl,
        [libc::TIOCSTI, libc::TIOCLINUX]
            .into_iter()
            .map(|request| {
                #[expect(
                    clippy::useless_conversion,
                    reason = "the request type differs between libcs"
                )]
                let request = u64::from(request);
                Ok(SeccompRule::new(vec![cond(
                    1,
                    SeccompCmpArgLen::Dword,
                    SeccompCmpOp::Eq,
                    request,
                )?])?)
            })
            .collect::<Result<Vec<_>, SeccompError>>()?,
    );
    for (call, mode_arg) in mode_setting_calls() {
        rules.insert(call, setid_mode_rules(mode_arg)?);
    }
    match network {
        NetworkRules::Off => {
            rules.insert(libc::SYS_socket, vec![domain_not_in(&[libc::AF_UNIX])?]);
            rules.insert(libc::SYS_socketpair, vec![domain_not_in(&[libc::AF_UNIX])?]);
        }
        NetworkRules::Loopback | NetworkRules::AllowTcp { .. } => {
            let allowed = [
                libc::AF_UNIX,
                libc::AF_INET,
                libc::AF_INET6,
                libc::AF_NETLINK,
            ];
            rules.insert(libc::SYS_socket, vec![domain_not_in(&allowed)?]);
        }
    }
    let eperm = SeccompAction::Errno(libc::EPERM.unsigned_abs());
    let deny_list: BpfProgram =
        SeccompFilter::new(rules, SeccompAction::Allow, eperm, ARCH)?.try_into()?;
    let enosys: BpfProgram = SeccompFilter::new(
        BTreeMap::from([(libc::SYS_clone3, vec![]), (libc::SYS_openat2, vec![])]),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS.unsigned_abs()),
        ARCH,
    )?
    .try_into()?;
    let mut filters = vec![deny_list, enosys];
    #[cfg(target_arch = "x86_64")]
    filters.push(x32_filter());
    Ok(SeccompProgram { filters })
}

/// On x86_64, syscall numbers with bit 30 set are the x32 ABI: same architecture value,
/// different numbers, so they would slip past every rule above. Refuse them all (`ENOSYS`).
#[cfg(target_arch = "x86_64")]
fn x32_filter() -> BpfProgram {
    const BPF_LD_W_ABS: u16 = 0x20;
    const BPF_JMP_JGE_K: u16 = 0x35;
    const BPF_RET_K: u16 = 0x06;
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    let stmt = |code, k| sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    };
    vec![
        // The architecture was checked by the first filter (anything else is killed there).
        stmt(BPF_LD_W_ABS, 0), // seccomp_data.nr
        sock_filter {
            code: BPF_JMP_JGE_K,
            jt: 0,
            jf: 1,
            k: X32_SYSCALL_BIT,
        },
        stmt(
            BPF_RET_K,
            libc::SECCOMP_RET_ERRNO | libc::ENOSYS.unsigned_abs(),
        ),
        stmt(BPF_RET_K, libc::SECCOMP_RET_ALLOW),
    ]
}

impl SeccompProgram {
    /// Installs the filters on the calling thread; `no_new_privs` must already be set.
    ///
    /// # Errors
    ///
    /// [`SeccompError::Install`] when the kernel rejects a filter (seccomp missing, or
    /// `no_new_privs` not set).
    pub fn install(&self) -> Result<(), SeccompError> {
        for filter in &self.filters {
            seccompiler::apply_filter(filter)?;
        }
        Ok(())
    }
}

/// Whether the kernel supports seccomp filters returning an errno (asks
/// `SECCOMP_GET_ACTION_AVAIL`, which installs nothing).
#[must_use]
pub fn filter_mode_available() -> bool {
    let action: u32 = libc::SECCOMP_RET_ERRNO;
    // SAFETY: SECCOMP_GET_ACTION_AVAIL reads one u32 from the pointer, which is valid.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_GET_ACTION_AVAIL,
            0_u32,
            &raw const action,
        )
    };
    ret == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_for_every_network_mode() {
        for network in [
            NetworkRules::Off,
            NetworkRules::Loopback,
            NetworkRules::AllowTcp { ports: vec![443] },
        ] {
            let program = build(&network).unwrap();
            assert!(
                program
                    .filters
                    .iter()
                    .all(|f| !f.is_empty() && f.len() < 4096)
            );
        }
    }
}
