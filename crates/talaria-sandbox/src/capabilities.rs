//! Step 7b: the command keeps no capabilities, and cannot regain them by `execve`.
//!
//! A root helper's command would otherwise run with every capability: with `AllowTcp` (no
//! network namespace) that includes `CAP_NET_ADMIN` over the host's network through netlink,
//! `CAP_SYS_TIME`, `CAP_SYS_NICE` and the rest that seccomp does not list. Inside a user
//! namespace the capabilities only cover the sandbox's own namespaces, but nothing needs them
//! either. The bounding set is emptied, the `SECBIT_NOROOT` family is set and locked (so
//! executing a program as uid 0 grants nothing), the ambient set is cleared, then the
//! effective, permitted and inheritable sets. This runs after Landlock (whose ruleset opens the
//! roots, which may need `CAP_DAC_READ_SEARCH`) and before seccomp.
//!
//! A process that has no capability to begin with (an unprivileged helper without a user
//! namespace) cannot change its bounding set or securebits; nothing is lost then, because it has
//! nothing to drop and `no_new_privs` keeps setuid and file-capability programs from adding any.
//! This module must never leave a capability in the permitted set.

use std::io;

use crate::sys;

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
const SECBIT_NOROOT: libc::c_ulong = 1 << 0;
const SECBIT_NOROOT_LOCKED: libc::c_ulong = 1 << 1;
const SECBIT_NO_SETUID_FIXUP: libc::c_ulong = 1 << 2;
const SECBIT_NO_SETUID_FIXUP_LOCKED: libc::c_ulong = 1 << 3;
const SECBIT_KEEP_CAPS_LOCKED: libc::c_ulong = 1 << 5;

/// Why the capabilities could not be dropped.
#[derive(Debug, thiserror::Error)]
pub enum CapsError {
    #[error("cannot drop capability {cap} from the bounding set: {}", sys::describe(.source))]
    Bounding {
        cap: u32,
        #[source]
        source: io::Error,
    },
    #[error("cannot lock the securebits: {}", sys::describe(.0))]
    Securebits(#[source] io::Error),
    #[error("cannot clear the ambient capabilities: {}", sys::describe(.0))]
    Ambient(#[source] io::Error),
    #[error("cannot clear the capability sets: {}", sys::describe(.0))]
    Capset(#[source] io::Error),
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
    #[error(
        "cannot switch to the sandbox's unprivileged uid: the process has no capabilities left"
    )]
    NotRoot,
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn prctl(option: libc::c_int, arg: libc::c_ulong) -> io::Result<()> {
    // SAFETY: the prctl options used here take integer arguments only.
    sys::cvt(unsafe { libc::prctl(option, arg, 0_u64, 0_u64, 0_u64) }).map(drop)
}

fn permitted_is_empty() -> io::Result<bool> {
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: header and a two-element data array, as version 3 requires, both writable.
    let ret = unsafe { libc::syscall(libc::SYS_capget, &raw mut header, data.as_mut_ptr()) };
    sys::cvt_long(ret)?;
    Ok(data.iter().all(|d| d.permitted == 0 && d.effective == 0))
}

/// Drops every capability of the calling process for good (see the module docs); with
/// `become_nobody`, switches to the unprivileged uid of [`crate::identity`] on the way.
///
/// # Errors
///
/// [`CapsError`] naming the step that failed.
pub fn drop_all(become_nobody: bool) -> Result<(), CapsError> {
    let unprivileged = permitted_is_empty().map_err(CapsError::Capset)?;
    if !unprivileged {
        for cap in 0..64_u32 {
            match prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap)) {
                Ok(()) => {}
                // Past the kernel's last capability.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => break,
                Err(source) => return Err(CapsError::Bounding { cap, source }),
            }
        }
        let bits = SECBIT_NOROOT
            | SECBIT_NOROOT_LOCKED
            | SECBIT_NO_SETUID_FIXUP
            | SECBIT_NO_SETUID_FIXUP_LOCKED
            | SECBIT_KEEP_CAPS_LOCKED;
        prctl(libc::PR_SET_SECUREBITS, bits).map_err(CapsError::Securebits)?;
        // With SECBIT_NO_SETUID_FIXUP the switch keeps the capabilities it needs; the capset
        // below then empties them.
        if become_nobody {
            crate::identity::become_nobody()?;
        }
    } else if become_nobody {
        return Err(CapsError::NotRoot);
    }
    // SAFETY: PR_CAP_AMBIENT_CLEAR_ALL takes no pointer arguments.
    let ret = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0_u64,
            0_u64,
            0_u64,
        )
    };
    match sys::cvt(ret) {
        Ok(_) => {}
        // Kernels before 4.3 have no ambient set, so nothing to clear.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
        Err(e) => return Err(CapsError::Ambient(e)),
    }
    let header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [CapData::default(); 2];
    // SAFETY: header and a two-element data array, as version 3 requires; only read.
    let ret = unsafe { libc::syscall(libc::SYS_capset, &raw const header, data.as_ptr()) };
    sys::cvt_long(ret).map_err(CapsError::Capset)?;
    Ok(())
}

/// Sets `no_new_privs`: from here on, `execve` cannot grant privileges (setuid bits, file
/// capabilities), which is also what lets an unprivileged process install seccomp filters and
/// Landlock rulesets.
///
/// # Errors
///
/// The `prctl` error.
pub fn set_no_new_privs() -> io::Result<()> {
    prctl(libc::PR_SET_NO_NEW_PRIVS, 1)
}
