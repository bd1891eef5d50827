//! Talaria's executor: the only component that runs side-effecting tool work.
//!
//! A request names a tool (and so a policy profile) and a command; the executor resolves the
//! profile, checks approval, runs the command on a backend the profile allows
//! ([`backends`]: the Landlock helper, an OCI container, …) and reports what happened. It fails
//! closed: a profile this host cannot enforce is refused, never run unconfined.
//! [`SandboxedTools`] is the one [`ToolExecutor`](talaria_bus::exec::ToolExecutor) over it,
//! used in-process by `talaria chat` and behind `org.talaria.Executor1` by the executor unit.

pub mod approval;
pub mod backends;
pub mod background;
pub mod bus;
pub mod daemon;
pub mod git_guard;
pub mod process;
pub mod report;
pub mod scratch;
pub mod service;
pub mod setup;
pub mod tools;

pub use approval::{Approval, Approver};
pub use backends::landlock::EXIT_SANDBOX_REFUSED;
pub use backends::{Backend, BackendError, HelperCommand, Job, LandlockBackend, OciBackend};
pub use background::{BackgroundError, LogChunk, ProcessId, ProcessInfo, ProcessTable};
pub use process::{ExitKind, Finished, ProcessError, run_to_completion};
pub use report::process_report;
pub use service::{Executor, ExecutorConfig, ExecutorError, Prepared, RunRequest};
pub use tools::SandboxedTools;
