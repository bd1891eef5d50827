//! Step 9: `execve` the command, looking a bare program name up in the spec's `PATH`.
//!
//! The lookup happens after confinement, by trying `execve` on each candidate like `execvpe`,
//! so Landlock decides what is executable: a program outside every root is "permission denied"
//! (126), not silently skipped. Exit codes follow the shells: 127 when no candidate exists, 126
//! when one exists but cannot be executed. Without `PATH` in the spec a bare name is not
//! looked up anywhere (127): the helper never invents a default search path.
//! This module must never pass any environment but the spec's.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;

use crate::env::CommandEnv;
use crate::sys;

/// Exit code when the command exists but cannot be executed.
pub const EXIT_CANNOT_EXECUTE: i32 = 126;
/// Exit code when the command does not exist.
pub const EXIT_NOT_FOUND: i32 = 127;

/// A resolved command line and environment, ready to `execve` without allocating (so a tiny
/// `RLIMIT_AS` set just before cannot make the helper itself fail).
#[derive(Debug)]
pub struct Program {
    name: String,
    // The pointer arrays point into these strings' heap buffers, which never move.
    _argv: Vec<CString>,
    _envp: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    envp_ptrs: Vec<*const libc::c_char>,
    candidates: Vec<CString>,
}

/// Why `execve` did not replace the process: the exit code and the one-line report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecFailure {
    pub code: i32,
    pub message: String,
}

impl Program {
    /// Prepares `argv` (non-empty, validated by the caller) with `env`.
    #[must_use]
    pub fn new(name: &str, argv: Vec<CString>, env: &CommandEnv) -> Self {
        let candidates = candidates(name, env.path());
        let envp = env.entries().to_vec();
        let argv_ptrs = null_terminated(&argv);
        let envp_ptrs = null_terminated(&envp);
        Self {
            name: name.to_owned(),
            _argv: argv,
            _envp: envp,
            argv_ptrs,
            envp_ptrs,
            candidates,
        }
    }

    /// Replaces the process with the command; returns only if every candidate failed.
    #[must_use]
    pub fn exec(&self) -> ExecFailure {
        let mut denied = None;
        for candidate in &self.candidates {
            // SAFETY: `candidate` is NUL-terminated; the pointer arrays are NULL-terminated and
            // point into `self._argv` / `self._envp`, which live as long as `self`.
            unsafe {
                libc::execve(
                    candidate.as_ptr(),
                    self.argv_ptrs.as_ptr(),
                    self.envp_ptrs.as_ptr(),
                );
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::ENOENT | libc::ENOTDIR) => {}
                // Keep looking like execvp; report it if nothing better turns up.
                Some(libc::EACCES) => denied = Some(err),
                _ => return self.failure(EXIT_CANNOT_EXECUTE, &err),
            }
        }
        match denied {
            Some(err) => self.failure(EXIT_CANNOT_EXECUTE, &err),
            None if self.name.contains('/') => {
                self.failure(EXIT_NOT_FOUND, &io::Error::from_raw_os_error(libc::ENOENT))
            }
            None => ExecFailure {
                code: EXIT_NOT_FOUND,
                message: format!("talaria-sandbox: command not found: {}", self.name),
            },
        }
    }

    fn failure(&self, code: i32, err: &io::Error) -> ExecFailure {
        ExecFailure {
            code,
            message: format!(
                "talaria-sandbox: cannot execute {}: {}",
                self.name,
                sys::describe(err)
            ),
        }
    }
}

fn null_terminated(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// The paths `execve` is tried on: the name itself if it contains `/`, else each `PATH` entry
/// joined with it (an empty entry meaning the working directory, as POSIX says).
fn candidates(name: &str, path: Option<&OsStr>) -> Vec<CString> {
    if name.contains('/') {
        return CString::new(name).into_iter().collect();
    }
    let Some(path) = path else {
        return Vec::new();
    };
    path.as_bytes()
        .split(|b| *b == b':')
        .filter_map(|dir| {
            let mut full = if dir.is_empty() {
                b".".to_vec()
            } else {
                dir.to_vec()
            };
            full.push(b'/');
            full.extend_from_slice(name.as_bytes());
            CString::new(full).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strs(c: &[CString]) -> Vec<&str> {
        c.iter().map(|c| c.to_str().unwrap()).collect()
    }

    #[test]
    fn lookup_order_follows_path() {
        let found = candidates("ls", Some(OsStr::new("/usr/bin::/bin")));
        assert_eq!(strs(&found), ["/usr/bin/ls", "./ls", "/bin/ls"]);
    }

    #[test]
    fn names_with_slash_and_missing_path() {
        assert_eq!(strs(&candidates("./x", Some(OsStr::new("/bin")))), ["./x"]);
        assert!(candidates("ls", None).is_empty());
    }
}
