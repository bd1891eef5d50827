//! The gateway against a fake agent on a private `dbus-daemon`, over real HTTP.

mod bad_input;
mod completions;
mod daemon;
mod deliveries;
mod durability;
mod fake_agent;
mod harness;
mod limits;
mod private_bus;
