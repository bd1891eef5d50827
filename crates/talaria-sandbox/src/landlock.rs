//! Step 7: Landlock, the filesystem and TCP confinement.
//!
//! The ruleset handles every filesystem right the running kernel's ABI knows (so nothing the
//! kernel could restrict is left unrestricted), with `CompatLevel::HardRequirement`: if any
//! requested right, rule or scope cannot be enforced exactly, this fails instead of degrading,
//! and the resulting status must be `FullyEnforced`.
//!
//! * read roots: execute, read files, list directories;
//! * write roots: every right of the ABI (create, remove, rename across directories, truncate,
//!   device ioctls, and from ABI 9 connecting to pathname UNIX sockets, which read roots and
//!   everything unlisted then deny);
//! * anything not listed: no access at all. Nothing is added implicitly, not even `/proc` or
//!   `/dev/null`: the policy layer lists them.
//! * network `Off`: TCP bind and connect handled with no rule (ABI 4+; seccomp already refuses
//!   the sockets, this is the second wall). `AllowTcp`: connect to the listed ports only, bind
//!   never (ABI 4 required). `Loopback`: no Landlock network rules, the network namespace is
//!   the wall.
//! * scopes (ABI 6+): the command cannot connect to abstract UNIX sockets created outside the
//!   sandbox nor signal processes outside it (its parent, the daemon, the user's shell).
//!
//! A root that does not exist is skipped: it grants nothing, so skipping it cannot widen
//! access. This module must never add a rule the spec did not ask for.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, NetPort, PathBeneath,
    RestrictionStatus, Ruleset, RulesetAttr, RulesetCreated, RulesetCreatedAttr, RulesetError,
    RulesetStatus, Scope,
};

use crate::spec::{FilesystemRules, NetworkRules};
use crate::sys;

/// The lowest ABI the helper accepts at all: ABI 3 adds `LANDLOCK_ACCESS_FS_TRUNCATE`; below
/// it a read-only file could still be truncated to zero.
pub const MIN_ABI: i32 = 3;
/// TCP bind/connect rules.
pub const NET_ABI: i32 = 4;
/// Abstract UNIX socket and signal scoping.
pub const SCOPE_ABI: i32 = 6;
/// `LANDLOCK_ACCESS_FS_RESOLVE_UNIX`: `connect` on pathname UNIX sockets is a filesystem right,
/// granted only under write roots. Below it the private root filesystem ([`crate::rootfs`])
/// is what keeps the host's sockets out of reach.
pub const UNIX_SOCKET_ABI: i32 = 9;

/// Why Landlock could not be enforced.
#[derive(Debug, thiserror::Error)]
pub enum LandlockError {
    #[error("cannot open Landlock root {path}: {}", sys::describe(.source))]
    Root {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("Landlock refused the ruleset: {0}")]
    Ruleset(#[from] RulesetError),
    #[error("Landlock reports the ruleset as {0:?}, not fully enforced")]
    NotEnforced(String),
}

/// The Landlock ABI version of the running kernel: 0 when Landlock is missing or disabled.
#[must_use]
pub fn kernel_abi() -> i32 {
    // SAFETY: LANDLOCK_CREATE_RULESET_VERSION with a null attribute and size 0 only queries the
    // version; it reads no memory.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0_usize,
            1_u32, // LANDLOCK_CREATE_RULESET_VERSION
        )
    };
    i32::try_from(ret).unwrap_or(0).max(0)
}

/// Builds the ruleset for `fs` and `network` at the kernel's `abi` and restricts the calling
/// process (and its future children) with it. Sets `no_new_privs` as a side effect (already set
/// by then).
///
/// # Errors
///
/// [`LandlockError`] when a root cannot be opened for a reason other than not existing, the
/// kernel rejects the ruleset, or the status is not `FullyEnforced`.
pub fn restrict_self(
    fs: &FilesystemRules,
    network: &NetworkRules,
    abi: i32,
) -> Result<(), LandlockError> {
    // The crate discourages building an ABI from the runtime version because the rights would
    // then vary by kernel. That is the point here: handle exactly what this kernel can enforce,
    // so `HardRequirement` can insist on every one of them and on `FullyEnforced`. (A fixed
    // newer ABI with best effort would report `PartiallyEnforced` on every older kernel, which
    // could not be told apart from a real failure.)
    let abi = ABI::from(abi);
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(abi))?;
    let handles_tcp = match network {
        NetworkRules::Off => abi >= ABI::V4,
        NetworkRules::AllowTcp { .. } => true,
        NetworkRules::Loopback => false,
    };
    if handles_tcp {
        ruleset = ruleset.handle_access(AccessNet::from_all(abi))?;
    }
    if abi >= ABI::V6 {
        ruleset = ruleset.scope(Scope::from_all(abi))?;
    }
    let mut created = ruleset.create()?;
    created = add_roots(created, &fs.read, AccessFs::from_read(abi), abi)?;
    created = add_roots(created, &fs.write, AccessFs::from_all(abi), abi)?;
    if let NetworkRules::AllowTcp { ports } = network {
        for port in ports {
            created = created.add_rule(NetPort::new(*port, AccessNet::ConnectTcp))?;
        }
    }
    let status: RestrictionStatus = created.restrict_self()?;
    match status.ruleset {
        RulesetStatus::FullyEnforced => Ok(()),
        other @ (RulesetStatus::PartiallyEnforced | RulesetStatus::NotEnforced) => {
            Err(LandlockError::NotEnforced(format!("{other:?}")))
        }
    }
}

fn add_roots(
    mut created: RulesetCreated,
    roots: &[PathBuf],
    access: BitFlags<AccessFs>,
    abi: ABI,
) -> Result<RulesetCreated, LandlockError> {
    for root in roots {
        let Some(file) = open_root(root)? else {
            continue;
        };
        let is_dir = sys::fstat(file.as_fd())
            .map_err(|source| LandlockError::Root {
                path: root.clone(),
                source,
            })?
            .st_mode
            & libc::S_IFMT
            == libc::S_IFDIR;
        // Directory-only rights on a file rule are an error for the kernel; keep the file ones.
        let access = if is_dir {
            access
        } else {
            access & AccessFs::from_file(abi)
        };
        created = created.add_rule(PathBeneath::new(file, access))?;
    }
    Ok(created)
}

fn open_root(path: &Path) -> Result<Option<File>, LandlockError> {
    match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(file) => Ok(Some(file)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(LandlockError::Root {
            path: path.to_path_buf(),
            source,
        }),
    }
}
