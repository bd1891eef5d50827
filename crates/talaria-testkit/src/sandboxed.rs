//! The real tool executor for tests of the agent loop: [`SandboxedTools`] set up exactly as the
//! executor unit and `talaria chat` set it up ([`talaria_executor::setup::standard`]: the
//! shipped and home policies, every backend this host provides, the sandbox helper of the
//! workspace's own binaries). There is no unconfined executor: a test's tool calls are
//! confined by the same policy a user's are, so a test cannot pass on behaviour the sandbox
//! would refuse.
//!
//! The sandbox helper is the `__sandbox` mode of `talaria-executord` (or the small
//! `talaria-sandbox` next to it, which the executor prefers). A test binary only gets its own
//! package's binaries built, so these are looked up where Cargo puts the workspace's binaries,
//! next to the running test's directory, as the end-to-end suite does; when they are missing
//! the test fails saying how to build them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use talaria_executor::{Approval, SandboxedTools};

/// Where a test's tool calls come from: nobody is there to approve a `prompt` rule.
pub const TEST_APPROVAL: Approval = Approval::Unavailable {
    place: "a test of the agent loop",
};

/// The tool executor for the Talaria home `home`, refusing `prompt` rules.
///
/// # Panics
/// When `talaria-executord` has not been built, or the policies under `home` do not load.
pub fn sandboxed_tools(home: &Path) -> SandboxedTools {
    sandboxed_tools_with(home, TEST_APPROVAL)
}

/// The tool executor for the Talaria home `home`, answering `prompt` rules with `approval`.
///
/// # Panics
/// As [`sandboxed_tools`].
pub fn sandboxed_tools_with(home: &Path, approval: Approval) -> SandboxedTools {
    let binary = workspace_binary("talaria-executord");
    let executor = talaria_executor::setup::standard(home, &binary)
        .unwrap_or_else(|e| panic!("cannot set up the executor for {}: {e}", home.display()));
    SandboxedTools::new(Arc::new(executor), approval)
}

/// A binary of this workspace, built by Cargo next to the running test's directory
/// (`target/debug/deps/TEST` → `target/debug/NAME`).
///
/// # Panics
/// When it is not there.
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe()
        .unwrap_or_else(|e| panic!("cannot find the running test's executable: {e}"));
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("."));
    let path = dir.join(name);
    if !path.is_file() {
        panic!(
            "{} is missing: the agent's tests confine tool calls with the real sandbox helper; \
             build the workspace's binaries first (`cargo build --workspace --bins`; \
             `cargo nextest run --workspace` and ./test.sh do)",
            path.display()
        );
    }
    path
}
