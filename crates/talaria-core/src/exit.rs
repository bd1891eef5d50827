//! How a process ended, in one vocabulary for every unit and backend.

use serde::{Deserialize, Serialize};

/// A finished process: its exit status, or the signal that killed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitKind {
    Code(i32),
    Signal(i32),
}

impl ExitKind {
    /// Exited with status 0.
    #[must_use]
    pub fn success(self) -> bool {
        self == ExitKind::Code(0)
    }
}

impl std::fmt::Display for ExitKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitKind::Code(code) => write!(f, "exit {code}"),
            ExitKind::Signal(signal) => write!(f, "killed by signal {signal}"),
        }
    }
}
