//! Policy errors. Load errors name the file, the line and the dotted key, the way
//! `talaria-core`'s configuration errors do, so `talaria policy check` output can be followed
//! straight to the line to fix.

use std::fmt;
use std::path::PathBuf;

/// One problem with a policy, or with resolving a profile for a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The file is not valid TOML.
    #[error("{origin}:{line}: {message}")]
    Syntax {
        origin: String,
        line: usize,
        message: String,
    },
    /// A key the format does not have.
    #[error("{origin}:{line}: unknown key `{key}`{hint}")]
    UnknownKey {
        origin: String,
        line: usize,
        key: String,
        hint: String,
    },
    /// A key with a value of the wrong type or meaning.
    #[error("{origin}:{line}: bad value for `{key}`: {message}")]
    BadValue {
        origin: String,
        line: usize,
        key: String,
        message: String,
    },
    /// A key that must be present is not.
    #[error("{origin}:{line}: missing key `{key}`: {message}")]
    MissingKey {
        origin: String,
        line: usize,
        key: String,
        message: String,
    },
    /// A policy file or directory that exists but cannot be read, or is badly named.
    #[error("{path}: {message}")]
    File { path: String, message: String },
    /// A profile name nobody defines.
    #[error("unknown profile `{name}` (known: {known})")]
    UnknownProfile { name: String, known: String },
    /// A tool that declares no default profile and that no `[tools]` table maps.
    #[error(
        "no profile for tool `{tool}`: it declares no default and no [tools] table maps it; map it in the [tools] table of a tools.toml policy file"
    )]
    UnmappedTool { tool: String },
    /// A read or write root that contains the Talaria home. Landlock grants whole trees and
    /// cannot take a subtree back out, so the only safe answer is to refuse the root.
    #[error(
        "profile `{profile}` grants access to {root} ({}), which contains the Talaria home {}; list narrower roots",
        path.display(),
        talaria_home.display()
    )]
    ContainsTalariaHome {
        profile: String,
        root: String,
        path: PathBuf,
        talaria_home: PathBuf,
    },
    /// A read or write root inside the Talaria home other than a read-only `skills`.
    #[error(
        "profile `{profile}` grants {access} access to {root} ({}), which is inside the Talaria home {}; only ${{talaria_home}}/skills may be granted, read-only",
        path.display(),
        talaria_home.display()
    )]
    InsideTalariaHome {
        profile: String,
        access: &'static str,
        root: String,
        path: PathBuf,
        talaria_home: PathBuf,
    },
    /// A profile that cannot be resolved for this command (missing workspace, cwd outside
    /// every readable root, …).
    #[error("profile `{profile}`: {message}")]
    Resolve { profile: String, message: String },
}

/// Every problem found while loading a policy set, in the order found (file by file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyErrors {
    errors: Vec<PolicyError>,
}

impl PolicyErrors {
    pub(crate) fn new(errors: Vec<PolicyError>) -> Self {
        Self { errors }
    }

    /// The problems, at least one.
    pub fn errors(&self) -> &[PolicyError] {
        &self.errors
    }
}

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyErrors {}

impl IntoIterator for PolicyErrors {
    type Item = PolicyError;
    type IntoIter = std::vec::IntoIter<PolicyError>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.into_iter()
    }
}
