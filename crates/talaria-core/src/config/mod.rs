//! The typed configuration model (`$TALARIA_HOME/config.toml`).
//!
//! One serde model with `deny_unknown_fields`, defaults in one place (the [`Default`] impls in
//! `model`), every key listed with its documentation in [`KEYS`], and validation at load whose
//! errors name the key and the line. Reading and writing the file is the caller's job: this
//! module only turns text into a [`Config`] and edits text.
//!
//! - `model`: the sections and their defaults
//! - `keys`: the documented key table and "did you mean" hints
//! - `load`: parsing and validation (unknown keys, types, rules serde cannot express)
//! - `edit`: reading and setting one dotted key (`talaria config get|set`), with `toml_edit`
//! - `error`: [`ConfigError`]

mod edit;
mod error;
mod keys;
mod load;
mod model;

pub use edit::set_key;
pub use error::ConfigError;
pub use keys::{KEYS, KeyDoc, KeyKind, edit_distance};
pub use model::{
    AgentConfig, Config, DisplayConfig, FallbackModel, KeyEnvs, MemoryConfig, ModelConfig,
    SkillsConfig,
};
