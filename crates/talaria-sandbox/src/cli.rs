//! The helper's command line and reading the spec.
//!
//! ```text
//! talaria-sandbox --spec-fd N     read the JSON SandboxSpec from descriptor N (N >= 3) until EOF
//! talaria-sandbox --spec FILE     read it from FILE
//! talaria-sandbox --probe         print a JSON report of what this host can enforce
//! ```

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{FromRawFd, RawFd};
use std::path::PathBuf;

use crate::spec::SandboxSpec;
use crate::sys;

/// The usage text for `--help` and usage errors.
pub const USAGE: &str = "usage: talaria-sandbox --spec-fd N | --spec FILE | --probe";

/// A command line the helper cannot act on, or a spec it cannot read.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{USAGE}")]
    Usage,
    #[error("--spec-fd needs a descriptor number of 3 or more, got {0:?}")]
    BadFd(String),
    #[error("spec descriptor {fd} is not open")]
    FdNotOpen { fd: RawFd },
    #[error("cannot read the spec from {from}: {}", sys::describe(.source))]
    Read {
        from: String,
        #[source]
        source: io::Error,
    },
    #[error("invalid spec from {from}: {source}")]
    Parse {
        from: String,
        #[source]
        source: serde_json::Error,
    },
}

/// What the helper was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    Help,
    Probe,
    Run(SpecSource),
}

/// Where the spec comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpecSource {
    Fd(RawFd),
    File(PathBuf),
}

impl Invocation {
    /// Parses the arguments after the program name.
    ///
    /// # Errors
    ///
    /// [`CliError::Usage`] or [`CliError::BadFd`].
    pub fn parse(args: &[OsString]) -> Result<Self, CliError> {
        let strs: Vec<Option<&str>> = args.iter().map(|a| a.to_str()).collect();
        match strs.as_slice() {
            [Some("--probe")] => Ok(Self::Probe),
            [Some("--help" | "-h")] => Ok(Self::Help),
            [Some("--spec-fd"), Some(n)] => match n.parse::<RawFd>() {
                Ok(fd) if fd >= 3 => Ok(Self::Run(SpecSource::Fd(fd))),
                _ => Err(CliError::BadFd((*n).to_owned())),
            },
            [Some("--spec"), _] => Ok(Self::Run(SpecSource::File(PathBuf::from(&args[1])))),
            _ => Err(CliError::Usage),
        }
    }
}

impl SpecSource {
    /// Reads and parses the spec; a descriptor is read to EOF and closed.
    ///
    /// # Errors
    ///
    /// [`CliError`] when the source cannot be read or is not a valid spec.
    pub fn read(&self) -> Result<SandboxSpec, CliError> {
        let (mut file, from) = match self {
            Self::Fd(fd) => {
                // SAFETY: F_GETFD only queries the descriptor table.
                if unsafe { libc::fcntl(*fd, libc::F_GETFD) } == -1 {
                    return Err(CliError::FdNotOpen { fd: *fd });
                }
                // SAFETY: the descriptor is open (checked above) and, by the calling convention,
                // handed to the helper to consume; nothing else in the process uses it, and the
                // File closes it when dropped.
                (
                    unsafe { File::from_raw_fd(*fd) },
                    format!("descriptor {fd}"),
                )
            }
            Self::File(path) => {
                let from = path.display().to_string();
                let file = File::open(path).map_err(|source| CliError::Read {
                    from: from.clone(),
                    source,
                })?;
                (file, from)
            }
        };
        let mut text = Vec::new();
        file.read_to_end(&mut text)
            .map_err(|source| CliError::Read {
                from: from.clone(),
                source,
            })?;
        drop(file);
        serde_json::from_slice(&text).map_err(|source| CliError::Parse { from, source })
    }
}

/// The helper's whole command line, for the `talaria-sandbox` binary and for multi-call
/// binaries (`talaria __sandbox …`): parse `args` (without the program name), do what they
/// say, and return the exit status. Call it before any thread exists: the run path forks.
pub fn main_with_args(args: &[OsString]) -> i32 {
    match Invocation::parse(args) {
        Ok(Invocation::Help) => {
            println!("{USAGE}");
            0
        }
        Ok(Invocation::Probe) => match serde_json::to_string_pretty(&crate::probe::probe()) {
            Ok(json) => {
                println!("{json}");
                0
            }
            Err(e) => {
                eprintln!("talaria-sandbox: cannot render the probe report: {e}");
                1
            }
        },
        Ok(Invocation::Run(source)) => match source.read() {
            Ok(spec) => crate::run(spec),
            Err(e) => {
                eprintln!("talaria-sandbox: {e}");
                crate::EXIT_SETUP_FAILED
            }
        },
        Err(e) => {
            eprintln!("talaria-sandbox: {e}");
            crate::EXIT_SETUP_FAILED
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    #[test]
    fn parses_the_three_forms() {
        assert_eq!(
            Invocation::parse(&args(&["--probe"])).unwrap(),
            Invocation::Probe
        );
        assert_eq!(
            Invocation::parse(&args(&["--spec-fd", "7"])).unwrap(),
            Invocation::Run(SpecSource::Fd(7))
        );
        assert_eq!(
            Invocation::parse(&args(&["--spec", "/s.json"])).unwrap(),
            Invocation::Run(SpecSource::File("/s.json".into()))
        );
    }

    #[test]
    fn rejects_standard_streams_and_junk() {
        assert!(matches!(
            Invocation::parse(&args(&["--spec-fd", "1"])),
            Err(CliError::BadFd(_))
        ));
        assert!(matches!(
            Invocation::parse(&args(&["--spec-fd", "x"])),
            Err(CliError::BadFd(_))
        ));
        assert!(matches!(
            Invocation::parse(&args(&[])),
            Err(CliError::Usage)
        ));
        assert!(matches!(
            Invocation::parse(&args(&["--probe", "x"])),
            Err(CliError::Usage)
        ));
    }
}
