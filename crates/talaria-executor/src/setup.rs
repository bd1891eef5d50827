//! The executor as a process sets it up: policies from the standard places (checked against
//! the registered backends), every registered backend this host provides, the sandbox and OCI
//! helpers as hidden modes of the running binary (or a `talaria-sandbox` next to it), the
//! scratch space outside the Talaria home. Shared by `talaria` (in-process tools) and
//! `talaria-executord` so both confine commands identically.

use std::ffi::OsString;
use std::path::Path;

use talaria_policy::{PolicySet, PolicySource};

use crate::backends::{self, HelperCommand, Host};
use crate::service::{Executor, ExecutorConfig};

/// The hidden first argument that turns the binary into the sandbox helper. The helper runs
/// before any thread or runtime exists, so it may fork.
pub const HELPER_ARG: &str = "__sandbox";

/// The hidden first argument that turns the binary into a session's OCI container helper
/// (single-threaded, like the sandbox helper).
pub const OCI_HELPER_ARG: &str = "__oci-helper";

/// When `args` (the whole command line) select a helper mode, run it and return its exit
/// status. Call first thing in `main`, before any thread exists.
pub fn run_helper_mode(args: &[OsString]) -> Option<u8> {
    let mode = args.get(1)?;
    if mode == HELPER_ARG {
        let code = talaria_sandbox::main_with_args(&args[2..]);
        return Some(u8::try_from(code).unwrap_or(1));
    }
    if mode == OCI_HELPER_ARG {
        return Some(talaria_oci::helper::main_with_args(
            args.iter().skip(2).cloned(),
        ));
    }
    None
}

/// Load the policies (shipped, `/etc/talaria/policies`, `<home>/policies`), checked against
/// the registered backends.
///
/// # Errors
/// Every problem in every policy file, each with file, line and key.
pub fn load_policies(home: &Path) -> Result<PolicySet, String> {
    PolicySet::load(&PolicySource::standard(home), &backends::schemas())
        .map_err(|errors| format!("the sandbox policies do not load:\n{errors}"))
}

/// The executor for the Talaria home `home`, with `this_binary` providing the helper modes and
/// every registered backend that this host provides.
///
/// # Errors
/// Policies that do not load.
pub fn standard(home: &Path, this_binary: &Path) -> Result<Executor, String> {
    let policies = load_policies(home)?;
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    let uid = unsafe { libc::geteuid() };
    let mut executor = Executor::new(ExecutorConfig {
        policies,
        talaria_home: home.to_owned(),
        scratch_root: crate::scratch::default_root(uid),
        caller_env: std::env::vars().collect(),
    });
    let host = Host {
        this_binary,
        talaria_home: home,
    };
    for registration in backends::REGISTRY {
        if let Some(backend) = (registration.standard)(&host) {
            executor = executor.with_backend(backend);
        }
    }
    Ok(executor)
}

/// `TALARIA_SANDBOX_HELPER`, else a `talaria-sandbox` next to this binary (small, starts
/// fastest), else this binary's own helper mode.
pub(crate) fn sandbox_helper(this_binary: &Path) -> HelperCommand {
    let standalone = |program: std::path::PathBuf| HelperCommand {
        program,
        args: Vec::new(),
    };
    if let Some(path) = std::env::var_os("TALARIA_SANDBOX_HELPER").filter(|p| !p.is_empty()) {
        return standalone(path.into());
    }
    match this_binary.parent().map(|dir| dir.join("talaria-sandbox")) {
        Some(sibling) if sibling.is_file() => standalone(sibling),
        _ => HelperCommand {
            program: this_binary.to_owned(),
            args: vec![HELPER_ARG.into()],
        },
    }
}
