//! The single seam through which every side-effecting tool call leaves the agent: the
//! execution protocol of `talaria-bus`, re-exported here for the tools. The types are defined
//! once, in [`talaria_bus::exec`].

pub use talaria_bus::exec::files;
pub use talaria_bus::exec::{
    CommandOutcome, CommandSpec, ExecError, ExecOrigin, ExitKind, ProcessAction, Surface,
    ToolExecutor,
};
