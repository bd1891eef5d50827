//! File reads as executor work: `read_file`, `search_files` and the read half of `patch` never
//! open a file in the agent. They describe the read as a [`FileRequest`] and send it as an
//! ordinary command (program [`FILE_OP_PROGRAM`], the request as JSON in its one argument), so
//! it travels the same `Run` path as `terminal` — profile, surface narrowing, approval rules,
//! backend — and the executor has the sandbox helper carry it out once it is confined.
//!
//! The JSON here is the sandbox helper's `talaria_sandbox::fileops::FileOp` and `FileText`
//! (which the agent must not link); the executor's tests check that the two read each other.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{CommandOutcome, CommandSpec, ExecError, ExitKind};

/// The program name of a file request. Not a path: it is never exec'd.
pub const FILE_OP_PROGRAM: &str = "talaria:file";

/// The exit status of a file request the helper refused; its stderr line says why.
pub const EXIT_FILE_REFUSED: i32 = 2;

/// The prefix of the helper's refusal line.
const REFUSAL_PREFIX: &str = "talaria-file:";

/// What a content search shows.
#[derive(Debug, Deserialize, Serialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OutputMode {
    #[default]
    Content,
    FilesOnly,
    Count,
}

/// What a search matches.
#[derive(Debug, Deserialize, Serialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SearchTarget {
    #[default]
    Content,
    Files,
}

/// One search: contents by regex or names by glob, under `root`, paths shown relative to
/// `base`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchRequest {
    pub root: PathBuf,
    pub base: PathBuf,
    pub pattern: String,
    pub target: SearchTarget,
    pub file_glob: Option<String>,
    pub limit: usize,
    pub offset: usize,
    pub output_mode: OutputMode,
    pub context: usize,
}

/// A read the executor carries out confined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum FileRequest {
    /// A regular text file, at most its first `max_bytes`; answers [`FileText`].
    Read { path: PathBuf, max_bytes: u64 },
    /// Answers the rendered result.
    Search(SearchRequest),
}

/// What a read answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileText {
    /// The file's size when it was opened.
    pub size: u64,
    /// Only the first `max_bytes` were read.
    pub truncated: bool,
    pub text: String,
}

/// How long a read may take: a regular file on a local disk takes milliseconds; this bounds a
/// slow network mount or a huge walk.
const FILE_OP_TIMEOUT: Duration = Duration::from_secs(120);

impl FileRequest {
    /// The request as a command for [`super::ToolExecutor::run`]: `command_line` is what
    /// approval rules see (`read_file /etc/shadow`), `cwd` the session's working directory.
    #[must_use]
    pub fn command(&self, command_line: String, cwd: PathBuf, output_limit: usize) -> CommandSpec {
        CommandSpec {
            program: FILE_OP_PROGRAM.to_owned(),
            // Serializing plain strings and numbers cannot fail.
            args: vec![serde_json::to_string(self).unwrap_or_default()],
            command_line,
            cwd,
            stdin: None,
            timeout: FILE_OP_TIMEOUT,
            output_limit,
            profile: None,
            profile_approved: false,
        }
    }
}

/// The answer of a file request: stdout on success, else the helper's refusal (or whatever
/// else went wrong) as an error naming the path and the rule.
///
/// # Errors
/// [`ExecError::Refused`] with the helper's line when it refused; [`ExecError::Failed`] when
/// it died or its output was cut.
pub fn answer(outcome: CommandOutcome) -> Result<String, ExecError> {
    let failed = |message: String| ExecError::Failed {
        program: FILE_OP_PROGRAM.to_owned(),
        message,
    };
    let refusal = outcome
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix(REFUSAL_PREFIX))
        .map(|l| l.trim().to_owned());
    match (outcome.exit, refusal) {
        (ExitKind::Code(0), _) if outcome.dropped_bytes == 0 && !outcome.timed_out => {
            Ok(outcome.stdout)
        }
        (ExitKind::Code(0), _) => Err(failed(format!(
            "the answer was cut ({} bytes dropped{})",
            outcome.dropped_bytes,
            if outcome.timed_out { ", timed out" } else { "" }
        ))),
        (_, Some(message)) => Err(ExecError::Refused { message }),
        (exit, None) if outcome.timed_out => Err(failed(format!(
            "timed out after {:.0?} ({exit})",
            outcome.duration
        ))),
        (exit, None) => Err(failed(format!(
            "{exit}: {}",
            outcome.stderr.trim().lines().last().unwrap_or("no message")
        ))),
    }
}

/// A read's answer.
///
/// # Errors
/// As [`answer`], or an answer that is not a [`FileText`].
pub fn file_text(outcome: CommandOutcome) -> Result<FileText, ExecError> {
    let stdout = answer(outcome)?;
    serde_json::from_str(&stdout).map_err(|e| ExecError::Failed {
        program: FILE_OP_PROGRAM.to_owned(),
        message: format!("unreadable answer from the sandbox: {e}"),
    })
}
