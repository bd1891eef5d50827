//! The helper's wire protocol: JSON lines on its stdin (requests) and stdout (responses), one
//! response per `run`, in order. stderr carries only logs.
//!
//! # Requests
//!
//! ```json
//! {"op":"run","id":1,
//!  "container":{"profile":"oci","rootfs":"/var/lib/talaria/rootfs","workspace":"/w","scratch":"/t",
//!               "filesystem":{"read":[],"write":["/w","/t"],"protected":["/w/.git/hooks"]},
//!               "network":{"mode":"off"},"memory_bytes":4294967296,"tasks":512},
//!  "argv":["sh","-c","echo hi"],"cwd":"/w","env":["PATH=/usr/bin:/bin","HOME=/t"],
//!  "limits":{"cpu_seconds":600,"file_size_bytes":1073741824,"open_files":1024},
//!  "stdin_b64":"aGVsbG8=","timeout_ms":600000,"output_limit":1048576,"fresh":false}
//! {"op":"shutdown"}
//! ```
//!
//! * `container` is the session container's [`ContainerPlan`]. The first `run` creates the
//!   container; later runs with an equal plan reuse it; a run with a different plan replaces it.
//! * `env` is the complete environment (`NAME=value`); nothing else is inherited.
//! * `stdin_b64` absent: stdin is `/dev/null`. `limits` absent: no rlimits but `RLIMIT_CORE=0`.
//! * `fresh: true` runs the command as the first process of a container of its own, deleted
//!   afterwards, and leaves the session container alone (for comparing costs).
//! * `shutdown` kills and deletes the container, removes the state directory and exits 0 with
//!   no response. End of file on stdin and `SIGTERM`/`SIGINT`/`SIGHUP` do the same, also in the
//!   middle of a run (the command is killed first).
//!
//! # Responses
//!
//! ```json
//! {"id":1,"exit":{"code":0},"stdout_b64":"aGkK","stderr_b64":"","timed_out":false,"dropped":0,
//!  "duration_ms":12,"container":"created"}
//! {"id":2,"error":"cannot start the command in the container: …"}
//! ```
//!
//! * `exit` is `{"code":N}` or `{"signal":N}` (a command killed at its timeout has
//!   `timed_out: true` and `{"signal":9}`).
//! * `stdout_b64`/`stderr_b64`: at most `output_limit` bytes each, the first and the last half,
//!   with `\n[... N bytes of output omitted ...]\n` in between when something was dropped;
//!   `dropped` counts the dropped bytes of both.
//! * `duration_ms`: from the command's start (container already running) to its end.
//! * `container`: `"created"` (this run started the session container), `"reused"`, or
//!   `"fresh"`.
//! * `error`: the command did not run (the container could not be set up, a bad request). The
//!   executor reports it as a sandbox refusal; it never runs the command elsewhere instead. A
//!   line that is not a valid request gets `{"id":null,"error":…}`.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::capture::Finished;
use crate::plan::{CommandLimits, ContainerCommand, ContainerPlan};
use crate::sys::ExitStatus;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Run(Box<RunRequest>),
    Shutdown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    pub id: u64,
    pub container: ContainerPlan,
    pub argv: Vec<String>,
    pub cwd: PathBuf,
    pub env: Vec<String>,
    #[serde(default)]
    pub limits: CommandLimits,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin_b64: Option<String>,
    pub timeout_ms: u64,
    pub output_limit: usize,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fresh: bool,
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

/// Which container a run used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerUse {
    Created,
    Reused,
    Fresh,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunReport {
    pub id: u64,
    pub exit: Exit,
    pub stdout_b64: String,
    pub stderr_b64: String,
    pub timed_out: bool,
    pub dropped: u64,
    pub duration_ms: u64,
    pub container: ContainerUse,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunFailure {
    pub id: Option<u64>,
    pub error: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Response {
    Report(RunReport),
    Failure(RunFailure),
}

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("stdin_b64 is not valid base64: {0}")]
    Stdin(#[from] base64::DecodeError),
    #[error("environment entry {0:?} is not NAME=value")]
    Env(String),
}

impl RunRequest {
    /// The request for running `command` in `plan`'s container.
    #[must_use]
    pub fn new(id: u64, plan: &ContainerPlan, command: &ContainerCommand, fresh: bool) -> Self {
        Self {
            id,
            container: plan.clone(),
            argv: command.argv.clone(),
            cwd: command.cwd.clone(),
            env: command
                .env
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect(),
            limits: command.limits,
            stdin_b64: command.stdin.as_ref().map(|s| STANDARD.encode(s)),
            timeout_ms: u64::try_from(command.timeout.as_millis()).unwrap_or(u64::MAX),
            output_limit: command.output_limit,
            fresh,
        }
    }

    /// The command this request describes.
    ///
    /// # Errors
    /// Invalid base64 or an environment entry without `=`.
    pub fn command(&self) -> Result<ContainerCommand, RequestError> {
        let env = self
            .env
            .iter()
            .map(|entry| {
                entry
                    .split_once('=')
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .ok_or_else(|| RequestError::Env(entry.clone()))
            })
            .collect::<Result<_, _>>()?;
        Ok(ContainerCommand {
            argv: self.argv.clone(),
            cwd: self.cwd.clone(),
            env,
            limits: self.limits,
            stdin: self
                .stdin_b64
                .as_deref()
                .map(|s| STANDARD.decode(s))
                .transpose()?,
            timeout: Duration::from_millis(self.timeout_ms),
            output_limit: self.output_limit,
        })
    }
}

impl RunReport {
    #[must_use]
    pub fn new(id: u64, finished: &Finished, container: ContainerUse) -> Self {
        Self {
            id,
            exit: match finished.exit {
                ExitStatus::Code(c) => Exit::Code(c),
                ExitStatus::Signal(s) => Exit::Signal(s),
            },
            stdout_b64: STANDARD.encode(&finished.stdout),
            stderr_b64: STANDARD.encode(&finished.stderr),
            timed_out: finished.timed_out,
            dropped: finished.dropped,
            duration_ms: u64::try_from(finished.duration.as_millis()).unwrap_or(u64::MAX),
            container,
        }
    }

    /// Decoded stdout.
    ///
    /// # Errors
    /// Invalid base64 from the helper.
    pub fn stdout(&self) -> Result<Vec<u8>, base64::DecodeError> {
        STANDARD.decode(&self.stdout_b64)
    }

    /// Decoded stderr.
    ///
    /// # Errors
    /// Invalid base64 from the helper.
    pub fn stderr(&self) -> Result<Vec<u8>, base64::DecodeError> {
        STANDARD.decode(&self.stderr_b64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_as_documented() {
        let line = r#"{"op":"run","id":1,"container":{"profile":"oci","rootfs":"/r","workspace":"/w","scratch":"/t","filesystem":{"read":[],"write":["/w"],"protected":[]},"network":{"mode":"off"},"memory_bytes":null,"tasks":64},"argv":["true"],"cwd":"/w","env":["PATH=/bin","X=a=b"],"stdin_b64":"aGk=","timeout_ms":1000,"output_limit":100}"#;
        let Request::Run(run) = serde_json::from_str(line).unwrap() else {
            panic!("not a run")
        };
        let command = run.command().unwrap();
        assert_eq!(command.env[1], ("X".to_owned(), "a=b".to_owned()));
        assert_eq!(command.stdin.as_deref(), Some(&b"hi"[..]));
        assert!(!run.fresh);
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"op":"shutdown"}"#).unwrap(),
            Request::Shutdown
        );
        assert!(serde_json::from_str::<Request>(r#"{"op":"run","id":1,"bogus":2}"#).is_err());
    }

    #[test]
    fn responses_round_trip() {
        let report = Response::Report(RunReport {
            id: 3,
            exit: Exit::Signal(9),
            stdout_b64: String::new(),
            stderr_b64: String::new(),
            timed_out: true,
            dropped: 0,
            duration_ms: 5,
            container: ContainerUse::Reused,
        });
        let text = serde_json::to_string(&report).unwrap();
        assert!(text.contains(r#""exit":{"signal":9}"#), "{text}");
        assert!(text.contains(r#""container":"reused""#), "{text}");
        assert_eq!(serde_json::from_str::<Response>(&text).unwrap(), report);
        let failure = Response::Failure(RunFailure {
            id: Some(4),
            error: "no".into(),
        });
        let text = serde_json::to_string(&failure).unwrap();
        assert_eq!(text, r#"{"id":4,"error":"no"}"#);
        assert_eq!(serde_json::from_str::<Response>(&text).unwrap(), failure);
    }
}
