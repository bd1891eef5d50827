//! Where the scheduler gets "now" from, so tests can stand at any point in time.

use std::fmt::Debug;

use jiff::Timestamp;

/// The current instant.
pub trait Clock: Debug + Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// The system's real-time clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}
