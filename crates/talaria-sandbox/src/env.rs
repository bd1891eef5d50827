//! Step 1b: a new session and an environment that is exactly the spec's.
//!
//! The helper runs with whatever environment its caller had (API keys, `LD_PRELOAD`,
//! `SSH_AUTH_SOCK` …). None of it may reach the command: the command's environment is built
//! from `spec.env` alone and passed explicitly to `execve`, and the helper clears its own copy
//! so no later code can leak it by accident. This module must never read a variable of the
//! helper's own environment.

use std::collections::HashSet;
use std::ffi::{CString, OsStr, OsString};
use std::io;

use crate::sys;

/// Why the environment or the session could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error("environment variable name {0:?} is empty or contains '=' or a NUL byte")]
    BadName(String),
    #[error("environment variable {0} contains a NUL byte")]
    BadValue(String),
    #[error("environment variable {0} is listed twice")]
    Duplicate(String),
    #[error("cannot start a new session (setsid): {0}")]
    Session(#[source] io::Error),
}

/// The command's environment, ready for `execve`.
#[derive(Debug, Clone)]
pub struct CommandEnv {
    entries: Vec<CString>,
    path: Option<OsString>,
}

impl CommandEnv {
    /// Validates `spec.env` and renders it as `NAME=value` strings.
    ///
    /// # Errors
    ///
    /// [`EnvError`] for an empty name, a name with `=`, a NUL byte anywhere or a name listed
    /// twice (which `execve` would pass through and programs would resolve inconsistently).
    pub fn from_spec(vars: &[(String, String)]) -> Result<Self, EnvError> {
        let mut seen = HashSet::new();
        let mut entries = Vec::with_capacity(vars.len());
        let mut path = None;
        for (name, value) in vars {
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                return Err(EnvError::BadName(name.clone()));
            }
            if !seen.insert(name.as_str()) {
                return Err(EnvError::Duplicate(name.clone()));
            }
            let entry = CString::new(format!("{name}={value}"))
                .map_err(|_| EnvError::BadValue(name.clone()))?;
            entries.push(entry);
            if name == "PATH" {
                path = Some(OsString::from(value));
            }
        }
        Ok(Self { entries, path })
    }

    /// `NAME=value` entries in spec order.
    #[must_use]
    pub fn entries(&self) -> &[CString] {
        &self.entries
    }

    /// The spec's `PATH`, used to look up a program name without `/`.
    #[must_use]
    pub fn path(&self) -> Option<&OsStr> {
        self.path.as_deref()
    }
}

/// Empties the helper's own environment.
///
/// The command never sees it anyway (its environment is passed explicitly); this keeps a later
/// change from leaking it through a library that reads `environ`.
pub fn clear_own_environment() {
    // SAFETY: the helper is single-threaded (see the crate docs), so no other thread can be
    // reading `environ` while clearenv replaces it.
    unsafe {
        libc::clearenv();
    }
}

/// Puts the helper (and so the command) into a new session and process group.
///
/// The new session has no controlling terminal, so the command cannot reach the caller's
/// terminal (`TIOCSTI` injection is also blocked by seccomp), and the caller can signal the whole
/// sandbox as one process group. If the helper already leads a process group, `setsid` fails
/// with `EPERM`; the helper then keeps that group (it is already its own group, which is what
/// the caller needs to signal it) and carries on.
///
/// # Errors
///
/// [`EnvError::Session`] for any other failure.
pub fn new_session() -> Result<(), EnvError> {
    // SAFETY: setsid has no memory-safety preconditions.
    match sys::cvt(unsafe { libc::setsid() }) {
        Ok(_) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            // SAFETY: getpgrp and getpid have no preconditions.
            let leads_group = unsafe { libc::getpgrp() == libc::getpid() };
            if leads_group {
                Ok(())
            } else {
                Err(EnvError::Session(e))
            }
        }
        Err(e) => Err(EnvError::Session(e)),
    }
}

/// Validates an argument vector for `execve`.
///
/// # Errors
///
/// The index of the first argument that contains a NUL byte.
pub fn argv_c_strings(argv: &[String]) -> Result<Vec<CString>, usize> {
    argv.iter()
        .enumerate()
        .map(|(i, arg)| sys::c_string(OsStr::new(arg)).ok_or(i))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn renders_entries_and_finds_path() {
        let env = CommandEnv::from_spec(&vars(&[("PATH", "/usr/bin:/bin"), ("A", "x=y")])).unwrap();
        let rendered: Vec<_> = env.entries().iter().map(|c| c.to_str().unwrap()).collect();
        assert_eq!(rendered, ["PATH=/usr/bin:/bin", "A=x=y"]);
        assert_eq!(env.path(), Some(OsStr::new("/usr/bin:/bin")));
    }

    #[test]
    fn rejects_bad_names_values_and_duplicates() {
        assert!(matches!(
            CommandEnv::from_spec(&vars(&[("", "x")])),
            Err(EnvError::BadName(_))
        ));
        assert!(matches!(
            CommandEnv::from_spec(&vars(&[("A=B", "x")])),
            Err(EnvError::BadName(_))
        ));
        assert!(matches!(
            CommandEnv::from_spec(&vars(&[("A", "x\0y")])),
            Err(EnvError::BadValue(_))
        ));
        assert!(matches!(
            CommandEnv::from_spec(&vars(&[("A", "1"), ("A", "2")])),
            Err(EnvError::Duplicate(_))
        ));
    }

    #[test]
    fn no_path_means_no_lookup_path() {
        assert_eq!(CommandEnv::from_spec(&[]).unwrap().path(), None);
    }
}
