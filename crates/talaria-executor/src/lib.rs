//! Talaria's executor: the only component that runs side-effecting tool work.
//!
//! A request names a tool (and so a policy profile) and a command; the executor resolves the
//! profile, runs the command through the sandbox helper on a backend the profile allows, and
//! reports what happened. It fails closed: a profile this host cannot enforce is refused, never
//! run unconfined.

pub mod background;
pub mod bus;
pub mod daemon;
pub mod process;
pub mod report;
pub mod service;
pub mod setup;

pub use background::{BackgroundError, LogChunk, ProcessId, ProcessInfo, ProcessTable};
pub use process::{ExitKind, Finished, ProcessError, run_to_completion};
pub use report::process_report;
pub use service::{
    EXIT_SANDBOX_REFUSED, Executor, ExecutorConfig, ExecutorError, HelperCommand, OciBackend,
    Prepared, RunRequest,
};
