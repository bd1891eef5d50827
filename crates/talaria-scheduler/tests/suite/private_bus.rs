//! The private `dbus-daemon` each test starts: talaria-daemon's, in a scratch directory.

pub use talaria_daemon::PrivateBus;
