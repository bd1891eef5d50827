//! What can be wrong with configuration text or a key given on the command line.

/// A configuration problem. Every variant names where it is (the file label given by the caller
/// and, when known, the line) and which key is at fault.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{origin}:{line}: {message}")]
    Syntax {
        origin: String,
        line: usize,
        message: String,
    },
    #[error("{origin}:{line}: unknown key `{key}`{hint}")]
    UnknownKey {
        origin: String,
        line: usize,
        key: String,
        hint: String,
    },
    #[error("{origin}:{line}: bad value for `{key}`: {message}")]
    BadValue {
        origin: String,
        line: usize,
        key: String,
        message: String,
    },
    #[error("unknown configuration key `{key}`{hint}")]
    NoSuchKey { key: String, hint: String },
    #[error("bad value for `{key}`: {message}")]
    InvalidArgument { key: String, message: String },
}
