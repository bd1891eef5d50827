//! Talaria's domain types, shared by every unit.
//!
//! This crate owns the shapes that cross crate (and later, D-Bus) boundaries: chat messages and
//! tool calls, token usage, session identifiers, secrets and the typed configuration model. It
//! must never do I/O: no files, sockets or processes. Parsing text that someone else read is fine.

pub mod config;
pub mod exit;
pub mod home;
pub mod message;
pub mod person;
pub mod provider;
pub mod secret;
pub mod session;
pub mod surface;

pub use config::{Config, ConfigError, SkillsConfig};
pub use exit::ExitKind;
pub use message::{Message, Role, ToolCall, ToolSpec, Usage, UsageTask};
pub use person::{Person, UserId};
pub use provider::{ApiKind, ModelEntry, ProviderEntry};
pub use secret::Secret;
pub use session::SessionId;
pub use surface::{Surface, UnknownSurface};
